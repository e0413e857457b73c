/**
 * Turns layer blobs into an OCI image and writes it out: as an OCI image layout directory, or as one tar
 * that is both an OCI image layout and a docker-archive (what `docker save` of Docker >= 25 writes), so
 * that `docker load` of Docker 20.10+ and OCI tools (skopeo, umoci, podman) all read it.
 *
 * Every JSON blob is serialized by `canonicalJson` and every tar entry has fixed metadata, so the same
 * layers and config always give the same digests and byte-identical archives.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, constants as fsConstants } from 'node:fs';
import { copyFile, link, mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import type { Pack } from 'tar-stream';
import { StrataError } from '../../errors.ts';
import {
  ANNOTATION_REF_NAME,
  IMAGE_LAYOUT_FILE,
  IMAGE_LAYOUT_VERSION,
  MEDIA_TYPE_IMAGE_CONFIG,
  MEDIA_TYPE_IMAGE_INDEX,
  MEDIA_TYPE_IMAGE_MANIFEST,
  canonicalJson,
} from './spec.ts';
import type { Descriptor, ImageConfig, ImageIndex, ImageLayout, ImageManifest, Platform } from './spec.ts';

/** One layer as the realiser produced it. */
export interface LayerBlob {
  /** The blob file on disk. */
  path: string;
  /** `sha256:<hex>` of the file as stored (compressed, when it is). */
  digest: string;
  size: number;
  /** `sha256:<hex>` of the uncompressed tar. */
  diffId: string;
  mediaType: string;
}

export interface ImageInput {
  /** Base layer first. */
  layers: LayerBlob[];
  /** The image configuration; `rootfs` is filled from `layers`. */
  config: Omit<ImageConfig, 'rootfs'>;
  /** Annotations of the image manifest. */
  annotations?: Record<string, string>;
  /** The reference name the image gets in an image layout's `index.json`, e.g. `gp-lidar:abc123`. */
  refName?: string;
}

export interface BuiltImage {
  manifestDigest: string;
  manifestSize: number;
  configDigest: string;
  /** The manifest blob's bytes. */
  manifest: Buffer;
  /** The config blob's bytes. */
  config: Buffer;
  layers: LayerBlob[];
  /** From the config; carried on the manifest's descriptor in an index. */
  platform: Platform;
  refName?: string;
}

const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;

function sha256Digest(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function hexOf(digest: string): string {
  return digest.slice('sha256:'.length);
}

/**
 * Computes the config and manifest blobs and their digests. Pure. A history that does not have exactly one
 * non-empty entry per layer is a bug (Docker refuses such images), as is a malformed digest.
 */
export function buildImage(input: ImageInput): BuiltImage {
  for (const layer of input.layers) {
    if (!SHA256_DIGEST.test(layer.digest) || !SHA256_DIGEST.test(layer.diffId)) {
      throw new Error(`buildImage: layer ${layer.path} has a malformed digest or diffId`);
    }
    if (!Number.isSafeInteger(layer.size) || layer.size < 0) {
      throw new Error(`buildImage: layer ${layer.path} has a bad size ${layer.size}`);
    }
  }
  const history = input.config.history;
  if (history !== undefined) {
    const nonEmpty = history.filter((h) => h.empty_layer !== true).length;
    if (nonEmpty !== input.layers.length) {
      throw new Error(`buildImage: ${nonEmpty} non-empty history entries for ${input.layers.length} layers`);
    }
  }
  const configObject: ImageConfig = {
    ...input.config,
    rootfs: { type: 'layers', diff_ids: input.layers.map((l) => l.diffId) },
  };
  const config = canonicalJson(configObject);
  const configDigest = sha256Digest(config);
  const manifestObject: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_IMAGE_MANIFEST,
    config: { mediaType: MEDIA_TYPE_IMAGE_CONFIG, digest: configDigest, size: config.length },
    layers: input.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  if (input.annotations !== undefined && Object.keys(input.annotations).length > 0) {
    manifestObject.annotations = { ...input.annotations };
  }
  const manifest = canonicalJson(manifestObject);
  const platform: Platform = { architecture: input.config.architecture, os: input.config.os };
  if (input.config.variant !== undefined) platform.variant = input.config.variant;
  const built: BuiltImage = {
    manifestDigest: sha256Digest(manifest),
    manifestSize: manifest.length,
    configDigest,
    manifest,
    config,
    layers: [...input.layers],
    platform,
  };
  if (input.refName !== undefined) built.refName = input.refName;
  return built;
}

/** The descriptor of an image's manifest as it appears in an index, with a ref name when one is given. */
export function manifestDescriptor(img: BuiltImage, refName: string | undefined = img.refName): Descriptor {
  const d: Descriptor = {
    mediaType: MEDIA_TYPE_IMAGE_MANIFEST,
    digest: img.manifestDigest,
    size: img.manifestSize,
    platform: img.platform,
  };
  if (refName !== undefined) d.annotations = { [ANNOTATION_REF_NAME]: refName };
  return d;
}

function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

async function statOrNull(path: string): Promise<{ size: number } | null> {
  try {
    return await stat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

/** Writes `bytes` to `path` through a temp file and a rename, so readers never see a partial file. */
async function writeAtomically(path: string, bytes: Buffer): Promise<void> {
  const tmp = tempName(path);
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

/** Puts a layer file at `path`: a hard link when on the same filesystem, else a copy (a reflink where possible). */
async function placeLayer(layer: LayerBlob, path: string): Promise<void> {
  const st = await statOrNull(layer.path);
  if (st === null) throw new Error(`layer blob ${layer.path} is missing`);
  if (st.size !== layer.size) {
    throw new Error(`layer blob ${layer.path} is ${st.size} bytes, its descriptor says ${layer.size}`);
  }
  const tmp = tempName(path);
  try {
    try {
      await link(layer.path, tmp);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK' && code !== 'ENOTSUP') throw e;
      await copyFile(layer.path, tmp, fsConstants.COPYFILE_FICLONE);
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}

async function readIndex(path: string): Promise<ImageIndex | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new StrataError('E_USAGE', `${path} is not valid JSON`, 'remove the image layout directory or choose another');
  }
  const index = parsed as Partial<ImageIndex>;
  if (typeof parsed !== 'object' || parsed === null || !Array.isArray(index.manifests)) {
    throw new StrataError('E_USAGE', `${path} is not an OCI image index`, 'remove the image layout directory or choose another');
  }
  return parsed as ImageIndex;
}

/** Prepares `dir` as an image layout, or checks that it already is one. */
async function ensureLayout(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const layoutPath = join(dir, IMAGE_LAYOUT_FILE);
  let existing: string | null = null;
  try {
    existing = await readFile(layoutPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (existing === null) {
    const entries = (await readdir(dir)).filter((n) => !n.startsWith('.'));
    if (entries.length > 0) {
      throw new StrataError(
        'E_USAGE',
        `${dir} is not empty and is not an OCI image layout`,
        'write the image to a new or empty directory',
      );
    }
  } else {
    let version: unknown;
    try {
      version = (JSON.parse(existing) as Partial<ImageLayout>).imageLayoutVersion;
    } catch {
      version = undefined;
    }
    if (version !== IMAGE_LAYOUT_VERSION) {
      throw new StrataError('E_USAGE', `${layoutPath} does not declare image layout version ${IMAGE_LAYOUT_VERSION}`);
    }
  }
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  if (existing === null) {
    const layout: ImageLayout = { imageLayoutVersion: IMAGE_LAYOUT_VERSION };
    await writeAtomically(layoutPath, canonicalJson(layout));
  }
}

/**
 * Writes `img` into the OCI image layout at `dir` (created when missing). Blobs go first, each through a
 * temp file and a rename, and blobs already present with the right size are kept; `index.json` is
 * replaced last, so a reader sees either the old index or the new one, both complete. In an existing
 * layout, an entry with the same ref name (or, without one, the same manifest digest and no ref name) is
 * replaced and every other entry is kept; blobs only the replaced entry used are left in place (an OCI
 * garbage collection, e.g. `umoci gc`, removes them). Two processes writing the same layout at the same
 * time can lose one's index update.
 */
export async function writeOciLayout(dir: string, img: BuiltImage): Promise<void> {
  await ensureLayout(dir);
  const blobDir = join(dir, 'blobs', 'sha256');
  for (const layer of img.layers) {
    const path = join(blobDir, hexOf(layer.digest));
    const st = await statOrNull(path);
    if (st !== null && st.size === layer.size) continue;
    await placeLayer(layer, path);
  }
  for (const [digest, bytes] of [
    [img.configDigest, img.config],
    [img.manifestDigest, img.manifest],
  ] as const) {
    const path = join(blobDir, hexOf(digest));
    const st = await statOrNull(path);
    if (st !== null && st.size === bytes.length) continue;
    await writeAtomically(path, bytes);
  }
  const indexPath = join(dir, 'index.json');
  const previous = await readIndex(indexPath);
  const refName = img.refName;
  const kept = (previous?.manifests ?? []).filter((d) => {
    const ref = d.annotations?.[ANNOTATION_REF_NAME];
    return refName !== undefined ? ref !== refName : !(ref === undefined && d.digest === img.manifestDigest);
  });
  const index: ImageIndex = {
    ...previous,
    schemaVersion: 2,
    mediaType: MEDIA_TYPE_IMAGE_INDEX,
    manifests: [...kept, manifestDescriptor(img)],
  };
  await writeAtomically(indexPath, canonicalJson(index));
}

/** The docker-archive `manifest.json` that `docker load` reads. */
export interface DockerArchiveManifestEntry {
  Config: string;
  RepoTags: string[];
  Layers: string[];
}

/** Fixed metadata for every archive entry, so equal images give byte-identical archives. */
const ENTRY_MTIME = new Date(0);

function fileHeader(name: string, size: number) {
  return { name, size, mode: 0o644, mtime: ENTRY_MTIME, uid: 0, gid: 0, uname: '', gname: '', type: 'file' as const };
}

function dirHeader(name: string) {
  return { name, mode: 0o755, mtime: ENTRY_MTIME, uid: 0, gid: 0, uname: '', gname: '', type: 'directory' as const };
}

function addBuffer(pack: Pack, name: string, bytes: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry(fileHeader(name, bytes.length), bytes, (err) => (err ? reject(err) : resolve()));
  });
}

function addDir(pack: Pack, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry(dirHeader(name), (err) => (err ? reject(err) : resolve()));
  });
}

function addFile(pack: Pack, name: string, path: string, size: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const entry = pack.entry(fileHeader(name, size), (err) => (err ? reject(err) : resolve()));
    const source = createReadStream(path, { highWaterMark: 1 << 20 });
    source.on('error', (err) => {
      entry.destroy(err);
      reject(err);
    });
    entry.on('close', () => source.destroy());
    source.pipe(entry);
  });
}

/**
 * The image as one tar stream: `blobs/sha256/*` (sorted by digest), `index.json` (one manifest, ref name
 * `repoTag`), `manifest.json` (docker-archive) and `oci-layout`, in that (sorted) order, with fixed entry
 * metadata. Layer files are streamed, never held in memory; their sizes are checked first. Destroying the
 * returned stream stops the reading.
 */
export function dockerArchiveStream(img: BuiltImage, repoTag: string): Readable {
  const pack = tarPack();
  const write = async (): Promise<void> => {
    for (const layer of img.layers) {
      const st = await statOrNull(layer.path);
      if (st === null) throw new Error(`layer blob ${layer.path} is missing`);
      if (st.size !== layer.size) {
        throw new Error(`layer blob ${layer.path} is ${st.size} bytes, its descriptor says ${layer.size}`);
      }
    }
    const blobs = new Map<string, { bytes: Buffer } | { path: string; size: number }>();
    for (const layer of img.layers) blobs.set(hexOf(layer.digest), { path: layer.path, size: layer.size });
    blobs.set(hexOf(img.configDigest), { bytes: img.config });
    blobs.set(hexOf(img.manifestDigest), { bytes: img.manifest });
    const dockerManifest: DockerArchiveManifestEntry[] = [
      {
        Config: `blobs/sha256/${hexOf(img.configDigest)}`,
        RepoTags: [repoTag],
        Layers: img.layers.map((l) => `blobs/sha256/${hexOf(l.digest)}`),
      },
    ];
    const index: ImageIndex = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPE_IMAGE_INDEX,
      manifests: [manifestDescriptor(img, repoTag)],
    };
    const layout: ImageLayout = { imageLayoutVersion: IMAGE_LAYOUT_VERSION };

    await addDir(pack, 'blobs/');
    await addDir(pack, 'blobs/sha256/');
    for (const hex of [...blobs.keys()].sort()) {
      const blob = blobs.get(hex)!;
      const name = `blobs/sha256/${hex}`;
      if ('bytes' in blob) await addBuffer(pack, name, blob.bytes);
      else await addFile(pack, name, blob.path, blob.size);
    }
    await addBuffer(pack, 'index.json', canonicalJson(index));
    await addBuffer(pack, 'manifest.json', canonicalJson(dockerManifest));
    await addBuffer(pack, IMAGE_LAYOUT_FILE, canonicalJson(layout));
    pack.finalize();
  };
  write().catch((err: unknown) => pack.destroy(err instanceof Error ? err : new Error(String(err))));
  return Readable.from(pack, { objectMode: false });
}

/**
 * Writes the image as one tar (see `dockerArchiveStream`) to `file`, through a temp file beside it and a
 * rename, so `file` is either absent, the previous archive, or the complete new one.
 */
export async function writeDockerArchive(file: string, img: BuiltImage, repoTag: string): Promise<void> {
  const tmp = tempName(file);
  try {
    await pipeline(dockerArchiveStream(img, repoTag), createWriteStream(tmp));
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw e;
  }
}
