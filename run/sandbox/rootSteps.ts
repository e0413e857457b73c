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
 * selected GPU nodes, `/proc` of the new PID namespace (its `sys`, `sysrq-trigger`, `irq` and `bus` read-only), the
 * host's `/sys` read-only with everything mounted below it, a private `/tmp`, the project directory read-write at its
 * own path (the working directory), HOME read-write, the store read-only where it lies below either, and the GPU
 * driver files read-only.
 *
 * The command itself has no capabilities (as root: bubblewrap's --cap-drop ALL, or capsh for the unshare method;
 * rootless: an ordinary uid in a user namespace), so it can remount nothing read-write and unmount nothing.
 */
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join, posix } from 'node:path';
import { DRIVER_LIB_DIR, type GpuMounts } from '../gpu.ts';

export interface Bind {
  source: string;
  target: string;
  writable: boolean;
  /** false: this mount alone, without what is mounted below the source (default: with it). */
  recursive?: false;
}

export interface SandboxSpec {
  rootfs: string;
  argv: string[];
  env: Record<string, string>;
  /** Working directory inside (the project directory). */
  cwd: string;
  /**
   * Read-write (or read-only) binds at their target paths, a bind after those it lies in: the project directory,
   * HOME, and the store read-only where it lies below one of them (see run/protect.ts).
   */
  binds: Bind[];
  gpu?: GpuMounts;
  network: boolean;
  /** Run the sandbox as this user (root running for a sudo invoker); undefined: as this process. */
  runAs?: { uid: number; gid: number };
  /**
   * A recipe's build: the command is uid 0 of a user namespace of its own (whoever runs strata, root included),
   * holds no capabilities, and the new root itself is read-only (only the binds and /tmp can be written).
   */
  build?: boolean;
}

/** One step of assembling the new root, relative to it. */
export type RootStep =
  | { op: 'dir'; path: string }
  | { op: 'bind'; source: string; path: string; file: boolean }
  | { op: 'symlink'; target: string; path: string };

/** Paths the sandbox mounts itself; the image's entries there are hidden. */
const PROVIDED = ['/dev', '/proc', '/sys', '/tmp'];

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

export function mountPointsOf(spec: SandboxSpec): string[] {
  const points = [...PROVIDED, ...spec.binds.map((b) => b.target)];
  if (spec.gpu) points.push(posix.dirname(DRIVER_LIB_DIR), ...spec.gpu.binaries.map((b) => b.path));
  return points;
}

/** Entries of /proc made read-only: the host-wide settings a root command without capabilities could still write. */
export const PROC_READONLY = ['sys', 'sysrq-trigger', 'irq', 'bus'];

/** The devices of a minimal /dev, bound from the host's. */
export const DEV_NODES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];
