/**
 * `strata lock --check --online`: does the lock still match what the channels offer? Each channel's Release is fetched
 * now and its signature verified, and its `Packages` indexes are read through the store (checked against the signed
 * Release), exactly as `strata lock` does (channels/channel.ts). Every locked package must still be offered by its
 * channel as the very same file: name, version, architecture, sha256, size and filename. And every package the
 * manifest asks for that the lock holds under no package of that name must be provided by one of its roots (the
 * offline check, lock/verify.ts, cannot see Provides: this is what catches a root deleted with its closures redone).
 */
import { StrataError } from '../errors.ts';
import { loadChannel } from '../channels/channel.ts';
import { parseProvides, satisfiesVersion } from '../debian/relation.ts';
import type { Ctx } from './ctx.ts';
import type { Candidate, LockedPackage, Lockfile, Manifest } from '../model.ts';

/** How many packages that no longer match are named; the rest are counted. */
export const SHOWN = 10;

export interface OnlineMismatch {
  pkg: LockedPackage;
  /** The recipes whose build environment holds it, when the image does not. */
  buildOf?: string[];
  /** What the channel's index says now, e.g. `not in the index` or `the index has 1.3-1`. */
  why: string;
}

export interface OnlineResult {
  checked: number;
  mismatches: OnlineMismatch[];
  /** Requests of the manifest that no locked root is or provides, with why. */
  unprovided: { name: string; why: string }[];
  /** One line per channel: whether its Release changed since the lock. */
  channels: string[];
}

const exact = (p: LockedPackage, c: Candidate) => c.arch === p.arch && c.version === p.version && c.sha256 === p.sha256 && c.size === p.size && c.filename === p.filename;

function describe(p: LockedPackage, offered: Candidate[]): string | undefined {
  const same = offered.filter((c) => c.arch === p.arch && c.version === p.version);
  if (same.some((c) => exact(p, c))) return undefined;
  if (same.length > 0) {
    const c = same[0]!;
    const diff = [
      c.sha256 !== p.sha256 ? `sha256 ${c.sha256.slice(0, 12)}… (locked ${p.sha256.slice(0, 12)}…)` : '',
      c.size !== p.size ? `size ${c.size} (locked ${p.size})` : '',
      c.filename !== p.filename ? `filename ${c.filename} (locked ${p.filename})` : '',
    ].filter(Boolean);
    return `the index lists ${p.version} as another file: ${diff.join(', ')}`;
  }
  const versions = [...new Set(offered.filter((c) => c.arch === p.arch).map((c) => c.version))];
  if (versions.length > 0) return `${p.version} is gone; the index has ${versions.slice(0, 3).join(', ')}${versions.length > 3 ? ', …' : ''}`;
  return 'not in the index any more';
}

/**
 * Every package the lock pins: the image's, then the build-only packages of its recipes (each once, with the
 * recipes whose build needs it). A recipe cannot be built again once one of them has left the mirror.
 */
function pinnedPackages(lock: Lockfile): { pkg: LockedPackage; buildOf?: string[] }[] {
  const inImage = new Set(lock.packages.map((p) => p.sha256));
  const build = new Map<string, { pkg: LockedPackage; buildOf: string[] }>();
  for (const r of lock.recipes ?? []) {
    for (const p of r.buildPackages) {
      if (inImage.has(p.sha256)) continue;
      const known = build.get(p.sha256);
      if (known) known.buildOf.push(r.name);
      else build.set(p.sha256, { pkg: p, buildOf: [r.name] });
    }
  }
  return [...lock.packages.map((pkg) => ({ pkg })), ...build.values()];
}

/** Compares every locked package (the recipes' build-only ones too) with its channel's signed index as served now. */
export async function compareOnline(manifest: Manifest, lock: Lockfile, ctx: Ctx): Promise<OnlineResult> {
  const pinned = pinnedPackages(lock);
  const { store, reporter } = ctx;
  const settled = await Promise.allSettled(manifest.channels.map((c, rank) => loadChannel(c, rank, manifest.arch, store, reporter, { offline: false })));
  // A channel the lock takes no package from (one `strata lock` left out as unread, say) cannot make it stale.
  const skipped: string[] = [];
  settled.forEach((s, rank) => {
    if (s.status === 'fulfilled') return;
    const name = manifest.channels[rank]!.name;
    if (rank === 0 || pinned.some((x) => x.pkg.channel === name) || !(s.reason instanceof StrataError)) throw s.reason;
    reporter.warn(`channel "${name}" could not be read (${s.reason.message.replace(/^channel "[^"]*": /, '')}); the lock takes no package from it`);
    skipped.push(`  ${name.padEnd(12)} ${String(0).padStart(5)}  not read; the lock takes no package from it`);
  });
  const loaded = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const indexes = new Map(loaded.map((l) => [l.spec.name, l.indexes]));
  /** What channel `channel` offers under `name` now, in index order; undefined for a channel not loaded. */
  const offered = (channel: string, name: string) => indexes.get(channel)?.flatMap((i) => i.candidates(name));
  const mismatches: OnlineMismatch[] = [];
  for (const { pkg: p, buildOf } of pinned) {
    const now = offered(p.channel, p.name);
    const why = now ? describe(p, now) : `channel ${JSON.stringify(p.channel)} is not in the manifest`;
    if (why) mismatches.push({ pkg: p, why, ...(buildOf ? { buildOf } : {}) });
  }
  // Requests the lock holds under no package of their name: a root must provide them (as the resolver chose it).
  const unprovided: { name: string; why: string }[] = [];
  const byName = new Map(lock.packages.map((p) => [p.name, p]));
  const rootProvides = lock.packages
    .filter((p) => p.root)
    .map((p) => (offered(p.channel, p.name) ?? []).find((c) => exact(p, c)))
    .filter((c): c is Candidate => c !== undefined)
    .flatMap((c) => {
      try {
        return parseProvides(c.provides);
      } catch {
        return [];
      }
    });
  for (const r of manifest.packages) {
    const held = byName.get(r.name);
    if (held?.root) continue;
    const provided = rootProvides.some((x) => x.name === r.name && (r.constraint === undefined || (x.version !== undefined && satisfiesVersion(x.version, r.constraint.op, r.constraint.version))));
    if (!provided) unprovided.push({ name: r.name, why: held ? 'the lock holds it, but not as a root, and no root provides it' : 'no locked root is or provides it' });
  }
  const channels = loaded.map((l) => {
    const was = lock.channels.find((c) => c.name === l.spec.name);
    const same = was?.releaseSha256 === l.locked.releaseSha256;
    const count = pinned.filter((x) => x.pkg.channel === l.spec.name).length;
    return `  ${l.spec.name.padEnd(12)} ${String(count).padStart(5)}  ${l.locked.codename}: ${same ? 'Release unchanged since the lock' : `Release changed since the lock (${was?.date ?? '?'} -> ${l.locked.date})`}`;
  });
  return { checked: pinned.length, mismatches, unprovided, channels: [...channels, ...skipped] };
}

/**
 * `compareOnline`, as `lock --check --online` reports it: summary lines when every locked package is still offered,
 * else E_LOCK naming up to SHOWN packages that are not.
 */
export async function checkOnline(manifest: Manifest, lock: Lockfile, ctx: Ctx): Promise<string[]> {
  const r = await compareOnline(manifest, lock, ctx);
  if (r.mismatches.length === 0 && r.unprovided.length === 0) {
    return [`online: all ${r.checked} locked packages are still offered by the channels' signed indexes`, ...r.channels];
  }
  const all = [
    ...r.mismatches.map((m) => `  ${m.pkg.name} ${m.pkg.version} (${m.pkg.channel}${m.buildOf ? `; to build recipe ${m.buildOf.join(', ')}` : ''}): ${m.why}`),
    ...r.unprovided.map((u) => `  ${u.name} (asked for by strata.toml): ${u.why}`),
  ];
  const lines = all.slice(0, SHOWN);
  if (all.length > SHOWN) lines.push(`  ... and ${all.length - SHOWN} more`);
  const head = [
    r.mismatches.length > 0 ? `${r.mismatches.length} of ${r.checked} locked packages are not offered as locked` : '',
    r.unprovided.length > 0 ? `${r.unprovided.length} requested package${r.unprovided.length === 1 ? ' is' : 's are'} not among the lock's roots` : '',
  ].filter(Boolean);
  throw new StrataError(
    'E_LOCK',
    [`strata.lock no longer matches the channels' signed indexes: ${head.join('; ')}`, ...lines, ...r.channels].join('\n'),
    r.unprovided.length > 0 && r.mismatches.length === 0 ? 'the lock was edited; run `strata lock` to re-create it from strata.toml' : 'run `strata lock` to lock against what the channels offer now',
  );
}
