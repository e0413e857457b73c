/**
 * The unshare method: `unshare --mount --pid --fork` runs a host shell script that assembles the new root on a
 * staging directory and enters it: rootless with a second `unshare` that chroots into a user namespace of its own
 * (the command is an ordinary uid there, without capabilities); as root with `capsh`, which chroots, drops every
 * capability (bounding set included), sets no_new_privs and only then starts the command, through the image's
 * /bin/sh (to change into the working directory, which capsh cannot). A plain chroot would leave a root command its
 * capabilities, and with CAP_SYS_CHROOT a way out of the chroot. Fast path: a cached skeleton and an fstab (three
 * processes); fallback: one command per mount.
 *
 * Every read-only bind carries the nosuid/nodev/noexec of the mount its source lies on (see mountFlags.ts), and a
 * read-only remount that fails stops the run: the command never starts over a writable image or store.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { DRIVER_LIB_DIR } from '../gpu.ts';
import type { DerivedCache } from '../../store/store.ts';
import { which } from './choose.ts';
import { hostMounts, lockedFlags, roOptions, submountsOf, type MountEntry } from './mountFlags.ts';
import { DEV_NODES, mountPointsOf, PROC_READONLY, rootSteps, type Bind, type RootStep, type SandboxSpec } from './rootSteps.ts';

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
export function unsharePlan(spec: SandboxSpec, steps: RootStep[] = rootSteps(spec.rootfs, mountPointsOf(spec)), hostTable: MountEntry[] = hostMounts()): { skeleton: SkeletonEntry[]; mounts: FstabEntry[] } {
  const flags = (p: string) => lockedFlags(p, hostTable);
  const imageFlags = flags(spec.rootfs);
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
    else bind(s.source, s.path, s.file, roOptions(s.file ? 'bind,ro' : 'rbind,ro', imageFlags));
  }
  for (const d of DEV_NODES) bind(`/dev/${d}`, `/dev/${d}`, true, 'bind');
  dir('/dev/pts');
  mounts.push({ source: 'devpts', target: '/dev/pts', type: 'devpts', options: 'newinstance,ptmxmode=0666,mode=0620' });
  dir('/dev/shm');
  mounts.push({ source: 'shm', target: '/dev/shm', type: 'tmpfs', options: 'mode=1777' });
  for (const [name, target] of DEV_LINKS) skeleton.push({ kind: 'symlink', path: `/dev/${name}`, target });
  dir('/proc');
  mounts.push({ source: 'proc', target: '/proc', type: 'proc', options: PROC_OPTIONS });
  for (const p of PROC_READONLY.filter((e) => existsSync(`/proc/${e}`))) mounts.push({ source: `/proc/${p}`, inRoot: true, target: `/proc/${p}`, type: 'none', options: `bind,ro,${PROC_OPTIONS}` });
  // /sys and everything mounted below it (cgroups...) read-only: a recursive bind makes only its top read-only.
  bind('/sys', '/sys', false, roOptions('rbind,ro', flags('/sys')));
  for (const m of submountsOf('/sys', hostTable)) mounts.push({ source: 'none', target: m.target, type: 'none', options: roOptions('remount,bind,ro', m.flags) });
  dir('/tmp');
  mounts.push({ source: 'strata-tmp', target: '/tmp', type: 'tmpfs', options: 'mode=1777' });
  // The project directory and HOME may lie below /tmp, whose tmpfs hides the skeleton there: mount creates them.
  for (const b of spec.binds) mounts.push({ source: b.source, target: b.target, type: 'none', options: `${bindOptions(b, flags)},X-mount.mkdir` });
  if (spec.gpu) {
    for (const d of spec.gpu.devices) bind(d.hostPath, d.path, true, 'bind');
    dir(DRIVER_LIB_DIR);
    for (const l of spec.gpu.libraries) bind(l.hostPath, posix.join(DRIVER_LIB_DIR, l.name), true, roOptions('bind,ro', flags(l.hostPath)));
    for (const l of spec.gpu.links) skeleton.push({ kind: 'symlink', path: posix.join(DRIVER_LIB_DIR, l.name), target: l.target });
    for (const b of spec.gpu.binaries) bind(b.hostPath, b.path, true, roOptions('bind,ro', flags(b.hostPath)));
    // The driver directory itself read-only, its mounts carried along.
    const top = posix.dirname(DRIVER_LIB_DIR);
    mounts.push({ source: top, inRoot: true, target: top, type: 'none', options: 'rbind,ro' });
  }
  return { skeleton, mounts };
}

/**
 * The new root's tmpfs. Unbindable: when the staging directory lies below HOME or the project directory (the store
 * under ~/.cache), their recursive binds would otherwise copy the root being assembled into itself, again and again.
 */
const ROOT_OPTIONS = 'mode=0755,unbindable';

/** The new /proc's options (in a user namespace the kernel insists on the host's nosuid/nodev/noexec anyway). */
const PROC_OPTIONS = 'nosuid,nodev,noexec';

/** The mount options of a bind of the spec: read-write and recursive, or read-only with its source's flags. */
function bindOptions(b: Bind, flags: (p: string) => string[]): string {
  const base = b.recursive === false ? 'bind' : 'rbind';
  return b.writable ? base : roOptions(`${base},ro`, flags(b.source));
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
 * directory), then enters it: rootless with a second `unshare` that chroots, changes directory and maps the user
 * back to their own uid and gid; as root with `capsh` (see the top of this file).
 *
 * With a skeleton (see `ensureSkeleton`) the root is assembled in three processes: a tmpfs mount, one `cp -a`
 * of the skeleton, one `mount -a` of its fstab. If that fails (an old util-linux, a kernel that refuses a
 * read-only remount in a user namespace), or without a skeleton, it falls back to one command per mount, where a
 * read-only remount that fails ends the run (exit 125) before the command starts.
 */
export interface UnshareOptions {
  /** The empty directory the new root is mounted on. */
  stage: string;
  rootless: boolean;
  ids: { uid: number; gid: number };
  /** A skeleton directory from `ensureSkeleton`: the fast path. */
  skeleton?: string;
  /** The image's top level, when already read. */
  steps?: RootStep[];
  /** Show why the fast path failed (STRATA_DEBUG). */
  debug?: boolean;
  /** The host's `unshare` program. */
  unshareBin?: string;
  /** The host's `capsh` program (libcap2-bin), which enters the root as root; required then. */
  capshBin?: string;
  /** The host's mount table (read from /proc/self/mountinfo unless given). */
  hostTable?: MountEntry[];
}

/** Variables the image's /bin/sh sets when it changes directory; unset again unless the command's environment has them. */
const SHELL_SET = ['PWD', 'OLDPWD', 'SHLVL'];

export function unshareScript(spec: SandboxSpec, o: UnshareOptions): string {
  const { stage, rootless, ids, skeleton } = o;
  const steps = o.steps ?? rootSteps(spec.rootfs, mountPointsOf(spec));
  const hostTable = o.hostTable ?? hostMounts();
  const flags = (p: string) => lockedFlags(p, hostTable);
  const N = (p: string) => q(posix.join(stage, p));
  // The command's environment arrives as this shell's; host tools run with the host's PATH until the chroot.
  const L: string[] = ['set -e', 'inner_path=$PATH', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
  const S: string[] = [
    `ro() { mount -o "remount,bind,ro$2" "$1" || { echo "strata: cannot make $1 read-only inside the sandbox; not running the command" >&2; exit 125; }; }`,
    `mount -t tmpfs -o ${ROOT_OPTIONS} strata-root ${q(stage)}`,
  ];
  const ro = (dst: string, fl: string[]) => `ro ${N(dst)} ${q(fl.map((f) => `,${f}`).join(''))}`;
  const bindRo = (src: string, dst: string, file: boolean, fl: string[] = flags(src), recursive = true) => {
    S.push(file ? `mkdir -p "$(dirname ${N(dst)})"; : > ${N(dst)}` : `mkdir -p ${N(dst)}`);
    S.push(`mount ${recursive ? '--rbind' : '--bind'} ${q(src)} ${N(dst)}`, ro(dst, fl));
  };
  const imageFlags = flags(spec.rootfs);
  for (const s of steps) {
    if (s.op === 'dir') S.push(`mkdir -p ${N(s.path)}`);
    else if (s.op === 'symlink') S.push(`ln -s ${q(s.target)} ${N(s.path)}`);
    else bindRo(s.source, s.path, s.file, imageFlags);
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
  S.push(`mkdir -p ${N('/proc')} ${N('/tmp')}`, `mount -t proc -o ${PROC_OPTIONS} proc ${N('/proc')}`);
  for (const p of PROC_READONLY) S.push(`if [ -e ${N(`/proc/${p}`)} ]; then mount --bind ${N(`/proc/${p}`)} ${N(`/proc/${p}`)}; ${ro(`/proc/${p}`, PROC_OPTIONS.split(','))}; fi`);
  bindRo('/sys', '/sys', false);
  for (const m of submountsOf('/sys', hostTable)) S.push(ro(m.target, m.flags));
  S.push(`mount -t tmpfs -o mode=1777 strata-tmp ${N('/tmp')}`);
  for (const b of spec.binds) {
    if (b.writable) S.push(`mkdir -p ${N(b.target)}`, `mount ${b.recursive === false ? '--bind' : '--rbind'} ${q(b.source)} ${N(b.target)}`);
    else bindRo(b.source, b.target, false, flags(b.source), b.recursive !== false);
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
    const fast = [`mount -t tmpfs -o ${ROOT_OPTIONS} strata-root ${q(stage)}`, `cp -a ${q(join(skeleton, 'root'))}/. ${q(stage)}/`, `mount -a --fstab ${q(join(skeleton, 'fstab'))}`];
    // Its errors are shown with STRATA_DEBUG set; otherwise the fallback speaks for itself if it fails too.
    L.push(`if ! { ${fast.join(' && ')}; }${o.debug ? '' : ' 2>/dev/null'}; then`, `umount -R ${q(stage)} 2>/dev/null || true`, ...S, 'fi');
  } else L.push(...S);
  if (spec.build) {
    // A build: the new root read-only (/sys and /proc's writable parts are read-only above, as for every run), and
    // the command in a user namespace of its own (uid 0 there), whose mount namespace has every mount made above
    // locked as it is.
    L.push(`mount -o remount,ro,bind ${q(stage)} 2>/dev/null || mount -o remount,ro ${q(stage)}`);
  }
  // This shell stays as PID 1 of the namespace (which ignores signals it has no handler for) and waits; the
  // command is a child, where signals with a default action work (Ctrl-C on `sleep`), and its status, 128 + N
  // when signal N ended it, is the shell's.
  // Its traps do nothing (a trapped signal, unlike an ignored one, is reset to the default for the command), so a
  // Ctrl-C that reaches the whole process group leaves the exit status to the command.
  L.push(`PATH=$inner_path`, 'set +e', "trap ':' INT QUIT TERM HUP");
  if (spec.build) {
    const unshareBin = o.unshareBin ?? which('unshare') ?? '/usr/bin/unshare';
    L.push(`${q(unshareBin)} --user --map-root-user --mount --root=${q(stage)} --wd=${q(spec.cwd)} -- "$@"`);
  } else if (rootless) {
    const unshareBin = o.unshareBin ?? which('unshare') ?? '/usr/bin/unshare';
    L.push(`${q(unshareBin)} --user --map-user=${ids.uid} --map-group=${ids.gid} --mount --root=${q(stage)} --wd=${q(spec.cwd)} -- "$@"`);
  } else {
    // capsh: chroot, drop the bounding set, clear every other set, no_new_privs, then the image's /bin/sh (now
    // without any capability) changes directory and becomes the command.
    const capsh = o.capshBin ?? '/usr/sbin/capsh';
    const unset = SHELL_SET.filter((v) => !(v in spec.env));
    const enter = `cd "$1" || exit 1; shift;${unset.length ? ` unset ${unset.join(' ')};` : ''} exec "$@"`;
    L.push(`${q(capsh)} --chroot=${q(stage)} --drop=all --caps= --no-new-privs --shell=/bin/sh -- -c ${q(enter)} strata-sandbox ${q(spec.cwd)} "$@"`);
  }
  L.push('exit $?');
  return L.join('\n');
}

/** The symlinks of a minimal /dev. */
const DEV_LINKS: [string, string][] = [['ptmx', 'pts/ptmx'], ['fd', '/proc/self/fd'], ['stdin', '/proc/self/fd/0'], ['stdout', '/proc/self/fd/1'], ['stderr', '/proc/self/fd/2']];
