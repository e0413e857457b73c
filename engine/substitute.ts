/**
 * A cache registry as a substitute for building (registry/cache.ts has the wire format). Before strata builds a
 * layer, a recipe output or the generated output, and before it realises a whole image, it asks the cache for an
 * entry under the thing's input key: `layer-<job key>`, `recipe-<output key>`, `generated-<output key>`,
 * `image-<image key>` (the image key names the lock, less its manifest hash, and the layers' mtime). A hit is taken
 * into the store (every blob verified against its digest while it streams; a layer's tar against its diffId as it
 * is decompressed; an output tree against the output digest its meta records) and used as if built here: the image
 * is byte-identical, since the bytes are the ones built elsewhere from the same inputs. An image is taken only when
 * the image assembled here from the entry's layers has the digest the entry records.
 *
 * A miss, or an entry that does not check out, falls back to building, with one line. An unreachable or refusing
 * cache is said once and not asked again in this run.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../errors.ts';
import { parseReference } from '../realiser/oci/reference.ts';
import { MEDIA_TYPE_LAYER_TAR_GZIP } from '../realiser/oci/spec.ts';
import { buildLayer, layerBlobs, layerRecordProblem, type LayerRecord } from '../realiser/layers.ts';
import type { RealisedImage } from '../realiser/realise.ts';
import type { LayerEntry } from '../realiser/layertar.ts';
import { RegistryClient, type ClientOptions } from '../registry/client.ts';
import { cacheTag, getEntry, hasEntry, putEntry, type CacheBlob, type CacheKind } from '../registry/cache.ts';
import { outputDigest, walkOutput, type OutputEntry } from '../recipes/build.ts';
import type { Ctx, Substituter } from './ctx.ts';
import type { Lockfile, Manifest } from '../model.ts';

const IMAGE_FORMAT = 'strata-cache-image-v1';
const GZIP_OUTPUT_TREE = 'application/vnd.dev.strata.output-tree.v1.tar+gzip';

/** The key of a lock's image: the lock less its manifest hash (which no layer depends on), the mtime, whether it has the generated layer. */
export function imageKey(lock: Lockfile, mtime: number, generated: boolean): string {
  const { manifestSha256: _m, ...rest } = lock;
  return createHash('sha256').update(JSON.stringify([IMAGE_FORMAT, rest, mtime, generated])).digest('hex');
}

/** The cache registry's reference for this invocation: STRATA_CACHE_REGISTRY, else the manifest's `[cache] registry`. */
export function cacheRegistryFor(manifest: Pick<Manifest, 'cache'> | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const r = env.STRATA_CACHE_REGISTRY?.trim() || manifest?.cache?.registry;
  return r ? r : undefined;
}

interface ImageEntryConfig {
  kind: 'image';
  layers: { key: string; label: string; comment: string }[];
  plain: string;
  gzip: string;
}

function cacheClient(refText: string, actions: 'pull' | 'pull,push', o: ClientOptions): RegistryClient {
  const ref = parseReference(refText);
  if (ref.digest || refText.split('/').slice(1).join('/').includes(':')) {
    throw new StrataError('E_USAGE', `the cache registry ${refText} names a tag or digest`, 'give host[:port]/repository; strata names the entries itself');
  }
  return new RegistryClient(ref, actions, o);
}

/** A Substituter asking the cache registry `refText` (host[:port]/repository). */
export function openCache(refText: string, ctx: Pick<Ctx, 'store' | 'reporter'>, o: ClientOptions = {}): Substituter {
  const client = cacheClient(refText, 'pull', o);
  const { store, reporter } = ctx;
  const where = client.ref.repository;
  let off = false;

  /** An entry, or undefined on a miss; an unreachable or refusing cache is said once and turned off. */
  async function get(kind: CacheKind, key: string, label: string, blobs: boolean) {
    if (off) return undefined;
    try {
      return await getEntry(client, store, cacheTag(kind, key), { blobs });
    } catch (e) {
      if (!(e instanceof StrataError)) throw e;
      if (e.code === 'E_HASH' || (e.code === 'E_REGISTRY' && e.message.includes('not one strata wrote'))) {
        reporter.warn(`the cache ${where} has a bad entry for ${label} (${e.message}); building it here`);
        return undefined;
      }
      if (e.code === 'E_REGISTRY' || e.code === 'E_FETCH') {
        off = true;
        reporter.warn(`the cache ${where} cannot be used (${e.message}); building here without it`);
        return undefined;
      }
      throw e;
    }
  }

  const layer = async (job: { key: string; label: string }): Promise<LayerRecord | undefined> => {
    const e = await get('layer', job.key, `layer "${job.label}"`, true);
    if (!e) return undefined;
    const c = e.config as LayerRecord;
    const blob = e.blobs[0];
    if (layerRecordProblem(c) !== undefined || !c.gzip || !blob || blob.digest !== c.gzip.digest || blob.size !== c.gzip.size) {
      reporter.warn(`the cache ${where} has a malformed entry for layer "${job.label}"; building it here`);
      return undefined;
    }
    try {
      // Only the gzip blob is kept: the tar is made from it again when an uncompressed image is written.
      const { checkDecompresses } = await import('./images.ts');
      await checkDecompresses(blob.path, blob.digest, c.diffId);
    } catch (err) {
      if (!(err instanceof StrataError) || err.code !== 'E_HASH') throw err;
      reporter.warn(`the cache ${where}: layer "${job.label}": ${err.message}; building it here`);
      return undefined;
    }
    return { diffId: c.diffId, size: c.size, gzip: c.gzip };
  };

  const output = async (namespace: 'recipes' | 'generated', key: string, label: string): Promise<boolean> => {
    const e = await get(namespace === 'recipes' ? 'recipe' : 'generated', key, label, true);
    if (!e) return false;
    const meta = (e.config as { meta?: { digest?: unknown; entries?: unknown } }).meta;
    const tree = e.blobs[0];
    if (!meta || typeof meta.digest !== 'string' || !Array.isArray(meta.entries) || !tree) {
      reporter.warn(`the cache ${where} has a malformed entry for ${label}; building it here`);
      return false;
    }
    const entries = meta.entries as OutputEntry[];
    const { unpackSource } = await import('../recipes/sources.ts');
    try {
      await store.cache(namespace).dir(key, async (tmp) => {
        const out = join(tmp, 'out');
        await mkdir(out);
        await unpackSource(tree.path, out, '', { label: `${label} from the cache`, name: 'out', strip: false });
        const wanted = new Set(entries.map((x) => x.path));
        const got = outputDigest((await walkOutput(out, label)).filter((x) => wanted.has(x.path)));
        if (got !== meta.digest) throw new StrataError('E_HASH', `its tree has output digest ${got}, its meta records ${meta.digest}`);
        await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta));
      });
    } catch (err) {
      if (!(err instanceof StrataError)) throw err;
      reporter.warn(`the cache ${where}: ${label}: ${err.message}; building it here`);
      return false;
    }
    reporter.info(`took ${label} from the cache ${where} (not building it)`);
    return true;
  };

  let saidMiss = false;
  const image = async (lock: Lockfile, generated: boolean, o: { mtime: number; gzip: boolean; paths?: import('../realiser/imageConfig.ts').SearchPaths }): Promise<RealisedImage | undefined> => {
    const key = imageKey(lock, o.mtime, generated);
    // An image taken from the cache before is assembled again from the store alone (no network).
    const images = store.cache('images');
    let c = (await images.readJson<Partial<ImageEntryConfig>>(`cache-image-${key}`)) as Partial<ImageEntryConfig> | undefined;
    const local = c !== undefined;
    if (!c) {
      const e = await get('image', key, 'the image', false);
      if (off) return undefined;
      if (!e) {
        if (!saidMiss) reporter.info(`the cache ${where} has no image of this lock; realising it here (layers and outputs the cache has are taken from it)`);
        saidMiss = true;
        return undefined;
      }
      c = e.config as Partial<ImageEntryConfig>;
    }
    if (c.kind !== 'image' || !Array.isArray(c.layers) || typeof c.plain !== 'string' || typeof c.gzip !== 'string') {
      reporter.warn(`the cache ${where} has a malformed image entry for this lock; realising it here`);
      return undefined;
    }
    const records: LayerRecord[] = [];
    for (const l of c.layers) {
      const missing = Symbol('missing');
      try {
        // The layer as realise would take it: its local record when whole, else the cache's entry; never built here.
        const { record } = await buildLayer({ ...l, entries: () => Promise.reject(missing) }, { store, mtime: o.mtime, gzip: true, reporter, substitute: layer });
        records.push(record);
      } catch (err) {
        if (err !== missing) throw err;
        if (!off) reporter.warn(`the cache ${where} has the image of this lock but not its layer "${l.label}"; realising it here`);
        return undefined;
      }
    }
    const [{ buildImage }, { imageInput }] = await Promise.all([import('../realiser/oci/image.ts'), import('../realiser/imageConfig.ts')]);
    const plain = buildImage(imageInput(lock, c.layers, await layerBlobs(store, records, 'plain'), o.mtime, o.paths));
    const gzip = buildImage(imageInput(lock, c.layers, await layerBlobs(store, records, 'gzip'), o.mtime, o.paths));
    if (plain.manifestDigest !== c.plain || gzip.manifestDigest !== c.gzip) {
      reporter.warn(`the cache ${where}: the image assembled from its layers is ${plain.manifestDigest}, not ${c.plain} as its entry says; realising it here`);
      return undefined;
    }
    if (!local) {
      await images.writeJson(`cache-image-${key}`, c);
      reporter.info(`took the image of this lock from the cache ${where} (${records.length} layers, nothing built)`);
    }
    return {
      image: o.gzip ? gzip : plain,
      plain,
      ...(o.gzip ? { gzip } : {}),
      layerCount: records.length,
      builtLayers: 0,
      mtime: o.mtime,
      layers: c.layers.map((l, i) => ({ ...l, record: records[i]! })),
    };
  };

  return { layer, output, image };
}

/** Sets `ctx.cache` when a cache registry is configured (STRATA_CACHE_REGISTRY or the manifest's `[cache] registry`). */
export function attachCache(ctx: Ctx, manifest: Pick<Manifest, 'cache'> | undefined, o: ClientOptions = {}): string | undefined {
  const ref = cacheRegistryFor(manifest);
  if (ref) ctx.cache = openCache(ref, ctx, o);
  return ref;
}

/** A gzip tar of an output tree (every entry under `out`), written into `tmp`. */
async function treeBlob(out: string, tmp: string, mtime: number, label: string): Promise<CacheBlob> {
  const { writeLayerTar } = await import('../realiser/layertar.ts');
  const entries: LayerEntry[] = (await walkOutput(out, label)).map((e) => {
    const base = { path: e.path, type: e.type, mode: e.mode, uid: 0, gid: 0 };
    if (e.type === 'file') return { ...base, size: e.size!, source: join(out, e.path), ...(e.sha256 ? { sha256: e.sha256 } : {}) };
    if (e.type === 'symlink' || e.type === 'hardlink') return { ...base, linkname: e.linkname! };
    return base;
  });
  const gz = join(tmp, 'tree.tar.gz');
  const res = await writeLayerTar(entries, null, { mtime, gzip: gz });
  return { mediaType: GZIP_OUTPUT_TREE, digest: res.gzip!.digest, size: res.gzip!.size, path: gz };
}

export interface CachePushResult {
  /** Entries written, and entries the cache had already. */
  pushed: number;
  present: number;
  /** Blobs uploaded. */
  blobs: number;
}

/**
 * Uploads to the cache registry `refText` what it lacks of a realised lock: each recipe output and the generated
 * output in the store, each layer (gzip), and the image entry. `result` must have gzip layers.
 */
export async function pushCache(lock: Lockfile, result: RealisedImage, ctx: Ctx, refText: string, o: ClientOptions & { say: (line: string) => void; chunkBytes?: number }): Promise<CachePushResult> {
  const client = cacheClient(refText, 'pull,push', o);
  const { store } = ctx;
  const r: CachePushResult = { pushed: 0, present: 0, blobs: 0 };
  if (!result.gzip || !result.layers) throw new Error('pushCache: the image was realised without gzip layers');
  const put = async (tag: string, what: string, make: (tmp: string) => Promise<{ config: unknown; blobs: CacheBlob[] }>) => {
    if (await hasEntry(client, tag)) {
      r.present++;
      return;
    }
    const tmp = await store.tmpDir();
    try {
      const { config, blobs } = await make(tmp);
      r.blobs += await putEntry(client, tag, config, blobs, { say: o.say, ...(o.chunkBytes !== undefined ? { chunkBytes: o.chunkBytes } : {}) });
      r.pushed++;
      o.say(`  ${tag.slice(0, 20)}… ${what}: pushed`);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  };
  const outputEntry = async (namespace: 'recipes' | 'generated', key: string, what: string) => {
    const dir = store.cache(namespace).path(key);
    if (!existsSync(join(dir, 'meta.json'))) return;
    const meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as unknown;
    await put(cacheTag(namespace === 'recipes' ? 'recipe' : 'generated', key), what, async (tmp) => ({ config: { kind: namespace, meta }, blobs: [await treeBlob(join(dir, 'out'), tmp, result.mtime, what)] }));
  };
  const { recipesInOrder, outputKey } = await import('./buildRecipes.ts');
  for (const rec of lock.recipes ? recipesInOrder(lock) : []) await outputEntry('recipes', outputKey(rec, result.mtime), `recipe ${rec.name} ${rec.version}`);
  for (const key of result.generatedKeys ?? []) await outputEntry('generated', key, 'the generated files');
  const gzBlobs: CacheBlob[] = [];
  for (const l of result.layers) {
    const gz = l.record.gzip!;
    const path = await store.has(gz.digest, gz.size);
    if (!path) throw new Error(`layer ${gz.digest} left the store`);
    const blob = { mediaType: MEDIA_TYPE_LAYER_TAR_GZIP, digest: gz.digest, size: gz.size, path };
    gzBlobs.push(blob);
    await put(cacheTag('layer', l.key), `layer "${l.label}"`, async () => ({ config: l.record, blobs: [blob] }));
  }
  const config: ImageEntryConfig = { kind: 'image', layers: result.layers.map(({ key, label, comment }) => ({ key, label, comment })), plain: result.plain.manifestDigest, gzip: result.gzip.manifestDigest };
  await put(cacheTag('image', imageKey(lock, result.mtime, true)), 'the image', async () => ({ config, blobs: gzBlobs }));
  return r;
}
