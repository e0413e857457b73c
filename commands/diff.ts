/**
 * `strata diff [OLD] [NEW]`: what changed between two locks, package by package. Each side is a lock file's path or
 * a git revision whose strata.lock (beside the manifest) is read with `git show`; OLD defaults to HEAD, NEW to the
 * working strata.lock.
 */
import { loadManifest } from '../manifest/manifest.ts';
import { diffLocks, lockPathFor, readLock } from '../lock/lockfile.ts';
import { StrataError } from '../errors.ts';
import { shown } from '../engine/ensureLock.ts';
import { lockAt } from '../engine/lockAt.ts';

export interface DiffOptions {
  manifest: string;
  json?: boolean;
}

export async function diffCommand(oldSide: string | undefined, newSide: string | undefined, opts: DiffOptions): Promise<void> {
  const manifest = loadManifest(opts.manifest);
  const lockPath = lockPathFor(manifest.path);
  const a = await lockAt(oldSide ?? 'HEAD', lockPath);
  const b = newSide !== undefined ? await lockAt(newSide, lockPath) : { label: shown(lockPath), lock: await readLock(lockPath) };
  if (!b.lock) throw new StrataError('E_LOCK', `there is no ${shown(lockPath)}`, 'run `strata lock` first');
  const d = diffLocks(a.lock, b.lock);
  const channels = b.lock.channels
    .map((c) => ({ now: c, was: a.lock.channels.find((o) => o.name === c.name) }))
    .filter(({ now, was }) => !was || was.suite !== now.suite || was.codename !== now.codename || was.date !== now.date || was.releaseSha256 !== now.releaseSha256);
  if (opts.json) {
    const pkg = (p: { name: string; version: string; channel: string; arch: string }) => ({ name: p.name, version: p.version, arch: p.arch, channel: p.channel });
    process.stdout.write(
      `${JSON.stringify(
        {
          old: a.label,
          new: b.label,
          closure: { old: a.lock.closure, new: b.lock.closure },
          added: d.added.map(pkg),
          removed: d.removed.map(pkg),
          changed: d.changed.map((c) => ({ name: c.to.name, arch: c.to.arch, from: { version: c.from.version, channel: c.from.channel }, to: { version: c.to.version, channel: c.to.channel } })),
          channels: channels.map(({ now, was }) => ({ name: now.name, from: was ? { suite: was.suite, codename: was.codename, date: was.date } : null, to: { suite: now.suite, codename: now.codename, date: now.date } })),
        },
        null,
        2,
      )}\n`,
    );
    return;
  }
  const out: string[] = [`${a.label} -> ${b.label}`];
  if (a.lock.closure === b.lock.closure) out.push(`no change (closure ${b.lock.closure})`);
  else {
    out.push(`closure ${a.lock.closure.slice(0, 19)} -> ${b.lock.closure.slice(0, 19)}: ${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed`);
    for (const { now, was } of channels) out.push(`  channel ${now.name}: ${was ? `${was.suite} (${was.codename}, ${was.date}) -> ` : 'new: '}${now.suite} (${now.codename}, ${now.date})`);
    const byName = <T extends { name: string }>(xs: T[]) => [...xs].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    for (const p of byName(d.added)) out.push(`  + ${p.name} ${p.version} (${p.channel})`);
    for (const p of byName(d.removed)) out.push(`  - ${p.name} ${p.version} (${p.channel})`);
    for (const c of [...d.changed].sort((x, y) => (x.to.name < y.to.name ? -1 : x.to.name > y.to.name ? 1 : 0))) {
      out.push(`  ~ ${c.to.name} ${c.from.version} (${c.from.channel}) -> ${c.to.version} (${c.to.channel})`);
    }
  }
  process.stdout.write(`${out.join('\n')}\n`);
}
