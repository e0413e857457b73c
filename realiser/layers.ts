/**
 * Layer jobs and the layer cache. A producer (the package planner, the skeleton, the installed state, later a
 * recipe build) describes a layer as a `LayerJob`: a label for history, a key that names its inputs, and the
 * entries. This module builds a job's tar once per key (and its gzip twin when asked), adopts the blobs into the
 * store and records them; a later job with the same key takes the record, provided its blobs are still there and
 * whole (`store.check`: their verified stamps, else a re-hash). A damaged record or blob is dropped and the layer
 * built again, with one warning naming it.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeLayerTar, type LayerEntry } from './layertar.ts';
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

/** What the layer cache records of a built layer: its uncompressed digest and size, and its gzip blob's when made. */
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
    const blobs = [{ digest: rec.diffId, size: rec.size }, ...(gzip && rec.gzip ? [rec.gzip] : [])];
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
    const tarPath = join(tmp, 'layer.tar');
    const gzPath = join(tmp, 'layer.tar.gz');
    const res = await onDisk(store.root, 'a layer', () => writeLayerTar(entries, tarPath, gzip ? { mtime, gzip: gzPath } : { mtime }));
    await store.adopt(tarPath, res.diffId);
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

/** The image's layers in one encoding, read from the store (base first). */
export async function layerBlobs(store: Store, records: LayerRecord[], encoding: 'plain' | 'gzip'): Promise<LayerBlob[]> {
  return Promise.all(
    records.map(async (r) => {
      const d = encoding === 'gzip' ? r.gzip! : { digest: r.diffId, size: r.size };
      const path = await store.has(d.digest, d.size);
      if (!path) throw new Error(`layer ${d.digest} left the store while the image was being assembled`);
      return { path, digest: d.digest, size: d.size, diffId: r.diffId, mediaType: encoding === 'gzip' ? MEDIA_TYPE_LAYER_TAR_GZIP : MEDIA_TYPE_LAYER_TAR };
    }),
  );
}
