/**
 * strata's vocabulary. Every module, message and document uses these words with these meanings.
 *
 * - manifest:   `strata.toml`, what the user asks for: channels, packages (roots), image settings.
 * - channel:    one Debian-format archive suite (a mirror URL list, a suite, components, a keyring).
 *               The first channel declared is the *default channel*.
 * - candidate:  one binary package version offered by a channel's `Packages` index for one arch.
 * - candidate index: one `Packages` index's candidates, looked up by name (decoded only when asked for).
 * - root:       a package the manifest names; everything else in a closure is a dependency.
 * - host-provided: a package the host supplies at run time (the NVIDIA driver's user-space half);
 *               it satisfies dependencies but never enters the closure.
 * - locked package (node): a candidate chosen by the resolver, pinned by sha256, with its resolved
 *               dependency edges and its closure hash.
 * - closure hash: a Merkle hash over a node's own sha256 and its dependencies' closure hashes
 *               (strongly connected components hashed as one unit).
 * - lock:       `strata.lock`, the only contract between `resolver/` and `realiser/`.
 * - store:      the content-addressed cache under the user's cache directory; the one place bytes
 *               are verified (`store/`).
 * - layer:      one deterministic OCI layer tar built from a group of locked packages.
 * - image plan: the ordered list of layer groups a lock realises into (a pure function of the lock).
 * - recipe:     a build of something no channel has, from pinned sources, in a sandbox without network
 *               (`[recipes.NAME]`); its output is one layer above the package layers.
 * - build environment: a recipe's own closure of channel packages (its build-depends plus the Essential set),
 *               locked apart from the environment's packages; it never enters the image.
 * - input hash: a recipe's identity: its text, its sources' sha256s, its build environment's closure, the arch
 *               and the input hashes of the recipes it depends on. Its output is stored under it.
 */

/** A Debian architecture name, e.g. `amd64`, or `all`. */
export type Arch = string;

/** One channel as configured by the manifest. */
export interface ChannelSpec {
  name: string;
  /** Mirror base URLs, tried in order. Empty when the mirror comes from the environment or host. */
  urls: string[];
  suite: string;
  components: string[];
  /** Path to an OpenPGP keyring (binary or armored); undefined means the host's Debian archive keyring. */
  signedBy?: string;
  /** Skip signature checks (warned about). */
  trusted: boolean;
  /**
   * false accepts a Release past its Valid-Until (a lagging mirror, a snapshot), warning once per lock; the
   * signature is still checked. apt's `check-valid-until=no`.
   */
  checkValidUntil: boolean;
  /** Read the channel from a snapshot archive at this point in time instead of a live mirror. */
  snapshot?: SnapshotSpec;
}

/** A point in a snapshot archive (laid out as Debian's: `<base>/archive/<archive>/<YYYYMMDDTHHMMSSZ>/`). */
export interface SnapshotSpec {
  /** `YYYYMMDDTHHMMSSZ`, or `latest` (the time of locking, which the lock records). */
  timestamp: string;
  /** Snapshot bases written in the manifest (`snapshot-url`); empty: STRATA_DEBIAN_SNAPSHOT. */
  urls: string[];
  /** The archive's name in the snapshot service; default `debian`. */
  archive: string;
}

/** A package request from the manifest's `[packages]` table. */
export interface PackageRequest {
  name: string;
  /** A Debian relation on the version, e.g. `>= 12.4`; undefined for `"*"`. */
  constraint?: { op: RelationOp; version: string };
  /** Take this package from this channel only. */
  channel?: string;
}

export type RelationOp = '<<' | '<=' | '=' | '>=' | '>>';

/** Settings that shape the realised image; carried into the lock so `realise` reads only the lock. */
export interface ImageSettings {
  env: Record<string, string>;
  entrypoint?: string[];
  cmd?: string[];
  /** update-alternatives overrides: link name (e.g. `libblas.so.3-x86_64-linux-gnu`) or link path -> chosen target path. */
  alternatives: Record<string, string>;
  /** `host` when the NVIDIA driver's user-space half comes from the host at run time. */
  gpuDriver?: 'host';
  /** `[shell] hook`: a script run before an interactive shell starts. */
  shellHook?: string;
}

export interface Manifest {
  /** Absolute path of the manifest file. */
  path: string;
  /** sha256 (hex) of the manifest's bytes. */
  sha256: string;
  name: string;
  arch: Arch;
  channels: ChannelSpec[];
  packages: PackageRequest[];
  /** Follow Recommends too (default false). */
  withRecommends: boolean;
  /** Include the default channel's `Essential: yes` packages, as every Debian system has them (default true). */
  withEssential: boolean;
  image: ImageSettings;
  /** `[recipes.NAME]` tables, sorted by name; absent or empty when there are none. */
  recipes?: RecipeSpec[];
  /** `[cache] registry`: a registry repository that holds built layers and recipe outputs by their input keys. */
  cache?: { registry: string };
  /**
   * `[develop]`: how runs set up the project for development (run/develop.ts). `venv`: `true` -> `required`,
   * `false` -> `off`, absent -> `auto`. Not part of the lock: it shapes runs, not the environment.
   */
  develop?: { venv: 'auto' | 'required' | 'off' };
}

/**
 * A recipe's source. `url` is http(s)://, file:// or mirror://CHANNEL/PATH (PATH on that channel's mirror);
 * a git source names a repository (a URL or a path, relative to the manifest's directory) and a full commit id.
 * `dest` unpacks it into that subdirectory of the source tree.
 */
export type RecipeSource =
  | { url: string; sha256: string; dest?: string }
  | { git: string; rev: string; dest?: string };

/** A build-depends or depends entry: a channel package (as in `[packages]`) or another recipe. */
export type RecipeRequest = { package: PackageRequest } | { recipe: string };

export interface RecipeSpec {
  name: string;
  version: string;
  /** `build`: shell commands over pinned sources; `pip`: Python packages from a package index, pinned by hash at lock time. */
  kind: 'build' | 'pip';
  /** kind "pip": the package index's "simple" URL as written (absent: STRATA_PIP_INDEX, else the host's pip configuration). */
  index?: string;
  /** kind "pip": the requirements (PEP 508, e.g. "scikit-cuda == 0.5.3"), as written. */
  requirements?: string[];
  sources: RecipeSource[];
  buildDepends: RecipeRequest[];
  depends: RecipeRequest[];
  env: Record<string, string>;
  /** Shell commands, run in order, each in its own `sh -e` in the source tree. */
  build: string[];
  /** Where the output lives in the image; `$PREFIX` during the build. */
  prefix: string;
}

/** A recipe's source as locked: a git source gains the sha256 of the deterministic tar of its tree. */
export type LockedSource =
  | { url: string; sha256: string; dest?: string }
  | { git: string; rev: string; sha256: string; dest?: string };

/** One file a pip recipe's requirements resolved to at lock time: a wheel on the index, pinned by sha256. */
export interface LockedWheel {
  /** The distribution's normalised name (PEP 503) and exact version. */
  name: string;
  version: string;
  /** The file's name (a `.whl`), as pip finds it beside the others at install time. */
  filename: string;
  url: string;
  sha256: string;
}

export interface LockedRecipe extends Omit<RecipeSpec, 'sources'> {
  sources: LockedSource[];
  /** kind "pip": every file the requirements resolved to (dependencies included), sorted by name. */
  wheels?: LockedWheel[];
  /** The build environment: locked packages (roots: what build-depends names), verified like the environment's. */
  buildPackages: LockedPackage[];
  buildHostProvided: HostProvided[];
  /** The build environment's closure hash (as an environment's: its packages, the arch, host-provided). */
  buildClosure: string;
  /** What `depends` resolved to: locked packages of the environment by name, and `recipe:NAME`; sorted. */
  resolvedDepends: string[];
  /** `sha256:<hex>` over the recipe's canonical text, its sources, its build closure, the arch and its recipe dependencies' input hashes. */
  input: string;
}

/** A binary package version offered by a channel for one arch. Relation fields are kept raw. */
export interface Candidate {
  name: string;
  version: string;
  arch: Arch;
  channel: string;
  /** Index of the channel in manifest order (0 = default channel). */
  channelRank: number;
  source: string;
  sourceVersion: string;
  multiArch?: string;
  essential: boolean;
  priority?: string;
  section?: string;
  installedSize?: number;
  depends: string;
  preDepends: string;
  recommends: string;
  provides: string;
  conflicts: string;
  breaks: string;
  filename: string;
  size: number;
  sha256: string;
  description?: string;
  maintainer?: string;
  homepage?: string;
}

/**
 * One index's candidates (a channel's `Packages` for one component), decoded on demand. The name tables answer the
 * questions a lock asks of the whole index without decoding it; each may name more than the exact answer (the
 * universe checks every candidate it gets back), never less, in any order.
 */
export interface CandidateIndex {
  /** Every name that has a candidate. */
  names(): readonly string[];
  /** The candidates of `name` in index order, channel and rank set; none for a name the index lacks. */
  candidates(name: string): Candidate[];
  /** The names with a candidate whose Provides names `virtual`. */
  providerNames(virtual: string): readonly string[];
  /** The names with a candidate marked `Essential: yes`. */
  essentialNames(): readonly string[];
  /** The names with a candidate built from a source package whose name starts with `prefix`. */
  namesFromSources(prefix: string): readonly string[];
}

/** A channel as it was locked: what was read and verified. */
export interface LockedChannel {
  name: string;
  /** The suite as the manifest asks for it; `lock` checked that it is the Release's Suite or its Codename. */
  suite: string;
  /** The Release's Codename: equal to `suite` when the Codename is what matched, else the Suite matched. */
  codename: string;
  components: string[];
  /** `Date` field of the Release file. */
  date: string;
  /** sha256 of the InRelease (or Release) bytes the channel was locked from. */
  releaseSha256: string;
  /** Mirror URLs written in the manifest (never discovered ones). */
  urls: string[];
  /** For a channel read from a snapshot archive: the concrete timestamp, archive and the bases the manifest wrote. */
  snapshot?: { timestamp: string; archive: string; urls: string[] };
  /**
   * The channel could not be read when the lock was made (an expired Release, a failed fetch) and supplies no
   * package: codename, date and releaseSha256 are then empty.
   */
  unread?: true;
}

export interface LockedPackage {
  name: string;
  version: string;
  arch: Arch;
  channel: string;
  source: string;
  /** Path of the .deb inside the channel's archive, e.g. `pool/main/g/glibc/libc6_2.41-6_amd64.deb`. */
  filename: string;
  size: number;
  sha256: string;
  /** True when the manifest names this package. */
  root: boolean;
  /** Resolved dependency edges: names of other locked packages, sorted. */
  depends: string[];
  /** Merkle closure hash, `sha256:<hex>`. */
  closure: string;
}

export interface HostProvided {
  name: string;
  /** Strongest version requirement seen, e.g. `>= 550`; empty when unversioned. */
  requires: string;
}

export interface Lockfile {
  /** 1 for a lock without recipes (unchanged since the first format), 2 for one with recipes. */
  version: 1 | 2;
  manifestSha256: string;
  project: { name: string; arch: Arch };
  /** Whole-environment closure hash, `sha256:<hex>`. */
  closure: string;
  channels: LockedChannel[];
  image: ImageSettings;
  packages: LockedPackage[];
  hostProvided: HostProvided[];
  /** Sorted by name; absent when the manifest has no recipes. */
  recipes?: LockedRecipe[];
}

/** One package the resolver chose: its candidate, whether the manifest asked for it, and its resolved edges. */
export interface SolvedPackage {
  candidate: Candidate;
  root: boolean;
  /** Names of chosen packages this one depends on, sorted. */
  depends: string[];
}

/**
 * The host-GPU contract between the realiser (which makes the mount point and points the loader at it) and the run
 * backends (which bind the host's NVIDIA driver files there): where the libraries and programs go, and what the
 * driver is asked to expose.
 */
export const HOST_GPU = {
  libDir: '/run/opengl-driver/lib',
  binDir: '/run/opengl-driver/bin',
  capabilities: 'compute,utility',
} as const;
