/**
 * Keeping the store out of a command's reach, whichever backend runs it. The command may write the project directory
 * and HOME, and the store often lies below one of them (by default it is `~/.cache/strata`); a rootless command even
 * runs as the store's owner, so file permissions protect nothing there. So every protected path below a writable bind
 * is bound again, read-only, at its own place inside.
 *
 * That alone would not do: the command could rename a directory between the writable bind and the store (`mv
 * ~/.cache ~/x`), on the host, and put a store of its own making where the real one was. A directory that is a mount
 * point in the command's mount namespace cannot be renamed or removed (EBUSY), so each directory on the way from the
 * writable bind down to the store is bound onto itself too, read-write as before.
 */
import { realpathSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { StrataError } from '../errors.ts';
import type { Bind } from './sandbox/rootSteps.ts';

function realOf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/** `path` relative to `dir` when it lies in it (`''` for `dir` itself), else undefined. */
function below(dir: string, path: string): string | undefined {
  const r = relative(dir, path);
  return r === '' || (r !== '..' && !r.startsWith(`..${sep}`) && !r.startsWith(sep)) ? r : undefined;
}

/**
 * `binds` plus what keeps each of `paths` unchanged from inside: for every writable bind that holds one, a read-only
 * bind of it (that mount alone, not what is mounted below it) and read-write self-binds of the directories in
 * between; ordered so that a bind comes after those it lies in. A writable bind inside a protected path is refused.
 */
export function protectBinds(binds: Bind[], paths: string[], real: (p: string) => string = realOf): Bind[] {
  const out = [...binds];
  const has = (target: string) => out.some((b) => b.target === target);
  for (const p of paths) {
    const rp = real(p);
    for (const b of binds) {
      if (!b.writable) continue;
      const rs = real(b.source);
      if (below(rp, rs) !== undefined) {
        throw new StrataError('E_RUN', `${b.source} lies in the store (${rp}), and a command may write it`, 'run from a project outside the store, or move the store (STRATA_CACHE_DIR)');
      }
      const rel = below(rs, rp);
      if (rel === undefined) continue;
      const parts = rel.split(sep);
      for (let i = 1; i < parts.length; i++) {
        const step = parts.slice(0, i).join(sep);
        if (!has(join(b.target, step))) out.push({ source: join(rs, step), target: join(b.target, step), writable: true });
      }
      const target = join(b.target, rel);
      if (!out.some((x) => x.target === target && !x.writable)) out.push({ source: rp, target, writable: false, recursive: false });
    }
  }
  const depth = (t: string) => t.split('/').filter(Boolean).length;
  // A stable sort: binds at the same depth keep their order.
  return out.map((b, i) => ({ b, i })).sort((x, y) => depth(x.b.target) - depth(y.b.target) || x.i - y.i).map((x) => x.b);
}
