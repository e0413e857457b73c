/**
 * `strata verify`'s work: check the whole store, every entry against what vouches for it, and drop what is damaged
 * (unless `dryRun`), so that it is fetched or made again when next needed.
 *
 * - blobs: every blob re-hashed against its name (a verified stamp is written for each whole one);
 * - layer records: each must parse, and the gzip blob it names be in the store, whole;
 * - unpacked trees: meta.json must parse and describe a tree; every regular file it lists must be there with the
 *   recorded size and sha256;
 * - root filesystems: a tree whose layers the store holds (a pulled image's) is compared with what they make (every
 *   path, type, file content and mode, symlink target; nothing extra); a realised image's, hard links to the
 *   unpacked packages, goes with any damaged unpacked tree it links. A tree without a record (made by an older
 *   strata) cannot be checked and is counted as such;
 * - the other cache records (channel pointers, run pointers) must parse, and each parsed index read back whole (its
 *   tables, and its candidates against their crc32);
 * - the memo of locks read before: each entry's lock text is parsed and verified again, and must give the lock the
 *   entry holds (an entry of another strata's reader is never read, and left to gc).
 *
 * Nothing here prints: the command does.
 */
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink, rm } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import PQueue from 'p-queue';
import type { Store } from '../store/store.ts';
import type { Reporter } from '../report/reporter.ts';
import { layerRecordProblem, type LayerRecord } from '../realiser/layers.ts';
import { unpackedMetaProblem } from '../realiser/realise.ts';
import type { UnpackedDeb } from '../realiser/deb.ts';
import { checkRootfs, poolEntryOf, POOL_DIR, type LayerSource, type RootfsRecord } from '../run/rootfs.ts';
import type { PulledImage, PulledLayer } from '../registry/pull.ts';
import { pulledLayer } from './images.ts';
import { checkIndexCache } from '../channels/indexCache.ts';
import { lockMemoKey, parseLock } from '../lock/lockfile.ts';
import type { Lockfile } from '../model.ts';

export interface Damage {
  /** The entry, e.g. `blob sha256:…`, `unpacked tree of <sha>`. */
  what: string;
  reason: string;
}

export interface VerifyReport {
  blobs: { checked: number; bytes: number };
  layers: { checked: number };
  unpacked: { checked: number; files: number };
  /** Compared with their stored layers; checked through the unpacked files they link; neither. */
  rootfs: { checked: number; linked: number; unchecked: number };
  /** The root filesystems' shared inodes (run/rootfs.ts `inodePool`). */
  pool: { checked: number };
  records: { checked: number };
  /** The generated parts (engine/generated.ts), file by file against their meta.json. */
  generated: { checked: number; files: number };
  damaged: Damage[];
}

async function hashFile(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) h.update(c);
  return h.digest('hex');
}

/** Why an unpacked tree differs from its meta.json, or undefined when it does not. */
async function unpackedProblem(root: string, meta: UnpackedDeb): Promise<{ problem?: string; files: number }> {
  let files = 0;
  for (const e of meta.entries) {
    if (e.type !== 'file') continue;
    files++;
    const p = join(root, e.path);
    const st = await lstat(p).catch(() => undefined);
    if (!st) return { problem: `${e.path} is missing`, files };
    if (!st.isFile()) return { problem: `${e.path} is not a regular file`, files };
    if (st.size !== e.size) return { problem: `${e.path} has ${st.size} bytes, ${e.size} recorded`, files };
    if ((await hashFile(p)) !== e.sha256) return { problem: `${e.path} has other content than recorded`, files };
  }
  return { files };
}

/** What every per-kind check shares: the store, the options, the report, the blobs found damaged so far. */
interface Pass {
  store: Store;
  o: { dryRun: boolean; reporter?: Reporter };
  report: VerifyReport;
  badBlobs: Set<string>;
  /** The files (`dev:ino`) of the unpacked trees found damaged, and which package each is of. */
  badFiles: Map<string, string>;
  queue: PQueue;
  damaged(what: string, reason: string): void;
  stage(label: string, total: number): { tick(): void; done(): void };
}

/** Re-hashes every blob: what the other entries are checked against. */
async function checkBlobs(v: Pass): Promise<void> {
  const hexes = await v.store.blobs();
  const bar = v.stage('blobs', hexes.length);
  await Promise.all(
    hexes.map((hex) =>
      v.queue.add(async () => {
        const c = await v.store.check(hex, undefined, { rehash: true, keep: v.o.dryRun });
        if (c.state === 'ok') {
          const { size } = await lstat(c.path);
          v.report.blobs.checked++;
          v.report.blobs.bytes += size;
        } else if (c.state === 'damaged') {
          v.report.blobs.checked++;
          v.badBlobs.add(hex);
          v.damaged(`blob sha256:${hex}`, c.reason);
        }
        bar.tick();
      }),
    ),
  );
  bar.done();
}

/** Every layer record must parse and its blobs be whole. */
async function checkLayerRecords(v: Pass): Promise<void> {
  const whole = async (digest: string, size: number) => !v.badBlobs.has(digest.slice(7)) && (await v.store.has(digest, size)) !== undefined;
  const layers = v.store.cache('layers');
  for (const key of (await layers.list()).json) {
    v.report.layers.checked++;
    const r = await layers.readEntry<LayerRecord>(key, layerRecordProblem);
    let problem = r.state === 'damaged' ? r.reason : undefined;
    if (r.state === 'ok') {
      // The uncompressed tar is made again on demand and is in the store only when something put it there; a gzip
      // blob, once recorded, must be there.
      if (v.badBlobs.has(r.value.diffId.slice(7))) problem = `its blob ${r.value.diffId.slice(0, 19)}… is damaged`;
      const gz = r.value.gzip;
      if (gz && !(await whole(gz.digest, gz.size))) problem ??= `its blob ${gz.digest.slice(0, 19)}… is ${v.badBlobs.has(gz.digest.slice(7)) ? 'damaged' : 'missing'}`;
    }
    if (problem === undefined) continue;
    v.damaged(`layer record ${key}`, problem);
    if (!v.o.dryRun) await layers.remove(key);
  }
}

/** Every generated part, file by file, against its meta.json: a damaged one is dropped and made again when next needed. */
async function checkGenerated(v: Pass): Promise<void> {
  const generated = v.store.cache('generated');
  for (const key of (await generated.list()).dirs) {
    if (!/^[0-9a-f]{64}$/.test(key)) continue;
    v.report.generated.checked++;
    const meta = await readFile(join(generated.path(key), 'meta.json'), 'utf8')
      .then((t) => JSON.parse(t) as { entries?: { path: string; type: string; size?: number; sha256?: string }[] })
      .catch(() => undefined);
    let problem: string | undefined;
    if (!meta || !Array.isArray(meta.entries)) problem = 'its meta.json is missing or unreadable';
    else {
      for (const e of meta.entries) {
        if (e.type !== 'file') continue;
        v.report.generated.files++;
        const p = join(generated.path(key), 'out', e.path);
        const st = await lstat(p).catch(() => undefined);
        if (!st?.isFile()) problem = `${e.path} is missing`;
        else if (st.size !== e.size || (await hashFile(p)) !== e.sha256) problem = `${e.path} has other content than recorded`;
        if (problem) break;
      }
    }
    if (problem === undefined) continue;
    v.damaged(`generated files ${key}`, problem);
    // A root filesystem that links its files goes with it (checkRootfses).
    await eachFile(join(generated.path(key), 'out'), (_rel, st) => void v.badFiles.set(`${st.dev}:${st.ino}`, `generated files ${key.slice(0, 12)}`));
    if (!v.o.dryRun) await generated.remove(key);
  }
}

/** Every unpacked package, file by file, against its meta.json. */
async function checkUnpacked(v: Pass): Promise<void> {
  const unpacked = v.store.cache('unpacked');
  const trees = (await unpacked.list()).dirs;
  const bar = v.stage('unpacked', trees.length);
  await Promise.all(
    trees.map((key) =>
      v.queue.add(async () => {
        v.report.unpacked.checked++;
        const r = await unpacked.readEntry<UnpackedDeb>(join(key, 'meta'), unpackedMetaProblem);
        let problem: string | undefined;
        if (r.state !== 'ok') problem = `meta.json ${r.state === 'damaged' ? r.reason : 'missing'}`;
        else {
          const got = await unpackedProblem(join(unpacked.path(key), 'root'), r.value);
          v.report.unpacked.files += got.files;
          problem = got.problem;
        }
        bar.tick();
        if (problem === undefined) return;
        const pkg = r.state === 'ok' ? /^Package:\s*(\S+)/m.exec(r.value.control)?.[1] : undefined;
        v.damaged(`unpacked ${pkg ?? 'package'} (${key.slice(0, 12)}…)`, problem);
        // A root filesystem that links these files holds the damage too, and goes with them.
        await eachFile(unpacked.path(key), (_rel, st) => void v.badFiles.set(`${st.dev}:${st.ino}`, pkg ?? key.slice(0, 12)));
        if (!v.o.dryRun) await unpacked.remove(key);
      }),
    ),
  );
  bar.done();
}

/**
 * Every root filesystem against the layers it records, where the store holds them (a pulled image's); a realised
 * image's, whose layers are made on demand, through the unpacked packages it is hard links to: one that links a file
 * of a damaged unpacked tree is damaged with it. (Those made before strata recorded their layers: not checkable.)
 */
async function checkRootfses(v: Pass): Promise<void> {
  const rootfs = v.store.cache('rootfs');
  const listed = await rootfs.list();
  const roots = new Set(listed.dirs);
  for (const key of listed.json) if (!roots.has(key) && !v.o.dryRun) await rootfs.remove(key); // a record whose tree never arrived
  // A pulled image's layers by diffId: its tars are decompressed from the gzip blobs as the check reads them.
  const pulled = new Map<string, PulledLayer>();
  const images = v.store.cache('images');
  for (const key of (await images.list()).json) {
    if (key.startsWith('ref-') || key.startsWith('cache-image-')) continue;
    const img = await images.readJson<Partial<PulledImage>>(key);
    for (const l of Array.isArray(img?.layers) ? img.layers : []) if (typeof l?.diffId === 'string' && typeof l.digest === 'string') pulled.set(l.diffId, l);
  }
  const bar = v.stage('rootfs', listed.dirs.length);
  for (const key of listed.dirs) {
    bar.tick();
    const r = await rootfs.readEntry<RootfsRecord>(key, (x) => (Array.isArray((x as RootfsRecord | null)?.layers) ? undefined : 'no layer list'));
    if (r.state !== 'ok') {
      v.report.rootfs.unchecked++;
      continue;
    }
    const layerPaths: LayerSource[] = [];
    for (const l of r.value.layers) {
      const p = v.badBlobs.has(l.diffId.slice(7)) ? undefined : await v.store.has(l.diffId, l.size);
      const gz = p ? undefined : pulled.get(l.diffId);
      if (p) layerPaths.push(p);
      else if (gz && !v.badBlobs.has(gz.digest.slice(7))) {
        const got = await pulledLayer(gz, v).catch(() => undefined);
        if (got) layerPaths.push(got.open ? { path: got.path, open: got.open } : got.path);
      }
    }
    let problems: string[];
    if (layerPaths.length === r.value.layers.length) {
      v.report.rootfs.checked++;
      problems = await checkRootfs(rootfs.path(key), layerPaths, 3);
    } else {
      v.report.rootfs.linked++;
      problems = [];
      if (v.badFiles.size > 0) {
        await eachFile(rootfs.path(key), (rel, st) => {
          const pkg = v.badFiles.get(`${st.dev}:${st.ino}`);
          if (pkg !== undefined && problems.length < 3) problems.push(`/${rel} is a file of the damaged ${pkg.startsWith('generated files ') || pkg === 'shared inode' ? pkg : `unpacked ${pkg}`}`);
        });
      }
    }
    if (problems.length === 0) continue;
    v.damaged(`root filesystem ${key.slice(0, 12)}…`, problems.join('; '));
    if (!v.o.dryRun) await rootfs.remove(key);
  }
  bar.done();
}

/**
 * The root filesystems' pool of shared inodes (run/rootfs.ts `inodePool`): each file's content and mode, each
 * symlink's target, against what its name says. A damaged one is removed, and the trees that link it are damaged
 * with it (checked next, by inode).
 */
async function checkPool(v: Pass): Promise<void> {
  const dir = v.store.cache('rootfs').path(POOL_DIR);
  const names = await readdir(dir).catch(() => [] as string[]);
  const bar = v.stage('shared inodes', names.length);
  for (const name of names) {
    bar.tick();
    const p = join(dir, name);
    const want = poolEntryOf(name);
    const st = await lstat(p).catch(() => undefined);
    if (!want || !st) continue; // not the pool's (gc removes it), or gone meanwhile
    v.report.pool.checked++;
    let problem: string | undefined;
    if (want.kind === 'l') {
      if (!st.isSymbolicLink()) problem = 'is not a symlink';
      else if (createHash('sha256').update(await readlink(p)).digest('hex') !== want.sha256) problem = 'points elsewhere than its name says';
    } else if (!st.isFile()) problem = 'is not a regular file';
    else if ((st.mode & 0o7777) !== want.mode) problem = `has mode ${(st.mode & 0o7777).toString(8)}, its name says ${want.mode.toString(8)}`;
    else if ((await hashFile(p)) !== want.sha256) problem = 'has other content than its name says';
    if (problem === undefined) continue;
    v.badFiles.set(`${st.dev}:${st.ino}`, 'shared inode');
    v.damaged(`shared inode ${name.slice(0, 24)}…`, problem);
    if (!v.o.dryRun) await rm(p, { force: true });
  }
  bar.done();
}

/** Calls `f` for every regular file and symlink under `dir` (relative path, lstat), in name order. */
async function eachFile(dir: string, f: (rel: string, st: Stats) => void, rel = ''): Promise<void> {
  const here = rel === '' ? dir : join(dir, rel);
  const names = (await readdir(here).catch(() => [] as string[])).sort();
  for (const name of names) {
    const r = rel === '' ? name : `${rel}/${name}`;
    const st = await lstat(join(dir, r)).catch(() => undefined);
    if (!st) continue;
    if (st.isDirectory()) await eachFile(dir, f, r);
    else if (st.isFile() || st.isSymbolicLink()) f(r, st);
  }
}

/** Why a lock memo entry is not what reading its text gives, or undefined when it is. */
function lockMemoProblem(key: string, entry: { text: string; lock: Lockfile }): string | undefined {
  if (typeof entry?.text !== 'string') return 'no lock text';
  // Another key is another reader's (an older strata's): never read by this one, and left to gc.
  if (lockMemoKey(entry.text) !== key) return undefined;
  let again: Lockfile;
  try {
    again = parseLock(entry.text);
  } catch (e) {
    return `its text no longer reads as a lock (${(e as Error).message.split('\n')[0]})`;
  }
  return JSON.stringify(again) === JSON.stringify(entry.lock) ? undefined : 'the lock it holds is not what its text gives';
}

/** The small records (channel pointers, run pointers, the lock memo) must parse; a parsed index must read back whole; a lock memo entry must be what its text gives. */
async function checkRecords(v: Pass): Promise<void> {
  for (const ns of ['channels', 'indexes', 'run', 'locks'] as const) {
    const c = v.store.cache(ns);
    const { json, dirs } = await c.list();
    for (const key of json) {
      v.report.records.checked++;
      const r = await c.readEntry<{ text: string; lock: Lockfile }>(key);
      const problem = r.state === 'damaged' ? r.reason : r.state === 'ok' && ns === 'locks' ? lockMemoProblem(key, r.value) : undefined;
      if (problem === undefined) continue;
      v.damaged(r.state === 'damaged' ? `${ns} record ${key}` : `lock memo ${key}`, problem);
      if (!v.o.dryRun) await c.remove(key);
    }
    if (ns !== 'indexes') continue;
    for (const key of dirs) {
      v.report.records.checked++;
      const problem = await checkIndexCache(c.path(key));
      if (problem === undefined) continue;
      v.damaged(`parsed index ${key}`, problem);
      if (!v.o.dryRun) await c.remove(key);
    }
  }
}

export async function verifyStore(store: Store, o: { dryRun: boolean; reporter?: Reporter }): Promise<VerifyReport> {
  const report: VerifyReport = { blobs: { checked: 0, bytes: 0 }, layers: { checked: 0 }, unpacked: { checked: 0, files: 0 }, rootfs: { checked: 0, linked: 0, unchecked: 0 }, pool: { checked: 0 }, records: { checked: 0 }, generated: { checked: 0, files: 0 }, damaged: [] };
  const v: Pass = {
    store,
    o,
    report,
    badBlobs: new Set(),
    badFiles: new Map(),
    queue: new PQueue({ concurrency: 2 }),
    damaged: (what, reason) => report.damaged.push({ what, reason }),
    stage: (label, total) => o.reporter?.progress(label, total) ?? { tick() {}, done() {} },
  };
  await checkBlobs(v);
  await checkLayerRecords(v);
  await checkUnpacked(v);
  await checkGenerated(v);
  await checkPool(v);
  await checkRootfses(v);
  await checkRecords(v);
  await store.pruneStamps();
  return report;
}
