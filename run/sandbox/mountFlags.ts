/**
 * What the host's mount table says about a path, as far as making a read-only bind of it needs: the flags of the
 * mount it lies on that a read-only remount has to repeat, and the mounts below a directory.
 *
 * Why the flags: in a user namespace (rootless), the nosuid, nodev and noexec of a mount that came from the host are
 * locked, and a `remount,bind,ro` that leaves one out is refused (EPERM). A bind mount is made read-only by exactly
 * such a remount, so each read-only bind of a host path carries the flags of the mount the path lies on.
 */
import { readFileSync, realpathSync } from 'node:fs';

export interface MountEntry {
  /** The mount point (unescaped). */
  target: string;
  /** The per-mount options, e.g. `rw,nosuid,nodev,relatime`. */
  options: string[];
}

/** The flags a read-only remount must repeat. */
const LOCKABLE = ['nosuid', 'nodev', 'noexec'];

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** `/proc/self/mountinfo` as entries, in its order (a mount after the one it is mounted on). */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 6) continue;
    out.push({ target: unescape(f[4]!), options: f[5]!.split(',') });
  }
  return out;
}

let cached: MountEntry[] | undefined;

/** This process's mount table (read once). */
export function hostMounts(): MountEntry[] {
  if (!cached) {
    try {
      cached = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    } catch {
      cached = [];
    }
  }
  return cached;
}

function within(dir: string, path: string): boolean {
  return dir === '/' || path === dir || path.startsWith(`${dir}/`);
}

/** The mount `path` lies on: the last (topmost) of those with the longest mount point above it. */
function mountOf(path: string, mounts: MountEntry[]): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const m of mounts) if (within(m.target, path) && (!best || m.target.length >= best.target.length)) best = m;
  return best;
}

/** The nosuid/nodev/noexec flags of the mount `path` lies on, to add to a read-only bind's options. */
export function lockedFlags(path: string, mounts: MountEntry[] = hostMounts()): string[] {
  let real = path;
  try {
    real = realpathSync(path);
  } catch {
    // a path that does not exist is bound by nobody; keep it as it is
  }
  const m = mountOf(real, mounts);
  return m ? LOCKABLE.filter((f) => m.options.includes(f)) : [];
}

/** The mounts strictly below `dir` (unique mount points, parents first), each with its locked flags. */
export function submountsOf(dir: string, mounts: MountEntry[] = hostMounts()): { target: string; flags: string[] }[] {
  const seen = new Map<string, string[]>();
  for (const m of mounts) {
    if (m.target !== dir && within(dir, m.target)) seen.set(m.target, LOCKABLE.filter((f) => m.options.includes(f)));
  }
  const depth = (p: string) => p.split('/').length;
  return [...seen.entries()].map(([target, flags]) => ({ target, flags })).sort((a, b) => depth(a.target) - depth(b.target));
}

/** `ro` options for a bind of `source`: the base (`bind,ro`, `rbind,ro`) plus the flags it must keep. */
export function roOptions(base: string, flags: string[]): string {
  return [base, ...flags].join(',');
}
