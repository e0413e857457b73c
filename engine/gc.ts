/**
 * `strata gc`'s work: mark what live environments need, sweep the rest; and the store's size by kind.
 *
 * Roots (the `roots` cache, one entry per lock file or pulled reference, written by realise, run, shell, push, pull
 * and run --image): the lock file's absolute path and closure, the time of last use, and every store entry the
 * process touched (store.used()), merged with what earlier uses of the same closure touched.
 *
 * The rule. An entry (a blob, or a key in a cache namespace) is kept when any of:
 * - a root whose lock file still exists and still has the recorded closure touched it (channel pointers and parsed
 *   indexes aside: those are kept by age alone);
 * - a root used within --keep-days touched it (whatever became of its lock; pulled images are kept this way);
 * - it was written within --keep-days (made by a command that records no root, or not recorded yet);
 * - a live `strata run`/`strata shell` uses it (its marker in the store, store/active.ts);
 * and what a kept entry names is kept with it: a layer record's blobs, a rootfs's layers, a pulled image's blobs, a
 * run pointer's rootfs. Everything else goes, and so do roots that are neither live nor recent. gc waits while
 * another strata process is busy with the store (realising, locking) and, while it sweeps, holds the store's gc lock,
 * which makes processes starting meanwhile wait for it.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../errors.ts';
import { readLock } from '../lock/lockfile.ts';
import { liveMarkers, markRunning, releaseGcLock, takeGcLock, type Used } from '../store/active.ts';
import { CACHE_NAMESPACES } from '../store/cache.ts';
import type { CacheNamespace, Store } from '../store/store.ts';
import type { Reporter } from '../report/reporter.ts';

export interface RootEntry {
  lockPath?: string;
  closure?: string;
  image?: string;
  lastUsed: number;
  used: Used;
}

const rootKey = (what: string) => createHash('sha256').update(what).digest('hex');

function merge(a: Used, b: Used): Used {
  const entries: Record<string, string[]> = { ...a.entries };
  for (const [ns, keys] of Object.entries(b.entries)) entries[ns] = [...new Set([...(entries[ns] ?? []), ...keys])].sort();
  return { blobs: [...new Set([...a.blobs, ...b.blobs])].sort(), entries };
}

/** Records (or refreshes) the root of a lock file (absolute path, and the closure it has now) or of a pulled reference. */
export async function recordRoot(store: Store, of: { lockPath: string; closure: string } | { image: string }): Promise<void> {
  const roots = store.cache('roots');
  const key = rootKey('lockPath' in of ? `lock ${of.lockPath}` : `image ${of.image}`);
  const before = await roots.readJson<RootEntry>(key);
  const same = before && ('lockPath' in of ? before.closure === of.closure : before.image === of.image);
  const used = store.used();
  await roots.writeJson(key, { ...of, lastUsed: Date.now(), used: same && before.used ? merge(before.used, used) : used } satisfies RootEntry, { durable: false });
}

/** Says that this process now runs a command in its environment: gc keeps what it touched and no longer waits for it. */
export function runningNow(store: Store): void {
  markRunning(store.root, store.used());
}

export type Kind = 'downloads' | 'layers' | 'trees' | 'recipe outputs' | 'indexes' | 'records';
const KIND_OF: Record<CacheNamespace, Kind> = {
  channels: 'indexes',
  indexes: 'indexes',
  unpacked: 'trees',
  rootfs: 'trees',
  skeletons: 'trees',
  layers: 'layers',
  recipes: 'recipe outputs',
  generated: 'recipe outputs',
  'build-logs': 'recipe outputs',
  run: 'records',
  images: 'records',
  roots: 'records',
  locks: 'records',
};
export const KINDS: readonly Kind[] = ['downloads', 'layers', 'trees', 'recipe outputs', 'indexes', 'records'];

/** One entry of the store: a blob or a cache key. */
interface Item {
  kind: Kind;
  /** `blob <hex>` or `<namespace>/<key>` */
  name: string;
  ns?: CacheNamespace;
  key: string;
  paths: string[];
  bytes: number;
  mtimeMs: number;
}

/** Bytes of regular files under `path` (each inode once, across the whole walk), and the newest mtime of its top. */
async function measure(path: string, seen: Set<string>): Promise<{ bytes: number; mtimeMs: number } | undefined> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return undefined;
  let bytes = 0;
  const walk = async (p: string, s: Awaited<ReturnType<typeof lstat>>) => {
    const id = `${s.dev}:${s.ino}`;
    if (seen.has(id)) return;
    seen.add(id);
    if (s.isFile()) bytes += Number(s.size);
    else if (s.isDirectory()) {
      for (const n of await readdir(p).catch(() => [] as string[])) {
        const c = join(p, n);
        const cs = await lstat(c).catch(() => undefined);
        if (cs) await walk(c, cs);
      }
    }
  };
  await walk(path, st);
  return { bytes, mtimeMs: st.mtimeMs };
}

async function inventory(store: Store): Promise<Item[]> {
  const seen = new Set<string>();
  const items: Item[] = [];
  const layerBlobs = new Set<string>();
  for (const ns of CACHE_NAMESPACES) {
    const c = store.cache(ns);
    const { json, dirs } = await c.list();
    for (const key of [...new Set([...json, ...dirs])].sort()) {
      const paths = [c.path(key), `${c.path(key)}.json`];
      let bytes = 0;
      let mtimeMs = 0;
      for (const p of paths) {
        const m = await measure(p, seen);
        if (m) (bytes += m.bytes), (mtimeMs = Math.max(mtimeMs, m.mtimeMs));
      }
      items.push({ kind: KIND_OF[ns], name: `${ns}/${key}`, ns, key, paths, bytes, mtimeMs });
      if (ns === 'layers' || ns === 'rootfs' || ns === 'images') for (const b of await namedBlobs(store, ns, key)) layerBlobs.add(b);
    }
  }
  for (const hex of await store.blobs()) {
    const path = (await store.has(hex)) ?? '';
    const m = await measure(path, seen);
    if (!m) continue;
    items.push({ kind: layerBlobs.has(hex) ? 'layers' : 'downloads', name: `blob ${hex}`, key: hex, paths: [path], ...m });
  }
  return items;
}

const hexOf = (d: unknown): string | undefined => (typeof d === 'string' && /^(sha256:)?[0-9a-f]{64}$/.test(d) ? d.slice(-64) : undefined);

/** The blobs a layer record, root filesystem record or pulled image's record names. */
async function namedBlobs(store: Store, ns: CacheNamespace, key: string): Promise<string[]> {
  const r = await store.cache(ns).readJson<{ diffId?: string; gzip?: { digest?: string }; layers?: { diffId?: string; digest?: string }[]; configDigest?: string; manifestDigest?: string }>(key);
  if (!r || typeof r !== 'object') return [];
  const all = [r.diffId, r.gzip?.digest, r.configDigest, r.manifestDigest, ...(Array.isArray(r.layers) ? r.layers.flatMap((l) => [l?.diffId, l?.digest]) : [])];
  return all.map(hexOf).filter((h): h is string => h !== undefined);
}

export interface SizeReport {
  total: number;
  byKind: Record<Kind, { entries: number; bytes: number }>;
}

function sizes(items: Item[]): SizeReport {
  const byKind = Object.fromEntries(KINDS.map((k) => [k, { entries: 0, bytes: 0 }])) as SizeReport['byKind'];
  for (const i of items) (byKind[i.kind].entries++, (byKind[i.kind].bytes += i.bytes));
  return { total: items.reduce((n, i) => n + i.bytes, 0), byKind };
}

export async function storeSizes(store: Store): Promise<SizeReport> {
  return sizes(await inventory(store));
}

export interface GcReport {
  before: SizeReport;
  removed: { name: string; kind: Kind; bytes: number }[];
  freed: number;
  liveRoots: number;
  droppedRoots: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until no other strata process is busy with the store, then takes the gc lock. */
async function quiesce(store: Store, reporter: Reporter | undefined, waitMs: number): Promise<void> {
  const until = Date.now() + waitMs;
  let said = false;
  for (;;) {
    const busy = liveMarkers(store.root).filter((m) => m.state === 'busy');
    if (busy.length === 0) {
      if (!takeGcLock(store.root)) {
        if (!said) reporter?.info('waiting for another strata gc to finish');
        said = true;
      } else if (liveMarkers(store.root).some((m) => m.state === 'busy')) releaseGcLock(store.root);
      else return;
    } else if (!said) {
      reporter?.info(`waiting for ${busy.length} strata process${busy.length === 1 ? '' : 'es'} using the store (pid ${busy.map((m) => m.pid).join(', ')}) to finish`);
      said = true;
    }
    if (Date.now() > until) throw new StrataError('E_RUN', 'the store stayed in use by other strata processes; nothing was removed', 'run `strata gc` again when they are done');
    await sleep(100);
  }
}

async function liveRoot(r: RootEntry): Promise<boolean> {
  if (!r.lockPath || !r.closure) return false;
  try {
    return (await readLock(r.lockPath))?.closure === r.closure;
  } catch {
    return false;
  }
}

export async function gcStore(store: Store, o: { dryRun: boolean; keepDays: number; reporter?: Reporter; waitMs?: number }): Promise<GcReport> {
  await quiesce(store, o.reporter, o.waitMs ?? 10 * 60_000);
  try {
    const cutoff = Date.now() - o.keepDays * 86_400_000;
    const keepBlobs = new Set<string>();
    const keep = new Map<CacheNamespace, Set<string>>(CACHE_NAMESPACES.map((ns) => [ns, new Set()]));
    const markUsed = (u: Used | undefined, withIndexes: boolean) => {
      for (const b of u?.blobs ?? []) keepBlobs.add(b);
      for (const [ns, keys] of Object.entries(u?.entries ?? {})) {
        if (!withIndexes && (ns === 'channels' || ns === 'indexes')) continue;
        for (const k of keys) keep.get(ns as CacheNamespace)?.add(k);
      }
    };
    const roots = store.cache('roots');
    let liveRoots = 0;
    let droppedRoots = 0;
    for (const key of (await roots.list()).json) {
      const r = await roots.readJson<RootEntry>(key);
      const live = r ? await liveRoot(r) : false;
      const recent = r !== undefined && typeof r.lastUsed === 'number' && r.lastUsed >= cutoff;
      if (live) markUsed(r?.used, false);
      if (recent) markUsed(r?.used, true);
      if (live || recent) {
        liveRoots++;
        keep.get('roots')!.add(key);
      } else droppedRoots++;
    }
    const markers = liveMarkers(store.root);
    for (const m of markers) markUsed(m.used, true);
    // What a kept entry names is kept with it.
    for (const key of keep.get('run')!) {
      const p = await store.cache('run').readJson<{ manifestDigest?: string }>(key);
      const hex = hexOf(p?.manifestDigest);
      if (hex) keep.get('rootfs')!.add(hex);
    }
    for (const ns of ['layers', 'rootfs', 'images'] as const) for (const key of keep.get(ns)!) for (const b of await namedBlobs(store, ns, key)) keepBlobs.add(b);

    const items = await inventory(store);
    const before = sizes(items);
    const kept = (i: Item) => {
      if (i.mtimeMs >= cutoff) return true;
      if (!i.ns) return keepBlobs.has(i.key);
      if (i.ns === 'skeletons' && markers.length > 0) return true;
      return keep.get(i.ns)!.has(i.key);
    };
    const removed: GcReport['removed'] = [];
    /** The root filesystems that go (what a dry run's count of shared inodes to go looks through). */
    const going: string[] = [];
    // Records before what they name, so that no reader finds a record whose blobs are gone.
    const order = (i: Item) => (i.ns === undefined ? 2 : i.ns === 'layers' || i.ns === 'run' || i.ns === 'images' || i.ns === 'roots' ? 0 : 1);
    for (const i of [...items].sort((a, b) => order(a) - order(b))) {
      if (kept(i)) continue;
      removed.push({ name: i.name, kind: i.kind, bytes: i.bytes });
      if (i.ns === 'rootfs') going.push(i.paths[0]!);
      if (o.dryRun) continue;
      if (i.ns) await store.cache(i.ns).remove(i.key);
      else await store.drop(i.key);
    }
    // The shared inodes no tree links any more, once the trees above are gone.
    const { POOL_DIR, prunePool } = await import('../run/rootfs.ts');
    const pool = await prunePool(store.cache('rootfs'), o.dryRun, going);
    if (pool.count > 0) removed.push({ name: `rootfs/${POOL_DIR} (${pool.count} shared inodes no tree links)`, kind: 'trees', bytes: pool.bytes });
    if (!o.dryRun) await store.pruneStamps();
    return { before, removed, freed: removed.reduce((n, r) => n + r.bytes, 0), liveRoots, droppedRoots };
  } finally {
    releaseGcLock(store.root);
  }
}
