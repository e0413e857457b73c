/**
 * realise: lock -> verified .debs in the store -> unpacked trees (cached per .deb) -> deterministic layers
 * (cached per input) -> an OCI image (config + manifest). Reads only the lock; never the resolver.
 *
 * What comes out of the store is checked before it is used, and a damaged entry is made again with one warning
 * naming it: a cached .deb is re-hashed before it is unpacked (re-fetched when damaged); an unpacked tree's
 * meta.json must parse and describe a tree, and a tree unpacked by an earlier run has each file hashed while it is
 * copied into a layer, against the sha256 recorded when it was unpacked (unpacked again when one differs); layer
 * records and blobs are checked by `buildLayer`.
 */
import { writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, relative } from 'node:path';
import { availableParallelism } from 'node:os';
import PQueue from 'p-queue';
import { sha256Hex } from '../util/bytes.ts';
import { channelUrls, snapshotBases, snapshotTimeOfRelease, snapshotUrl } from '../channels/mirror.ts';
import { StrataError } from '../errors.ts';
import { unpackDeb, type UnpackedDeb } from './deb.ts';
import { DamagedSource, type LayerEntry } from './layertar.ts';
import { MAX_PACKAGE_LAYERS, planLayers, type LayerGroup } from './plan.ts';
import {
  baseEntries,
  mergedUsrPath,
  parseAlternatives,
  inlineHelpers,
  chooseAlternatives,
  alternativesEntries,
  dpkgEntries,
  type Alternative,
  type InstalledPackage,
} from './tree.ts';
import { firstConfigureEntries, shippedPackage } from './firstConfigure.ts';
import { buildImage, type BuiltImage } from './oci/image.ts';
import { buildLayer, layerBlobs, layerKey, type LayerJob, type LayerRecord } from './layers.ts';
import { imageInput, type SearchPaths } from './imageConfig.ts';
import type { FetchRequest, Store } from '../store/store.ts';
import type { Reporter } from '../report/reporter.ts';
import type { LockedChannel, LockedPackage, Lockfile } from '../model.ts';

export { defaultTag } from './imageConfig.ts';

export interface RealiseOptions {
  store: Store;
  reporter: Reporter;
  /** Concurrent downloads. */
  jobs?: number;
  /** Also produce gzip-compressed layers (for --oci/--docker-archive with --gzip). */
  gzip?: boolean;
  env?: NodeJS.ProcessEnv;
  /**
   * Layers from elsewhere (recipe outputs), placed above the package layers and below the installed-state layer.
   * Their keys must name their inputs.
   */
  extraJobs?: LayerJob[];
  /** Entries of the dpkg database for what `extraJobs` install (a recipe's `strata-recipe-NAME`). */
  extraInstalled?: InstalledPackage[];
  /** Directories the extra layers add to the image's search paths (PATH, LD_LIBRARY_PATH, PKG_CONFIG_PATH). */
  searchPaths?: SearchPaths;
  /** Fetch nothing: a .deb the store lacks is an error (`run --frozen`: the environment was realised before). */
  frozen?: boolean;
  /** Asked for each layer before it is built (a cache registry; see `buildLayer`). */
  substitute?: (job: LayerJob) => Promise<LayerRecord | undefined>;
  /**
   * Layers made from the unpacked packages once every one is unpacked (the generated layers: engine/generated.ts),
   * placed above `extraJobs`. At most `maxLayers` of them; the plan leaves room for that many.
   */
  generated?: GeneratedHook;
}

/** An unpacked package as a generated-layers hook sees it. */
export interface UnpackedView {
  /** Directory holding the unpacked regular files, by their shipped path. */
  root: string;
  entries: UnpackedDeb['entries'];
  control: string;
}

/** What a generated-layers hook is given: the unpacked packages and the layers that frame them. */
export interface GeneratedInput {
  unpacked: ReadonlyMap<string, UnpackedView>;
  /** The layer entries of these packages, paths on merged /usr, in layer order (a tree of some of the image's packages). */
  entriesOf(names: ReadonlySet<string>): LayerEntry[];
  base: LayerJob;
  top: LayerJob;
}

export interface GeneratedHook {
  maxLayers: number;
  jobs(input: GeneratedInput): Promise<LayerJob[]>;
}

/** At most this many layers in an image, whatever the recipes: Docker refuses more than 125. */
export const MAX_IMAGE_LAYERS = 120;

export interface RealisedImage {
  /** The image in the encoding asked for: gzip-compressed layers with `gzip`, else uncompressed. */
  image: BuiltImage;
  /** The same image with uncompressed layers (what a local load and the sandbox want). */
  plain: BuiltImage;
  /** The same image with gzip-compressed layers, with `gzip`. */
  gzip?: BuiltImage;
  layerCount: number;
  /**
   * The image's layer jobs, base first, one per layer of `plain` (their entries name the stored files). Absent for
   * an image taken whole from a cache registry: its layers are in the store, its unpacked packages are not.
   */
  layerJobs?: LayerJob[];
  /** Layers built this run (the rest came from the cache). */
  builtLayers: number;
  mtime: number;
  /** The store keys of the generated output the generated layers were made from (set by the engine's hook). */
  generatedKeys?: string[];
  /** Every layer, base first: its job's key, label and comment, and its record (what a cache registry is given). */
  layers?: { key: string; label: string; comment: string; record: LayerRecord }[];
}

interface UnpackedMeta extends UnpackedDeb {
  /** Directory holding the unpacked regular files, by their shipped path. */
  root: string;
  /** Unpacked by this process (its files were hashed as they were written, moments ago). */
  fresh: boolean;
}

const HEX64 = /^[0-9a-f]{64}$/;
const ENTRY_TYPES = new Set(['file', 'dir', 'symlink', 'hardlink']);

/** Why a parsed unpacked/<sha>/meta.json is not one `unpackDeb` wrote, or undefined when it is. */
export function unpackedMetaProblem(v: unknown): string | undefined {
  const m = v as Partial<UnpackedDeb> | null;
  if (typeof m !== 'object' || m === null) return 'not an object';
  if (typeof m.control !== 'string' || !Array.isArray(m.conffiles) || typeof m.scripts !== 'object' || m.scripts === null || !Array.isArray(m.entries)) {
    return 'fields missing';
  }
  for (const e of m.entries as unknown[]) {
    const x = e as Partial<UnpackedDeb['entries'][number]> | null;
    if (typeof x !== 'object' || x === null || typeof x.path !== 'string' || !ENTRY_TYPES.has(x.type as string) || typeof x.mode !== 'number') return 'a malformed entry';
    if (x.type === 'file' && (typeof x.size !== 'number' || typeof x.sha256 !== 'string' || !HEX64.test(x.sha256))) return `file ${x.path} has no size or sha256`;
    if ((x.type === 'symlink' || x.type === 'hardlink') && typeof x.linkname !== 'string') return `link ${x.path} has no target`;
  }
  return undefined;
}

/** A fixed timestamp for every entry: SOURCE_DATE_EPOCH, else the newest Release date among the locked channels. */
export function layerMtime(lock: Lockfile, env: NodeJS.ProcessEnv = process.env): number {
  const sde = env.SOURCE_DATE_EPOCH;
  if (sde !== undefined && /^\d+$/.test(sde)) return Number(sde);
  const dates = lock.channels.map((c) => Date.parse(c.date)).filter((d) => !Number.isNaN(d));
  return dates.length > 0 ? Math.floor(Math.max(...dates) / 1000) : 0;
}

/**
 * Where a channel's .debs are fetched from, in order: the live mirrors, then the snapshot archive at the time the
 * lock was made from (when STRATA_DEBIAN_SNAPSHOT names one), for the files a mirror has dropped since. A channel
 * locked from a snapshot reads only that snapshot. The sha256 in the lock stays the only judge of the bytes.
 */
export function channelSources(c: LockedChannel, env: NodeJS.ProcessEnv = process.env): { live: string[]; snapshot: string[] } {
  if (c.snapshot) {
    const bases = snapshotBases(c.snapshot.urls, env);
    if (bases.length === 0) {
      throw new StrataError('E_MIRROR', `channel "${c.name}" was locked from a snapshot (${c.snapshot.timestamp}), but strata.lock records no snapshot-url and STRATA_DEBIAN_SNAPSHOT is not set`, 'export STRATA_DEBIAN_SNAPSHOT=http://<a snapshot archive>');
    }
    return { live: [], snapshot: bases.map((b) => snapshotUrl(b, c.snapshot!.archive, c.snapshot!.timestamp)) };
  }
  const when = snapshotTimeOfRelease(c.date);
  const snapshot = when ? snapshotBases([], env).map((b) => snapshotUrl(b, 'debian', when)) : [];
  try {
    return { live: channelUrls({ name: c.name, urls: c.urls }, env), snapshot };
  } catch (e) {
    if (snapshot.length > 0 && e instanceof StrataError && e.code === 'E_MIRROR') return { live: [], snapshot };
    throw e;
  }
}

/**
 * The store request for a locked .deb: its URLs (live mirrors, then the snapshot), its hash and size, vouched for by
 * the lock. `servedBy` collects the packages that came from a snapshot although a live mirror was configured.
 */
function debRequests(lock: Lockfile, env: NodeJS.ProcessEnv | undefined, fromSnapshot: string[]): (p: LockedPackage) => FetchRequest {
  const sources = new Map(lock.channels.map((c) => [c.name, channelSources(c, env)]));
  return (p) => {
    const src = sources.get(p.channel)!;
    const snapshotUrls = new Set(src.snapshot.map((b) => `${b}/${p.filename}`));
    return {
      urls: [...src.live.map((b) => `${b}/${p.filename}`), ...snapshotUrls],
      sha256: p.sha256,
      size: p.size,
      label: `${p.name} ${p.version}`,
      vouchedBy: 'lock',
      onServedBy: (url) => {
        if (snapshotUrls.has(url) && src.live.length > 0) fromSnapshot.push(p.name);
      },
    };
  };
}

/**
 * Starts downloading the locked .debs the store lacks (each verified by the store): `ready` has a promise per such
 * package, settled when its .deb is in the store; `all` settles when every one has, failing with the first failure.
 */
export async function fetchDebs(lock: Lockfile, opts: RealiseOptions): Promise<{ ready: Map<string, Promise<void>>; all: Promise<void> }> {
  const { store, reporter } = opts;
  const fromSnapshot: string[] = [];
  const request = debRequests(lock, opts.env, fromSnapshot);
  const ready = new Map<string, Promise<void>>();
  const missing: LockedPackage[] = [];
  for (const p of lock.packages) if (!(await store.has(p.sha256, p.size))) missing.push(p);
  if (missing.length === 0) return { ready, all: Promise.resolve() };
  if (opts.frozen) {
    throw new StrataError('E_RUN', `the store lacks ${missing.length} of the environment's packages (${missing.slice(0, 3).map((p) => p.name).join(', ')}${missing.length > 3 ? ', ...' : ''}) and --frozen forbids fetching them`, 'run `strata realise` first, or drop --frozen');
  }
  const total = missing.reduce((n, p) => n + p.size, 0);
  reporter.info(`fetching ${missing.length} packages (${(total / 1e6).toFixed(1)} MB)`);
  const bytes = reporter.progress('download', total, 'bytes');
  const queue = new PQueue({ concurrency: Math.max(1, opts.jobs ?? 8) });
  let done = 0;
  for (const p of missing) {
    ready.set(
      p.name,
      queue.add(async () => {
        await store.fetch({ ...request(p), onBytes: (n) => bytes.tick(n, `${done}/${missing.length} packages, ${p.name}`) });
        done++;
        bytes.tick(0, `${done}/${missing.length} packages`);
      }) as Promise<void>,
    );
  }
  const all = Promise.allSettled(ready.values()).then((settled) => {
    bytes.done();
    const failed = settled.find((x) => x.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    if (fromSnapshot.length > 0) {
      fromSnapshot.sort();
      reporter.info(`${fromSnapshot.length} packages the mirror no longer has came from the snapshot archive: ${fromSnapshot.slice(0, 10).join(', ')}${fromSnapshot.length > 10 ? `, and ${fromSnapshot.length - 10} more` : ''}`);
    }
  });
  return { ready, all };
}

interface UnpackCtx {
  store: Store;
  reporter: Reporter;
  request: (p: LockedPackage) => FetchRequest;
}

/**
 * Unpacks a verified .deb into the store once; later calls read the cached result. Before unpacking, the .deb is
 * re-hashed (unless this process fetched it) and fetched again when damaged; a cached result whose meta.json is
 * damaged is dropped and made again.
 */
async function ensureUnpacked(u: UnpackCtx, p: LockedPackage): Promise<UnpackedMeta> {
  const { store, reporter } = u;
  const unpacked = store.cache('unpacked');
  for (let attempt = 0; ; attempt++) {
    let fresh = false;
    const dir = await unpacked.dir(p.sha256, async (tmp) => {
      fresh = true;
      const deb = await store.check(p.sha256, p.size, { rehash: true });
      let debPath: string;
      if (deb.state === 'ok') debPath = deb.path;
      else {
        if (deb.state === 'damaged') reporter.warn(`the cached ${p.name} ${p.version} was damaged (${deb.reason}); fetching it again`);
        debPath = await store.fetch(u.request(p));
      }
      const meta = await unpackDeb(debPath, join(tmp, 'root'), { packageName: `${p.name} ${p.version}` });
      await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta));
    });
    const read = await unpacked.readEntry<UnpackedDeb>(join(p.sha256, 'meta'), unpackedMetaProblem);
    if (read.state === 'ok') return { ...read.value, root: join(dir, 'root'), fresh };
    if (attempt > 0) throw new Error(`the unpacked ${p.name} ${p.version} is unreadable right after unpacking it (${read.state})`);
    reporter.warn(`the unpacked ${p.name} ${p.version} in the store was damaged (meta.json ${read.state === 'damaged' ? read.reason : 'missing'}); unpacking it again`);
    await unpacked.remove(p.sha256);
  }
}

/** The layer entries for a group of unpacked packages, paths mapped onto merged /usr. */
function packageEntries(group: { pkg: LockedPackage; meta: UnpackedMeta }[], reporter: Reporter): LayerEntry[] {
  const byPath = new Map<string, LayerEntry>();
  const overlaps: string[] = [];
  for (const { pkg, meta } of group) {
    for (const e of meta.entries) {
      const path = mergedUsrPath(e.path);
      if (path === '' || path === '.') continue;
      const entry: LayerEntry = { path, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, uname: e.uname, gname: e.gname };
      if (e.type === 'file') {
        entry.size = e.size;
        entry.source = join(meta.root, e.path);
        // A tree an earlier run unpacked is checked file by file as it is copied into the layer.
        if (!meta.fresh && e.sha256) entry.sha256 = e.sha256;
      } else if (e.type === 'symlink') {
        entry.linkname = e.linkname!;
      } else if (e.type === 'hardlink') {
        entry.linkname = mergedUsrPath(e.linkname!);
      }
      const prev = byPath.get(path);
      if (prev) {
        if (prev.type === 'dir' && e.type === 'dir') continue;
        if (prev.type === 'dir' || e.type === 'dir') continue; // a directory never turns into a file within a layer
        overlaps.push(`/${path} (${pkg.name})`);
      }
      byPath.set(path, entry);
    }
  }
  if (overlaps.length > 0) reporter.warn(`packages in one layer ship the same path; the later package wins: ${overlaps.slice(0, 5).join(', ')}${overlaps.length > 5 ? ` and ${overlaps.length - 5} more` : ''}`);
  return [...byPath.values()];
}

/** Unpacks every locked .deb (once per .deb, in the store), a few at a time; name -> its unpacked tree. */
function unpackAll(lock: Lockfile, u: UnpackCtx, queue: PQueue, fetched: Map<string, Promise<void>>): { unpacking: Map<string, Promise<UnpackedMeta>>; unpacked: Map<string, UnpackedMeta>; done: () => void } {
  const up = u.reporter.progress('unpack', lock.packages.length);
  const unpacking = new Map<string, Promise<UnpackedMeta>>();
  const unpacked = new Map<string, UnpackedMeta>();
  for (const p of lock.packages) {
    // A package is unpacked as soon as its own .deb is in the store: downloads and unpacking overlap.
    unpacking.set(
      p.name,
      (fetched.get(p.name) ?? Promise.resolve()).then(
        () =>
          queue.add(async () => {
            const meta = await ensureUnpacked(u, p);
            unpacked.set(p.name, meta);
            up.tick(1, p.name);
            return meta;
          }) as Promise<UnpackedMeta>,
      ),
    );
  }
  return { unpacking, unpacked, done: () => up.done() };
}

/** One job per planned group of packages; its key names the group's packages by their verified hashes. */
function packageJobs(plan: LayerGroup[], mtime: number, unpacked: Map<string, UnpackedMeta>, reporter: Reporter): LayerJob[] {
  return plan.map((g) => ({
    label: `packages from source ${g.label}`,
    key: layerKey('packages', mtime, g.packages.map((p) => [p.name, p.sha256])),
    entries: () => packageEntries(g.packages.map((p) => ({ pkg: p, meta: unpacked.get(p.name)! })), reporter),
    comment: g.packages.map((p) => `${p.name}=${p.version}`).join(' '),
  }));
}

const entryKey = (e: LayerEntry, content: (b: Buffer) => string) => [e.path, e.type, e.mode, e.linkname ?? '', e.content ? content(e.content) : ''];

/** The lowest layer: the merged-/usr skeleton, users and mount points, for the top-level names the packages use. */
function skeletonJob(lock: Lockfile, unpacked: Map<string, UnpackedMeta>, mtime: number): LayerJob {
  const usedTops = new Set<string>();
  for (const meta of unpacked.values()) for (const e of meta.entries) usedTops.add(e.path.split('/')[0]!);
  const base = baseEntries(lock.project.arch, usedTops, lock.image.gpuDriver === 'host');
  return {
    label: 'strata base: merged-/usr skeleton, users, mount points',
    key: layerKey('base', mtime, base.map((e) => entryKey(e, (b) => b.toString('base64')))),
    entries: () => base,
    comment: 'generated by strata',
  };
}

/** The top layer: what dpkg would have recorded, the update-alternatives links and the dpkg database. */
function installedStateJob(lock: Lockfile, unpacked: Map<string, UnpackedMeta>, mtime: number, extraInstalled: InstalledPackage[]): LayerJob {
  const present = new Set<string>();
  for (const meta of unpacked.values()) for (const e of meta.entries) present.add(`/${mergedUsrPath(e.path)}`);
  const alternatives: Alternative[] = [];
  const installed: InstalledPackage[] = [];
  // A small shell helper a package ships, by its absolute path (a postinst may register alternatives through one).
  let helpers: Map<string, string> | undefined;
  const shippedText = (abs: string): string | undefined => {
    if (!helpers) {
      helpers = new Map();
      for (const meta of unpacked.values()) {
        for (const e of meta.entries) if (e.type === 'file' && e.size < 65536 && /^(usr\/)?(share|lib)\//.test(e.path)) helpers.set(`/${mergedUsrPath(e.path)}`, join(meta.root, e.path));
      }
    }
    const at = helpers.get(abs);
    return at ? readFileSync(at, 'utf8') : undefined;
  };
  for (const p of lock.packages) {
    const meta = unpacked.get(p.name)!;
    const script = meta.scripts.postinst;
    if (script) alternatives.push(...parseAlternatives(inlineHelpers(script, shippedText), p.name, lock.project.arch));
    const ma = /^Multi-Arch:\s*(\S+)/im.exec(meta.control)?.[1];
    const inst: InstalledPackage = { name: p.name, arch: p.arch, control: meta.control, paths: meta.entries.map((e) => e.path), conffiles: meta.conffiles };
    if (ma) inst.multiArch = ma;
    if (meta.md5sums) inst.md5sums = meta.md5sums;
    const conffileMd5: Record<string, string> = {};
    for (const c of meta.conffiles) {
      // `remove-on-upgrade PATH` names a file the package no longer ships: dpkg records it with no hash and the flag.
      const flagged = /^remove-on-upgrade\s+(\/\S+)$/.exec(c);
      if (flagged) {
        conffileMd5[flagged[1]!] = 'newconffile remove-on-upgrade';
        continue;
      }
      if (!c.startsWith('/')) continue;
      const shipped = meta.entries.find((e) => e.type === 'file' && `/${e.path}` === c);
      if (shipped) conffileMd5[c] = createHash('md5').update(readFileSync(join(meta.root, shipped.path))).digest('hex');
    }
    if (Object.keys(conffileMd5).length > 0) inst.conffileMd5 = conffileMd5;
    const members = { ...(meta.controlFiles ?? {}), ...meta.scripts };
    if (Object.keys(members).length > 0) inst.controlMembers = members;
    installed.push(inst);
  }
  const resolvePath = (abs: string) => `/${mergedUsrPath(abs.replace(/^\/+/, ''))}`;
  const chosen = chooseAlternatives(alternatives, (abs) => present.has(resolvePath(abs)), lock.image.alternatives);
  installed.push(...extraInstalled);
  const shipped = new Map(lock.packages.map((p) => {
    const meta = unpacked.get(p.name)!;
    return [p.name, shippedPackage(p.name, meta.entries.map((e) => e.path), meta.root, { entries: meta.entries, control: { ...(meta.controlFiles ?? {}), ...meta.scripts }, depends: p.depends ?? [] })] as const;
  }));
  const top = [...firstConfigureEntries(shipped, lock.project.arch, mtime), ...alternativesEntries(chosen), ...dpkgEntries(installed)];
  return {
    label: 'strata config: update-alternatives links, dpkg database',
    key: layerKey('top', mtime, top.map((e) => entryKey(e, sha256Hex))),
    entries: () => top,
    comment: `${chosen.length} alternatives, ${installed.length} packages registered`,
  };
}

/** Waits for every promise, then throws the first failure: no job is left running behind an error. */
async function allOrFirstError<T>(ps: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(ps);
  const failed = settled.find((x) => x.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return settled.map((x) => (x as PromiseFulfilledResult<T>).value);
}

/**
 * Realises a lock: fetches and verifies its .debs, unpacks them, builds the layers (skeleton, package groups in
 * plan order, `extraJobs`, installed state) and assembles the image in both encodings asked for.
 */
export async function realise(lock: Lockfile, opts: RealiseOptions): Promise<RealisedImage> {
  const { store, reporter } = opts;
  const mtime = layerMtime(lock, opts.env);
  const gzip = opts.gzip ?? false;
  const fetching = await fetchDebs(lock, opts);
  const u: UnpackCtx = { store, reporter, request: debRequests(lock, opts.env, []) };

  // Unpacking (xz in a child process) and layer writing (hashing, disk) overlap: a package layer is written as
  // soon as its own packages are unpacked. The skeleton and the installed state need every package and come last.
  const cores = Math.max(1, Math.min(4, availableParallelism()));
  const layerQueue = new PQueue({ concurrency: cores });
  const unpackedAll = unpackAll(lock, u, new PQueue({ concurrency: cores }), fetching.ready);
  const { unpacked } = unpackedAll;
  const extra = opts.extraJobs ?? [];
  const genMax = opts.generated?.maxLayers ?? 0;
  if (extra.length + genMax > MAX_IMAGE_LAYERS - 3) throw new Error(`${extra.length} extra layers leave no room for the packages under ${MAX_IMAGE_LAYERS} layers`);
  const plan = planLayers(lock, Math.min(MAX_PACKAGE_LAYERS, MAX_IMAGE_LAYERS - 2 - extra.length - genMax));
  let builtLayers = 0;
  const lp = reporter.progress('layers', plan.length + extra.length + 2);

  /** Builds a layer; a damaged file in a cached unpacked tree of `group` drops that tree and unpacks it again (once per package). */
  async function buildRepairing(j: LayerJob, group: LockedPackage[]): Promise<{ record: LayerRecord; built: boolean }> {
    const repaired = new Set<string>();
    for (;;) {
      try {
        return await buildLayer(j, { store, mtime, gzip, reporter, ...(opts.substitute ? { substitute: opts.substitute } : {}) });
      } catch (e) {
        if (!(e instanceof DamagedSource)) throw e;
        const hit = group.find((p) => e.source.startsWith(`${unpacked.get(p.name)?.root}/`));
        if (!hit || repaired.has(hit.name)) throw e;
        repaired.add(hit.name);
        reporter.warn(`the unpacked ${hit.name} ${hit.version} in the store was damaged (${relative(unpacked.get(hit.name)!.root, e.source)}: ${e.reason}); unpacking it again`);
        await store.cache('unpacked').remove(hit.sha256);
        unpacked.set(hit.name, await ensureUnpacked(u, hit));
      }
    }
  }
  const run = (j: LayerJob, group: LockedPackage[] = []): Promise<LayerRecord> =>
    layerQueue.add(async () => {
      const { record, built } = await buildRepairing(j, group);
      if (built) builtLayers++;
      lp.tick(1);
      return record;
    }) as Promise<LayerRecord>;

  const pkgJobs = packageJobs(plan, mtime, unpacked, reporter);
  let jobs: LayerJob[];
  let records: LayerRecord[];
  try {
    let middle: LayerRecord[];
    let base: LayerJob | undefined;
    let top: LayerJob | undefined;
    let genJobs: LayerJob[] = [];
    try {
      const waits = plan.map((g, i) => Promise.all(g.packages.map((p) => unpackedAll.unpacking.get(p.name)!)).then(() => run(pkgJobs[i]!, g.packages)));
      // The skeleton, the installed state and the generated layers need every package unpacked.
      const unpackedEvery = allOrFirstError<unknown>([fetching.all, ...unpackedAll.unpacking.values()]);
      const framing = unpackedEvery.then(async () => {
        base = skeletonJob(lock, unpacked, mtime);
        top = installedStateJob(lock, unpacked, mtime, opts.extraInstalled ?? []);
        if (!opts.generated) return [];
        const inPlanOrder = plan.map((g) => g.packages);
        genJobs = await opts.generated.jobs({
          unpacked,
          base,
          top,
          entriesOf: (names) => inPlanOrder.flatMap((ps) => packageEntries(ps.filter((p) => names.has(p.name)).map((p) => ({ pkg: p, meta: unpacked.get(p.name)! })), reporter)),
        });
        if (genJobs.length > genMax) throw new Error(`${genJobs.length} generated layers, more than the ${genMax} planned for`);
        lp.setTotal(plan.length + extra.length + genJobs.length + 2);
        return allOrFirstError(genJobs.map((j) => run(j)));
      });
      // Every branch settles before an error is thrown: no job is left running behind it.
      const [pkgRecords, extraRecords, genRecords] = (await allOrFirstError<LayerRecord[]>([
        allOrFirstError<unknown>([unpackedEvery, ...waits]).then(() => Promise.all(waits)),
        allOrFirstError(extra.map((j) => run(j))),
        framing,
      ])) as [LayerRecord[], LayerRecord[], LayerRecord[]];
      middle = [...pkgRecords, ...extraRecords, ...genRecords];
    } finally {
      unpackedAll.done();
    }
    const [baseRecord, topRecord] = await Promise.all([run(base!), run(top!)]);
    jobs = [base!, ...pkgJobs, ...extra, ...genJobs, top!];
    records = [baseRecord, ...middle, topRecord];
  } finally {
    lp.done();
  }

  const plain = buildImage(imageInput(lock, jobs, await layerBlobs(store, records, 'plain', { jobs, mtime }), mtime, opts.searchPaths));
  const gzipped = gzip ? buildImage(imageInput(lock, jobs, await layerBlobs(store, records, 'gzip'), mtime, opts.searchPaths)) : undefined;
  const layers = jobs.map((j, i) => ({ key: j.key, label: j.label, comment: j.comment, record: records[i]! }));
  return { image: gzipped ?? plain, plain, ...(gzipped ? { gzip: gzipped } : {}), layerCount: records.length, layerJobs: jobs, builtLayers, mtime, layers };
}
