/**
 * Layer jobs and the layer cache. A producer (the package planner, the skeleton, the installed state, later a
 * recipe build) describes a layer as a `LayerJob`: a label for history, a key that names its inputs, and the
 * entries. This module streams a job's tar once per key through a hash and records its diffId and size; the
 * uncompressed tar is not kept (it would be a second copy of the unpacked trees it is made of): `layerBlobs` makes
 * it again on demand, from the job's entries, checked against the record as it streams. A gzip twin, asked for by
 * registries, is made in the same pass and kept in the store. A later job with the same key takes the record,
 * provided the blobs it needs are still there and whole (`store.check`: their verified stamps, else a re-hash). A
 * damaged record or blob is dropped and the layer built again, with one warning naming it.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { StrataError } from '../errors.ts';
import { DamagedSource, writeLayerTar, type LayerEntry } from './layertar.ts';
import { MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_TAR_GZIP } from './oci/spec.ts';
import { onDisk, type Store } from '../store/store.ts';
import type { LayerBlob } from './oci/image.ts';
import type { Reporter } from '../report/reporter.ts';

/** Bump when the way layers are built changes: it invalidates cached layers. */
const LAYER_FORMAT = 'strata-layer-v1';

export interface LayerJob {
  /** What the layer holds, for the image history (`strata realise: <label>`). */
  label: string;
  /** Names the layer's inputs exactly (see `layerKey`): equal keys mean byte-identical layers. */
  key: string;
  /** The history entry's comment. */
  comment: string;
  entries(): LayerEntry[] | Promise<LayerEntry[]>;
}

/**
 * What the layer cache records of a built layer: its uncompressed digest and size, and its gzip blob's when made.
 * The uncompressed tar itself is in the store only when a cache registry or an older strata put it there.
 */
export interface LayerRecord {
  diffId: string;
  size: number;
  gzip?: { digest: string; size: number };
}

export interface LayerBuildOptions {
  store: Store;
  /** Every entry's mtime. */
  mtime: number;
  gzip: boolean;
  /** Told, in one line, of a damaged record or blob that is being made again. */
  reporter?: Pick<Reporter, 'warn'>;
  /** Asked for the layer before it is built (a cache registry): a record whose blobs it has put in the store, or undefined. */
  substitute?: (job: LayerJob) => Promise<LayerRecord | undefined>;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const isSize = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

/** Why a parsed layer record is not one `buildLayer` wrote, or undefined when it is. */
export function layerRecordProblem(v: unknown): string | undefined {
  const r = v as Partial<LayerRecord> | null;
  if (typeof r !== 'object' || r === null) return 'not a layer record';
  if (typeof r.diffId !== 'string' || !DIGEST.test(r.diffId) || !isSize(r.size)) return 'no valid diffId and size';
  if (r.gzip !== undefined && (typeof r.gzip !== 'object' || r.gzip === null || typeof r.gzip.digest !== 'string' || !DIGEST.test(r.gzip.digest) || !isSize(r.gzip.size))) {
    return 'a malformed gzip entry';
  }
  return undefined;
}

/** A layer key: the layer format, the kind of producer, the mtime and the producer's own description of its inputs. */
export function layerKey(kind: string, mtime: number, inputs: unknown): string {
  return createHash('sha256').update(JSON.stringify([LAYER_FORMAT, kind, mtime, inputs])).digest('hex');
}

/** Builds (or takes from the cache) the layer of one job. */
export async function buildLayer(job: LayerJob, o: LayerBuildOptions): Promise<{ record: LayerRecord; built: boolean }> {
  const { store, mtime, gzip } = o;
  const records = store.cache('layers');
  const read = await records.readEntry<LayerRecord>(job.key, layerRecordProblem);
  if (read.state === 'damaged') o.reporter?.warn(`the cached record of layer "${job.label}" was damaged (${read.reason}); building the layer again`);
  if (read.state === 'ok') {
    const rec = read.value;
    const blobs = gzip && rec.gzip ? [rec.gzip] : [];
    let whole = !gzip || rec.gzip !== undefined;
    for (const b of blobs) {
      const c = await store.check(b.digest, b.size);
      if (c.state === 'damaged') o.reporter?.warn(`the cached layer "${job.label}" (${b.digest.slice(0, 19)}…) was damaged (${c.reason}); building it again`);
      if (c.state !== 'ok') whole = false;
    }
    if (whole) return { record: rec, built: false };
  }
  const got = await o.substitute?.(job);
  if (got && (!gzip || got.gzip)) {
    await records.writeJson(job.key, got);
    return { record: got, built: false };
  }
  const entries = await job.entries();
  const tmp = await store.tmpDir();
  try {
    const gzPath = join(tmp, 'layer.tar.gz');
    const res = await onDisk(store.root, 'a layer', () => writeLayerTar(entries, null, gzip ? { mtime, gzip: gzPath } : { mtime }));
    const made: LayerRecord = { diffId: res.diffId, size: res.size };
    if (gzip && res.gzip) {
      await store.adopt(gzPath, res.gzip.digest);
      made.gzip = res.gzip;
    }
    await records.writeJson(job.key, made);
    return { record: made, built: true };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * The image's layers in one encoding (base first). A gzip layer is its blob in the store. An uncompressed one is
 * its blob when the store holds it whole, else made again as a stream: from its gzip blob, decompressed, or from
 * its job's entries (`jobs[i]`, at `mtime`), checked against the record as it goes (a stream that would differ
 * fails before its end, with E_HASH).
 */
export async function layerBlobs(store: Store, records: LayerRecord[], encoding: 'plain' | 'gzip', o: { jobs?: readonly (Pick<LayerJob, 'label' | 'entries'> | undefined)[]; mtime?: number } = {}): Promise<LayerBlob[]> {
  return Promise.all(
    records.map(async (r, i): Promise<LayerBlob> => {
      if (encoding === 'gzip') {
        const d = r.gzip!;
        const path = await store.has(d.digest, d.size);
        if (!path) throw new Error(`layer ${d.digest} left the store while the image was being assembled`);
        return { path, digest: d.digest, size: d.size, diffId: r.diffId, mediaType: MEDIA_TYPE_LAYER_TAR_GZIP };
      }
      const blob = { digest: r.diffId, size: r.size, diffId: r.diffId, mediaType: MEDIA_TYPE_LAYER_TAR };
      const kept = await store.check(r.diffId, r.size);
      if (kept.state === 'ok') return { ...blob, path: kept.path };
      const gz = r.gzip ? await store.check(r.gzip.digest, r.gzip.size) : undefined;
      if (gz?.state === 'ok') return { ...blob, read: () => gunzipped(gz.path, r) };
      const job = o.jobs?.[i];
      if (!job || o.mtime === undefined) throw new Error(`layer ${r.diffId} is neither in the store nor can be made again here`);
      return { ...blob, read: () => madeAgain(job, r, o.mtime!) };
    }),
  );
}

/** Why a layer cannot be made again, as the user's error. */
function notMadeAgain(label: string, e: unknown): Error {
  if (e instanceof StrataError) return e;
  if (!(e instanceof DamagedSource)) return e instanceof Error ? e : new Error(String(e));
  return new StrataError('E_HASH', `the layer "${label}" could not be made again from the store: ${e.message}`, 'run `strata verify` (it drops what is damaged), then this command again: the next realise makes it again');
}

/** The layer's tar, written again from its job's entries into a stream, which fails before its end unless it is `r`. */
function madeAgain(job: Pick<LayerJob, 'label' | 'entries'>, r: LayerRecord, mtime: number): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 });
  void (async () => writeLayerTar(await job.entries(), out, { mtime, expect: { diffId: r.diffId, size: r.size } }))().catch((e: unknown) => out.destroy(notMadeAgain(job.label, e)));
  return out;
}

/** The layer's tar, decompressed from its gzip blob, as a stream that fails before its end unless it is `r`. */
function gunzipped(gzPath: string, r: LayerRecord): Readable {
  const hash = createHash('sha256');
  let size = 0;
  const check = new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
    flush(cb) {
      const got = `sha256:${hash.digest('hex')}`;
      if (got === r.diffId && size === r.size) cb();
      else cb(new StrataError('E_HASH', `the layer ${r.gzip!.digest} decompresses to ${got} (${size} bytes), not ${r.diffId} (${r.size} bytes) as recorded`, 'run `strata verify` (it drops what is damaged), then this command again'));
    },
  });
  const src = createReadStream(gzPath, { highWaterMark: 1 << 20 });
  const gun = createGunzip();
  const fail = (e: Error) => check.destroy(new StrataError('E_HASH', `the layer ${r.gzip!.digest} does not decompress: ${e.message}`, 'run `strata verify` (it drops what is damaged), then this command again'));
  src.on('error', fail);
  gun.on('error', fail);
  check.on('close', () => {
    src.destroy();
    gun.destroy();
  });
  src.pipe(gun).pipe(check);
  return check;
}
