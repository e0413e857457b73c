/**
 * A lock that mixes two real suites: trixie, with forky for the HDF5 packages. apt cannot be the oracle here (it
 * plans one default release), so the lock is checked against Debian's relations themselves, read from the cached
 * indexes (the lock does not carry them) and evaluated with debian/relation.ts and debian/version.ts alone, apart
 * from the resolver: every Depends and Pre-Depends group of every locked package has an alternative that a locked
 * package is, or provides, at a matching version, and no Conflicts or Breaks of a locked package matches another.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadManifest } from '../manifest/manifest.ts';
import { lockManifest } from '../engine/lockManifest.ts';
import { loadChannel } from '../channels/channel.ts';
import { openStore, type Store } from '../store/store.ts';
import { quietReporter } from '../report/reporter.ts';
import { formatRelation, parseProvides, parseRelations, satisfiesVersion, type Relation } from '../debian/relation.ts';
import { debianMirrorOrSkip } from './helpers/debianMirror.ts';
import type { Candidate, Lockfile, Manifest } from '../model.ts';

const STABLE = ['git', 'cmake', 'python3-numpy'];
const CURRENT = ['libhdf5-dev', 'hdf5-tools'];

/** A name the lock holds, as the package of that name or as one's Provides; `version` undefined for an unversioned Provides. */
interface Offer {
  by: Candidate;
  version: string | undefined;
}

function offers(locked: Candidate[]): Map<string, Offer[]> {
  const out = new Map<string, Offer[]>();
  const add = (name: string, o: Offer) => out.set(name, [...(out.get(name) ?? []), o]);
  for (const c of locked) {
    add(c.name, { by: c, version: c.version });
    for (const p of parseProvides(c.provides)) add(p.name, { by: c, version: p.version });
  }
  return out;
}

/** The offers that meet `r` (Debian: a versioned relation is met only by a real package or a versioned Provides). */
function meeting(r: Relation, held: Map<string, Offer[]>): Offer[] {
  if (r.archQualifier !== undefined && !['any', 'native', 'amd64'].includes(r.archQualifier)) return [];
  return (held.get(r.name) ?? []).filter((o) => r.op === undefined || (o.version !== undefined && satisfiesVersion(o.version, r.op, r.version!)));
}

/** Every relation of the locked packages that does not hold within the lock, described. */
function relationProblems(locked: Candidate[]): string[] {
  const held = offers(locked);
  const problems: string[] = [];
  for (const c of locked) {
    for (const [field, text] of [['Pre-Depends', c.preDepends], ['Depends', c.depends]] as const) {
      for (const group of parseRelations(text)) {
        if (!group.some((r) => meeting(r, held).length > 0)) problems.push(`${c.name} ${c.version}: ${field}: ${group.map(formatRelation).join(' | ')} is not met`);
      }
    }
    for (const [field, text] of [['Conflicts', c.conflicts], ['Breaks', c.breaks]] as const) {
      for (const r of parseRelations(text).flat()) {
        for (const o of meeting(r, held)) if (o.by.name !== c.name) problems.push(`${c.name} ${c.version}: ${field}: ${formatRelation(r)} matches ${o.by.name} ${o.by.version}`);
      }
    }
  }
  return problems;
}

/** The locked packages as their channels' cached indexes list them (the same file: matched by sha256). */
async function lockedCandidates(manifest: Manifest, lock: Lockfile, store: Store): Promise<Candidate[]> {
  const loaded = await Promise.all(manifest.channels.map((c, rank) => loadChannel(c, rank, manifest.arch, store, quietReporter(), { offline: true })));
  return lock.packages.flatMap((p) => {
    const indexes = loaded.find((l) => l.spec.name === p.channel)!.indexes;
    return indexes.flatMap((i) => i.candidates(p.name)).filter((c) => c.sha256 === p.sha256).slice(0, 1);
  });
}

test('a trixie + forky mix locks, and every locked package\'s relations hold within the lock', async (t) => {
  const m = await debianMirrorOrSkip(t, ['trixie', 'forky']);
  if (!m) return;
  const dir = mkdtempSync(join(tmpdir(), 'strata-mix-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const manifestPath = join(dir, 'strata.toml');
  writeFileSync(
    manifestPath,
    `[project]\nname = "mix"\narch = "amd64"\n\n[channels.stable]\nurl = "${m.url}"\nsuite = "trixie"\n\n` +
      // The mirror's forky Release may be past its Valid-Until: the suite moves, its mirror lags.
      `[channels.current]\nurl = "${m.url}"\nsuite = "forky"\ncheck-valid-until = false\n\n` +
      `[packages]\n${STABLE.map((n) => `${n} = "*"`).join('\n')}\n${CURRENT.map((n) => `${n} = { channel = "current" }`).join('\n')}\n`,
  );
  const manifest = loadManifest(manifestPath);
  const store = await openStore(join(dir, 'cache'));
  const { lock } = await lockManifest(manifest, { store, reporter: quietReporter() });
  const channelOf = (name: string) => lock.packages.find((p) => p.name === name)?.channel;
  t.deepEqual([...STABLE, ...CURRENT].map(channelOf), [...STABLE.map(() => 'stable'), ...CURRENT.map(() => 'current')]);
  const fromCurrent = lock.packages.filter((p) => p.channel === 'current').map((p) => p.name);
  t.log(`${lock.packages.length} packages, ${fromCurrent.length} from forky: ${fromCurrent.join(' ')}`);

  const locked = await lockedCandidates(manifest, lock, store);
  t.is(locked.length, lock.packages.length, 'every locked package is in its channel\'s cached index');
  t.deepEqual(relationProblems(locked), []);
  // The checker is not vacuous: a missing dependency and a conflicting package are found.
  t.true(relationProblems(locked.filter((c) => c.name !== 'libc6')).some((p) => /: (Pre-)?Depends: libc6( \([^)]*\))? is not met$/.test(p)));
  const rival = { ...locked[0]!, name: 'git-rival', provides: '', conflicts: 'git', breaks: 'cmake (>= 1)' };
  t.deepEqual(relationProblems([...locked, rival]).filter((p) => p.startsWith('git-rival')), [
    `git-rival ${rival.version}: Conflicts: git matches git ${locked.find((c) => c.name === 'git')!.version}`,
    `git-rival ${rival.version}: Breaks: cmake (>= 1) matches cmake ${locked.find((c) => c.name === 'cmake')!.version}`,
  ]);
});
