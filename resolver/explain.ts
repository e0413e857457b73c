/**
 * Explains an unsatisfiable request. The solver's encoding is a set of named constraints (a root request, one
 * package's dependency, one conflicting pair), each behind a selector variable; solving under all selectors gives
 * an unsatisfiable core (the selectors the refutation used), and a deletion-based search shrinks it to a minimal
 * subset that is still unsatisfiable (first over whole packages, then over single constraints), each refutation
 * shrinking the set further to its own core. That subset is printed as a chain from the roots: who needs what,
 * through which packages, and which candidates each step rules out, by channel. Nothing here recurses: the work is
 * bounded by the size of the core and a solve budget, not by the depth or width of the dependency graph.
 */
import { SatSolver } from './sat.ts';
import { formatGroup, formatRelation, type Relation } from '../debian/relation.ts';
import { describeCandidate, type Universe } from './universe.ts';
import type { Candidate, PackageRequest } from '../model.ts';

/** A named requirement, as clauses over the solver's variables (DIMACS literals). */
export type Constraint =
  | { kind: 'root'; request: PackageRequest; clauses: number[][]; /** the channel is the default one, the manifest naming none */ defaultChannel?: true }
  | { kind: 'depends'; owner: Candidate; group: Relation[]; clauses: number[][] }
  | { kind: 'conflicts' | 'breaks'; owner: Candidate; relation: Relation; other: Candidate; clauses: number[][] };

/**
 * The minimisation's budget, deterministic (not a clock): at most this many solves, and this many assumptions over
 * all of them (a core as long as a 20,000-package chain would otherwise cost 20,000 solves of 20,000 assumptions).
 * Past it, the set found so far is shown: still unsatisfiable, just possibly not minimal.
 */
const SOLVE_BUDGET = 2000;
const ASSUMPTION_BUDGET = 2_000_000;
/** Requirements printed; a longer chain is cut with a count of the rest. */
const MAX_LINES = 200;

/**
 * A minimal unsatisfiable subset of `constraints` (with `structural` always kept), over variables 1..`numVars`.
 * Throws when the constraints are satisfiable after all.
 */
export function minimalCore(numVars: number, structural: number[][], constraints: Constraint[]): Constraint[] {
  const sat = new SatSolver();
  for (let i = 0; i < numVars; i++) sat.newVar();
  for (const cl of structural) sat.addClause(cl);
  const sel: number[] = [];
  const index = new Map<number, number>();
  constraints.forEach((k, i) => {
    const s = sat.newVar();
    sel.push(s);
    index.set(s, i);
    for (const cl of k.clauses) sat.addClause([-s].concat(cl));
  });
  let solves = 0;
  let assumed = 0;
  const spent = () => solves >= SOLVE_BUDGET || assumed >= ASSUMPTION_BUDGET;
  /** undefined when `keep` is satisfiable, else the core of its refutation (a subset of `keep`). */
  const refute = (keep: Set<number>): Set<number> | undefined => {
    solves++;
    assumed += keep.size;
    const assumptions = [...keep].sort((a, b) => a - b).map((i) => sel[i]!);
    if (sat.solve(assumptions)) return undefined;
    return new Set(sat.core().map((s) => index.get(s)!));
  };
  let keep = refute(new Set(constraints.map((_, i) => i)));
  if (!keep) throw new Error('explain: the constraints are satisfiable');
  const groupOf = (k: Constraint) => (k.kind === 'root' ? `root:${k.request.name}` : `pkg:${k.owner.name}`);
  const groups = new Map<string, number[]>();
  constraints.forEach((k, i) => {
    const g = groupOf(k);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push(i);
  });
  // Whole packages first (few solves), then single constraints within what is left; latest first.
  for (const members of [...groups.values()].reverse()) {
    if (spent()) break;
    if (!members.some((i) => keep!.has(i))) continue;
    const trial = new Set(keep);
    for (const i of members) trial.delete(i);
    const core = refute(trial);
    if (core) keep = core;
  }
  for (const i of [...keep].sort((a, b) => b - a)) {
    if (spent()) break;
    if (!keep.has(i)) continue;
    const trial = new Set(keep);
    trial.delete(i);
    const core = refute(trial);
    if (core) keep = core;
  }
  return [...keep].sort((a, b) => a - b).map((i) => constraints[i]!);
}

function describeRequest(r: PackageRequest): string {
  const parts = [r.name];
  if (r.constraint) parts.push(`(${r.constraint.op} ${r.constraint.version})`);
  if (r.channel) parts.push(`from channel "${r.channel}"`);
  return parts.join(' ');
}

/** What each alternative of a group could have been, and why it is not enough. */
function alternativesDetail(u: Universe, group: Relation[]): string {
  const parts: string[] = [];
  for (const r of group) {
    const real = u.candidates(r.name);
    const providers = u.providers(r.name);
    if (real.length === 0 && providers.length === 0) {
      parts.push(`${r.name} exists in no channel`);
      continue;
    }
    const sats = new Set(u.satisfiers(r));
    const listed = real.map((c) => `${c.version} (${c.channel})${sats.has(c) ? '' : ' does not match'}`);
    const viaProv = providers.filter((p) => sats.has(p.candidate)).map((p) => `provided by ${describeCandidate(p.candidate)}`);
    parts.push(`${r.name}: ${[...listed, ...viaProv].join(', ') || 'no candidate matches'}`);
  }
  return parts.join('; ');
}

export function explainUnsatisfiable(u: Universe, numVars: number, structural: number[][], constraints: Constraint[], channels: string[]): string {
  const core = minimalCore(numVars, structural, constraints);
  // Chain order: roots, then packages in the order they are reached from the roots (breadth first, iterative).
  const roots = core.filter((k) => k.kind === 'root');
  const rest = core.filter((k) => k.kind !== 'root') as Exclude<Constraint, { kind: 'root' }>[];
  const byOwner = new Map<string, typeof rest>();
  for (const k of rest) {
    if (!byOwner.has(k.owner.name)) byOwner.set(k.owner.name, []);
    byOwner.get(k.owner.name)!.push(k);
  }
  const order = new Map<string, number>();
  const reach = roots.map((k) => (k as { request: PackageRequest }).request.name);
  for (const n of reach) if (!order.has(n)) order.set(n, order.size);
  for (let i = 0; i < reach.length; i++) {
    for (const k of byOwner.get(reach[i]!) ?? []) {
      const targets = k.kind === 'depends' ? k.group.map((r) => r.name).concat(k.group.flatMap((r) => u.satisfiers(r).map((c) => c.name))) : [k.other.name];
      for (const t of targets) if (!order.has(t)) {
        order.set(t, order.size);
        reach.push(t);
      }
    }
  }
  rest.sort((a, b) => (order.get(a.owner.name) ?? 1e9) - (order.get(b.owner.name) ?? 1e9));
  const lines = [`no choice of packages from channels ${channels.map((c) => `"${c}"`).join(', ')} satisfies the manifest; these requirements cannot all hold:`];
  for (const k of roots.slice(0, MAX_LINES)) {
    const root = k as Extract<Constraint, { kind: 'root' }>;
    lines.push(`  - the manifest asks for ${describeRequest(root.request)}${root.defaultChannel ? ' (the default channel: it names none)' : ''}`);
  }
  for (const k of rest.slice(0, Math.max(0, MAX_LINES - roots.length))) {
    if (k.kind === 'depends') {
      lines.push(`  - ${describeCandidate(k.owner)} depends on ${formatGroup(k.group)}`);
      lines.push(`      candidates: ${alternativesDetail(u, k.group)}`);
    } else {
      lines.push(`  - ${describeCandidate(k.owner)} ${k.kind} ${formatRelation(k.relation)}, which rules out ${describeCandidate(k.other)}`);
    }
  }
  if (core.length > MAX_LINES) lines.push(`  ... and ${core.length - MAX_LINES} more requirements along the same chain`);
  lines.push('  (only one version of each package can be installed)');
  return lines.join('\n');
}
