/** `strata lock`: resolve strata.toml into strata.lock, or `--check` that the lock is up to date. */
import { dirname, join, relative } from 'node:path';
import { loadManifest } from '../manifest/manifest.ts';
import { openStore } from '../store/store.ts';
import { loadChannel } from '../channels/channel.ts';
import { Universe } from '../resolver/universe.ts';
import { solve } from '../resolver/solve.ts';
import { lockFromSolution } from '../lock/fromSolution.ts';
import { readLock, writeLock, diffLocks, type LockDiff } from '../lock/lockfile.ts';
import { verifyLockMatchesManifest } from '../lock/verify.ts';
import { StrataError } from '../errors.ts';
import { terminalReporter, type Reporter } from '../report/reporter.ts';
import type { Lockfile, Manifest } from '../model.ts';

export interface LockOptions {
  manifest: string;
  check?: boolean;
  online?: boolean;
  offline?: boolean;
  json?: boolean;
}

export function lockPathFor(manifestPath: string): string {
  return join(dirname(manifestPath), 'strata.lock');
}

/**
 * Why the lock does not match the manifest, or undefined when it does. A lock that records the manifest's sha256 but
 * not what the manifest asks for was edited: that throws E_LOCK (lock/verify.ts).
 */
export function staleReason(manifest: Manifest, lock: Lockfile | undefined): string | undefined {
  if (!lock) return 'there is no strata.lock';
  if (lock.manifestSha256 !== manifest.sha256) {
    return `strata.toml changed since strata.lock was written (manifest sha256 ${manifest.sha256.slice(0, 12)}, lock records ${lock.manifestSha256.slice(0, 12)})`;
  }
  // Not stale but edited: refused (E_LOCK), never silently locked again.
  verifyLockMatchesManifest(manifest, lock);
  return undefined;
}

/** Resolves the manifest and writes the lock; returns the new lock and what changed. */
export async function lockManifest(
  manifest: Manifest,
  reporter: Reporter,
  opts: { offline?: boolean; storeRoot?: string } = {},
): Promise<{ lock: Lockfile; before: Lockfile | undefined; diff: LockDiff; written: boolean; path: string }> {
  const path = lockPathFor(manifest.path);
  const before = await readLock(path).catch(() => undefined);
  const store = await openStore(opts.storeRoot);
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
  const solution = solve({
    universe,
    roots: manifest.packages,
    channels: manifest.channels.map((c) => c.name),
    hostDriver: manifest.image.gpuDriver === 'host',
    withRecommends: manifest.withRecommends,
    withEssential: manifest.withEssential,
  });
  reporter.info(`resolved ${solution.packages.length} packages from ${universe.byName.size} names in ${Date.now() - indexed} ms (indexes read in ${indexed - started} ms)`);
  const lock = lockFromSolution(manifest, loaded.map((l) => l.locked), solution.packages, solution.hostProvided);
  const written = await writeLock(path, lock);
  return { lock, before, diff: diffLocks(before, lock), written, path };
}

export function summarize(lock: Lockfile, diff: LockDiff, hadBefore: boolean): string[] {
  const lines: string[] = [];
  const perChannel = new Map<string, number>();
  for (const p of lock.packages) perChannel.set(p.channel, (perChannel.get(p.channel) ?? 0) + 1);
  const bytes = lock.packages.reduce((n, p) => n + p.size, 0);
  const roots = lock.packages.filter((p) => p.root).length;
  lines.push(`${lock.packages.length} packages (${roots} requested), ${(bytes / 1e6).toFixed(1)} MB of .debs`);
  for (const c of lock.channels) lines.push(`  ${c.name.padEnd(12)} ${String(perChannel.get(c.name) ?? 0).padStart(5)}  ${c.suite} (${c.codename}, ${c.date})`);
  for (const h of lock.hostProvided) lines.push(`  host-provided ${h.name}${h.requires ? ` ${h.requires}` : ''}`);
  lines.push(`closure ${lock.closure}`);
  if (!hadBefore) return lines;
  const n = diff.added.length + diff.removed.length + diff.changed.length;
  if (n === 0) {
    lines.push('no package changed since the previous lock');
    return lines;
  }
  lines.push(`changes since the previous lock: ${diff.added.length} added, ${diff.removed.length} removed, ${diff.changed.length} changed`);
  const shown = [
    ...diff.added.map((p) => `  + ${p.name} ${p.version} (${p.channel})`),
    ...diff.removed.map((p) => `  - ${p.name} ${p.version} (${p.channel})`),
    ...diff.changed.map(({ from, to }) => `  ~ ${to.name} ${from.version} (${from.channel}) -> ${to.version} (${to.channel})`),
  ];
  lines.push(...shown.slice(0, 15));
  if (shown.length > 15) lines.push(`  ... and ${shown.length - 15} more`);
  return lines;
}

export async function lockCommand(opts: LockOptions): Promise<void> {
  const manifest = loadManifest(opts.manifest);
  const path = lockPathFor(manifest.path);
  if (opts.online && !opts.check) throw new StrataError('E_USAGE', '--online goes with --check: strata lock --check --online');
  if (opts.online && opts.offline) throw new StrataError('E_USAGE', '--online and --offline contradict each other');
  if (opts.check) {
    const lock = await readLock(path);
    const reason = staleReason(manifest, lock);
    if (reason) throw new StrataError('E_LOCK', `${relative(process.cwd(), path) || path} is not up to date: ${reason}`, 'run `strata lock`');
    // --online: a lock the channels no longer match is not reported up to date first.
    const online = opts.online ? await (await import('../lock/checkOnline.ts')).checkOnline(manifest, lock!, await openStore(), terminalReporter()) : [];
    process.stdout.write(`${relative(process.cwd(), path) || path} is up to date (${lock!.packages.length} packages)\n`);
    if (online.length > 0) process.stdout.write(`${online.join('\n')}\n`);
    return;
  }
  const reporter = terminalReporter();
  const { lock, before, diff, written } = await lockManifest(manifest, reporter, { offline: opts.offline ?? false });
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ path, written, closure: lock.closure, packages: lock.packages.length, added: diff.added.map((p) => p.name), removed: diff.removed.map((p) => p.name), changed: diff.changed.map((c) => c.to.name) }, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${written ? 'wrote' : 'unchanged:'} ${relative(process.cwd(), path) || path}\n`);
  process.stdout.write(`${summarize(lock, diff, before !== undefined).join('\n')}\n`);
}
