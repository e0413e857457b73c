/**
 * An OCI image from layer blobs: the config and manifest blobs and their digests, computed by `canonicalJson`,
 * so the same layers and config always give the same digests. Pure; the sinks (layout.ts, archive.ts,
 * dockerLoad.ts, sinks.ts) write what this builds.
 */
import type { Readable } from 'node:stream';
import { sha256Digest } from '../../util/bytes.ts';
import { ANNOTATION_REF_NAME, MEDIA_TYPE_IMAGE_CONFIG, MEDIA_TYPE_IMAGE_MANIFEST, canonicalJson } from './spec.ts';
import type { Descriptor, ImageConfig, ImageManifest, Platform } from './spec.ts';

/** One layer as the realiser produced it: a file on disk, or bytes made again on demand (`layerStream`). */
export interface LayerBlob {
  /** The blob file on disk, when there is one. */
  path?: string;
  /**
   * Without `path`: a fresh stream of the blob's bytes, made again and checked as it goes (it fails before its end
   * when they are not `digest`).
   */
  read?: () => Readable;
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


export function hexOf(digest: string): string {
  return digest.slice('sha256:'.length);
}

/**
 * Computes the config and manifest blobs and their digests. Pure. A history that does not have exactly one
 * non-empty entry per layer is a bug (Docker refuses such images), as is a malformed digest.
 */
export function buildImage(input: ImageInput): BuiltImage {
  for (const layer of input.layers) {
    if (!SHA256_DIGEST.test(layer.digest) || !SHA256_DIGEST.test(layer.diffId)) {
      throw new Error(`buildImage: layer ${layer.path ?? layer.digest} has a malformed digest or diffId`);
    }
    if (!Number.isSafeInteger(layer.size) || layer.size < 0) {
      throw new Error(`buildImage: layer ${layer.digest} has a bad size ${layer.size}`);
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

/** One realised image in the encodings it was asked for; `image` is the one a plain write uses. */
export interface ImageEncodings {
  /** Gzip-compressed layers when they were asked for, else the plain image. */
  image: BuiltImage;
  /** Uncompressed layers: what a local Docker load and the sandbox want. */
  plain: BuiltImage;
  gzip?: BuiltImage;
}
