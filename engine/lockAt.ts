/** A lock to compare: a lock file's path, or a git revision of the project's strata.lock (read with `git show`). */
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { parseLock, readLock } from '../lock/lockfile.ts';
import { StrataError } from '../errors.ts';
import { shown } from './ensureLock.ts';
import type { Lockfile } from '../model.ts';

/** A lock from a path, or from a git revision of the project's strata.lock. */
export async function lockAt(side: string, lockPath: string): Promise<{ label: string; lock: Lockfile }> {
  if (existsSync(side) && statSync(side).isFile()) {
    const lock = await readLock(side);
    return { label: shown(side), lock: lock! };
  }
  const dir = dirname(lockPath);
  let top: string;
  try {
    top = execFileSync('git', ['rev-parse', '--show-toplevel'], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    throw new StrataError('E_USAGE', `"${side}" is neither a lock file nor a git revision: ${shown(dir)} is not in a git repository`, 'name two lock files: strata diff OLD.lock NEW.lock');
  }
  const inRepo = relative(top, lockPath);
  let text: string;
  try {
    text = execFileSync('git', ['show', `${side}:${inRepo}`], { cwd: top, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 * 1024 * 1024 });
  } catch (e) {
    const why = ((e as { stderr?: string }).stderr ?? '').trim().split('\n')[0] ?? '';
    throw new StrataError('E_USAGE', `cannot read ${inRepo} at git revision "${side}": ${why || 'git show failed'}`, 'commit strata.lock, or name a lock file');
  }
  return { label: `${side}:${inRepo}`, lock: parseLock(text, `${side}:${inRepo}`) };
}

