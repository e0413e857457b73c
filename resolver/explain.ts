/**
 * Explains an unsatisfiable request. The solver's encoding is a set of named constraints (a root request, one
 * package's dependency, one conflicting pair); a deletion-based search finds a minimal subset that is still
 * unsatisfiable (first over whole packages, then over single constraints), and that subset is printed as a chain
 * from the roots: who needs what, through which packages, and which candidates each step rules out, by channel.
 */
import Logic from 'logic-solver';
import { formatGroup, formatRelation, type Relation } from '../debian/relation.ts';
import { describeCandidate, type Universe } from './universe.ts';
import type { Candidate, PackageRequest } from '../model.ts';

export type Constraint =
  | { kind: 'root'; request: PackageRequest; formula: Logic.Formula }
  | { kind: 'depends'; owner: Candidate; group: Relation[]; formula: Logic.Formula }
  | { kind: 'conflicts' | 'breaks'; owner: Candidate; relation: Relation; other: Candidate; formula: Logic.Formula };

const SOLVE_BUDGET = 2000;

/** A minimal unsatisfiable subset of `constraints` (with `structural` always kept). */
export function minimalCore(structural: Logic.Formula[], constraints: Constraint[]): Constraint[] {
  const solver = new Logic.Solver();
  for (const f of structural) solver.require(f);
  const sel = constraints.map((k, i) => {
    const s = `sel${i}`;
    solver.require(Logic.implies(s, k.formula));
    return s;
  });
  let solves = 0;
  const unsat = (keep: Set<number>) => {
    solves++;
    return solver.solveAssuming(Logic.and(...[...keep].map((i) => sel[i]!))) === null;
  };
  const groupOf = (k: Constraint) => (k.kind === 'root' ? `root:${k.request.name}` : `pkg:${k.owner.name}`);
  const groups = new Map<string, number[]>();
  constraints.forEach((k, i) => {
    const g = groupOf(k);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push(i);
  });
  let keep = new Set(constraints.map((_, i) => i));
  // Whole packages first (cheap: few solves), then single constraints within what is left.
  for (const [, members] of [...groups.entries()].reverse()) {
    if (solves > SOLVE_BUDGET) break;
    const trial = new Set(keep);
    for (const i of members) trial.delete(i);
    if (unsat(trial)) keep = trial;
  }
  for (const i of [...keep].reverse()) {
    if (solves > SOLVE_BUDGET) break;
    const trial = new Set(keep);
    trial.delete(i);
    if (unsat(trial)) keep = trial;
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
    const real = u.byName.get(r.name) ?? [];
    const providers = u.providers.get(r.name) ?? [];
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

export function explainUnsatisfiable(u: Universe, structural: Logic.Formula[], constraints: Constraint[], channels: string[]): string {
  const core = minimalCore(structural, constraints);
  // Chain order: roots, then packages in the order they are reached from the roots.
  const roots = core.filter((k) => k.kind === 'root');
  const rest = core.filter((k) => k.kind !== 'root') as Exclude<Constraint, { kind: 'root' }>[];
  const order = new Map<string, number>();
  const reach = roots.map((k) => (k as { request: PackageRequest }).request.name);
  for (const n of reach) order.set(n, order.size);
  for (let i = 0; i < reach.length; i++) {
    for (const k of rest) {
      if (k.owner.name !== reach[i]) continue;
      const targets = k.kind === 'depends' ? k.group.map((r) => r.name).concat(k.group.flatMap((r) => u.satisfiers(r).map((c) => c.name))) : [k.other.name];
      for (const t of targets) if (!order.has(t)) {
        order.set(t, order.size);
        reach.push(t);
      }
    }
  }
  rest.sort((a, b) => (order.get(a.owner.name) ?? 1e9) - (order.get(b.owner.name) ?? 1e9));
  const lines = [`no choice of packages from channels ${channels.map((c) => `"${c}"`).join(', ')} satisfies the manifest; these requirements cannot all hold:`];
  for (const k of roots) lines.push(`  - the manifest asks for ${describeRequest((k as { request: PackageRequest }).request)}`);
  for (const k of rest) {
    if (k.kind === 'depends') {
      lines.push(`  - ${describeCandidate(k.owner)} depends on ${formatGroup(k.group)}`);
      lines.push(`      candidates: ${alternativesDetail(u, k.group)}`);
    } else {
      lines.push(`  - ${describeCandidate(k.owner)} ${k.kind} ${formatRelation(k.relation)}, which rules out ${describeCandidate(k.other)}`);
    }
  }
  lines.push('  (only one version of each package can be installed)');
  return lines.join('\n');
}
