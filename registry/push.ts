/**
 * Pushing an image to a registry as the OCI distribution spec says: `HEAD` each blob (layers, then the config) and
 * upload only the missing ones (a `POST` to open an upload, then one `PUT` with the digest for a blob up to
 * `chunkBytes`, or `PATCH`es of `chunkBytes` each and a closing `PUT` above it, resumed where the registry says it
 * stands when one fails), then `PUT` the manifest under each
 * tag with its OCI media type. The registry's `Docker-Content-Digest` must be the manifest's digest.
 */
import { StrataError } from '../errors.ts';
import { MEDIA_TYPE_IMAGE_MANIFEST } from '../realiser/oci/spec.ts';
import type { BuiltImage, LayerBlob } from '../realiser/oci/image.ts';
import { formatBytes } from '../report/reporter.ts';
import { backoffDelay, isTransientStatus, sleep, type RequestBody } from '../store/http.ts';
import { RegistryUnreachable, type Answer, type RegistryClient } from './client.ts';

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

/** Opens an upload session (`POST .../blobs/uploads/`); its Location is where the data goes. */
async function open(client: RegistryClient, what: string): Promise<URL> {
  const opened = await client.send('POST', client.url('blobs/uploads/'), { headers: { 'content-length': '0' } });
  if (opened.status !== 202) throw client.unexpected(`the start of an upload of ${what}`, opened);
  return location(client, opened, what);
}

/**
 * Where an interrupted upload stands, as the registry says (`GET` of the session's Location: 204 with
 * `Range: 0-<last byte>`), or undefined when it cannot say (the session is gone, or it disowns the offset it gave:
 * the reference registry does so once a cut request left part of a chunk in the session).
 */
async function uploadStatus(client: RegistryClient, at: URL, known: number, size: number): Promise<{ at: URL; offset: number } | undefined> {
  const a = await client.send('GET', at.toString(), { discard: true });
  if (a.status !== 204) return undefined;
  const m = /^0-(\d+)$/.exec(a.headers.range ?? '');
  // `0-0` is both "nothing" and "one byte" in the reference registry's answer.
  const offset = m ? (m[1] === '0' && known === 0 ? 0 : Number(m[1]) + 1) : 0;
  if (offset > size) return undefined;
  return { at: a.headers.location ? new URL(a.headers.location, client.url('')) : at, offset };
}

/**
 * A blob above `chunkBytes`, in `PATCH`es of `chunkBytes` each and a closing `PUT`. A PATCH that fails on the way
 * (a cut connection, a 5xx) is not sent again blindly: the registry is asked where the upload stands and the upload
 * resumes from there; when it cannot say, the upload starts again in a new session. At most `retries` failures in
 * a row, with backoff. Returns the chunks sent.
 */
async function uploadChunked(client: RegistryClient, b: Blob & { body: { file: string } }, chunkBytes: number, say: (line: string) => void): Promise<number> {
  let at = await open(client, b.what);
  let offset = 0;
  let chunks = 0;
  for (let failures = 0; offset < b.size; ) {
    const size = Math.min(chunkBytes, b.size - offset);
    const headers = { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + size - 1}` };
    let why: string;
    try {
      const a = await client.send('PATCH', at.toString(), { headers, body: { file: b.body.file, start: offset, size }, once: true });
      if (a.status === 202) {
        at = location(client, a, b.what);
        offset += size;
        chunks++;
        failures = 0;
        continue;
      }
      if (!isTransientStatus(a.status)) throw client.unexpected(`a chunk of ${b.what}`, a);
      why = `HTTP ${a.status}`;
    } catch (e) {
      if (!(e instanceof RegistryUnreachable)) throw e;
      // The cause alone: the upload's URL carries the registry's session state, long and of no use to a reader.
      why = e.failure.replace(/^\S+: /, '');
    }
    if (++failures > client.policy.retries) throw new StrataError('E_REGISTRY', `cannot reach the registry ${client.registry}: the upload of ${b.what} failed ${failures} times in a row at byte ${offset} (${why})`, 'check that the registry is up and has room, then push again: blobs already there are not sent twice');
    await sleep(backoffDelay(client.policy, failures));
    const status = await uploadStatus(client, at, offset, b.size);
    if (status) {
      ({ at, offset } = status);
      say(`  ${b.digest.slice(0, 19)}… ${b.what}: a chunk failed (${why}); resuming at byte ${offset} of ${b.size}`);
    } else {
      at = await open(client, b.what);
      offset = 0;
      say(`  ${b.digest.slice(0, 19)}… ${b.what}: a chunk failed (${why}) and the registry lost the upload; starting it again`);
    }
  }
  at.searchParams.set('digest', b.digest);
  const a = await client.send('PUT', at.toString(), { headers: { 'content-type': 'application/octet-stream' } });
  if (a.status !== 201 && !(await landed(client, b))) throw client.unexpected(`the end of the upload of ${b.what}`, a);
  return chunks;
}

/**
 * Whether the registry has the blob after all: a PUT whose answer was lost and that was sent again finds its session
 * closed (404), although the first one completed the upload.
 */
async function landed(client: RegistryClient, b: Blob): Promise<boolean> {
  const head = await client.send('HEAD', client.url(`blobs/${b.digest}`), { discard: true });
  return head.status === 200;
}

/** Uploads one blob; returns the number of PATCH chunks it went up in (0: one monolithic PUT). */
async function upload(client: RegistryClient, b: Blob, chunkBytes: number, say: (line: string) => void): Promise<number> {
  if (b.size > chunkBytes && !Buffer.isBuffer(b.body)) return uploadChunked(client, { ...b, body: b.body }, chunkBytes, say);
  const at = await open(client, b.what);
  at.searchParams.set('digest', b.digest);
  const a = await client.send('PUT', at.toString(), { headers: { 'content-type': 'application/octet-stream' }, body: b.body });
  if (a.status !== 201 && !(await landed(client, b))) throw client.unexpected(`the upload of ${b.what}`, a);
  return 0;
}

/** A layer's file: what is pushed are the store's gzip blobs, which uploads read in ranges. */
function storedLayer(l: LayerBlob): string {
  if (l.path === undefined) throw new Error(`pushImage: layer ${l.digest} is not a file in the store (push the gzip-compressed image)`);
  return l.path;
}

/** Pushes `img` (its blobs, then its manifest under each of `tags`). */
export async function pushImage(client: RegistryClient, img: BuiltImage, tags: string[], o: { chunkBytes?: number; say: (line: string) => void }): Promise<PushResult> {
  const chunkBytes = o.chunkBytes ?? CHUNK_BYTES;
  const blobs: Blob[] = [
    ...img.layers.map((l, i) => ({ digest: l.digest, size: l.size, body: { file: storedLayer(l), size: l.size }, what: `layer ${i + 1}/${img.layers.length}` })),
    { digest: img.configDigest, size: img.config.length, body: img.config, what: 'the config' },
  ];
  const result: PushResult = { manifestDigest: img.manifestDigest, pushed: 0, present: 0, pushedBytes: 0 };
  for (const b of blobs) {
    const chunks = await pushBlob(client, b, { chunkBytes, say: o.say });
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

/**
 * Uploads one blob unless the registry has it (a HEAD first); returns undefined when it was there, else the PATCH
 * chunks it took (0: one PUT). `say` hears of chunks that failed and how the upload went on.
 */
export async function pushBlob(client: RegistryClient, b: Blob, o: { chunkBytes?: number; say?: (line: string) => void } = {}): Promise<number | undefined> {
  const head = await client.send('HEAD', client.url(`blobs/${b.digest}`), { discard: true });
  if (head.status === 200) return undefined;
  if (head.status !== 404) throw client.unexpected(`a HEAD of ${b.what}`, head);
  return upload(client, b, o.chunkBytes ?? CHUNK_BYTES, o.say ?? (() => {}));
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
