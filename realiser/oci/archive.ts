/**
 * The image as one tar that is both an OCI image layout and a docker-archive (what `docker save` of Docker >= 25
 * writes), so that `docker load` of Docker 20.10+ and OCI tools (skopeo, umoci, podman) all read it. Every tar
 * entry has fixed metadata and a fixed order, so equal images give byte-identical archives with the same
 * tar-stream (pinned by package-lock.json), which writes the headers.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, unlink } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack } from 'tar-stream';
import type { Pack } from 'tar-stream';
import { IMAGE_LAYOUT_FILE, IMAGE_LAYOUT_VERSION, MEDIA_TYPE_IMAGE_INDEX, canonicalJson } from './spec.ts';
import type { ImageIndex, ImageLayout } from './spec.ts';
import { hexOf, manifestDescriptor, type BuiltImage, type LayerBlob } from './image.ts';
import { checkLayerFile, layerStream } from './files.ts';
import { outputError, probeFile, removeStaleTemps, tempName, type Output } from '../../util/outputs.ts';

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

function addLayer(pack: Pack, name: string, layer: LayerBlob): Promise<void> {
  return new Promise((resolve, reject) => {
    const entry = pack.entry(fileHeader(name, layer.size), (err) => (err ? reject(err) : resolve()));
    // Without a listener of its own, an entry destroyed with the pack (the archive's disk filled up, say) would
    // emit an unhandled 'error' through the pipe and end the process.
    entry.on('error', reject);
    const source = layerStream(layer);
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
 * metadata. Layers are streamed, never held in memory; the sizes of layer files are checked first. Destroying the
 * returned stream stops the reading.
 */
export function dockerArchiveStream(img: BuiltImage, repoTag: string): Readable {
  const pack = tarPack();
  const write = async (): Promise<void> => {
    for (const layer of img.layers) await checkLayerFile(layer);
    const blobs = new Map<string, { bytes: Buffer } | { layer: LayerBlob }>();
    for (const layer of img.layers) blobs.set(hexOf(layer.digest), { layer });
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
      else await addLayer(pack, name, blob.layer);
    }
    await addBuffer(pack, 'index.json', canonicalJson(index));
    await addBuffer(pack, 'manifest.json', canonicalJson(dockerManifest));
    await addBuffer(pack, IMAGE_LAYOUT_FILE, canonicalJson(layout));
    pack.finalize();
  };
  // Once the consumer has gone (and destroyed the pack), a failing write has no one left to tell: the error the
  // consumer saw is the one that counts, and a second one must not surface as an unhandled 'error' event.
  pack.on('error', () => {});
  write().catch((err: unknown) => {
    if (!pack.destroyed) pack.destroy(err instanceof Error ? err : new Error(String(err)));
  });
  return Readable.from(pack, { objectMode: false });
}

function outputOf(file: string, option: string | undefined): Output {
  return option === undefined ? { what: 'the docker archive', path: file } : { what: 'the docker archive', path: file, option };
}

/**
 * Checks, before anything is built, that an archive can be written at `file`: not a directory, in a directory
 * that exists, where a file can be created. Leaves nothing behind.
 */
export async function checkDockerArchiveTarget(file: string, option?: string): Promise<void> {
  await probeFile(file, outputOf(file, option));
}

/**
 * Writes the image as one tar (see `dockerArchiveStream`) to `file`, through a temp file beside it and a
 * rename, so `file` is either absent, the previous archive, or the complete new one; the temp file goes on
 * failure, and temp files of killed runs go before the next write. Filesystem errors become the user's error
 * naming `file` (`option`, e.g. `--docker-archive`, marks it as given on the command line).
 */
export async function writeDockerArchive(file: string, img: BuiltImage, repoTag: string, option?: string): Promise<void> {
  const out = outputOf(file, option);
  await removeStaleTemps(dirname(file), basename(file));
  await probeFile(file, out);
  const tmp = tempName(file);
  try {
    await pipeline(dockerArchiveStream(img, repoTag), createWriteStream(tmp, { flags: 'wx' }));
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    throw await outputError(out, e);
  }
}
