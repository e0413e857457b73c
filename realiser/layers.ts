/**
 * Layer jobs and the layer cache. A producer (the package planner, the skeleton, the installed state, later a
 * recipe build) describes a layer as a `LayerJob`: a label for history, a key that names its inputs, and the
 * entries. This module builds a job's tar once per key (and its gzip twin when asked), adopts the blobs into the
 * store and records them; a later job with the same key takes the record, provided its blobs are still there.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeLayerTar, type LayerEntry } from './layertar.ts';
import { MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_LAYER_TAR_GZIP } from './oci/spec.ts';
import { onDisk, type Store } from '../store/store.ts';
import type { LayerBlob } from './oci/image.ts';

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
}

/** A layer key: the layer format, the kind of producer, the mtime and the producer's own description of its inputs. */
export function layerKey(kind: string, mtime: number, inputs: unknown): string {
  return createHash('sha256').update(JSON.stringify([LAYER_FORMAT, kind, mtime, inputs])).digest('hex');
}

/** Builds (or takes from the cache) the layer of one job. */
export async function buildLayer(job: LayerJob, o: LayerBuildOptions): Promise<{ record: LayerRecord; built: boolean }> {
  const { store, mtime, gzip } = o;
  const records = store.cache('layers');
  const rec = await records.readJson<LayerRecord>(job.key);
  if (rec) {
    const plainOk = await store.has(rec.diffId.slice(7), rec.size);
    const gzOk = !gzip || (rec.gzip !== undefined && (await store.has(rec.gzip.digest.slice(7), rec.gzip.size)));
    if (plainOk && gzOk) return { record: rec, built: false };
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
