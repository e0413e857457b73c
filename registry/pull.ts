/**
 * Pulling an image from a registry into the store: the manifest (asked for with the OCI and Docker v2 media types;
 * an index or manifest list is followed to the manifest for this platform), its digest checked against the one
 * asked for and the one the registry says, then the config and every layer through `store.fetch`, the one place
 * bytes are verified (each blob's sha256 while it streams; a mismatch is E_HASH and nothing enters the store).
 * The manifest goes into the store last, so a pull that fails leaves no image behind.
 */
import { StrataError } from '../errors.ts';
import { sha256Digest } from '../util/bytes.ts';
import {
  MEDIA_TYPE_IMAGE_INDEX,
  MEDIA_TYPE_IMAGE_MANIFEST,
  MEDIA_TYPE_LAYER_TAR,
  MEDIA_TYPE_LAYER_TAR_GZIP,
  type Platform,
} from '../realiser/oci/spec.ts';
import type { Store } from '../store/store.ts';
import type { Reporter } from '../report/reporter.ts';
import type { RegistryClient } from './client.ts';

export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
const DOCKER_LAYER_TAR = 'application/vnd.docker.image.rootfs.diff.tar';

/** A layer of a pulled image, as its manifest and config describe it. */
export interface PulledLayer {
  digest: string;
  size: number;
  diffId: string;
  compression: 'gzip' | 'none';
}

/** What the store's `images` cache records of a pulled image, keyed by the manifest digest's hex. */
export interface PulledImage {
  reference: string;
  manifestDigest: string;
  configDigest: string;
  layers: PulledLayer[];
  /** The config's Env. */
  env: string[];
  /** The lock closure the image realises (its `dev.strata.closure` annotation), when it has one. */
  closure?: string;
  /** The image asks for the host's GPU driver (`dev.strata.gpu-driver=host`). */
  gpuDriverHost: boolean;
  title?: string;
}

const ACCEPT = [MEDIA_TYPE_IMAGE_MANIFEST, MEDIA_TYPE_IMAGE_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST].join(', ');


interface Manifest {
  mediaType?: string;
  config?: { digest?: string; size?: number };
  layers?: { mediaType?: string; digest?: string; size?: number }[];
  manifests?: { digest?: string; mediaType?: string; platform?: Platform }[];
  annotations?: Record<string, string>;
}

function bad(client: RegistryClient, why: string): StrataError {
  return new StrataError('E_REGISTRY', `the image ${client.ref.repository} from ${client.registry} is not one strata can run: ${why}`);
}

/** The message for a manifest the registry does not have: the repository is missing, or only the tag (naming some it has). */
async function notThere(client: RegistryClient, refOrDigest: string): Promise<StrataError> {
  const ref = client.ref;
  const tags = await client.send('GET', client.url('tags/list?n=20'), { headers: { accept: 'application/json' } });
  let have: string[] | undefined;
  if (tags.status === 200) {
    try {
      const t = (JSON.parse(tags.body.toString('utf8')) as { tags?: unknown }).tags;
      have = Array.isArray(t) ? t.filter((x): x is string => typeof x === 'string') : [];
    } catch {
      have = undefined;
    }
  }
  if (tags.status === 404 || (have !== undefined && have.length === 0)) {
    return new StrataError('E_REGISTRY', `the registry ${client.registry} has no repository ${ref.path} (asked for ${ref.repository}:${ref.digest ?? ref.tag})`, `check the name; \`strata push ${ref.repository}:TAG\` creates it`);
  }
  const what = refOrDigest.startsWith('sha256:') ? `no manifest ${refOrDigest}` : `no tag ${refOrDigest}`;
  return new StrataError('E_REGISTRY', `the repository ${ref.repository} has ${what}${have && have.length > 0 ? ` (it has: ${have.slice(0, 10).join(', ')}${have.length > 10 ? ', …' : ''})` : ''}`, 'check the tag, or push it first');
}

/** Fetches and checks the manifest at `refOrDigest`; follows an index to the manifest of `platform`. */
async function fetchManifest(client: RegistryClient, refOrDigest: string, platform: Platform, expected: string | undefined): Promise<{ bytes: Buffer; digest: string; manifest: Manifest }> {
  const a = await client.send('GET', client.url(`manifests/${refOrDigest}`), { headers: { accept: ACCEPT } });
  if (a.status === 404) throw await notThere(client, refOrDigest);
  if (a.status !== 200) throw client.unexpected(`the manifest of ${refOrDigest}`, a);
  const digest = sha256Digest(a.body);
  const said = a.headers['docker-content-digest'];
  if ((expected !== undefined && digest !== expected) || (said !== undefined && said.startsWith('sha256:') && said !== digest)) {
    throw new StrataError('E_HASH', `the manifest ${client.ref.repository}:${refOrDigest} from ${client.registry} hashes to ${digest}, not ${expected ?? said}`, 'the registry served other bytes than it vouches for; try again, or ask its operator');
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(a.body.toString('utf8')) as Manifest;
  } catch {
    throw bad(client, 'its manifest is not JSON');
  }
  const type = manifest.mediaType ?? a.headers['content-type'];
  if (type === MEDIA_TYPE_IMAGE_INDEX || type === DOCKER_MANIFEST_LIST || Array.isArray(manifest.manifests)) {
    const m = (manifest.manifests ?? []).find((d) => d.platform?.os === platform.os && d.platform?.architecture === platform.architecture && (platform.variant === undefined || d.platform?.variant === platform.variant));
    if (!m?.digest) throw bad(client, `its index has no manifest for ${platform.os}/${platform.architecture}`);
    return fetchManifest(client, m.digest, platform, m.digest);
  }
  return { bytes: a.body, digest, manifest };
}

function compressionOf(client: RegistryClient, mediaType: string | undefined): 'gzip' | 'none' {
  if (mediaType === MEDIA_TYPE_LAYER_TAR_GZIP || mediaType === DOCKER_LAYER_GZIP) return 'gzip';
  if (mediaType === MEDIA_TYPE_LAYER_TAR || mediaType === DOCKER_LAYER_TAR) return 'none';
  throw bad(client, `a layer has media type ${mediaType ?? '(none)'}; strata runs tar and tar+gzip layers`);
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * Pulls the image `client.ref` names into `store`: every blob verified as it streams. Returns what the `images`
 * cache records of it (the caller records it).
 */
export async function pullImage(client: RegistryClient, store: Store, o: { reporter: Reporter; platform: Platform; jobs?: number }): Promise<PulledImage> {
  const ref = client.ref;
  const { bytes, digest, manifest } = await fetchManifest(client, ref.digest ?? ref.tag, o.platform, ref.digest);
  const cfg = manifest.config;
  if (!cfg?.digest || !DIGEST.test(cfg.digest) || !Array.isArray(manifest.layers)) throw bad(client, 'its manifest has no config or no layers');
  const blob = (d: { digest?: string; size?: number }, label: string): Promise<string> => {
    if (!d.digest || !DIGEST.test(d.digest)) throw bad(client, `${label} has no sha256 digest`);
    return store.fetch({
      urls: [client.url(`blobs/${d.digest}`)],
      sha256: d.digest,
      ...(typeof d.size === 'number' ? { size: d.size } : {}),
      label: `${label} of ${ref.repository} (${d.digest.slice(0, 19)}…)`,
      headers: client.authHeaders(),
      vouchedBy: 'manifest',
    });
  };
  const configPath = await blob(cfg, 'the config');
  const { readFile } = await import('node:fs/promises');
  let config: { architecture?: string; os?: string; config?: { Env?: string[]; Labels?: Record<string, string> }; rootfs?: { diff_ids?: string[] } };
  try {
    config = JSON.parse(await readFile(configPath, 'utf8')) as typeof config;
  } catch {
    throw bad(client, 'its config is not JSON');
  }
  const diffIds = config.rootfs?.diff_ids ?? [];
  if (diffIds.length !== manifest.layers.length || !diffIds.every((d) => DIGEST.test(d))) throw bad(client, `its config lists ${diffIds.length} diff_ids for ${manifest.layers.length} layers`);
  const layers: PulledLayer[] = manifest.layers.map((l, i) => {
    if (!l.digest || !DIGEST.test(l.digest) || typeof l.size !== 'number') throw bad(client, `layer ${i + 1} has no sha256 digest or no size`);
    return { digest: l.digest, size: l.size, diffId: diffIds[i]!, compression: compressionOf(client, l.mediaType) };
  });
  const total = layers.reduce((n, l) => n + l.size, 0);
  const progress = o.reporter.progress(`pulling ${ref.repository}`, total, 'bytes');
  try {
    const jobs = Math.max(1, o.jobs ?? 4);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < layers.length) {
        const i = next++;
        const l = layers[i]!;
        const have = await store.has(l.digest, l.size);
        await blob(l, `layer ${i + 1}/${layers.length}`);
        progress.tick(have ? 0 : l.size);
      }
    };
    await Promise.all(Array.from({ length: jobs }, worker));
  } finally {
    progress.done();
  }
  await store.put(bytes, digest);
  const labels = config.config?.Labels ?? {};
  const closure = manifest.annotations?.['dev.strata.closure'] ?? labels['dev.strata.closure'];
  const title = labels['org.opencontainers.image.title'];
  return {
    reference: ref.digest ? `${ref.repository}@${ref.digest}` : `${ref.repository}:${ref.tag}`,
    manifestDigest: digest,
    configDigest: cfg.digest,
    layers,
    env: config.config?.Env ?? [],
    ...(closure ? { closure } : {}),
    gpuDriverHost: labels['dev.strata.gpu-driver'] === 'host',
    ...(title ? { title } : {}),
  };
}
