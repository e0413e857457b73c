/** `strata lock`: resolve strata.toml into strata.lock, or `--check` that the lock is up to date. */
import { loadManifest } from '../manifest/manifest.ts';
import { lockPathFor, readLock, type LockDiff } from '../lock/lockfile.ts';
import { StrataError } from '../errors.ts';
import { openCtx } from '../engine/ctx.ts';
import { shown, staleReason } from '../engine/ensureLock.ts';
import { lockManifest } from '../engine/lockManifest.ts';
import type { Lockfile } from '../model.ts';

export interface LockOptions {
  manifest: string;
  check?: boolean;
  online?: boolean;
  offline?: boolean;
  json?: boolean;
  /** `--update` alone: true; `--update PKG...`: the names. */
  update?: string[] | boolean;
}

export function summarize(lock: Lockfile, diff: LockDiff, hadBefore: boolean): string[] {
  const lines: string[] = [];
  const perChannel = new Map<string, number>();
  for (const p of lock.packages) perChannel.set(p.channel, (perChannel.get(p.channel) ?? 0) + 1);
  const bytes = lock.packages.reduce((n, p) => n + p.size, 0);
  const roots = lock.packages.filter((p) => p.root).length;
  lines.push(`${lock.packages.length} packages (${roots} requested), ${(bytes / 1e6).toFixed(1)} MB of .debs`);
  for (const c of lock.channels) lines.push(`  ${c.name.padEnd(12)} ${String(perChannel.get(c.name) ?? 0).padStart(5)}  ${c.suite} ${c.unread ? '(not read: no package needs it)' : `(${c.codename || (c.suite.endsWith('/') ? 'flat repository' : '')}, ${c.date})`}`);
  for (const h of lock.hostProvided) lines.push(`  host-provided ${h.name}${h.requires ? ` ${h.requires}` : ''}`);
  for (const r of lock.recipes ?? []) lines.push(`  recipe ${r.name} ${r.version}: ${r.sources.length} source${r.sources.length === 1 ? '' : 's'}, build environment of ${r.buildPackages.length} packages, input ${r.input.slice(0, 19)}…`);
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
    ...diff.changed.map(({ from, to }) => `  ~ ${to.name} ${from.version}${from.channel === to.channel ? '' : ` (${from.channel})`} -> ${to.version} (${to.channel})`),
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
  if (opts.update !== undefined && opts.update !== false && opts.check) throw new StrataError('E_USAGE', '--update and --check contradict each other: --check never writes the lock');
  if (opts.check) {
    const lock = await readLock(path);
    const reason = staleReason(manifest, lock);
    if (reason) throw new StrataError('E_LOCK', `${shown(path)} is not up to date: ${reason}`, 'run `strata lock`');
    // --online: a lock the channels no longer match is not reported up to date first.
    const online = opts.online ? await (await import('../engine/checkOnline.ts')).checkOnline(manifest, lock!, await openCtx()) : [];
    process.stdout.write(`${shown(path)} is up to date (${lock!.packages.length} packages)\n`);
    if (online.length > 0) process.stdout.write(`${online.join('\n')}\n`);
    return;
  }
  const update = opts.update === true || (Array.isArray(opts.update) && opts.update.length === 0) ? true : Array.isArray(opts.update) ? opts.update : undefined;
  const { lock, before, diff, written } = await lockManifest(manifest, await openCtx(), { offline: opts.offline ?? false, ...(update ? { update } : {}) });
  if (opts.json) {
    const at = (p: { version: string; channel: string }) => ({ version: p.version, channel: p.channel });
    process.stdout.write(`${JSON.stringify({
      path,
      written,
      closure: lock.closure,
      packages: lock.packages.length,
      added: diff.added.map((p) => p.name),
      removed: diff.removed.map((p) => p.name),
      changed: diff.changed.map((c) => c.to.name),
      changes: [
        ...diff.added.map((p) => ({ name: p.name, to: at(p) })),
        ...diff.removed.map((p) => ({ name: p.name, from: at(p) })),
        ...diff.changed.map((c) => ({ name: c.to.name, from: at(c.from), to: at(c.to) })),
      ].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    }, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${written ? 'wrote' : 'unchanged:'} ${shown(path)}\n`);
  process.stdout.write(`${summarize(lock, diff, before !== undefined).join('\n')}\n`);
}
