/**
 * Images from a registry, without a manifest or a lock: `pullToStore` pulls one into the store and records it in
 * the store's `images` cache (the record keyed by the manifest digest's hex, and a pointer keyed by the reference),
 * `imageFor` finds a recorded image whose blobs are all still in the store (pulling it when not, unless `noPull`),
 * and `ensureImageRootfs` unpacks it into the `rootfs` cache for the sandbox: gzip layers are decompressed as they
 * stream (the tar is not kept beside its gzip blob and the tree), and the rootfs unpacker checks every tar against
 * the diffId the config names as it reads it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { StrataError } from '../errors.ts';
import { parseReference, type Reference } from '../realiser/oci/reference.ts';
import { platformForDebianArch } from '../realiser/oci/spec.ts';
import { RegistryClient } from '../registry/client.ts';
import type { PulledImage } from '../registry/pull.ts';
import { rootfsKey } from '../run/rootfs.ts';
import type { SandboxEnvironment } from './ensureEnvironment.ts';
import type { Ctx } from './ctx.ts';
import { sha256Hex } from '../util/bytes.ts';

export interface PullOptions {
  insecure?: boolean;
  jobs?: number;
}

/** The pointer key of a reference: the sha256 of `repository:tag` (or `repository@digest`). */
function refKey(r: Reference): string {
  return sha256Hex(r.digest ? `${r.repository}@${r.digest}` : `${r.repository}:${r.tag}`);
}

function hostPlatform() {
  const arch = process.arch === 'arm64' ? 'arm64' : process.arch === 'arm' ? 'armhf' : process.arch === 'ppc64' ? 'ppc64el' : process.arch === 's390x' ? 's390x' : 'amd64';
  return platformForDebianArch(arch);
}

function recordProblem(v: unknown): string | undefined {
  const r = v as Partial<PulledImage> | null;
  if (typeof r !== 'object' || r === null) return 'not an object';
  if (typeof r.manifestDigest !== 'string' || typeof r.configDigest !== 'string' || !Array.isArray(r.layers) || !Array.isArray(r.env)) return 'fields missing';
  return undefined;
}

/** Pulls `ref` into the store (every blob verified while it streams) and records it. */
export async function pullToStore(ref: string, ctx: Ctx, o: PullOptions = {}): Promise<PulledImage> {
  const r = parseReference(ref);
  const client = new RegistryClient(r, 'pull', { ...(o.insecure !== undefined ? { insecure: o.insecure } : {}) });
  const { pullImage } = await import('../registry/pull.ts');
  const img = await pullImage(client, ctx.store, { reporter: ctx.reporter, platform: hostPlatform(), ...(o.jobs !== undefined ? { jobs: o.jobs } : {}) });
  const images = ctx.store.cache('images');
  await images.writeJson(img.manifestDigest.replace(/^sha256:/, ''), img);
  await images.writeJson(`ref-${refKey(r)}`, { reference: img.reference, manifestDigest: img.manifestDigest });
  return img;
}

/** The recorded image of `ref` when every blob of it is still in the store. */
async function recorded(r: Reference, ctx: Ctx): Promise<PulledImage | undefined> {
  const images = ctx.store.cache('images');
  const digest = r.digest ?? (await images.readJson<{ manifestDigest?: string }>(`ref-${refKey(r)}`))?.manifestDigest;
  if (typeof digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(digest)) return undefined;
  const read = await images.readEntry<PulledImage>(digest.slice(7), recordProblem);
  if (read.state !== 'ok') return undefined;
  for (const l of read.value.layers) if (!(await ctx.store.has(l.digest, l.size)) && !(await ctx.store.has(l.diffId))) return undefined;
  return read.value;
}

/** The image `ref` names: as pulled before when its blobs are in the store, else pulled now (saying so). */
export async function imageFor(ref: string, ctx: Ctx, o: PullOptions & { noPull?: boolean } = {}): Promise<PulledImage> {
  const known = await recorded(parseReference(ref), ctx);
  if (known) return known;
  if (o.noPull) throw new StrataError('E_RUN', `the image ${ref} is not in the store and --frozen forbids pulling it`, `run \`strata pull ${ref}\` first, or drop --frozen`);
  ctx.reporter.info(`pulling ${ref}`);
  return pullToStore(ref, ctx, o);
}

/**
 * A pulled layer as the rootfs unpacker reads it: its uncompressed tar in the store when there is one, else its gzip
 * blob decompressed as it streams (the unpacker hashes the tar against the diffId as it reads it).
 */
export async function pulledLayer(l: PulledImage['layers'][number], ctx: Pick<Ctx, 'store'>): Promise<{ path: string; size: number; diffId: string; open?: () => Readable }> {
  const have = await ctx.store.check(l.diffId);
  if (have.state === 'ok') return { path: have.path, size: (await stat(have.path)).size, diffId: l.diffId };
  const c = await ctx.store.check(l.digest, l.size);
  if (c.state !== 'ok') throw new StrataError('E_RUN', `the layer ${l.digest} of the image is no longer whole in the store`, 'pull the image again');
  if (l.compression === 'none') return { path: c.path, size: l.size, diffId: l.diffId };
  return {
    path: `layer ${l.digest}`,
    size: l.size,
    diffId: l.diffId,
    open: () => {
      const gun = createGunzip();
      const src = createReadStream(c.path, { highWaterMark: 1 << 20 });
      src.on('error', (e) => gun.destroy(e));
      gun.on('close', () => src.destroy());
      return src.pipe(gun);
    },
  };
}

/** Checks that the gzip blob at `gzPath` decompresses to the tar `diffId` (E_HASH otherwise), keeping nothing. */
export async function checkDecompresses(gzPath: string, digest: string, diffId: string): Promise<void> {
  await gunzipChecked(gzPath, digest, diffId, new Writable({ write: (_c, _e, cb) => cb() }));
}

async function gunzipChecked(gzPath: string, digest: string, diffId: string, sink: Writable): Promise<void> {
  const hash = createHash('sha256');
  const tap = new Transform({
    transform(chunk: Buffer, _e, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(gzPath), createGunzip(), tap, sink);
  } catch (e) {
    throw new StrataError('E_HASH', `the layer ${digest} does not decompress: ${(e as Error).message}`, 'the image is damaged; pull it again or push it again');
  }
  const got = `sha256:${hash.digest('hex')}`;
  if (got !== diffId) throw new StrataError('E_HASH', `the layer ${digest} decompresses to ${got}, but the image config names ${diffId}`, 'the image is damaged or was built wrong; push it again');
}

/** The unpacked root filesystem of a pulled image, unpacking it first when needed. */
export async function ensureImageRootfs(img: PulledImage, ctx: Ctx): Promise<SandboxEnvironment> {
  const rootfs = ctx.store.cache('rootfs');
  const pointer = { manifestDigest: img.manifestDigest, configDigest: img.configDigest, env: img.env };
  const env = async (): Promise<SandboxEnvironment> => ({ pointer, rootfs: rootfs.path(rootfsKey(img.manifestDigest)), stage: await rootfs.ensureDir('.stage'), skeletons: ctx.store.cache('skeletons') });
  if (existsSync(rootfs.path(rootfsKey(img.manifestDigest)))) return env();
  ctx.reporter.info('unpacking the image for the sandbox');
  const layers = [];
  for (const l of img.layers) layers.push(await pulledLayer(l, ctx));
  const { unpackRootfs } = await import('../run/rootfs.ts');
  await unpackRootfs(rootfs, img.manifestDigest, layers, ctx.reporter);
  return env();
}
