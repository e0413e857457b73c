/** Resolving a manifest into a lock: load the channels, solve, write strata.lock. */
import { loadChannel } from '../channels/channel.ts';
import { Universe } from '../resolver/universe.ts';
import { solve } from '../resolver/solve.ts';
import { describeSkippedRecommends, skippedLibraryRecommends } from '../resolver/skippedRecommends.ts';
import { lockFromSolution } from '../lock/fromSolution.ts';
import { lockPathFor, readLock, writeLock, diffLocks, type LockDiff } from '../lock/lockfile.ts';
import { environmentRequests } from '../lock/verify.ts';
import { packageRequests } from '../recipes/recipe.ts';
import { StrataError } from '../errors.ts';
import { suggestNames } from '../resolver/suggest.ts';
import type { Ctx } from './ctx.ts';
import type { LockedChannel, Lockfile, Manifest } from '../model.ts';

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
  // A channel that failed to load is fatal when it is the default one or a request names it; any other is left
  // out, and fatal after all only when the manifest does not resolve without it (it may be what is missing).
  const named = new Set([...environmentRequests(manifest), ...(manifest.recipes ?? []).flatMap((r) => packageRequests(r.buildDepends))].map((r) => r.channel).filter((c) => c !== undefined));
  const unread = new Map<number, unknown>();
  settled.forEach((s, rank) => {
    if (s.status === 'fulfilled') return;
    const spec = manifest.channels[rank]!;
    if (rank === 0 || named.has(spec.name) || !(s.reason instanceof StrataError)) throw s.reason;
    unread.set(rank, s.reason);
  });
  const loaded = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const universe = new Universe(loaded.flatMap((l) => l.indexes), manifest.arch);
  const indexed = Date.now();
  const recipes = (manifest.recipes ?? []).length > 0 ? await import('./lockRecipes.ts') : undefined;
  recipes?.checkRecipeNames(manifest, universe);
  const solveAll = () => solve({
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
  let solution: ReturnType<typeof solve>;
  try {
    solution = solveAll();
  } catch (e) {
    // Without the unread channels the manifest does not resolve: one of them may be what it needs.
    const first = [...unread.values()][0];
    if (first !== undefined && e instanceof StrataError && (e.code === 'E_UNSATISFIABLE' || e.code === 'E_UNKNOWN_PACKAGE')) throw first;
    throw e;
  }
  for (const [rank, reason] of unread) {
    const spec = manifest.channels[rank]!;
    reporter.warn(`channel "${spec.name}" could not be read (${(reason as StrataError).message.replace(/^channel "[^"]*": /, '')}); no package needs it, so the lock leaves it out and records it as unread`);
  }
  reporter.info(`resolved ${solution.packages.length} packages in ${Date.now() - indexed} ms (indexes read in ${indexed - started} ms)`);
  if (!manifest.withRecommends) {
    for (const line of describeSkippedRecommends(skippedLibraryRecommends(universe, solution.packages.map((p) => p.candidate)))) reporter.info(line);
  }
  const locked = recipes ? await recipes.lockRecipes(manifest, universe, solution.packages, ctx, loaded.map((l) => l.locked), before) : [];
  const channels = manifest.channels.map((spec, rank): LockedChannel => {
    const l = loaded.find((x) => x.rank === rank);
    if (l) return l.locked;
    return { name: spec.name, suite: spec.suite, codename: '', components: [...spec.components], date: '', releaseSha256: '', urls: [...spec.urls], unread: true };
  });
  const lock = lockFromSolution(manifest, channels, solution.packages, solution.hostProvided, locked);
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
