/**
 * The lock attached to a pushed image, as the OCI distribution spec 1.1 attaches artifacts: an image manifest with
 * `artifactType` `application/vnd.dev.strata.lock.v1`, the empty config, one blob (the strata.lock bytes) and a
 * `subject` naming the image's manifest. A registry with the referrers API says so with `OCI-Subject` when the
 * manifest is put; one without it (docker-registry 2.8) gets the spec's fallback: an image index under the tag
 * `sha256-<hex of the image digest>` listing the referrers, updated by reading it first and adding this one.
 * `lockOf` finds it again the same two ways (`GET /v2/<name>/referrers/<digest>`, else the tag).
 */
import { readFile } from 'node:fs/promises';
import { StrataError } from '../errors.ts';
import { sha256Digest } from '../util/bytes.ts';
import { MEDIA_TYPE_EMPTY_JSON, MEDIA_TYPE_IMAGE_INDEX, MEDIA_TYPE_IMAGE_MANIFEST } from '../realiser/oci/spec.ts';
import type { Store } from '../store/store.ts';
import type { RegistryClient } from './client.ts';
import { pushBlob } from './push.ts';

export const LOCK_ARTIFACT_TYPE = 'application/vnd.dev.strata.lock.v1';
export const LOCK_MEDIA_TYPE = 'application/vnd.dev.strata.lock.v1+toml';
const EMPTY = Buffer.from('{}');

const fallbackTag = (digest: string) => digest.replace(':', '-');

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** Attaches `lockText` to the image `subject` (its manifest's digest and size); returns the artifact's digest. */
export async function attachLock(client: RegistryClient, subject: { digest: string; size: number }, lockText: string, annotations: Record<string, string>): Promise<string> {
  const lock = Buffer.from(lockText);
  await pushBlob(client, { digest: sha256Digest(EMPTY), size: EMPTY.length, body: EMPTY, what: 'the empty config' });
  await pushBlob(client, { digest: sha256Digest(lock), size: lock.length, body: lock, what: 'strata.lock' });
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_IMAGE_MANIFEST,
      artifactType: LOCK_ARTIFACT_TYPE,
      config: { mediaType: MEDIA_TYPE_EMPTY_JSON, digest: sha256Digest(EMPTY), size: EMPTY.length },
      layers: [{ mediaType: LOCK_MEDIA_TYPE, digest: sha256Digest(lock), size: lock.length, annotations: { 'org.opencontainers.image.title': 'strata.lock' } }],
      subject: { mediaType: MEDIA_TYPE_IMAGE_MANIFEST, digest: subject.digest, size: subject.size },
      annotations,
    }),
  );
  const digest = sha256Digest(manifest);
  const put = await client.send('PUT', client.url(`manifests/${digest}`), { headers: { 'content-type': MEDIA_TYPE_IMAGE_MANIFEST }, body: manifest });
  if (put.status !== 201) throw client.unexpected('the lock attached to the image', put);
  if (put.headers['oci-subject'] === subject.digest) return digest;
  // No referrers API: the fallback tag's index, with this artifact added (once).
  const tag = fallbackTag(subject.digest);
  const got = await client.send('GET', client.url(`manifests/${tag}`), { headers: { accept: MEDIA_TYPE_IMAGE_INDEX } });
  let manifests: Descriptor[] = [];
  if (got.status === 200) {
    try {
      const idx = JSON.parse(got.body.toString('utf8')) as { manifests?: Descriptor[] };
      manifests = Array.isArray(idx.manifests) ? idx.manifests : [];
    } catch {
      manifests = [];
    }
  } else if (got.status !== 404) throw client.unexpected(`the referrers tag ${tag}`, got);
  if (manifests.some((m) => m.digest === digest)) return digest;
  manifests.push({ mediaType: MEDIA_TYPE_IMAGE_MANIFEST, digest, size: manifest.length, artifactType: LOCK_ARTIFACT_TYPE, annotations });
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPE_IMAGE_INDEX, manifests }));
  const a = await client.send('PUT', client.url(`manifests/${tag}`), { headers: { 'content-type': MEDIA_TYPE_IMAGE_INDEX }, body: index });
  if (a.status !== 201) throw client.unexpected(`the referrers tag ${tag}`, a);
  return digest;
}

/** The referrers of `subject` that are strata locks: from the referrers API when the registry has it, else the fallback tag. */
async function lockReferrers(client: RegistryClient, subject: string): Promise<Descriptor[]> {
  const parse = (b: Buffer): Descriptor[] => {
    try {
      const idx = JSON.parse(b.toString('utf8')) as { manifests?: Descriptor[] };
      return (Array.isArray(idx.manifests) ? idx.manifests : []).filter((m) => m.artifactType === LOCK_ARTIFACT_TYPE && typeof m.digest === 'string' && /^sha256:[0-9a-f]{64}$/.test(m.digest));
    } catch {
      return [];
    }
  };
  const api = await client.send('GET', client.url(`referrers/${subject}?artifactType=${encodeURIComponent(LOCK_ARTIFACT_TYPE)}`), { headers: { accept: MEDIA_TYPE_IMAGE_INDEX } });
  if (api.status === 200 && (api.headers['content-type'] ?? '').startsWith(MEDIA_TYPE_IMAGE_INDEX)) return parse(api.body);
  const tag = await client.send('GET', client.url(`manifests/${fallbackTag(subject)}`), { headers: { accept: MEDIA_TYPE_IMAGE_INDEX } });
  if (tag.status === 404) return [];
  if (tag.status !== 200) throw client.unexpected(`the referrers tag ${fallbackTag(subject)}`, tag);
  return parse(tag.body);
}

/**
 * The strata.lock attached to the image `subject`, verified into the store (the artifact's manifest against its
 * digest and its `subject`, the lock's bytes against the manifest); undefined when none is attached.
 */
export async function lockOf(client: RegistryClient, store: Store, subject: string): Promise<{ artifact: string; text: string; path: string } | undefined> {
  for (const d of await lockReferrers(client, subject)) {
    const a = await client.send('GET', client.url(`manifests/${d.digest}`), { headers: { accept: MEDIA_TYPE_IMAGE_MANIFEST } });
    if (a.status !== 200) continue;
    if (sha256Digest(a.body) !== d.digest) throw new StrataError('E_HASH', `the lock attached to ${client.ref.repository}@${subject} hashes to ${sha256Digest(a.body)}, not ${d.digest}`);
    const m = JSON.parse(a.body.toString('utf8')) as { subject?: { digest?: string }; layers?: { mediaType?: string; digest?: string; size?: number }[] };
    const blob = m.layers?.find((l) => l.mediaType === LOCK_MEDIA_TYPE);
    if (m.subject?.digest !== subject || !blob?.digest || !/^sha256:[0-9a-f]{64}$/.test(blob.digest)) continue;
    const path = await store.fetch({ urls: [client.url(`blobs/${blob.digest}`)], sha256: blob.digest, ...(typeof blob.size === 'number' ? { size: blob.size } : {}), label: `the lock attached to ${client.ref.repository}@${subject.slice(0, 19)}…`, headers: client.authHeaders(), vouchedBy: 'manifest' });
    return { artifact: d.digest, text: await readFile(path, 'utf8'), path };
  }
  return undefined;
}
