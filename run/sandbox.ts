/**
 * The sandbox backend: enters an unpacked root filesystem in new mount and PID namespaces, with no daemon.
 * bubblewrap when it is installed, else util-linux `unshare` + a chroot; rootless through a user namespace when
 * not root (the command sees the invoking user's own uid and gid, so files it creates in the project directory
 * belong to that user), as plain root otherwise.
 *
 * The new root is a tmpfs assembled from the rootfs: every top-level entry of the image is bound read-only (the
 * store's copy is never written), except where something is mounted below it (the project directory, HOME, the
 * GPU driver directory), where the directory is recreated on the tmpfs and its own entries bound one by one.
 * Provided on top: a minimal `/dev` (null, zero, full, random, urandom, tty, pts, shm, fd links) plus the
 * selected GPU nodes, `/proc` of the new PID namespace, the host's `/sys`, a private `/tmp`, the project
 * directory read-write at its own path (the working directory), and the GPU driver files read-only.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants as fsConstants, lstatSync, readdirSync, readlinkSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { delimiter, join, posix } from 'node:path';
import { constants as osConstants } from 'node:os';
import { StrataError } from '../errors.ts';
import { DRIVER_LIB_DIR, type GpuMounts } from './gpu.ts';
import type { DerivedCache } from '../store/store.ts';
import { FORWARDED } from '../util/signals.ts';

/** `unshare-compat`: the unshare path with one command per mount (what `unshare` falls back to by itself). */
export type SandboxMethod = 'bwrap' | 'unshare' | 'unshare-compat';

export interface Bind {
  source: string;
  target: string;
  writable: boolean;
}

export interface SandboxSpec {
  rootfs: string;
  argv: string[];
  env: Record<string, string>;
  /** Working directory inside (the project directory). */
  cwd: string;
  /** Read-write (or read-only) binds at their target paths: the project directory, HOME. */
  binds: Bind[];
  gpu?: GpuMounts;
  network: boolean;
  /** Run the sandbox as this user (root running for a sudo invoker); undefined: as this process. */
  runAs?: { uid: number; gid: number };
}

/** One step of assembling the new root, relative to it. */
export type RootStep =
  | { op: 'dir'; path: string }
  | { op: 'bind'; source: string; path: string; file: boolean }
  | { op: 'symlink'; target: string; path: string };

/** Paths the sandbox mounts itself; the image's entries there are hidden. */
const PROVIDED = ['/dev', '/proc', '/sys', '/tmp'];

/** Which program runs on PATH, or undefined. */
export function which(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const d of (env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (d === '') continue;
    const p = join(d, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** bubblewrap when installed, else unshare; `STRATA_SANDBOX=bwrap|unshare` forces one. */
export function chooseMethod(env: NodeJS.ProcessEnv = process.env): SandboxMethod {
  const forced = env.STRATA_SANDBOX;
  if (forced === 'bwrap' || forced === 'unshare' || forced === 'unshare-compat') {
    if (which(forced === 'bwrap' ? 'bwrap' : 'unshare', env) === undefined) {
      throw new StrataError('E_RUN', `STRATA_SANDBOX=${forced} but ${forced} is not installed`, forced === 'bwrap' ? 'install bubblewrap' : 'install util-linux');
    }
    return forced;
  }
  if (forced !== undefined && forced !== '') throw new StrataError('E_USAGE', `STRATA_SANDBOX must be bwrap, unshare or unshare-compat, not "${forced}"`);
  if (which('bwrap', env)) return 'bwrap';
  if (which('unshare', env) && which('chroot', { PATH: `${env.PATH ?? ''}:/usr/sbin:/sbin` })) return 'unshare';
  throw new StrataError('E_RUN', 'the sandbox backend needs bubblewrap or util-linux unshare, and neither is installed', 'install bubblewrap (Debian package bubblewrap), or use --backend docker');
}

function isAncestor(dir: string, path: string): boolean {
  return path.startsWith(dir === '/' ? '/' : `${dir}/`);
}

/**
 * How to assemble the new root from `rootfs` so that every path in `mountPoints` can be mounted without writing
 * into the rootfs: entries are bound as they are, except those below which something is mounted, which are
 * recreated as directories (and their entries handled the same way, one level down).
 */
export function rootSteps(rootfs: string, mountPoints: string[]): RootStep[] {
  const steps: RootStep[] = [];
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = readdirSync(join(rootfs, dir)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const path = posix.join(dir, name);
      if (mountPoints.includes(path)) continue;
      const st = lstatSync(join(rootfs, path));
      if (st.isSymbolicLink()) {
        steps.push({ op: 'symlink', target: readlinkSync(join(rootfs, path)), path });
      } else if (st.isDirectory() && mountPoints.some((m) => isAncestor(path, m))) {
        steps.push({ op: 'dir', path });
        walk(path);
      } else if (st.isDirectory() || st.isFile()) {
        steps.push({ op: 'bind', source: join(rootfs, path), path, file: st.isFile() });
      }
    }
  };
  walk('/');
  return steps;
}

function mountPointsOf(spec: SandboxSpec): string[] {
  const points = [...PROVIDED, ...spec.binds.map((b) => b.target)];
  if (spec.gpu) points.push(posix.dirname(DRIVER_LIB_DIR), ...spec.gpu.binaries.map((b) => b.path));
  return points;
}

/** The devices of a minimal /dev, bound from the host's. */
const DEV_NODES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/** bubblewrap's argument list for `spec` (the program is `bwrap`). */
export function bwrapArgs(spec: SandboxSpec, rootless: boolean, ids: { uid: number; gid: number }): string[] {
  const a: string[] = ['--die-with-parent', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--hostname', 'strata'];
  if (rootless) a.push('--unshare-user', '--uid', String(ids.uid), '--gid', String(ids.gid));
  if (!spec.network) a.push('--unshare-net');
  for (const s of rootSteps(spec.rootfs, mountPointsOf(spec))) {
    if (s.op === 'dir') a.push('--dir', s.path);
    else if (s.op === 'symlink') a.push('--symlink', s.target, s.path);
    else a.push('--ro-bind', s.source, s.path);
  }
  a.push('--dev', '/dev', '--proc', '/proc', '--ro-bind', '/sys', '/sys', '--tmpfs', '/tmp', '--chmod', '1777', '/tmp');
  for (const b of spec.binds) a.push(b.writable ? '--bind' : '--ro-bind', b.source, b.target);
  if (spec.gpu) {
    for (const d of spec.gpu.devices) a.push('--dev-bind', d.hostPath, d.path);
    a.push('--tmpfs', posix.dirname(DRIVER_LIB_DIR), '--dir', DRIVER_LIB_DIR);
    for (const l of spec.gpu.libraries) a.push('--ro-bind', l.hostPath, posix.join(DRIVER_LIB_DIR, l.name));
    for (const l of spec.gpu.links) a.push('--symlink', l.target, posix.join(DRIVER_LIB_DIR, l.name));
    for (const b of spec.gpu.binaries) a.push('--ro-bind', b.hostPath, b.path);
    a.push('--remount-ro', posix.dirname(DRIVER_LIB_DIR));
  }
  a.push('--chdir', spec.cwd, '--clearenv');
  for (const [k, v] of Object.entries(spec.env)) a.push('--setenv', k, v);
  a.push('--', ...spec.argv);
  return a;
}

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** An entry of the skeleton the unshare path copies onto the new root's tmpfs in one `cp -a`. */
export type SkeletonEntry = { kind: 'dir' | 'file'; path: string } | { kind: 'symlink'; path: string; target: string };

/** One mount of the unshare path's fstab; `target` is relative to the new root. */
export interface FstabEntry {
  /** A path on the host, a path inside the new root when `inRoot`, or a pseudo source (proc, devpts, a tmpfs name). */
  source: string;
  inRoot?: boolean;
  target: string;
  type: string;
  options: string;
}

/**
 * The unshare path's plan: a skeleton (directories, empty files as mount points, symlinks) and the mounts over
 * it, in order. The new root is a tmpfs, so /dev needs no tmpfs of its own: its nodes are files of the skeleton.
 */
export function unsharePlan(spec: SandboxSpec, steps: RootStep[] = rootSteps(spec.rootfs, mountPointsOf(spec))): { skeleton: SkeletonEntry[]; mounts: FstabEntry[] } {
  const skeleton: SkeletonEntry[] = [];
  const mounts: FstabEntry[] = [];
  const dirs = new Set<string>(['/']);
  const dir = (p: string) => {
    if (dirs.has(p)) return;
    dir(posix.dirname(p));
    dirs.add(p);
    skeleton.push({ kind: 'dir', path: p });
  };
  const point = (p: string, file: boolean) => {
    if (file) {
      dir(posix.dirname(p));
      skeleton.push({ kind: 'file', path: p });
    } else dir(p);
  };
  const bind = (source: string, target: string, file: boolean, opts: string) => {
    point(target, file);
    mounts.push({ source, target, type: 'none', options: opts });
  };
  for (const s of steps) {
    if (s.op === 'dir') dir(s.path);
    else if (s.op === 'symlink') skeleton.push({ kind: 'symlink', path: s.path, target: s.target });
    else bind(s.source, s.path, s.file, s.file ? 'bind,ro' : 'rbind,ro');
  }
  for (const d of DEV_NODES) bind(`/dev/${d}`, `/dev/${d}`, true, 'bind');
  dir('/dev/pts');
  mounts.push({ source: 'devpts', target: '/dev/pts', type: 'devpts', options: 'newinstance,ptmxmode=0666,mode=0620' });
  dir('/dev/shm');
  mounts.push({ source: 'shm', target: '/dev/shm', type: 'tmpfs', options: 'mode=1777' });
  for (const [name, target] of DEV_LINKS) skeleton.push({ kind: 'symlink', path: `/dev/${name}`, target });
  dir('/proc');
  mounts.push({ source: 'proc', target: '/proc', type: 'proc', options: 'defaults' });
  bind('/sys', '/sys', false, 'rbind');
  dir('/tmp');
  mounts.push({ source: 'strata-tmp', target: '/tmp', type: 'tmpfs', options: 'mode=1777' });
  // The project directory and HOME may lie below /tmp, whose tmpfs hides the skeleton there: mount creates them.
  for (const b of spec.binds) mounts.push({ source: b.source, target: b.target, type: 'none', options: `${b.writable ? 'rbind' : 'rbind,ro'},X-mount.mkdir` });
  if (spec.gpu) {
    for (const d of spec.gpu.devices) bind(d.hostPath, d.path, true, 'bind');
    dir(DRIVER_LIB_DIR);
    for (const l of spec.gpu.libraries) bind(l.hostPath, posix.join(DRIVER_LIB_DIR, l.name), true, 'bind,ro');
    for (const l of spec.gpu.links) skeleton.push({ kind: 'symlink', path: posix.join(DRIVER_LIB_DIR, l.name), target: l.target });
    for (const b of spec.gpu.binaries) bind(b.hostPath, b.path, true, 'bind,ro');
    // The driver directory itself read-only, its mounts carried along.
    const top = posix.dirname(DRIVER_LIB_DIR);
    mounts.push({ source: top, inRoot: true, target: top, type: 'none', options: 'rbind,ro' });
  }
  return { skeleton, mounts };
}

/** fstab(5) text for `mounts` over the root at `stage`; sources and targets octal-escaped as fstab wants. */
export function fstabText(mounts: FstabEntry[], stage: string): string {
  const esc = (p: string) => p.replace(/[\\ \t\n]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
  return mounts.map((m) => `${esc(m.inRoot ? posix.join(stage, m.source) : m.source)} ${esc(posix.join(stage, m.target))} ${m.type} ${m.options} 0 0\n`).join('');
}

/** Where the sandbox keeps its working directories: the store's, handed down by the engine. */
export interface SandboxPlaces {
  /** An empty directory the unshare method mounts the new root on. */
  stage: string;
  /** The cache of skeletons the unshare method copies onto the new root. */
  skeletons: DerivedCache;
}

/**
 * Writes the skeleton and the fstab as one entry of the `skeletons` cache (key: their content), once; later runs
 * reuse it. Returns that directory: `root/` to copy onto the new root, `fstab` to mount over it.
 */
export function ensureSkeleton(skeletons: DerivedCache, plan: { skeleton: SkeletonEntry[]; mounts: FstabEntry[] }, stage: string): string {
  const fstab = fstabText(plan.mounts, stage);
  const key = createHash('sha256').update(JSON.stringify([SKELETON_FORMAT, plan.skeleton, fstab])).digest('hex').slice(0, 32);
  return skeletons.dirSync(key, (tmp) => {
    mkdirSync(join(tmp, 'root'), { recursive: true, mode: 0o755 });
    for (const e of plan.skeleton) {
      const p = join(tmp, 'root', e.path);
      if (e.kind === 'symlink') symlinkSync(e.target, p);
      else if (e.kind === 'dir') mkdirSync(p, { recursive: true, mode: 0o755 });
      else writeFileSync(p, '', { mode: 0o644 });
    }
    writeFileSync(join(tmp, 'fstab'), fstab);
  });
}

const SKELETON_FORMAT = 1;

/**
 * The host shell script that `unshare --mount --pid --fork` runs: mounts the new root on `stage` (an empty
 * directory), then enters it with a second `unshare` that chroots, changes directory and, when rootless, maps
 * the user back to their own uid and gid.
 *
 * With a skeleton (see `ensureSkeleton`) the root is assembled in three processes: a tmpfs mount, one `cp -a`
 * of the skeleton, one `mount -a` of its fstab. If that fails (an old util-linux, a kernel that refuses a
 * read-only remount in a user namespace), or without a skeleton, it falls back to one command per mount.
 */
export function unshareScript(spec: SandboxSpec, stage: string, rootless: boolean, ids: { uid: number; gid: number }, skeleton?: string, steps: RootStep[] = rootSteps(spec.rootfs, mountPointsOf(spec))): string {
  const N = (p: string) => q(posix.join(stage, p));
  // The command's environment arrives as this shell's; host tools run with the host's PATH until the chroot.
  const L: string[] = ['set -e', 'inner_path=$PATH', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
  const S: string[] = [`mount -t tmpfs -o mode=0755 strata-root ${q(stage)}`];
  const bindRo = (src: string, dst: string, file: boolean) => {
    S.push(file ? `mkdir -p "$(dirname ${N(dst)})"; : > ${N(dst)}` : `mkdir -p ${N(dst)}`);
    S.push(`mount --rbind ${q(src)} ${N(dst)}`, `mount -o remount,bind,ro ${N(dst)} 2>/dev/null || true`);
  };
  for (const s of steps) {
    if (s.op === 'dir') S.push(`mkdir -p ${N(s.path)}`);
    else if (s.op === 'symlink') S.push(`ln -s ${q(s.target)} ${N(s.path)}`);
    else bindRo(s.source, s.path, s.file);
  }
  // A minimal /dev.
  S.push(`mkdir -p ${N('/dev')}`, `mount -t tmpfs -o mode=0755,nosuid strata-dev ${N('/dev')}`);
  for (const d of DEV_NODES) S.push(`: > ${N(`/dev/${d}`)}`, `mount --bind /dev/${d} ${N(`/dev/${d}`)}`);
  S.push(
    `mkdir -p ${N('/dev/pts')} ${N('/dev/shm')}`,
    `mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts ${N('/dev/pts')} 2>/dev/null || mount --bind /dev/pts ${N('/dev/pts')}`,
    `mount -t tmpfs -o mode=1777 shm ${N('/dev/shm')}`,
    ...DEV_LINKS.map(([name, target]) => `ln -s ${q(target)} ${N(`/dev/${name}`)}`),
  );
  S.push(`mkdir -p ${N('/proc')} ${N('/sys')} ${N('/tmp')}`, `mount -t proc proc ${N('/proc')}`, `mount --rbind /sys ${N('/sys')}`, `mount -t tmpfs -o mode=1777 strata-tmp ${N('/tmp')}`);
  for (const b of spec.binds) {
    S.push(`mkdir -p ${N(b.target)}`, `mount --rbind ${q(b.source)} ${N(b.target)}`);
    if (!b.writable) S.push(`mount -o remount,bind,ro ${N(b.target)} 2>/dev/null || true`);
  }
  if (spec.gpu) {
    for (const d of spec.gpu.devices) S.push(`mkdir -p "$(dirname ${N(d.path)})"; : > ${N(d.path)}`, `mount --bind ${q(d.hostPath)} ${N(d.path)}`);
    const top = posix.dirname(DRIVER_LIB_DIR);
    S.push(`mkdir -p ${N(top)}`, `mount -t tmpfs -o mode=0755 strata-gpu ${N(top)}`, `mkdir -p ${N(DRIVER_LIB_DIR)}`);
    for (const l of spec.gpu.libraries) bindRo(l.hostPath, posix.join(DRIVER_LIB_DIR, l.name), true);
    for (const l of spec.gpu.links) S.push(`ln -s ${q(l.target)} ${N(posix.join(DRIVER_LIB_DIR, l.name))}`);
    for (const b of spec.gpu.binaries) bindRo(b.hostPath, b.path, true);
    S.push(`mount -o remount,ro,bind ${N(top)} 2>/dev/null || mount -o remount,ro ${N(top)}`);
  }
  if (skeleton) {
    const fast = [`mount -t tmpfs -o mode=0755 strata-root ${q(stage)}`, `cp -a ${q(join(skeleton, 'root'))}/. ${q(stage)}/`, `mount -a --fstab ${q(join(skeleton, 'fstab'))}`];
    // Its errors are shown with STRATA_DEBUG set; otherwise the fallback speaks for itself if it fails too.
    L.push(`if ! { ${fast.join(' && ')}; }${process.env.STRATA_DEBUG ? '' : ' 2>/dev/null'}; then`, `umount -R ${q(stage)} 2>/dev/null || true`, ...S, 'fi');
  } else L.push(...S);
  const unshareBin = which('unshare') ?? '/usr/bin/unshare';
  const enter = rootless ? `--user --map-user=${ids.uid} --map-group=${ids.gid} --mount` : '';
  // This shell stays as PID 1 of the namespace (which ignores signals it has no handler for) and waits; the
  // command is a child, where signals with a default action work (Ctrl-C on `sleep`), and its status, 128 + N
  // when signal N ended it, is the shell's.
  // Its traps do nothing (a trapped signal, unlike an ignored one, is reset to the default for the command), so a
  // Ctrl-C that reaches the whole process group leaves the exit status to the command.
  L.push(`PATH=$inner_path`, 'set +e', "trap ':' INT QUIT TERM HUP", `${q(unshareBin)} ${enter} --root=${q(stage)} --wd=${q(spec.cwd)} -- "$@"`, 'exit $?');
  return L.join('\n');
}

/** The symlinks of a minimal /dev. */
const DEV_LINKS: [string, string][] = [['ptmx', 'pts/ptmx'], ['fd', '/proc/self/fd'], ['stdin', '/proc/self/fd/0'], ['stdout', '/proc/self/fd/1'], ['stderr', '/proc/self/fd/2']];

/** The program, arguments and environment that enter the sandbox. */
export function sandboxInvocation(spec: SandboxSpec, method: SandboxMethod, places: SandboxPlaces, terminal = false): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  const uid = spec.runAs?.uid ?? process.getuid?.() ?? 0;
  const gid = spec.runAs?.gid ?? process.getgid?.() ?? 0;
  const rootless = uid !== 0;
  const hostPath = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin';
  if (method === 'bwrap') {
    const bwrap = which('bwrap') ?? 'bwrap';
    // A terminal's Ctrl-C reaches bwrap's outer process too, which would die of it and SIGKILL the command before
    // its handler finishes. So, with a terminal, bwrap starts with SIGINT and SIGQUIT ignored, and the image's
    // `env --default-signal` gives the command the default back (when the image has a GNU env that can).
    if (terminal && spec.argv.length > 0 && !spec.argv[0]!.includes('=') && envResetsSignals(spec.rootfs)) {
      const args = bwrapArgs({ ...spec, argv: ['/usr/bin/env', '--default-signal=INT,QUIT', ...spec.argv] }, rootless, { uid, gid });
      return { file: '/bin/sh', args: ['-c', 'trap "" INT QUIT; exec "$0" "$@"', bwrap, ...args], env: { PATH: hostPath } };
    }
    return { file: bwrap, args: bwrapArgs(spec, rootless, { uid, gid }), env: { PATH: hostPath } };
  }
  // The image's top level is read once for both the skeleton and the fallback script.
  const steps = rootSteps(spec.rootfs, mountPointsOf(spec));
  const { stage } = places;
  const skeleton = method === 'unshare' ? ensureSkeleton(places.skeletons, unsharePlan(spec, steps), stage) : undefined;
  const flags = rootless ? ['--user', '--map-root-user'] : [];
  if (!spec.network) flags.push('--net');
  return {
    file: which('unshare') ?? 'unshare',
    args: [...flags, '--mount', '--pid', '--fork', '--kill-child', '--', '/bin/sh', '-c', unshareScript(spec, stage, rootless, { uid, gid }, skeleton, steps), 'strata-sandbox', ...spec.argv],
    // The command's environment is exactly the spec's: unshare and chroot pass theirs on.
    env: { ...spec.env } as NodeJS.ProcessEnv,
  };
}

/** Whether the image's /usr/bin/env is GNU env with --default-signal (coreutils >= 8.31). */
function envResetsSignals(rootfs: string): boolean {
  try {
    return readFileSync(join(rootfs, 'usr/bin/env')).includes('default-signal');
  } catch {
    return false;
  }
}


/** Child pids of `pid` (from /proc), or none. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * The command's pid on the host: the grandchild of the sandbox process (bwrap -> its PID 1 -> the command;
 * unshare -> the namespace's PID 1, a shell -> the command); the sandbox process while it is not there yet.
 */
export function commandPid(sandboxPid: number): number {
  const [init] = childrenOf(sandboxPid);
  if (init === undefined) return sandboxPid;
  const [command] = childrenOf(init);
  return command ?? sandboxPid;
}

/**
 * Runs the command in the sandbox with stdin, stdout and stderr passed through; resolves with its exit status
 * (128 + signal number when a signal ended it).
 *
 * Signals: strata sends what it receives to the command itself, not to bwrap or unshare (bwrap's outer process
 * would die of it and take the command down unannounced; unshare's ignores SIGINT and SIGTERM). A terminal's
 * Ctrl-C (SIGINT, SIGQUIT with a TTY on stdin) already reaches the whole foreground process group, the command
 * included, so it is not sent twice. Without a terminal the sandbox runs in its own process group, so a signal
 * to strata's process group reaches the command once, through strata.
 */
export async function runSandbox(spec: SandboxSpec, method: SandboxMethod, places: SandboxPlaces): Promise<number> {
  if (method !== 'bwrap' && !existsSync(places.stage)) throw new StrataError('E_RUN', `the sandbox staging directory ${places.stage} is missing`);
  const terminal = Boolean(process.stdin.isTTY);
  const inv = sandboxInvocation(spec, method, places, terminal);
  const child = spawn(inv.file, inv.args, {
    stdio: 'inherit',
    env: inv.env,
    detached: !terminal,
    ...(spec.runAs ? { uid: spec.runAs.uid, gid: spec.runAs.gid } : {}),
  });
  const forward = (sig: NodeJS.Signals) => {
    if (terminal && (sig === 'SIGINT' || sig === 'SIGQUIT')) return;
    if (child.pid === undefined) return;
    try {
      process.kill(commandPid(child.pid), sig);
    } catch {
      // already gone
    }
  };
  for (const s of FORWARDED) process.on(s, forward);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', (e) => reject(new StrataError('E_RUN', `cannot start ${inv.file}: ${e.message}`)));
      child.once('exit', (code, signal) => {
        if (signal) resolve(128 + (osSignal(signal) ?? 1));
        else resolve(code ?? 1);
      });
    });
  } finally {
    for (const s of FORWARDED) process.removeListener(s, forward);
  }
}

function osSignal(sig: NodeJS.Signals): number | undefined {
  return (osConstants.signals as Record<string, number>)[sig];
}
