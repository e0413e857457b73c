/**
 * The OCI image format, version 1.1, as TypeScript types: descriptors, image manifests, image indexes,
 * image configurations and the image layout, plus the media types and annotation keys strata uses.
 * Field names and optionality follow the image-spec's Go types (`specs-go/v1`) and JSON schemas; a field
 * the spec marks `omitempty` is optional here. `canonicalJson` is the one serializer for every JSON blob
 * strata writes, so that equal content always has an equal digest.
 */
import type { Arch } from '../../model.ts';

export const MEDIA_TYPE_DESCRIPTOR = 'application/vnd.oci.descriptor.v1+json';
export const MEDIA_TYPE_LAYOUT_HEADER = 'application/vnd.oci.layout.header.v1+json';
export const MEDIA_TYPE_IMAGE_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MEDIA_TYPE_IMAGE_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MEDIA_TYPE_IMAGE_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const MEDIA_TYPE_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const MEDIA_TYPE_LAYER_TAR_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const MEDIA_TYPE_LAYER_TAR_ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd';
/** The empty JSON blob `{}`, for configs and layers of manifests that carry no content of that kind. */
export const MEDIA_TYPE_EMPTY_JSON = 'application/vnd.oci.empty.v1+json';

export type LayerMediaType =
  | typeof MEDIA_TYPE_LAYER_TAR
  | typeof MEDIA_TYPE_LAYER_TAR_GZIP
  | typeof MEDIA_TYPE_LAYER_TAR_ZSTD;

/** Pre-defined annotation keys (`annotations.md`). */
export const ANNOTATION_CREATED = 'org.opencontainers.image.created';
export const ANNOTATION_AUTHORS = 'org.opencontainers.image.authors';
export const ANNOTATION_URL = 'org.opencontainers.image.url';
export const ANNOTATION_DOCUMENTATION = 'org.opencontainers.image.documentation';
export const ANNOTATION_SOURCE = 'org.opencontainers.image.source';
export const ANNOTATION_VERSION = 'org.opencontainers.image.version';
export const ANNOTATION_REVISION = 'org.opencontainers.image.revision';
export const ANNOTATION_VENDOR = 'org.opencontainers.image.vendor';
export const ANNOTATION_LICENSES = 'org.opencontainers.image.licenses';
/** The name of a reference; meaningful only on descriptors in an image layout's `index.json`. */
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
export const ANNOTATION_TITLE = 'org.opencontainers.image.title';
export const ANNOTATION_DESCRIPTION = 'org.opencontainers.image.description';
export const ANNOTATION_BASE_DIGEST = 'org.opencontainers.image.base.digest';
export const ANNOTATION_BASE_NAME = 'org.opencontainers.image.base.name';

/** `oci-layout` file contents and the one version of it. */
export const IMAGE_LAYOUT_FILE = 'oci-layout';
export const IMAGE_LAYOUT_VERSION = '1.0.0';

/** A digest string, `<algorithm>:<encoded>`; strata always writes `sha256:<64 lowercase hex>`. */
export type Digest = string;

/** The platform an image runs on (`image-index.md`, `config.md`). */
export interface Platform {
  /** GOARCH-style name: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`, ... */
  architecture: string;
  /** GOOS-style name: `linux`. */
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  /** CPU variant, e.g. `v7` for `arm`. */
  variant?: string;
}

/** A content descriptor (`descriptor.md`): what a blob is, its digest and size. */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  /** The blob itself, base64, embedded. */
  data?: string;
  /** Only on descriptors that refer to manifests. */
  platform?: Platform;
  artifactType?: string;
}

/** An image manifest (`manifest.md`). */
export interface ImageManifest {
  schemaVersion: 2;
  mediaType: typeof MEDIA_TYPE_IMAGE_MANIFEST;
  artifactType?: string;
  config: Descriptor;
  /** Base layer first. */
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** An image index (`image-index.md`), also the shape of an image layout's `index.json`. */
export interface ImageIndex {
  schemaVersion: 2;
  mediaType: typeof MEDIA_TYPE_IMAGE_INDEX;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** The execution parameters a runtime starts a container with (`config.md`, property `config`). */
export interface ContainerConfig {
  /** `user`, `uid`, `user:group`, `uid:gid`, ... */
  User?: string;
  /** Keys like `8080/tcp`; values are empty objects. */
  ExposedPorts?: Record<string, Record<string, never>>;
  /** `NAME=value` entries. */
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  Volumes?: Record<string, Record<string, never>>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  /** Deprecated; Windows only. */
  ArgsEscaped?: boolean;
}

/** `rootfs` of an image configuration: the layers' uncompressed digests, base layer first. */
export interface RootFs {
  type: 'layers';
  diff_ids: Digest[];
}

/** One build step. Entries without `empty_layer: true` correspond, in order, to the manifest's layers. */
export interface History {
  /** RFC 3339 date-time. */
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** An image configuration (`config.md`, media type `application/vnd.oci.image.config.v1+json`). */
export interface ImageConfig {
  /** RFC 3339 date-time. */
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  config?: ContainerConfig;
  rootfs: RootFs;
  history?: History[];
}

/** The `oci-layout` file (`image-layout.md`). */
export interface ImageLayout {
  imageLayoutVersion: typeof IMAGE_LAYOUT_VERSION;
}

/**
 * The OCI platform of a Debian architecture. Unknown names map to themselves, which is right for the
 * architectures whose names agree (`amd64`, `arm64`, `s390x`, `riscv64`, ...).
 */
export function platformForDebianArch(arch: Arch): Platform {
  switch (arch) {
    case 'i386':
      return { architecture: '386', os: 'linux' };
    case 'armhf':
      return { architecture: 'arm', os: 'linux', variant: 'v7' };
    case 'armel':
      return { architecture: 'arm', os: 'linux', variant: 'v5' };
    case 'ppc64el':
      return { architecture: 'ppc64le', os: 'linux' };
    case 'mips64el':
      return { architecture: 'mips64le', os: 'linux' };
    default:
      return { architecture: arch, os: 'linux' };
  }
}

/**
 * Deterministic JSON: object keys sorted by UTF-16 code units (as RFC 8785 orders them), no whitespace,
 * `undefined` members left out, strings escaped as `JSON.stringify` escapes them. Only plain JSON values
 * are accepted: a non-finite number, a function, a bigint or a class instance is a bug and throws.
 */
export function canonicalJson(value: unknown): Buffer {
  return Buffer.from(canonicalText(value, '$'), 'utf8');
}

function canonicalText(value: unknown, at: string): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`canonicalJson: non-finite number at ${at}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map((v, i) => (v === undefined ? 'null' : canonicalText(v, `${at}[${i}]`))).join(',')}]`;
  }
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      throw new Error(`canonicalJson: not a plain object at ${at}`);
    }
    const record = value as Record<string, unknown>;
    const members: string[] = [];
    for (const key of Object.keys(record).sort()) {
      const v = record[key];
      if (v === undefined) continue;
      members.push(`${JSON.stringify(key)}:${canonicalText(v, `${at}.${key}`)}`);
    }
    return `{${members.join(',')}}`;
  }
  throw new Error(`canonicalJson: ${typeof value} at ${at} is not JSON`);
}
