/**
 * The wire format of a cache registry: one repository (`[cache] registry`, e.g. `HOST:5000/team/strata-cache`)
 * holding entries under tags `<kind>-<key>`, `key` the 64-hex input key strata computes locally (a layer job's key,
 * a recipe output's key, a generated output's key, an image's key). Each entry is an OCI 1.1 artifact: an image
 * manifest with `artifactType` `application/vnd.dev.strata.cache.v1`, its config a small JSON blob (what the entry
 * maps the key to: a layer record, an output's meta, an image's layer list) and its layers the blobs (a gzip layer
 * tar, a gzip tar of an output tree).
 *
 * What is verified: the manifest against the digest the registry states for it, the config and every blob against
 * the manifest's digests while they stream into the store. What cannot be: that the key really maps to these bytes
 * (a build output's digest is known only after the build), so an entry is trusted as much as the registry is.
 */
import { readFile } from 'node:fs/promises';
import { StrataError } from '../errors.ts';
import { sha256Digest } from '../util/bytes.ts';
import { MEDIA_TYPE_IMAGE_MANIFEST } from '../realiser/oci/spec.ts';
import type { Store } from '../store/store.ts';
import type { RegistryClient } from './client.ts';
import { pushBlob, putManifest } from './push.ts';

export const CACHE_ARTIFACT_TYPE = 'application/vnd.dev.strata.cache.v1';
export const CACHE_CONFIG_TYPE = 'application/vnd.dev.strata.cache.entry.v1+json';

export type CacheKind = 'layer' | 'recipe' | 'generated' | 'image';

const KEY = /^[0-9a-f]{64}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** The tag of an entry: `<kind>-<key>` (at most 74 characters, within the spec's 128). */
export function cacheTag(kind: CacheKind, key: string): string {
  if (!KEY.test(key)) throw new Error(`cache key ${key} is not 64 hex digits`);
  return `${kind}-${key}`;
}

export interface CacheBlob {
  mediaType: string;
  digest: string;
  size: number;
  /** The blob's file (in the store). */
  path: string;
}

/** An entry as read back: its config (parsed JSON) and its blobs, each verified into the store. */
export interface CacheEntry {
  manifestDigest: string;
  config: unknown;
  blobs: CacheBlob[];
}


/** Whether the cache holds the entry `tag` (a HEAD of its manifest). */
export async function hasEntry(client: RegistryClient, tag: string): Promise<boolean> {
  const a = await client.send('HEAD', client.url(`manifests/${tag}`), { headers: { accept: MEDIA_TYPE_IMAGE_MANIFEST }, discard: true });
  if (a.status === 200) return true;
  if (a.status === 404) return false;
  throw client.unexpected(`a HEAD of the cache entry ${tag}`, a);
}

/**
 * Reads the entry `tag`, or undefined when the cache has none. With `blobs` false only the config is fetched.
 * E_HASH when the manifest or a blob is not what it is said to be; E_REGISTRY when the entry is not a strata entry.
 */
export async function getEntry(client: RegistryClient, store: Store, tag: string, o: { blobs: boolean }): Promise<CacheEntry | undefined> {
  const a = await client.send('GET', client.url(`manifests/${tag}`), { headers: { accept: MEDIA_TYPE_IMAGE_MANIFEST } });
  if (a.status === 404) return undefined;
  if (a.status !== 200) throw client.unexpected(`the cache entry ${tag}`, a);
  const digest = sha256Digest(a.body);
  const said = a.headers['docker-content-digest'];
  if (said !== undefined && said !== digest) {
    throw new StrataError('E_HASH', `the cache entry ${tag} from ${client.registry} hashes to ${digest}, not ${said} as the registry says`);
  }
  const bad = (why: string) => new StrataError('E_REGISTRY', `the cache entry ${tag} in ${client.ref.repository} is not one strata wrote: ${why}`);
  let m: { artifactType?: unknown; config?: { mediaType?: unknown; digest?: unknown; size?: unknown }; layers?: { mediaType?: unknown; digest?: unknown; size?: unknown }[] };
  try {
    m = JSON.parse(a.body.toString('utf8')) as typeof m;
  } catch {
    throw bad('its manifest is not JSON');
  }
  if (m.artifactType !== CACHE_ARTIFACT_TYPE) throw bad(`its artifactType is ${JSON.stringify(m.artifactType)}`);
  const descr = (d: { mediaType?: unknown; digest?: unknown; size?: unknown } | undefined, what: string) => {
    if (!d || typeof d.digest !== 'string' || !DIGEST.test(d.digest) || typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || typeof d.mediaType !== 'string') throw bad(`${what} has no valid descriptor`);
    return { mediaType: d.mediaType, digest: d.digest, size: d.size };
  };
  const fetch = async (d: { mediaType: string; digest: string; size: number }, what: string): Promise<CacheBlob> => ({
    ...d,
    path: await store.fetch({ urls: [client.url(`blobs/${d.digest}`)], sha256: d.digest, size: d.size, label: `${what} of cache entry ${tag}`, headers: client.authHeaders(), vouchedBy: 'manifest' }),
  });
  const cfg = await fetch(descr(m.config, 'its config'), 'the config');
  let config: unknown;
  try {
    config = JSON.parse(await readFile(cfg.path, 'utf8'));
  } catch {
    throw bad('its config is not JSON');
  }
  const layers = (m.layers ?? []).map((l, i) => descr(l, `blob ${i + 1}`));
  const blobs = o.blobs ? await Promise.all(layers.map((l, i) => fetch(l, `blob ${i + 1}`))) : layers.map((l) => ({ ...l, path: '' }));
  return { manifestDigest: digest, config, blobs };
}

/** Writes the entry `tag`: its blobs the cache lacks, its config, then its manifest. Returns how many blobs went up. */
export async function putEntry(client: RegistryClient, tag: string, config: unknown, blobs: CacheBlob[], o: { chunkBytes?: number; say?: (line: string) => void } = {}): Promise<number> {
  const cfg = Buffer.from(JSON.stringify(config));
  const cfgDigest = sha256Digest(cfg);
  let pushed = 0;
  for (const [i, b] of blobs.entries()) {
    if ((await pushBlob(client, { digest: b.digest, size: b.size, body: { file: b.path, size: b.size }, what: `blob ${i + 1} of ${tag}` }, o)) !== undefined) pushed++;
  }
  if ((await pushBlob(client, { digest: cfgDigest, size: cfg.length, body: cfg, what: `the config of ${tag}` }, o)) !== undefined) pushed++;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_IMAGE_MANIFEST,
      artifactType: CACHE_ARTIFACT_TYPE,
      config: { mediaType: CACHE_CONFIG_TYPE, digest: cfgDigest, size: cfg.length },
      layers: blobs.map((b) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size })),
      annotations: { 'dev.strata.cache.key': tag },
    }),
  );
  await putManifest(client, tag, manifest, sha256Digest(manifest));
  return pushed;
}
