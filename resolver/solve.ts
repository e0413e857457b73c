/**
 * The solver: chooses one candidate per needed package name so that every root is present, every Depends and
 * Pre-Depends of every chosen candidate is met, and no chosen pair conflicts (Conflicts, Breaks). The search is
 * complete: the problem is encoded as boolean satisfiability (MiniSat, through logic-solver), so if any consistent
 * choice exists it is found, and if none exists that is a proof, which `explain.ts` turns into a minimal chain.
 *
 * Among consistent choices the solver picks, lexicographically (apt's pinning with a default release):
 *   1. the fewest packages taken from channels other than the default (weighted by channel order),
 *   2. the fewest unmet Recommends (only when the manifest asks for Recommends),
 *   3. the newest versions within each channel (the sum of "versions behind the newest"),
 *   4. the first satisfiable alternative of each `a | b` dependency, and a real package over a provider of its name,
 *   5. the fewest packages,
 *   6. among providers of a virtual package, the alphabetically first name.
 */
import Logic from 'logic-solver';
import { StrataError } from '../errors.ts';
import { formatConstraint, strongerRequirement, type Relation, type VersionConstraint } from '../debian/relation.ts';
import { compareVersions } from '../debian/version.ts';
import { Universe } from './universe.ts';
import { cmp } from '../util/order.ts';
import { explainUnsatisfiable, type Constraint } from './explain.ts';
import { suggestNames } from './suggest.ts';
import type { Candidate, HostProvided, PackageRequest, SolvedPackage } from '../model.ts';

export interface SolveRequest {
  universe: Universe;
  roots: PackageRequest[];
  /** Channel names in manifest order (index = rank; 0 is the default channel). */
  channels: string[];
  /** `[gpu] driver = "host"`: the NVIDIA driver's packages are host-provided. */
  hostDriver: boolean;
  withRecommends: boolean;
  /**
   * Also require the default channel's `Essential: yes` packages (the shell, coreutils, dpkg...). Debian packages
   * never declare dependencies on them because every system has them; an environment without them has no `sh`.
   */
  withEssential?: boolean;
}

export type { SolvedPackage } from '../model.ts';

export interface Solution {
  packages: SolvedPackage[];
  hostProvided: HostProvided[];
}

const HOST_DRIVER_SOURCE = /^nvidia-graphics-drivers/;

/** Names (real and virtual) that the host provides when the driver comes from the host. */
export function hostProvidedNames(u: Universe): Set<string> {
  const names = new Set<string>();
  for (const [name, list] of u.byName) {
    for (const c of list) {
      if (HOST_DRIVER_SOURCE.test(c.source)) {
        names.add(name);
        for (const p of u.parse(c).provides) names.add(p.name);
      }
    }
  }
  return names;
}

/** Candidates that satisfy a root request (name, constraint, channel pin). Virtual names go to their providers. */
export function rootCandidates(u: Universe, r: PackageRequest): Candidate[] {
  const rel: Relation = { name: r.name };
  if (r.constraint) {
    rel.op = r.constraint.op;
    rel.version = r.constraint.version;
  }
  return u.satisfiers(rel).filter((c) => r.channel === undefined || c.channel === r.channel);
}

/** Names marked `Essential: yes` by the default channel (rank 0), minus what the host provides; sorted. */
export function essentialNames(u: Universe, host: Set<string> = new Set()): string[] {
  const names = new Set<string>();
  for (const [name, list] of u.byName) {
    if (!host.has(name) && list.some((c) => c.essential && c.channelRank === 0)) names.add(name);
  }
  return [...names].sort(cmp);
}

export function solve(req: SolveRequest): Solution {
  const u = req.universe;
  const host = req.hostDriver ? hostProvidedNames(u) : new Set<string>();
  const hostSatisfied = (g: Relation[]) => g.some((r) => host.has(r.name));

  // Requests that cannot possibly be met are reported before any search.
  for (const r of req.roots) {
    if (!u.byName.has(r.name) && !u.providers.has(r.name)) {
      const near = suggestNames(r.name, u.names());
      throw new StrataError(
        'E_UNKNOWN_PACKAGE',
        `package "${r.name}" is in none of the channels (${req.channels.join(', ')})`,
        near.length > 0 ? `did you mean: ${near.join(', ')}?` : 'check the name and the channels\' components (main, contrib, non-free)',
      );
    }
    if (host.has(r.name)) {
      throw new StrataError('E_UNSATISFIABLE', `package "${r.name}" belongs to the NVIDIA driver, which [gpu] driver = "host" takes from the host at run time`, `remove it from [packages]; strata run passes the host's driver through`);
    }
    if (rootCandidates(u, r).length === 0) {
      const have = [...(u.byName.get(r.name) ?? [])].map((c) => `${c.version} (${c.channel})`);
      const want = [r.constraint ? `${r.constraint.op} ${r.constraint.version}` : '', r.channel ? `from channel ${r.channel}` : ''].filter(Boolean).join(' ');
      throw new StrataError(
        'E_UNSATISFIABLE',
        `no version of "${r.name}" matches ${want || 'the request'}; available: ${have.join(', ') || 'only as a virtual package'}`,
        'relax the version constraint or take the package from another channel',
      );
    }
  }

  // The essential set: required like roots, but not recorded as requested.
  const requested = new Set(req.roots.map((r) => r.name));
  const essential: PackageRequest[] = req.withEssential ? essentialNames(u, host).filter((n) => !requested.has(n)).map((name) => ({ name })) : [];
  const required = [...req.roots, ...essential];

  // Reachable names: everything any candidate of a needed name could pull in.
  const needed = new Set<string>();
  const queue: string[] = [];
  const want = (name: string) => {
    if (!needed.has(name)) {
      needed.add(name);
      queue.push(name);
    }
  };
  for (const r of required) for (const c of rootCandidates(u, r)) want(c.name);
  while (queue.length > 0) {
    const name = queue.shift()!;
    for (const c of u.byName.get(name) ?? []) {
      const p = u.parse(c);
      const groups = req.withRecommends ? [...p.depends, ...p.recommends] : p.depends;
      for (const g of groups) {
        if (hostSatisfied(g)) continue;
        for (const r of g) for (const s of u.satisfiers(r)) want(s.name);
      }
    }
  }
  const names = [...needed].sort(cmp);
  const cands: Candidate[] = [];
  for (const n of names) for (const c of u.byName.get(n) ?? []) cands.push(c);
  const vars = new Map<Candidate, string>();
  cands.forEach((c, i) => vars.set(c, `p${i}`));
  const v = (c: Candidate) => vars.get(c)!;
  const inU = (list: Candidate[]) => list.filter((c) => vars.has(c));

  const constraints: Constraint[] = [];
  const structural: Logic.Formula[] = [];
  for (const n of names) {
    const list = u.byName.get(n)!;
    if (list.length > 1) structural.push(Logic.atMostOne(...list.map(v)));
  }
  for (const r of required) {
    constraints.push({ kind: 'root', request: r, formula: Logic.or(...rootCandidates(u, r).map(v)) });
  }
  const softRecommends: string[] = [];
  const altPenalties: string[] = [];
  for (const c of cands) {
    const p = u.parse(c);
    for (const g of p.depends) {
      if (hostSatisfied(g)) continue;
      const sats = inU(g.flatMap((r) => u.satisfiers(r)));
      constraints.push({ kind: 'depends', owner: c, group: g, formula: Logic.implies(v(c), Logic.or(...sats.map(v))) });
      // Preferred: the real package named by the first alternative (apt installs a real package before a
      // provider of the same name), else any satisfier of the first alternative.
      const firstAll = inU(u.satisfiers(g[0]!));
      const firstReal = firstAll.filter((s) => s.name === g[0]!.name);
      const first = firstReal.length > 0 ? firstReal : firstAll;
      if (first.length > 0 && first.length < sats.length) {
        const aux = `alt${altPenalties.length}`;
        altPenalties.push(aux);
        structural.push(Logic.or(Logic.not(v(c)), ...first.map(v), aux));
      }
    }
    if (req.withRecommends) {
      for (const g of p.recommends) {
        if (hostSatisfied(g)) continue;
        const sats = inU(g.flatMap((r) => u.satisfiers(r)));
        const aux = `rec${softRecommends.length}`;
        softRecommends.push(aux);
        structural.push(Logic.or(Logic.not(v(c)), ...sats.map(v), aux));
      }
    }
    for (const [kind, rels] of [['conflicts', p.conflicts], ['breaks', p.breaks]] as const) {
      for (const r of rels) {
        for (const other of inU(u.conflicting(c, r))) {
          constraints.push({ kind, owner: c, relation: r, other, formula: Logic.not(Logic.and(v(c), v(other))) });
        }
      }
    }
  }

  const solver = new Logic.Solver();
  for (const f of structural) solver.require(f);
  for (const k of constraints) solver.require(k.formula);
  let sol = solver.solve();
  if (!sol) {
    throw new StrataError('E_UNSATISFIABLE', explainUnsatisfiable(u, structural, constraints, req.channels), 'change a version constraint or a channel pin named above, or add a channel that has what is missing');
  }

  // Objectives, lexicographic: each minimisation fixes its optimum before the next.
  const pinned = new Set(req.roots.filter((r) => r.channel !== undefined).map((r) => r.name));
  const channelTerms: string[] = [];
  const channelWeights: number[] = [];
  const ageTerms: string[] = [];
  const ageWeights: number[] = [];
  for (const n of names) {
    const list = u.byName.get(n)!;
    const perChannel = new Map<string, Candidate[]>();
    for (const c of list) {
      if (!perChannel.has(c.channel)) perChannel.set(c.channel, []);
      perChannel.get(c.channel)!.push(c);
    }
    for (const group of perChannel.values()) {
      group.sort((a, b) => compareVersions(b.version, a.version));
      group.forEach((c, age) => {
        if (age > 0) {
          ageTerms.push(v(c));
          ageWeights.push(age);
        }
        if (c.channelRank > 0 && !pinned.has(n)) {
          channelTerms.push(v(c));
          channelWeights.push(c.channelRank);
        }
      });
    }
  }
  const providerNames = [...new Set(cands.filter((c) => u.parse(c).provides.length > 0).map((c) => c.name))].sort(cmp);
  const nameRank = new Map(providerNames.map((n, i) => [n, i + 1]));
  const tieTerms = cands.filter((c) => nameRank.has(c.name));
  const objectives: [string[], number[]][] = [
    [channelTerms, channelWeights],
    [softRecommends, softRecommends.map(() => 1)],
    [ageTerms, ageWeights],
    [altPenalties, altPenalties.map(() => 1)],
    [cands.map(v), cands.map(() => 1)],
    [tieTerms.map(v), tieTerms.map((c) => nameRank.get(c.name)!)],
  ];
  for (const [terms, weights] of objectives) {
    if (terms.length > 0) sol = solver.minimizeWeightedSum(sol, terms, weights);
  }

  const chosen = cands.filter((c) => sol.evaluate(v(c)));
  const byName = new Map(chosen.map((c) => [c.name, c]));
  const rootNames = new Set<string>();
  for (const r of req.roots) {
    const c = rootCandidates(u, r).find((x) => byName.get(x.name) === x);
    if (c) rootNames.add(c.name);
  }
  const isChosen = (c: Candidate) => byName.get(c.name) === c;

  // Edges: for each dependency group, the chosen satisfier of the first alternative that a chosen package meets.
  const hostReq = new Map<string, VersionConstraint | undefined>();
  const packages: SolvedPackage[] = chosen.map((c) => {
    const p = u.parse(c);
    const deps = new Set<string>();
    for (const g of p.depends) {
      if (hostSatisfied(g)) {
        recordHost(hostReq, g, host);
        continue;
      }
      for (const r of g) {
        const s = u.satisfiers(r).find(isChosen);
        if (s) {
          if (s.name !== c.name) deps.add(s.name);
          break;
        }
      }
    }
    for (const g of p.recommends) if (hostSatisfied(g)) recordHost(hostReq, g, host);
    return { candidate: c, root: rootNames.has(c.name), depends: [...deps].sort(cmp) };
  });
  const hostProvided = [...hostReq.entries()].map(([name, c]) => ({ name, requires: c ? formatConstraint(c) : '' })).sort((a, b) => cmp(a.name, b.name));
  return { packages: packages.sort((a, b) => cmp(a.candidate.name, b.candidate.name)), hostProvided };
}

function recordHost(into: Map<string, VersionConstraint | undefined>, g: Relation[], host: Set<string>): void {
  for (const r of g) {
    if (!host.has(r.name)) continue;
    const req: VersionConstraint | undefined = r.op ? { op: r.op, version: r.version! } : undefined;
    into.set(r.name, into.has(r.name) ? strongerRequirement(into.get(r.name), req) : req);
  }
}

