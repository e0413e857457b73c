/**
 * The lock a workflow works from: read strata.lock beside the manifest, and resolve the manifest again when the
 * lock is missing or stale, unless the caller forbids it (`--locked`). The resolver (engine/lockManifest.ts) is
 * loaded only when a lock must be made, so a warm `strata run` never loads it.
 */
import { relative } from 'node:path';
import { lockMemoKey, lockPathFor, parseLock, readLock, serializeLock, type LockMemo } from '../lock/lockfile.ts';
import { verifyLockMatchesManifest } from '../lock/verify.ts';
import { StrataError } from '../errors.ts';
import type { Ctx } from './ctx.ts';
import type { Lockfile, Manifest } from '../model.ts';

/** A path as the user would type it from the current directory. */
export function shown(path: string): string {
  return relative(process.cwd(), path) || path;
}

/**
 * Why the lock does not match the manifest, or undefined when it does. A lock that records the manifest's sha256 but
 * not what the manifest asks for was edited: that throws E_LOCK (lock/verify.ts), and is never silently locked again.
 */
export function staleReason(manifest: Manifest, lock: Lockfile | undefined): string | undefined {
  if (!lock) return 'there is no strata.lock';
  if (lock.manifestSha256 !== manifest.sha256) {
    return `strata.toml changed since strata.lock was written (manifest sha256 ${manifest.sha256.slice(0, 12)}, lock records ${lock.manifestSha256.slice(0, 12)})`;
  }
  verifyLockMatchesManifest(manifest, lock);
  return undefined;
}

/**
 * The lock to work from: the current one; a missing or stale one is locked again first (saying so) in mode
 * `relock`, and refused (E_LOCK) in mode `locked`.
 */
export async function ensureLock(manifest: Manifest, ctx: Ctx, mode: 'relock' | 'locked'): Promise<Lockfile> {
  const path = lockPathFor(manifest.path);
  const lock = await readLock(path, lockMemo(ctx));
  const reason = staleReason(manifest, lock);
  if (reason === undefined) return lock!;
  if (mode === 'locked') {
    throw new StrataError('E_LOCK', `${shown(path)} is stale: ${reason}`, 'run `strata lock` (or drop --locked to let this command lock first)');
  }
  ctx.reporter.info(`${reason}: locking first`);
  const { lockManifest } = await import('./lockManifest.ts');
  const { lock: made } = await lockManifest(manifest, ctx);
  // The lock just written is remembered as reading it gives, so the next command does not parse it again (and does
  // not write the store then).
  const text = serializeLock(made);
  await lockMemo(ctx).put(lockMemoKey(text), { text, lock: parseLock(text) }).catch(() => undefined);
  return made;
}

/** The store's memo of locks read before (lock/lockfile.ts `LockMemo`): an entry whose loss costs one parse. */
export function lockMemo(ctx: Ctx): LockMemo {
  const locks = ctx.store.cache('locks');
  return {
    get: (key) => locks.readJson<{ text: string; lock: Lockfile }>(key),
    put: (key, entry) => locks.writeJson(key, entry, { durable: false }),
  };
}
