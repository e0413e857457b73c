/** Resolving a manifest into a lock: load the channels, solve, write strata.lock. */
import { loadChannel } from '../channels/channel.ts';
import { Universe } from '../resolver/universe.ts';
import { solve } from '../resolver/solve.ts';
import { lockFromSolution } from '../lock/fromSolution.ts';
import { lockPathFor, readLock, writeLock, diffLocks, type LockDiff } from '../lock/lockfile.ts';
import { environmentRequests } from '../lock/verify.ts';
import type { Ctx } from './ctx.ts';
import type { Lockfile, Manifest } from '../model.ts';

export interface LockResult {
  lock: Lockfile;
  /** The lock that was there before, if any. */
  before: Lockfile | undefined;
  diff: LockDiff;
  /** false when the new lock's bytes equal the old ones (nothing was written). */
  written: boolean;
  path: string;
}

/** Resolves the manifest against its channels and writes the lock; returns the new lock and what changed. */
export async function lockManifest(manifest: Manifest, ctx: Ctx, opts: { offline?: boolean } = {}): Promise<LockResult> {
  const { store, reporter } = ctx;
  const path = lockPathFor(manifest.path);
  const before = await readLock(path).catch(() => undefined);
  const started = Date.now();
  // Channels load concurrently; a failure is reported for the first failing channel in manifest order.
  const settled = await Promise.allSettled(
    manifest.channels.map((c, rank) => loadChannel(c, rank, manifest.arch, store, reporter, { offline: opts.offline ?? false })),
  );
  const failed = settled.find((s) => s.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  const loaded = settled.map((s) => (s as PromiseFulfilledResult<Awaited<ReturnType<typeof loadChannel>>>).value);
  const universe = new Universe(loaded.flatMap((l) => l.candidates), manifest.arch);
  const indexed = Date.now();
  const recipes = (manifest.recipes ?? []).length > 0 ? await import('./lockRecipes.ts') : undefined;
  recipes?.checkRecipeNames(manifest, universe);
  const solution = solve({
    universe,
    roots: environmentRequests(manifest),
    channels: manifest.channels.map((c) => c.name),
    hostDriver: manifest.image.gpuDriver === 'host',
    withRecommends: manifest.withRecommends,
    withEssential: manifest.withEssential,
  });
  reporter.info(`resolved ${solution.packages.length} packages from ${universe.byName.size} names in ${Date.now() - indexed} ms (indexes read in ${indexed - started} ms)`);
  const locked = recipes ? await recipes.lockRecipes(manifest, universe, solution.packages, ctx, loaded.map((l) => l.locked), before) : [];
  const lock = lockFromSolution(manifest, loaded.map((l) => l.locked), solution.packages, solution.hostProvided, locked);
  const written = await writeLock(path, lock);
  return { lock, before, diff: diffLocks(before, lock), written, path };
}

