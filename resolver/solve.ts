/**
 * The solver: chooses one candidate per needed package name so that every root is present, every Depends and
 * Pre-Depends of every chosen candidate is met, and no chosen pair conflicts (Conflicts, Breaks). The search is
 * complete: the problem is encoded as boolean satisfiability (clauses over one variable per candidate, solved by
 * `sat.ts`), so if any consistent choice exists it is found, and if none exists that is a proof, which
 * `explain.ts` turns into a minimal chain.
 *
 * Among consistent choices the solver picks, lexicographically (apt's pinning with a default release), after two
 * priorities that only a re-lock has (the newest versions of the names to update, then the previous lock's versions
 * kept, see `SolveRequest.update` and `keep`):
 *   1. the fewest packages taken from channels other than the default (weighted by channel order),
 *   2. the fewest unmet Recommends (only when the manifest asks for Recommends),
 *   3. the newest versions within each channel (the sum of "versions behind the newest"),
 *   4. the first satisfiable alternative of each `a | b` dependency, and a real package over a provider of its name
 *      (a root naming a real package takes it), except where a package the solution has anyway already meets the
 *      dependency, whichever alternative or provider that is (as apt leaves such a dependency alone; see the anchors),
 *   5. the fewest packages,
 *   6. among providers of a virtual package, the alphabetically first name,
 *   7. what is still tied: the earliest alternative of each `a | b | c` Depends (and Recommends) group.
 * Each objective is a weighted sum of candidate (or penalty) variables; it is minimised by solving under ever
 * tighter bounds `sum <= target` (see `minimize`), and its optimum is then fixed before the next.
 */
import { SatSolver } from './sat.ts';
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
  /**
   * The previous lock's choices (name -> version and channel): the solver first keeps as many of them as the
   * channels still offer (priority 0, above all others), so a re-lock moves only what the manifest's change forces.
   */
  keep?: Map<string, { version: string; channel: string }>;
  /**
   * Names to update (`lock --update PKG...`): above everything, even keeping the others, each is taken at the
   * newest version its channel offers that can be installed; what that newer version needs moves with it.
   */
  update?: Set<string>;
  /**
   * A root that names no channel comes from the default channel (its dependencies may still follow a constraint
   * into another channel). When that makes the manifest unsatisfiable, the error also says what would resolve:
   * which roots, taken from which channel, found by solving that problem.
   */
  rootsFromDefault?: boolean;
}

export type { SolvedPackage } from '../model.ts';

export interface Solution {
  packages: SolvedPackage[];
  hostProvided: HostProvided[];
}

/** The NVIDIA driver's source packages: `nvidia-graphics-drivers`, and the branches Debian names after it (`-tesla-535`). */
const HOST_DRIVER_SOURCE = 'nvidia-graphics-drivers';

/** Names (real and virtual) that the host provides when the driver comes from the host. */
export function hostProvidedNames(u: Universe): Set<string> {
  const names = new Set<string>();
  for (const c of u.fromSources(HOST_DRIVER_SOURCE)) {
    names.add(c.name);
    for (const p of u.parse(c).provides) names.add(p.name);
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
  for (const c of u.essential()) if (c.channelRank === 0 && !host.has(c.name)) names.add(c.name);
  return [...names].sort(cmp);
}

export function solve(req: SolveRequest): Solution {
  const def = req.channels[0];
  const defaulted = new Set(req.rootsFromDefault && def !== undefined ? req.roots.filter((r) => r.channel === undefined).map((r) => r.name) : []);
  if (defaulted.size === 0) return solveRoots(req, req.roots, defaulted);
  const roots = req.roots.map((r) => (defaulted.has(r.name) ? { ...r, channel: def! } : r));
  try {
    return solveRoots(req, roots, defaulted);
  } catch (e) {
    if (!(e instanceof StrataError) || e.code !== 'E_UNSATISFIABLE') throw e;
    throw withRelaxation(e, req, roots, defaulted);
  }
}

/**
 * The default-channel rule made the manifest unsatisfiable: solve it again with the unpinned roots free to come
 * from any channel (at the usual cost of every package from another channel), and name the roots that solution
 * takes elsewhere. The consequence shown is that of the manifest with those roots pinned there, solved too, so
 * what the user reads is what `strata lock` then gives.
 */
function withRelaxation(e: StrataError, req: SolveRequest, roots: PackageRequest[], defaulted: Set<string>): StrataError {
  const def = req.channels[0]!;
  let relaxed: Solution;
  try {
    relaxed = solveRoots(req, req.roots, new Set());
  } catch (r) {
    // Unsatisfiable whatever channel the roots come from: that conflict is the one to show, not the rule's.
    if (!(r instanceof StrataError) || r.code !== 'E_UNSATISFIABLE') return e;
    return new StrataError('E_UNSATISFIABLE', `${r.message}\nthis holds whichever channel the packages that name no channel come from`, r.hint);
  }
  const moved = new Map<string, string>();
  for (const p of relaxed.packages) if (p.root && defaulted.has(p.candidate.name) && p.candidate.channel !== def) moved.set(p.candidate.name, p.candidate.channel);
  // A root met through a virtual name: its provider is the root package.
  for (const r of req.roots) {
    if (!defaulted.has(r.name) || moved.has(r.name) || relaxed.packages.some((p) => p.root && p.candidate.name === r.name)) continue;
    const provider = relaxed.packages.find((p) => p.root && rootCandidates(req.universe, r).includes(p.candidate));
    if (provider && provider.candidate.channel !== def) moved.set(r.name, provider.candidate.channel);
  }
  if (moved.size === 0) return e;
  let outcome = relaxed;
  try {
    outcome = solveRoots(req, roots.map((r) => (moved.has(r.name) ? { ...r, channel: moved.get(r.name)! } : r)), new Set([...defaulted].filter((n) => !moved.has(n))));
  } catch {
    // The relaxed solution itself stands as the consequence.
  }
  const perChannel = new Map<string, number>();
  for (const p of outcome.packages) if (p.candidate.channel !== def) perChannel.set(p.candidate.channel, (perChannel.get(p.candidate.channel) ?? 0) + 1);
  const names = [...moved.keys()].sort(cmp);
  const byChannel = new Map<string, string[]>();
  for (const n of names) byChannel.set(moved.get(n)!, [...(byChannel.get(moved.get(n)!) ?? []), n]);
  const clauses = [...byChannel].map(([ch, ns]) => `${list(ns)} ${ns.length === 1 ? 'is' : 'are'} also taken from "${ch}"`);
  const counts = req.channels.filter((c) => perChannel.has(c)).map((c) => `${perChannel.get(c)} package${perChannel.get(c) === 1 ? '' : 's'} from "${c}"`);
  const pins = names.map((n) => {
    const r = req.roots.find((x) => x.name === n)!;
    return r.constraint ? `${n} = { version = "${r.constraint.op} ${r.constraint.version}", channel = "${moved.get(n)}" }` : `${n} = { channel = "${moved.get(n)}" }`;
  });
  return new StrataError(
    'E_UNSATISFIABLE',
    `${e.message}\na package that names no channel comes from the default channel "${def}"; it resolves if ${clauses.join(', and ')} (${counts.join(', ')}, ${outcome.packages.length} in all)`,
    `to accept that, write in [packages]: ${pins.join('; ')}; otherwise ${e.hint ?? 'change a version constraint or a channel pin named above'}`,
  );
}

function list(names: string[]): string {
  return names.length <= 1 ? names.join('') : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

function solveRoots(req: SolveRequest, roots: PackageRequest[], defaulted: Set<string>): Solution {
  req = { ...req, roots };
  const u = req.universe;
  const host = req.hostDriver ? hostProvidedNames(u) : new Set<string>();
  const hostSatisfied = (g: Relation[]) => g.some((r) => host.has(r.name));

  // Requests that cannot possibly be met are reported before any search.
  for (const r of req.roots) {
    if (!u.known(r.name)) {
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
      const have = u.candidates(r.name).map((c) => `${c.version} (${c.channel})`);
      const want = [r.constraint ? `${r.constraint.op} ${r.constraint.version}` : '', r.channel ? `from channel ${r.channel}${defaulted.has(r.name) ? ' (the default channel: the manifest names none for it)' : ''}` : ''].filter(Boolean).join(' ');
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
  for (let qi = 0; qi < queue.length; qi++) {
    const name = queue[qi]!;
    for (const c of u.candidates(name)) {
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
  for (const n of names) cands.push(...u.candidates(n));
  const sat = new SatSolver();
  const vars = new Map<Candidate, number>();
  for (const c of cands) vars.set(c, sat.newVar());
  const v = (c: Candidate) => vars.get(c)!;
  const inU = (list: Candidate[]) => list.filter((c) => vars.has(c));

  // Clauses: `structural` always hold (one version per name; penalty definitions); `constraints` are the named
  // requirements an explanation may cite.
  const constraints: Constraint[] = [];
  const structural: number[][] = [];
  for (const n of names) {
    const list = u.candidates(n);
    for (let i = 0; i < list.length; i++) for (let j = i + 1; j < list.length; j++) structural.push([-v(list[i]!), -v(list[j]!)]);
  }
  for (const r of required) {
    constraints.push({ kind: 'root', request: r, clauses: [rootCandidates(u, r).map(v)], ...(defaulted.has(r.name) ? { defaultChannel: true } : {}) });
  }
  const softRecommends: number[] = [];
  const altPenalties: number[] = [];
  /** Per candidate: the literals of the reasons another chosen package wants it (see the anchors below). */
  const wantedBy = new Map<Candidate, number[]>();
  const addTo = (m: Map<Candidate, number[]>, k: Candidate, lit: number) => {
    const l = m.get(k);
    if (l) l.push(lit);
    else m.set(k, [lit]);
  };
  const penalised: { owner: number; first: number[]; others: Candidate[]; aux: number }[] = [];
  const laterAlternatives: number[] = [];
  /**
   * One penalty per alternative passed over, as a chain (linear in the group's size): n_0 = c, and
   * n_{k-1} and none of alternative k's satisfiers -> n_k; n_k is forced exactly when c is chosen and none of
   * the first k alternatives is met. Alternatives before the first with a candidate, and after the last that
   * adds a new one, cost nothing.
   */
  const rankAlternatives = (c: Candidate, g: Relation[]) => {
    const sats = g.map((r) => inU(u.satisfiers(r)));
    const seen = new Set<Candidate>();
    let lastNew = -1;
    sats.forEach((list, k) => {
      for (const s of list) if (!seen.has(s)) {
        seen.add(s);
        lastNew = k;
      }
    });
    let prev = v(c);
    let started = false;
    for (let k = 0; k < lastNew; k++) {
      if (!started && sats[k]!.length === 0) continue;
      started = true;
      const aux = sat.newVar();
      laterAlternatives.push(aux);
      structural.push([-prev, ...sats[k]!.map(v), aux]);
      prev = aux;
    }
  };
  for (const c of cands) {
    const p = u.parse(c);
    for (const g of req.withRecommends ? [...p.depends, ...p.recommends] : p.depends) if (g.length > 1 && !hostSatisfied(g)) rankAlternatives(c, g);
    for (const g of p.depends) {
      if (hostSatisfied(g)) continue;
      const sats = inU(g.flatMap((r) => u.satisfiers(r)));
      constraints.push({ kind: 'depends', owner: c, group: g, clauses: [[-v(c), ...sats.map(v)]] });
      // Preferred: the first alternative that has a candidate at all (a name no channel has falls through, as in
      // apt), and within it the real package of that name (apt installs a real package before a provider of the
      // same name), else any of its satisfiers.
      const firstRel = g.find((r) => inU(u.satisfiers(r)).length > 0) ?? g[0]!;
      const firstAll = inU(u.satisfiers(firstRel));
      const firstReal = firstAll.filter((s) => s.name === firstRel.name);
      const first = firstReal.length > 0 ? firstReal : firstAll;
      for (const s of first) addTo(wantedBy, s, v(c));
      if (first.length > 0 && first.length < sats.length) {
        const aux = sat.newVar();
        altPenalties.push(aux);
        const inFirst = new Set(first);
        const others = [...new Set(sats)].filter((s) => !inFirst.has(s));
        structural.push([-aux, v(c)]); // the penalty stands for this dependency of a chosen package
        for (const s of others) addTo(wantedBy, s, aux);
        penalised.push({ owner: v(c), first: first.map(v), others, aux });
      }
    }
    if (req.withRecommends) {
      for (const g of p.recommends) {
        if (hostSatisfied(g)) continue;
        const sats = inU(g.flatMap((r) => u.satisfiers(r)));
        const firstRel = g.find((r) => inU(u.satisfiers(r)).length > 0);
        if (firstRel) for (const s of inU(u.satisfiers(firstRel))) addTo(wantedBy, s, v(c));
        const aux = sat.newVar();
        softRecommends.push(aux);
        structural.push([-v(c), ...sats.map(v), aux]);
      }
    }
    for (const [kind, rels] of [['conflicts', p.conflicts], ['breaks', p.breaks]] as const) {
      for (const r of rels) {
        for (const other of inU(u.conflicting(c, r))) {
          constraints.push({ kind, owner: c, relation: r, other, clauses: [[-v(c), -v(other)]] });
        }
      }
    }
  }

  // The preference above binds only a dependency that nothing in the solution meets anyway (as apt leaves alone a
  // dependency that something already installed satisfies, whichever alternative or provider that is). A
  // satisfier is "there anyway" (anchored) when it is a root or Essential candidate, or another chosen package
  // wants it: it is the preferred alternative of one of that package's dependencies, or it meets a dependency
  // that pays the penalty itself. Anchoring is grounded in those reasons, so two dependencies cannot excuse each
  // other's second choice; the penalty for a group is forced only when no preferred satisfier is chosen and no
  // other satisfier is anchored.
  const rootCands = new Set(required.flatMap((r) => rootCandidates(u, r)));
  const anchors = new Map<Candidate, number>();
  const anchor = (s: Candidate): number => {
    if (rootCands.has(s)) return v(s);
    let a = anchors.get(s);
    if (a === undefined) {
      a = sat.newVar();
      anchors.set(s, a);
      structural.push([-a, v(s)]);
      structural.push([-a, ...[...new Set(wantedBy.get(s) ?? [])]]);
    }
    return a;
  };
  // A root that names a real package is that package, as `apt-get install NAME` installs it, and a provider of the
  // name only where none of its versions can be (a purely virtual root takes its providers).
  for (const r of required) {
    const all = rootCandidates(u, r);
    const real = all.filter((c) => c.name === r.name);
    if (real.length > 0 && real.length < all.length) {
      const aux = sat.newVar();
      altPenalties.push(aux);
      structural.push([...real.map(v), aux]);
    }
  }
  for (const p of penalised) structural.push([-p.owner, ...p.first, ...p.others.map(anchor), p.aux]);

  let consistent = true;
  for (const cl of structural) consistent = sat.addClause(cl) && consistent;
  for (const k of constraints) for (const cl of k.clauses) consistent = sat.addClause(cl) && consistent;
  if (!consistent || !sat.solve()) {
    throw new StrataError('E_UNSATISFIABLE', explainUnsatisfiable(u, sat.numVars, structural, constraints, req.channels), 'change a version constraint or a channel pin named above, or add a channel that has what is missing');
  }

  // Objectives, lexicographic: each minimisation fixes its optimum before the next.
  const pinned = new Set(req.roots.filter((r) => r.channel !== undefined).map((r) => r.name));
  const channelTerms: number[] = [];
  const channelWeights: number[] = [];
  const ageTerms: number[] = [];
  const ageWeights: number[] = [];
  const updateTerms: number[] = [];
  const updateWeights: number[] = [];
  for (const n of names) {
    const list = u.candidates(n);
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
          if (req.update?.has(n)) {
            updateTerms.push(v(c));
            updateWeights.push(age);
          }
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
  // Priority 0: the previous lock's versions kept. A name whose locked version the channels still offer costs 1
  // when another version is chosen; one the channels dropped (or that is no longer needed) costs nothing.
  const keepTerms: number[] = [];
  for (const n of names) {
    const was = req.keep?.get(n);
    if (!was) continue;
    const list = u.candidates(n);
    if (!list.some((c) => c.version === was.version && c.channel === was.channel)) continue;
    for (const c of list) if (c.version !== was.version || c.channel !== was.channel) keepTerms.push(v(c));
  }
  const objectives: [number[], number[]][] = [
    [updateTerms, updateWeights],
    [keepTerms, keepTerms.map(() => 1)],
    [channelTerms, channelWeights],
    [softRecommends, softRecommends.map(() => 1)],
    [ageTerms, ageWeights],
    [altPenalties, altPenalties.map(() => 1)],
    [cands.map(v), cands.map(() => 1)],
    [tieTerms.map(v), tieTerms.map((c) => nameRank.get(c.name)!)],
    [laterAlternatives, laterAlternatives.map(() => 1)],
  ];
  for (const [terms, weights] of objectives) if (terms.length > 0) minimize(sat, terms, weights);

  const chosen = cands.filter((c) => sat.value(v(c)));
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

/** Conflicts allowed to a probe that is not the last one (the last one, `best - 1`, always runs to an answer). */
const PROBE_CONFLICTS = 1000;

/**
 * Minimises `sum(weights[i] * terms[i])` (integer weights) over the models of `sat`, whose last model is the
 * starting point, then fixes that optimum as a constraint; the solver's last model is then an optimal one.
 * Cost 0 is tried first (as logic-solver's minimizeWeightedSum does); then each probe asks for a model with
 * `sum <= target`, stepping down from the best cost found by 1, 2, 4, ... while that succeeds, so a first model
 * far from the optimum costs a logarithmic number of solves, not one per unit of cost. A probe below `best - 1`
 * that fails proves a lower bound; one that runs out of its conflict budget (a bound far below the optimum can
 * be hard to refute by clause learning) proves nothing and halves the step. The last probe, `best - 1`, runs to
 * an answer, so the optimum is exact.
 */
function minimize(sat: SatSolver, terms: number[], weights: number[]): void {
  const cost = () => {
    let sum = 0;
    for (let i = 0; i < terms.length; i++) if (sat.value(terms[i]!)) sum += weights[i]!;
    return sum;
  };
  let best = cost();
  let lo = 0; // the optimum is at least lo
  if (best > 0) {
    const zero = sat.solveLimited(terms.map((t) => -t), PROBE_CONFLICTS);
    if (zero === true) best = 0;
    else if (zero === false) lo = 1;
  }
  let step = 1;
  while (lo < best) {
    const target = Math.max(lo, best - step);
    const act = sat.newVar();
    sat.addAtMost(terms, weights, target, act);
    const found = target === best - 1 ? sat.solve([act]) : sat.solveLimited([act], PROBE_CONFLICTS);
    sat.addClause([-act]); // retire this probe; the optimum is fixed below
    if (found === true) {
      best = cost();
      step *= 2;
    } else if (found === false) {
      lo = target + 1;
      step = Math.max(1, Math.floor((best - lo) / 2));
    } else {
      step = Math.max(1, Math.floor(step / 2));
    }
  }
  if (best === 0) for (const t of terms) sat.addClause([-t]);
  else sat.addAtMost(terms, weights, best);
}

function recordHost(into: Map<string, VersionConstraint | undefined>, g: Relation[], host: Set<string>): void {
  for (const r of g) {
    if (!host.has(r.name)) continue;
    const req: VersionConstraint | undefined = r.op ? { op: r.op, version: r.version! } : undefined;
    into.set(r.name, into.has(r.name) ? strongerRequirement(into.get(r.name), req) : req);
  }
}

