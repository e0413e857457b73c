/**
 * Pushing an image to a registry as the OCI distribution spec says: `HEAD` each blob (layers, then the config) and
 * upload only the missing ones (a `POST` to open an upload, then one `PUT` with the digest for a blob up to
 * `chunkBytes`, or `PATCH`es of `chunkBytes` each and a closing `PUT` above it), then `PUT` the manifest under each
 * tag with its OCI media type. The registry's `Docker-Content-Digest` must be the manifest's digest.
 */
import { StrataError } from '../errors.ts';
import { MEDIA_TYPE_IMAGE_MANIFEST } from '../realiser/oci/spec.ts';
import type { BuiltImage } from '../realiser/oci/image.ts';
import { formatBytes } from '../report/reporter.ts';
import type { RequestBody } from '../store/http.ts';
import type { Answer, RegistryClient } from './client.ts';

/** Blobs above this go up in PATCH chunks of this size (STRATA_REGISTRY_CHUNK_BYTES overrides). */
export const CHUNK_BYTES = 64 * 1024 * 1024;

export interface PushResult {
  manifestDigest: string;
  pushed: number;
  present: number;
  pushedBytes: number;
}

export interface Blob {
  digest: string;
  size: number;
  body: RequestBody;
  what: string;
}

function location(client: RegistryClient, a: Answer, what: string): URL {
  const loc = a.headers.location;
  if (!loc) throw new StrataError('E_REGISTRY', `the registry ${client.registry} opened an upload of ${what} without a Location`);
  return new URL(loc, client.url(''));
}

/** Uploads one blob; returns the number of PATCH chunks it went up in (0: one monolithic PUT). */
async function upload(client: RegistryClient, b: Blob, chunkBytes: number): Promise<number> {
  const opened = await client.send('POST', client.url('blobs/uploads/'), { headers: { 'content-length': '0' } });
  if (opened.status !== 202) throw client.unexpected(`the start of an upload of ${b.what}`, opened);
  let at = location(client, opened, b.what);
  if (b.size > chunkBytes && !Buffer.isBuffer(b.body)) {
    const file = b.body.file;
    let chunks = 0;
    for (let start = 0; start < b.size; start += chunkBytes, chunks++) {
      const size = Math.min(chunkBytes, b.size - start);
      const a = await client.send('PATCH', at.toString(), { headers: { 'content-type': 'application/octet-stream', 'content-range': `${start}-${start + size - 1}` }, body: { file, start, size } });
      if (a.status !== 202) throw client.unexpected(`a chunk of ${b.what}`, a);
      at = location(client, a, b.what);
    }
    at.searchParams.set('digest', b.digest);
    const a = await client.send('PUT', at.toString(), { headers: { 'content-type': 'application/octet-stream' } });
    if (a.status !== 201) throw client.unexpected(`the end of the upload of ${b.what}`, a);
    return chunks;
  }
  at.searchParams.set('digest', b.digest);
  const a = await client.send('PUT', at.toString(), { headers: { 'content-type': 'application/octet-stream' }, body: b.body });
  if (a.status !== 201) throw client.unexpected(`the upload of ${b.what}`, a);
  return 0;
}

/** Pushes `img` (its blobs, then its manifest under each of `tags`). */
export async function pushImage(client: RegistryClient, img: BuiltImage, tags: string[], o: { chunkBytes?: number; say: (line: string) => void }): Promise<PushResult> {
  const chunkBytes = o.chunkBytes ?? CHUNK_BYTES;
  const blobs: Blob[] = [
    ...img.layers.map((l, i) => ({ digest: l.digest, size: l.size, body: { file: l.path, size: l.size }, what: `layer ${i + 1}/${img.layers.length}` })),
    { digest: img.configDigest, size: img.config.length, body: img.config, what: 'the config' },
  ];
  const result: PushResult = { manifestDigest: img.manifestDigest, pushed: 0, present: 0, pushedBytes: 0 };
  for (const b of blobs) {
    const chunks = await pushBlob(client, b, chunkBytes);
    const short = b.digest.slice(0, 19);
    if (chunks === undefined) {
      result.present++;
      o.say(`  ${short}… ${b.what}: already there`);
      continue;
    }
    result.pushed++;
    result.pushedBytes += b.size;
    o.say(`  ${short}… ${b.what}: pushed ${formatBytes(b.size)}${chunks > 0 ? ` in ${chunks} chunks` : ''}`);
  }
  for (const tag of tags) await putManifest(client, tag, img.manifest, img.manifestDigest);
  return result;
}

/** Uploads one blob unless the registry has it (a HEAD first); returns undefined when it was there, else the PATCH chunks it took (0: one PUT). */
export async function pushBlob(client: RegistryClient, b: Blob, chunkBytes: number = CHUNK_BYTES): Promise<number | undefined> {
  const head = await client.send('HEAD', client.url(`blobs/${b.digest}`), { discard: true });
  if (head.status === 200) return undefined;
  if (head.status !== 404) throw client.unexpected(`a HEAD of ${b.what}`, head);
  return upload(client, b, chunkBytes);
}

/** PUTs an OCI image manifest under `tag`; the registry must store it under `digest`. */
export async function putManifest(client: RegistryClient, tag: string, manifest: Buffer, digest: string): Promise<void> {
  const a = await client.send('PUT', client.url(`manifests/${tag}`), { headers: { 'content-type': MEDIA_TYPE_IMAGE_MANIFEST }, body: manifest });
  if (a.status !== 201) throw client.unexpected(`the manifest for tag ${tag}`, a);
  const said = a.headers['docker-content-digest'];
  if (said !== undefined && said !== digest) {
    throw new StrataError('E_REGISTRY', `the registry ${client.registry} stored the manifest for tag ${tag} as ${said}, not ${digest}`, 'the registry rewrote the manifest; push to another registry');
  }
}
