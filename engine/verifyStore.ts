/**
 * `strata verify`'s work: check the whole store, every entry against what vouches for it, and drop what is damaged
 * (unless `dryRun`), so that it is fetched or made again when next needed.
 *
 * - blobs: every blob re-hashed against its name (a verified stamp is written for each whole one);
 * - layer records: each must parse and name blobs that are in the store, with their sizes;
 * - unpacked trees: meta.json must parse and describe a tree; every regular file it lists must be there with the
 *   recorded size and sha256;
 * - root filesystems: each tree is compared with what its recorded layers make (every path, type, file content and
 *   mode, symlink target; nothing extra). A tree without a record (made by an older strata) or whose layers left the
 *   store cannot be checked and is counted as such;
 * - the other cache records (channel pointers, parsed indexes, run pointers) must parse.
 *
 * Nothing here prints: the command does.
 */
import { createReadStream } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import PQueue from 'p-queue';
import type { Store } from '../store/store.ts';
import type { Reporter } from '../report/reporter.ts';
import { layerRecordProblem, type LayerRecord } from '../realiser/layers.ts';
import { unpackedMetaProblem } from '../realiser/realise.ts';
import type { UnpackedDeb } from '../realiser/deb.ts';
import { checkRootfs, type RootfsRecord } from '../run/rootfs.ts';

export interface Damage {
  /** The entry, e.g. `blob sha256:…`, `unpacked tree of <sha>`. */
  what: string;
  reason: string;
}

export interface VerifyReport {
  blobs: { checked: number; bytes: number };
  layers: { checked: number };
  unpacked: { checked: number; files: number };
  rootfs: { checked: number; unchecked: number };
  records: { checked: number };
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

export async function verifyStore(store: Store, o: { dryRun: boolean; reporter?: Reporter }): Promise<VerifyReport> {
  const report: VerifyReport = { blobs: { checked: 0, bytes: 0 }, layers: { checked: 0 }, unpacked: { checked: 0, files: 0 }, rootfs: { checked: 0, unchecked: 0 }, records: { checked: 0 }, damaged: [] };
  const damaged = (what: string, reason: string) => report.damaged.push({ what, reason });
  const queue = new PQueue({ concurrency: 2 });

  // Blobs first: what the other entries are checked against.
  const badBlobs = new Set<string>();
  const hexes = await store.blobs();
  const stage = (label: string, total: number) => o.reporter?.progress(label, total) ?? { tick() {}, setTotal() {}, done() {} };
  let bar = stage('blobs', hexes.length);
  await Promise.all(
    hexes.map((hex) =>
      queue.add(async () => {
        const c = await store.check(hex, undefined, { rehash: true, keep: o.dryRun });
        if (c.state === 'ok') {
          const { size } = await lstat(c.path);
          report.blobs.checked++;
          report.blobs.bytes += size;
        } else if (c.state === 'damaged') {
          report.blobs.checked++;
          badBlobs.add(hex);
          damaged(`blob sha256:${hex}`, c.reason);
        }
        bar.tick();
      }),
    ),
  );
  bar.done();
  const whole = async (digest: string, size: number) => !badBlobs.has(digest.slice(7)) && (await store.has(digest, size)) !== undefined;

  const layers = store.cache('layers');
  for (const key of (await layers.list()).json) {
    report.layers.checked++;
    const r = await layers.readEntry<LayerRecord>(key, layerRecordProblem);
    let problem = r.state === 'damaged' ? r.reason : undefined;
    if (r.state === 'ok') {
      for (const b of [{ digest: r.value.diffId, size: r.value.size }, ...(r.value.gzip ? [r.value.gzip] : [])]) {
        if (!(await whole(b.digest, b.size))) problem ??= `its blob ${b.digest.slice(0, 19)}… is ${badBlobs.has(b.digest.slice(7)) ? 'damaged' : 'missing'}`;
      }
    }
    if (problem === undefined) continue;
    damaged(`layer record ${key}`, problem);
    if (!o.dryRun) await layers.remove(key);
  }

  const unpacked = store.cache('unpacked');
  const trees = (await unpacked.list()).dirs;
  bar = stage('unpacked', trees.length);
  await Promise.all(
    trees.map((key) =>
      queue.add(async () => {
        report.unpacked.checked++;
        const r = await unpacked.readEntry<UnpackedDeb>(join(key, 'meta'), unpackedMetaProblem);
        let problem: string | undefined;
        if (r.state !== 'ok') problem = `meta.json ${r.state === 'damaged' ? r.reason : 'missing'}`;
        else {
          const got = await unpackedProblem(join(unpacked.path(key), 'root'), r.value);
          report.unpacked.files += got.files;
          problem = got.problem;
        }
        bar.tick();
        if (problem === undefined) return;
        const pkg = r.state === 'ok' ? /^Package:\s*(\S+)/m.exec(r.value.control)?.[1] : undefined;
        damaged(`unpacked ${pkg ?? 'package'} (${key.slice(0, 12)}…)`, problem);
        if (!o.dryRun) await unpacked.remove(key);
      }),
    ),
  );
  bar.done();

  const rootfs = store.cache('rootfs');
  const listed = await rootfs.list();
  const roots = new Set(listed.dirs);
  for (const key of listed.json) if (!roots.has(key) && !o.dryRun) await rootfs.remove(key); // a record whose tree never arrived
  bar = stage('rootfs', listed.dirs.length);
  for (const key of listed.dirs) {
    bar.tick();
    const r = await rootfs.readEntry<RootfsRecord>(key, (v) => (Array.isArray((v as RootfsRecord | null)?.layers) ? undefined : 'no layer list'));
    const layerPaths: string[] = [];
    if (r.state === 'ok') {
      for (const l of r.value.layers) {
        const p = badBlobs.has(l.diffId.slice(7)) ? undefined : await store.has(l.diffId, l.size);
        if (p) layerPaths.push(p);
      }
    }
    if (r.state !== 'ok' || layerPaths.length !== r.value.layers.length) {
      report.rootfs.unchecked++;
      continue;
    }
    report.rootfs.checked++;
    const problems = await checkRootfs(rootfs.path(key), layerPaths, 3);
    if (problems.length === 0) continue;
    damaged(`root filesystem ${key.slice(0, 12)}…`, problems.join('; '));
    if (!o.dryRun) await rootfs.remove(key);
  }

  bar.done();
  for (const ns of ['channels', 'indexes', 'run'] as const) {
    const c = store.cache(ns);
    for (const key of (await c.list()).json) {
      report.records.checked++;
      const r = await c.readEntry(key);
      if (r.state !== 'damaged') continue;
      damaged(`${ns} record ${key}`, r.reason);
      if (!o.dryRun) await c.remove(key);
    }
  }
  await store.pruneStamps();
  return report;
}
