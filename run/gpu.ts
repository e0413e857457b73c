/**
 * The host's NVIDIA driver, as `strata run` passes it through: which device nodes, driver libraries and tools
 * exist on the host, which of them an environment gets for a `--gpus` selection, and whether the driver is new
 * enough for the environment's CUDA runtime.
 *
 * Everything is read under a configurable `root` (default `/`), so tests can point detection at a fake tree.
 * Paths handed back are host paths (under `root`); symlinks are resolved as if `root` were `/`.
 *
 * What a GPU run gets, the same for both backends:
 * - device nodes `/dev/nvidiactl`, `/dev/nvidia-uvm`, `/dev/nvidia-uvm-tools`, `/dev/nvidia-modeset`, the selected
 *   `/dev/nvidiaN` and everything in `/dev/nvidia-caps/`, at the same paths;
 * - the compute and utility driver libraries (real files, named as on the host) and their SONAME links, read-only
 *   in `/run/opengl-driver/lib` (on the image's `LD_LIBRARY_PATH`);
 * - `nvidia-smi` at `/run/opengl-driver/bin/nvidia-smi`, that directory appended to PATH;
 * - `NVIDIA_VISIBLE_DEVICES` and `NVIDIA_DRIVER_CAPABILITIES`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { basename, dirname, join, posix } from 'node:path';
import { StrataError } from '../errors.ts';
import { parseConstraint, satisfiesVersion } from '../debian/relation.ts';
import { HOST_GPU, type Lockfile } from '../model.ts';

/** Where driver libraries go inside an environment (the image's mount point, NixOS's convention). */
export const DRIVER_LIB_DIR = HOST_GPU.libDir;
/** nvidia-smi goes beside the libraries (its directory is put on PATH): binding it into the image's /usr/bin would need a mount point there. */
export const DRIVER_BIN_DIR = HOST_GPU.binDir;
export const NVIDIA_SMI_TARGET = '/run/opengl-driver/bin/nvidia-smi';

/** The compute and utility libraries of the driver's user-space half, by file-name stem. */
export const DRIVER_LIBRARIES = [
  'libcuda',
  'libcudadebugger',
  'libnvidia-ml',
  'libnvidia-ptxjitcompiler',
  'libnvidia-nvvm',
  'libnvidia-gpucomp',
  'libnvidia-cfg',
  'libnvidia-allocator',
  'libnvidia-opencl',
  'libnvidia-pkcs11',
  'libnvidia-pkcs11-openssl3',
];

/** Directories searched after the loader cache, in order. */
export const KNOWN_LIBRARY_DIRS = [
  '/usr/local/nvidia/lib64',
  '/usr/lib/x86_64-linux-gnu/nvidia/current',
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib64',
  '/run/opengl-driver/lib',
];

const NVIDIA_SMI_PATHS = [
  '/usr/bin/nvidia-smi',
  '/usr/local/nvidia/bin/nvidia-smi',
  '/usr/lib/nvidia/current/nvidia-smi',
  '/run/opengl-driver/bin/nvidia-smi',
  '/run/current-system/sw/bin/nvidia-smi',
];

/** Control nodes every GPU run gets, when the host has them. */
const CONTROL_NODES = ['nvidiactl', 'nvidia-uvm', 'nvidia-uvm-tools', 'nvidia-modeset'];

export interface DeviceNode {
  /** Path on the host (under the detection root). */
  hostPath: string;
  /** Path inside the environment, e.g. `/dev/nvidia0`. */
  path: string;
  /** The major number the kernel registered for this node's driver (from /proc/devices), when known. */
  major?: number;
  /** GPU index for `/dev/nvidiaN`. */
  index?: number;
}

export interface DriverLibrary {
  /** The real file on the host. */
  hostPath: string;
  /** Its name inside `/run/opengl-driver/lib`. */
  name: string;
}

export interface DriverLink {
  /** Link name inside `/run/opengl-driver/lib`, e.g. `libcuda.so.1`. */
  name: string;
  /** Relative target, a library's name, e.g. `libcuda.so.580.159.04`. */
  target: string;
}

export interface HostGpu {
  /** e.g. `580.159.04`. */
  driverVersion: string;
  /** Every node found: control nodes, all GPUs, capabilities. */
  devices: DeviceNode[];
  libraries: DriverLibrary[];
  links: DriverLink[];
  nvidiaSmi?: string;
}

/** What one run binds: the nodes and files at their paths inside, and the environment. */
export interface GpuMounts {
  driverVersion: string;
  devices: DeviceNode[];
  libraries: DriverLibrary[];
  links: DriverLink[];
  /** `{ hostPath, path }` for nvidia-smi. */
  binaries: { hostPath: string; path: string }[];
  env: Record<string, string>;
}

export interface DetectOptions {
  /** Host root to read under; default `/`. */
  root?: string;
  /** `ldconfig -p` output to use instead of running it; default: run it when `root` is `/`, none otherwise. */
  ldconfig?: string;
}

/** Parses `/proc/driver/nvidia/version` (`NVRM version: NVIDIA UNIX ... Kernel Module  580.159.04  ...`). */
export function parseDriverVersion(text: string): string | undefined {
  const line = text.split('\n').find((l) => l.startsWith('NVRM version:')) ?? text;
  return /Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)*)/.exec(line)?.[1] ?? /\b(\d{3,}\.\d+(?:\.\d+)?)\b/.exec(line)?.[1];
}

/** `/proc/devices` character drivers: name -> major. */
export function parseProcDevices(text: string): Map<string, number> {
  const out = new Map<string, number>();
  let chars = false;
  for (const line of text.split('\n')) {
    if (/^Character devices:/.test(line)) chars = true;
    else if (/^Block devices:/.test(line)) chars = false;
    else if (chars) {
      const m = /^\s*(\d+)\s+(\S+)/.exec(line);
      if (m) out.set(m[2]!, Number(m[1]));
    }
  }
  return out;
}

/** Resolves `path` (absolute, as seen with `root` as `/`) through symlinks, never leaving `root`. */
function resolveIn(root: string, path: string): string | undefined {
  let parts = path.split('/').filter((p) => p !== '');
  const done: string[] = [];
  for (let hops = 0; parts.length > 0; ) {
    const part = parts.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = join(root, ...done, part);
    let st;
    try {
      st = lstatSync(host);
    } catch {
      return undefined;
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) return undefined;
      const target = readlinkSync(host);
      if (target.startsWith('/')) done.length = 0;
      parts = [...target.split('/').filter((p) => p !== ''), ...parts];
      continue;
    }
    done.push(part);
  }
  return `/${done.join('/')}`;
}

function hostPath(root: string, p: string): string {
  return root === '/' ? p : join(root, p);
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Library paths from `ldconfig -p` output whose names are driver libraries. */
export function ldconfigLibraryPaths(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\/\S+)$/.exec(line);
    if (!m) continue;
    if (m[2]!.includes('x86-32') || m[2]!.includes('i386')) continue;
    if (libraryStem(m[1]!) !== undefined) out.push(m[3]!);
  }
  return out;
}

/** The driver-library stem of a file name (`libcuda.so.1` -> `libcuda`), or undefined for other files. */
function libraryStem(name: string): string | undefined {
  const m = /^(lib[\w-]+?)\.so(\.[\d.]+)?$/.exec(name);
  if (!m) return undefined;
  return DRIVER_LIBRARIES.includes(m[1]!) ? m[1] : undefined;
}

function runLdconfig(): string {
  for (const bin of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
    try {
      return execFileSync(bin, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      // try the next
    }
  }
  return '';
}

/**
 * The driver libraries: for each library stem, the first directory (loader cache entries first, then the known
 * directories) holding it gives every file of that stem there. Real files are kept when they carry the driver's
 * version (`libcuda.so.580.159.04`) or are the only real file of that stem; symlinks are kept when they resolve
 * to a kept file, and point at it by name.
 */
function findLibraries(root: string, ldconfig: string, driverVersion: string): { libraries: DriverLibrary[]; links: DriverLink[] } {
  const dirs: string[] = [];
  for (const p of ldconfigLibraryPaths(ldconfig)) if (!dirs.includes(dirname(p))) dirs.push(dirname(p));
  for (const d of KNOWN_LIBRARY_DIRS) if (!dirs.includes(d)) dirs.push(d);
  const listing = new Map<string, string[]>();
  const list = (d: string): string[] => {
    if (!listing.has(d)) {
      let names: string[] = [];
      try {
        names = readdirSync(hostPath(root, d));
      } catch {
        // absent
      }
      listing.set(d, names.sort());
    }
    return listing.get(d)!;
  };
  const libraries: DriverLibrary[] = [];
  const links: DriverLink[] = [];
  const taken = new Set<string>();
  for (const stem of DRIVER_LIBRARIES) {
    const dir = dirs.find((d) => list(d).some((n) => libraryStem(n) === stem));
    if (dir === undefined) continue;
    const names = list(dir).filter((n) => libraryStem(n) === stem);
    // name -> resolved path (as seen under root)
    const resolved = new Map<string, string>();
    for (const n of names) {
      const r = resolveIn(root, posix.join(dir, n));
      if (r === undefined) continue;
      try {
        if (!statSync(hostPath(root, r)).isFile()) continue;
      } catch {
        continue;
      }
      resolved.set(n, r);
    }
    const reals = [...new Set(resolved.values())];
    const versioned = reals.filter((r) => basename(r).endsWith(`.so.${driverVersion}`));
    const keep = versioned.length > 0 ? versioned : reals.length === 1 ? reals : reals.filter((r) => resolved.get(basename(r)) === r);
    for (const r of keep) {
      const name = basename(r);
      if (taken.has(name)) continue;
      taken.add(name);
      libraries.push({ hostPath: hostPath(root, r), name });
    }
    for (const [n, r] of resolved) {
      if (taken.has(n) || !keep.includes(r)) continue;
      taken.add(n);
      links.push({ name: n, target: basename(r) });
    }
  }
  return { libraries, links };
}

/** Detects the host's NVIDIA driver; undefined when there is none (no `/proc/driver/nvidia/version`). */
export function detectGpu(opts: DetectOptions = {}): HostGpu | undefined {
  const root = opts.root ?? '/';
  const versionText = read(hostPath(root, '/proc/driver/nvidia/version'));
  if (versionText === undefined) return undefined;
  const driverVersion = parseDriverVersion(versionText);
  if (driverVersion === undefined) {
    throw new StrataError('E_GPU', `cannot read the NVIDIA driver version from ${hostPath(root, '/proc/driver/nvidia/version')}`);
  }
  const majors = parseProcDevices(read(hostPath(root, '/proc/devices')) ?? '');
  const frontend = majors.get('nvidia-frontend') ?? majors.get('nvidia');
  const devices: DeviceNode[] = [];
  const node = (path: string, major: number | undefined, index?: number) => {
    const hp = hostPath(root, path);
    if (!existsSync(hp)) return;
    const d: DeviceNode = { hostPath: hp, path };
    if (major !== undefined) d.major = major;
    if (index !== undefined) d.index = index;
    devices.push(d);
  };
  const nodeMajor = (name: string): number | undefined => {
    if (name === 'nvidia-uvm' || name === 'nvidia-uvm-tools') return majors.get('nvidia-uvm');
    if (name === 'nvidia-modeset') return frontend;
    return frontend;
  };
  for (const n of CONTROL_NODES) node(`/dev/${n}`, nodeMajor(n));
  let devNames: string[] = [];
  try {
    devNames = readdirSync(hostPath(root, '/dev'));
  } catch {
    // no /dev
  }
  const gpus = devNames
    .map((n) => /^nvidia(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  for (const i of gpus) node(`/dev/nvidia${i}`, frontend, i);
  try {
    const caps = readdirSync(hostPath(root, '/dev/nvidia-caps')).sort();
    for (const c of caps) node(`/dev/nvidia-caps/${c}`, majors.get('nvidia-caps'));
  } catch {
    // no capability nodes (older drivers)
  }
  const ldconfig = opts.ldconfig ?? (root === '/' ? runLdconfig() : '');
  const { libraries, links } = findLibraries(root, ldconfig, driverVersion);
  const gpu: HostGpu = { driverVersion, devices, libraries, links };
  for (const p of NVIDIA_SMI_PATHS) {
    const r = resolveIn(root, p);
    if (r === undefined) continue;
    try {
      if (!statSync(hostPath(root, r)).isFile()) continue;
    } catch {
      continue;
    }
    // /usr/bin/nvidia-smi on Debian is a wrapper script that calls the real binary at a fixed path; the
    // real ELF is what works inside another root.
    const head = readFileSync(hostPath(root, r)).subarray(0, 2).toString();
    if (head === '#!') continue;
    gpu.nvidiaSmi = hostPath(root, r);
    break;
  }
  return gpu;
}

/** A `--gpus` value: `all`, `none`, or GPU indexes like `0,1` (NVIDIA_VISIBLE_DEVICES's meaning). */
export type GpuSelection = 'all' | 'none' | number[];

export function parseGpuSelection(text: string): GpuSelection {
  const s = text.trim();
  if (s === 'all' || s === 'none') return s;
  if (s === 'void' || s === '') return 'none';
  if (/^\d+(,\d+)*$/.test(s)) return [...new Set(s.split(',').map(Number))].sort((a, b) => a - b);
  throw new StrataError('E_USAGE', `--gpus must be all, none, or GPU indexes like 0,1, not "${text}"`, 'GPU UUIDs are not supported; use indexes as nvidia-smi lists them');
}

/** The nodes, files and environment a run with `selection` gets; throws E_GPU when a selected GPU is absent. */
export function gpuMounts(host: HostGpu, selection: Exclude<GpuSelection, 'none'>): GpuMounts {
  const present = host.devices.filter((d) => d.index !== undefined).map((d) => d.index!);
  if (selection !== 'all') {
    const missing = selection.filter((i) => !present.includes(i));
    if (missing.length > 0) {
      throw new StrataError('E_GPU', `--gpus asks for GPU ${missing.join(', ')} but the host has ${present.length === 0 ? 'no /dev/nvidiaN nodes' : `only ${present.map((i) => `/dev/nvidia${i}`).join(', ')}`}`);
    }
  }
  const devices = host.devices.filter((d) => d.index === undefined || selection === 'all' || selection.includes(d.index));
  const binaries = host.nvidiaSmi ? [{ hostPath: host.nvidiaSmi, path: NVIDIA_SMI_TARGET }] : [];
  return {
    driverVersion: host.driverVersion,
    devices,
    libraries: host.libraries,
    links: host.links,
    binaries,
    env: {
      NVIDIA_VISIBLE_DEVICES: selection === 'all' ? 'all' : selection.join(','),
      NVIDIA_DRIVER_CAPABILITIES: HOST_GPU.capabilities,
      LD_LIBRARY_PATH: DRIVER_LIB_DIR,
    },
  };
}

/** Minimum driver for a CUDA runtime major version (CUDA minor-version compatibility). */
const CUDA_MIN_DRIVER: Record<number, string> = { 10: '410.48', 11: '450.80.02', 12: '525.60.13', 13: '580' };

function driverAtLeast(driver: string, wanted: string): boolean {
  return satisfiesVersion(driver, '>=', wanted);
}

/**
 * Refuses a host driver older than the environment needs: the CUDA runtime the lock holds (`libcudartN`: 12.x
 * needs >= 525, 13.x >= 580) and the lock's host-provided requirements (e.g. `libcuda1 >= 550`). One message
 * names both versions.
 */
export function checkDriver(lock: Lockfile, driverVersion: string): void {
  for (const p of lock.packages) {
    const m = /^libcudart(\d+)$/.exec(p.name);
    if (!m) continue;
    const cuda = Number(m[1]);
    const min = CUDA_MIN_DRIVER[cuda];
    if (min === undefined) continue;
    if (!driverAtLeast(driverVersion, min)) {
      throw new StrataError(
        'E_GPU',
        `the environment's CUDA ${cuda} runtime (${p.name} ${p.version}) needs NVIDIA driver >= ${min.split('.')[0]}, but the host driver is ${driverVersion}`,
        `upgrade the host's NVIDIA driver, or lock an older CUDA runtime; run with --gpus none to start without the GPU`,
      );
    }
  }
  for (const h of lock.hostProvided) {
    if (!h.requires) continue;
    let c;
    try {
      c = parseConstraint(h.requires);
    } catch {
      continue;
    }
    if (c === undefined) continue;
    // The driver packages' versions are the driver's version plus a Debian revision (`550.54.14-1`).
    const wanted = c.version.replace(/^\d+:/, '').replace(/-[^-]*$/, '');
    if (!satisfiesVersion(driverVersion, c.op, wanted)) {
      throw new StrataError(
        'E_GPU',
        `the environment needs the host-provided ${h.name} ${h.requires}, but the host driver is ${driverVersion}`,
        `upgrade the host's NVIDIA driver, or relax what the environment asks for; run with --gpus none to start without the GPU`,
      );
    }
  }
}

/** The GPU files and nodes for this run, or undefined for none; throws E_GPU when the environment cannot have what it asks for. */
export function gpuForRun(lock: Lockfile, gpus: string | undefined, root = '/'): GpuMounts | undefined {
  return selectGpu(lock.image.gpuDriver === 'host', gpus, root, (driver) => checkDriver(lock, driver));
}

/**
 * The same for an image without a lock (a pulled one): `wantsGpu` from its `dev.strata.gpu-driver=host` label. With
 * no lock there is no CUDA runtime version to check the driver against.
 */
export function gpuForImage(wantsGpu: boolean, gpus: string | undefined, root = '/'): GpuMounts | undefined {
  return selectGpu(wantsGpu, gpus, root, () => {});
}

function selectGpu(wantsGpu: boolean, gpus: string | undefined, root: string, check: (driverVersion: string) => void): GpuMounts | undefined {
  const selection = gpus !== undefined ? parseGpuSelection(gpus) : wantsGpu ? 'all' : 'none';
  if (selection === 'none') return undefined;
  const host = detectGpu({ root });
  if (!host) {
    throw new StrataError(
      'E_GPU',
      wantsGpu
        ? 'the environment asks for a GPU ([gpu] driver = "host") but this host has no NVIDIA driver (no /proc/driver/nvidia/version)'
        : `--gpus ${gpus} asks for a GPU but this host has no NVIDIA driver (no /proc/driver/nvidia/version)`,
      'load the NVIDIA kernel driver, or run with --gpus none to start without the GPU',
    );
  }
  check(host.driverVersion);
  return gpuMounts(host, selection);
}
