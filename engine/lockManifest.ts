/** Resolving a manifest into a lock: load the channels, solve, write strata.lock. */
import { loadChannel } from '../channels/channel.ts';
import { Universe } from '../resolver/universe.ts';
import { solve } from '../resolver/solve.ts';
import { lockFromSolution } from '../lock/fromSolution.ts';
import { lockPathFor, readLock, writeLock, diffLocks, type LockDiff } from '../lock/lockfile.ts';
import { environmentRequests } from '../lock/verify.ts';
import { StrataError } from '../errors.ts';
import { suggestNames } from '../resolver/suggest.ts';
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
export async function lockManifest(manifest: Manifest, ctx: Ctx, opts: { offline?: boolean; update?: string[] | true } = {}): Promise<LockResult> {
  const { store, reporter } = ctx;
  const path = lockPathFor(manifest.path);
  const before = await readLock(path).catch(() => undefined);
  const keep = keptVersions(manifest, before, opts.update);
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
    rootsFromDefault: true,
    ...(keep ? { keep } : {}),
    ...(Array.isArray(opts.update) ? { update: new Set(opts.update) } : {}),
  });
  reporter.info(`resolved ${solution.packages.length} packages from ${universe.byName.size} names in ${Date.now() - indexed} ms (indexes read in ${indexed - started} ms)`);
  const locked = recipes ? await recipes.lockRecipes(manifest, universe, solution.packages, ctx) : [];
  const lock = lockFromSolution(manifest, loaded.map((l) => l.locked), solution.packages, solution.hostProvided, locked);
  const written = await writeLock(path, lock);
  return { lock, before, diff: diffLocks(before, lock), written, path };
}


/**
 * What the re-lock keeps: every package of the previous lock at its locked version, except those `update` names
 * (`true`: none is kept, everything moves to what the channels now prefer). A name to update must be in the lock
 * or the manifest.
 */
export function keptVersions(manifest: Manifest, before: Lockfile | undefined, update: string[] | true | undefined): Map<string, { version: string; channel: string }> | undefined {
  if (update === true) return undefined;
  const names = new Set(update ?? []);
  const known = new Set([...(before?.packages ?? []).map((p) => p.name), ...environmentRequests(manifest).map((r) => r.name)]);
  for (const n of names) {
    if (known.has(n)) continue;
    const near = suggestNames(n, [...known]);
    throw new StrataError(
      'E_UNKNOWN_PACKAGE',
      `--update ${n}: "${n}" is neither locked in strata.lock nor asked for in strata.toml`,
      near.length > 0 ? `did you mean: ${near.join(', ')}?` : 'name a locked package (see strata.lock), or use --update alone to update everything',
    );
  }
  if (!before) return undefined;
  const keep = new Map<string, { version: string; channel: string }>();
  for (const p of before.packages) if (!names.has(p.name)) keep.set(p.name, { version: p.version, channel: p.channel });
  return keep;
}
