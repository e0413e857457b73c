/**
 * realise: lock -> verified .debs in the store -> unpacked trees (cached per .deb) -> deterministic layers
 * (cached per input) -> an OCI image (config + manifest). Reads only the lock; never the resolver.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import PQueue from 'p-queue';
import { StrataError } from '../errors.ts';
import { channelUrls } from '../channels/mirror.ts';
import { unpackDeb, type UnpackedDeb } from './deb.ts';
import { writeLayerTar, type LayerEntry } from './layertar.ts';
import { planLayers, type LayerGroup } from './plan.ts';
import {
  baseEntries,
  mergedUsrPath,
  parseAlternatives,
  chooseAlternatives,
  alternativesEntries,
  dpkgEntries,
  GPU_DRIVER_DIR,
  type Alternative,
  type InstalledPackage,
} from './tree.ts';
import { buildImage, type BuiltImage, type LayerBlob } from './oci/layout.ts';
import { MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_TAR_GZIP, platformForDebianArch } from './oci/spec.ts';
import type { Store } from '../store/store.ts';
import type { Reporter } from '../report/reporter.ts';
import type { LockedPackage, Lockfile } from '../model.ts';

/** Bump when the way layers are built changes: it invalidates cached layers. */
const LAYER_FORMAT = 'strata-layer-v1';

export interface RealiseOptions {
  store: Store;
  reporter: Reporter;
  /** Concurrent downloads. */
  jobs?: number;
  /** Also produce gzip-compressed layers (for --oci/--docker-archive with --gzip). */
  gzip?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface RealisedImage {
  image: BuiltImage;
  /** The same layers, uncompressed (what a local load wants). */
  plainLayers: LayerBlob[];
  layerCount: number;
  /** Layers built this run (the rest came from the cache). */
  builtLayers: number;
  mtime: number;
}

interface UnpackedMeta extends UnpackedDeb {
  /** Directory holding the unpacked regular files, by their shipped path. */
  root: string;
}

/** A fixed timestamp for every entry: SOURCE_DATE_EPOCH, else the newest Release date among the locked channels. */
export function layerMtime(lock: Lockfile, env: NodeJS.ProcessEnv = process.env): number {
  const sde = env.SOURCE_DATE_EPOCH;
  if (sde !== undefined && /^\d+$/.test(sde)) return Number(sde);
  const dates = lock.channels.map((c) => Date.parse(c.date)).filter((d) => !Number.isNaN(d));
  return dates.length > 0 ? Math.floor(Math.max(...dates) / 1000) : 0;
}

function sha256Hex(s: string | Buffer): string {
  return createHash('sha256').update(s).digest('hex');
}

/** Downloads every locked .deb (verified by the store) and returns name -> path. */
export async function fetchDebs(lock: Lockfile, opts: RealiseOptions): Promise<Map<string, string>> {
  const { store, reporter } = opts;
  const bases = new Map<string, string[]>();
  for (const c of lock.channels) {
    bases.set(c.name, channelUrls({ name: c.name, urls: c.urls, suite: c.suite, components: c.components, trusted: false }, opts.env));
  }
  const paths = new Map<string, string>();
  const missing: LockedPackage[] = [];
  for (const p of lock.packages) {
    const have = await store.has(p.sha256, p.size);
    if (have) paths.set(p.name, have);
    else missing.push(p);
  }
  if (missing.length === 0) return paths;
  const total = missing.reduce((n, p) => n + p.size, 0);
  reporter.info(`fetching ${missing.length} packages (${(total / 1e6).toFixed(1)} MB)`);
  const bytes = reporter.progress('download', total, 'bytes');
  const queue = new PQueue({ concurrency: Math.max(1, opts.jobs ?? 8) });
  let done = 0;
  try {
    await Promise.all(
      missing.map((p) =>
        queue.add(async () => {
          const urls = bases.get(p.channel)!.map((b) => `${b}/${p.filename}`);
          const path = await store.fetch({ urls, sha256: p.sha256, size: p.size, label: `${p.name} ${p.version}`, vouchedBy: 'lock', onBytes: (n) => bytes.tick(n, `${done}/${missing.length} packages, ${p.name}`) });
          paths.set(p.name, path);
          done++;
          bytes.tick(0, `${done}/${missing.length} packages`);
        }),
      ),
    );
  } finally {
    bytes.done();
  }
  return paths;
}

/** Unpacks a verified .deb into the store once; later calls read the cached result. */
async function ensureUnpacked(store: Store, p: LockedPackage, debPath: string): Promise<UnpackedMeta> {
  const dir = join(store.root, 'unpacked', p.sha256);
  const metaPath = join(dir, 'meta.json');
  if (existsSync(metaPath)) {
    const meta = JSON.parse(await readFile(metaPath, 'utf8')) as UnpackedDeb;
    return { ...meta, root: join(dir, 'root') };
  }
  await mkdir(join(store.root, 'unpacked'), { recursive: true });
  const tmp = join(store.root, 'unpacked', `.tmp-${p.sha256.slice(0, 16)}-${randomBytes(4).toString('hex')}`);
  try {
    const meta = await unpackDeb(debPath, join(tmp, 'root'), { packageName: `${p.name} ${p.version}` });
    await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta));
    try {
      await rename(tmp, dir);
    } catch (e) {
      if (!existsSync(metaPath)) throw e; // another process finished first: use theirs
    }
    return { ...meta, root: join(dir, 'root') };
  } finally {
    await rm(tmp, { recursive: true, force: true });
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

interface LayerRecord {
  diffId: string;
  size: number;
  gzip?: { digest: string; size: number };
}

/** Builds (or takes from the cache) one layer from entries identified by `key`. */
async function buildLayer(store: Store, key: string, entries: () => LayerEntry[], mtime: number, gzip: boolean): Promise<{ record: LayerRecord; built: boolean }> {
  const recordPath = join(store.root, 'layers', `${key}.json`);
  if (existsSync(recordPath)) {
    const rec = JSON.parse(await readFile(recordPath, 'utf8')) as LayerRecord;
    const plainOk = await store.has(rec.diffId.slice(7), rec.size);
    const gzOk = !gzip || (rec.gzip !== undefined && (await store.has(rec.gzip.digest.slice(7), rec.gzip.size)));
    if (plainOk && gzOk) return { record: rec, built: false };
  }
  const tmp = await store.tmpDir();
  try {
    const tarPath = join(tmp, 'layer.tar');
    const gzPath = join(tmp, 'layer.tar.gz');
    const res = await writeLayerTar(entries(), tarPath, gzip ? { mtime, gzip: gzPath } : { mtime });
    const blobs = join(store.root, 'blobs', 'sha256');
    await mkdir(blobs, { recursive: true });
    await rename(tarPath, join(blobs, res.diffId.slice(7)));
    const rec: LayerRecord = { diffId: res.diffId, size: res.size };
    if (gzip && res.gzip) {
      await rename(gzPath, join(blobs, res.gzip.digest.slice(7)));
      rec.gzip = res.gzip;
    }
    await mkdir(join(store.root, 'layers'), { recursive: true });
    await writeFile(`${recordPath}.${process.pid}.tmp`, JSON.stringify(rec));
    await rename(`${recordPath}.${process.pid}.tmp`, recordPath);
    return { record: rec, built: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOSPC') {
      throw new StrataError('E_DISK', `no space left on the device holding ${store.root} while writing a layer`, 'free some space (or set STRATA_CACHE_DIR to a larger disk) and run again; nothing was corrupted');
    }
    throw e;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export function defaultTag(lock: Lockfile): string {
  return `${lock.project.name}:${lock.closure.replace(/^sha256:/, '').slice(0, 12)}`;
}

export async function realise(lock: Lockfile, opts: RealiseOptions): Promise<RealisedImage> {
  const { store, reporter } = opts;
  const mtime = layerMtime(lock, opts.env);
  const gzip = opts.gzip ?? false;
  const debs = await fetchDebs(lock, opts);

  // Unpacking (xz in a child process) and layer writing (hashing, disk) overlap: a package layer is written as
  // soon as its own packages are unpacked. The base and top layers need every package and come last.
  const cores = Math.max(1, Math.min(4, availableParallelism()));
  const unpackQueue = new PQueue({ concurrency: cores });
  const layerQueue = new PQueue({ concurrency: cores });
  const unpacked = new Map<string, UnpackedMeta>();
  const up = reporter.progress('unpack', lock.packages.length);
  const unpacking = new Map<string, Promise<UnpackedMeta>>();
  for (const p of lock.packages) {
    unpacking.set(
      p.name,
      unpackQueue.add(async () => {
        const meta = await ensureUnpacked(store, p, debs.get(p.name)!);
        unpacked.set(p.name, meta);
        up.tick(1, p.name);
        return meta;
      }) as Promise<UnpackedMeta>,
    );
  }
  const plan: LayerGroup[] = planLayers(lock);
  const gpu = lock.image.gpuDriver === 'host';
  type Job = { label: string; key: string; entries: () => LayerEntry[]; comment: string };
  let builtLayers = 0;
  const lp = reporter.progress('layers', plan.length + 2);
  const runJob = async (j: Job): Promise<LayerRecord> => {
    const { record, built } = await buildLayer(store, j.key, j.entries, mtime, gzip);
    if (built) builtLayers++;
    lp.tick(1);
    return record;
  };
  const packageJobs: Job[] = plan.map((g) => ({
    label: `packages from source ${g.label}`,
    key: sha256Hex(JSON.stringify([LAYER_FORMAT, 'packages', mtime, g.packages.map((p) => [p.name, p.sha256])])),
    entries: () => packageEntries(g.packages.map((p) => ({ pkg: p, meta: unpacked.get(p.name)! })), reporter),
    comment: g.packages.map((p) => `${p.name}=${p.version}`).join(' '),
  }));
  const packageRecords = plan.map((g, i) =>
    Promise.all(g.packages.map((p) => unpacking.get(p.name)!)).then(() => layerQueue.add(() => runJob(packageJobs[i]!)) as Promise<LayerRecord>),
  );
  let pkgRecords: LayerRecord[];
  try {
    // Wait for everything, then report the first failure (no layer job is left running behind an error).
    const settled = await Promise.allSettled([...unpacking.values(), ...packageRecords]);
    const failed = settled.find((x) => x.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    pkgRecords = await Promise.all(packageRecords);
  } finally {
    up.done();
  }

  const usedTops = new Set<string>();
  const present = new Set<string>();
  for (const meta of unpacked.values()) {
    for (const e of meta.entries) {
      usedTops.add(e.path.split('/')[0]!);
      present.add(`/${mergedUsrPath(e.path)}`);
    }
  }

  // Lowest layer: skeleton. Package layers in plan order. Top layer: alternatives and the dpkg database.
  const base = baseEntries(lock.project.arch, usedTops, gpu);
  const alternatives: Alternative[] = [];
  const installed: InstalledPackage[] = [];
  for (const p of lock.packages) {
    const meta = unpacked.get(p.name)!;
    const script = meta.scripts.postinst;
    if (script) alternatives.push(...parseAlternatives(script, p.name, lock.project.arch));
    const ma = /^Multi-Arch:\s*(\S+)/im.exec(meta.control)?.[1];
    const inst: InstalledPackage = { name: p.name, arch: p.arch, control: meta.control, paths: meta.entries.map((e) => e.path), conffiles: meta.conffiles };
    if (ma) inst.multiArch = ma;
    if (meta.md5sums) inst.md5sums = meta.md5sums;
    installed.push(inst);
  }
  const resolvePath = (abs: string) => `/${mergedUsrPath(abs.replace(/^\/+/, ''))}`;
  const chosen = chooseAlternatives(alternatives, (abs) => present.has(resolvePath(abs)), lock.image.alternatives);
  const top = [...alternativesEntries(chosen), ...dpkgEntries(installed)];
  const baseJob: Job = { label: 'strata base: merged-/usr skeleton, users, mount points', key: sha256Hex(JSON.stringify([LAYER_FORMAT, 'base', mtime, base.map((e) => [e.path, e.type, e.mode, e.linkname ?? '', e.content?.toString('base64') ?? ''])])), entries: () => base, comment: 'generated by strata' };
  const topJob: Job = { label: 'strata config: update-alternatives links, dpkg database', key: sha256Hex(JSON.stringify([LAYER_FORMAT, 'top', mtime, top.map((e) => [e.path, e.type, e.mode, e.linkname ?? '', e.content ? sha256Hex(e.content) : ''])])), entries: () => top, comment: `${chosen.length} alternatives, ${installed.length} packages registered` };
  let records: LayerRecord[];
  try {
    const [baseRecord, topRecord] = await Promise.all([runJob(baseJob), runJob(topJob)]);
    records = [baseRecord, ...pkgRecords, topRecord];
  } finally {
    lp.done();
  }
  const jobs = [baseJob, ...packageJobs, topJob];

  const blob = (hex: string) => join(store.root, 'blobs', 'sha256', hex);
  const plainLayers: LayerBlob[] = records.map((r) => ({ path: blob(r.diffId.slice(7)), digest: r.diffId, size: r.size, diffId: r.diffId, mediaType: MEDIA_TYPE_LAYER_TAR }));
  const layers: LayerBlob[] = gzip
    ? records.map((r) => ({ path: blob(r.gzip!.digest.slice(7)), digest: r.gzip!.digest, size: r.gzip!.size, diffId: r.diffId, mediaType: MEDIA_TYPE_LAYER_TAR_GZIP }))
    : plainLayers;

  const created = new Date(mtime * 1000).toISOString();
  const env: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' };
  if (gpu) {
    env.LD_LIBRARY_PATH = GPU_DRIVER_DIR;
    env.NVIDIA_DRIVER_CAPABILITIES = 'compute,utility';
  }
  Object.assign(env, lock.image.env);
  const config: Parameters<typeof buildImage>[0]['config'] = {
    created,
    architecture: platformForDebianArch(lock.project.arch).architecture,
    os: 'linux',
    config: {
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      WorkingDir: '/',
      Labels: {
        'org.opencontainers.image.title': lock.project.name,
        'dev.strata.closure': lock.closure,
        'dev.strata.channels': lock.channels.map((c) => `${c.name}=${c.suite}@${c.releaseSha256.slice(0, 12)}`).join(' '),
        ...(gpu ? { 'dev.strata.gpu-driver': 'host' } : {}),
      },
      ...(lock.image.entrypoint ? { Entrypoint: lock.image.entrypoint } : {}),
      ...(lock.image.cmd ? { Cmd: lock.image.cmd } : lock.image.entrypoint ? {} : { Cmd: ['/bin/sh'] }),
    },
    history: jobs.map((j) => ({ created, created_by: `strata realise: ${j.label}`, comment: j.comment })),
  };
  const variant = platformForDebianArch(lock.project.arch).variant;
  if (variant) (config as { variant?: string }).variant = variant;
  const image = buildImage({ layers, config, annotations: { 'org.opencontainers.image.created': created, 'dev.strata.closure': lock.closure }, refName: defaultTag(lock).split(':')[1]! });
  return { image, plainLayers, layerCount: layers.length, builtLayers, mtime };
}
