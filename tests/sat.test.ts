/**
 * The SAT solver against brute force: random small formulas with clauses, weighted at-most constraints (some
 * behind activation literals) and assumptions. Every satisfiable answer's model is checked, every unsatisfiable
 * answer is confirmed by enumerating all assignments, and every core is itself unsatisfiable. Then the shapes the
 * resolver produces at scale: a deep implication chain and a wide one, without recursion.
 */
import test from 'ava';
import { SatSolver } from '../resolver/sat.ts';

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface AtMostSpec {
  terms: number[];
  weights: number[];
  bound: number;
  act?: number;
}

interface Problem {
  n: number;
  clauses: number[][];
  atMosts: AtMostSpec[];
}

const holds = (x: number, a: boolean[]) => (x > 0 ? a[x]! : !a[-x]!);

function satisfies(p: Problem, a: boolean[], assumptions: number[]): boolean {
  if (!assumptions.every((x) => holds(x, a))) return false;
  if (!p.clauses.every((c) => c.some((x) => holds(x, a)))) return false;
  return p.atMosts.every((m) => (m.act !== undefined && !holds(m.act, a)) || m.terms.reduce((s, t, i) => s + (holds(t, a) ? m.weights[i]! : 0), 0) <= m.bound);
}

function bruteForce(p: Problem, assumptions: number[]): boolean {
  const a = new Array<boolean>(p.n + 1).fill(false);
  for (let mask = 0; mask < 1 << p.n; mask++) {
    for (let v = 1; v <= p.n; v++) a[v] = ((mask >> (v - 1)) & 1) === 1;
    if (satisfies(p, a, assumptions)) return true;
  }
  return false;
}

function randomProblem(r: () => number): Problem {
  const n = 3 + Math.floor(r() * 10);
  const lit = () => (1 + Math.floor(r() * n)) * (r() < 0.5 ? 1 : -1);
  const clauses: number[][] = [];
  const nc = Math.floor(r() * n * 4.5);
  for (let i = 0; i < nc; i++) {
    const len = 1 + Math.floor(r() * 4);
    clauses.push(Array.from({ length: len }, lit));
  }
  const atMosts: AtMostSpec[] = [];
  const na = Math.floor(r() * 3);
  for (let i = 0; i < na; i++) {
    const vars = [...new Set(Array.from({ length: 1 + Math.floor(r() * n) }, () => 1 + Math.floor(r() * n)))];
    const terms = vars.map((v) => (r() < 0.7 ? v : -v));
    const weights = terms.map(() => 1 + Math.floor(r() * 4));
    const total = weights.reduce((s, w) => s + w, 0);
    const spec: AtMostSpec = { terms, weights, bound: Math.floor(r() * total) - (r() < 0.1 ? 1 : 0) };
    if (r() < 0.5) spec.act = lit();
    atMosts.push(spec);
  }
  return { n, clauses, atMosts };
}

function load(p: Problem): SatSolver {
  const s = new SatSolver();
  for (let v = 1; v <= p.n; v++) s.newVar();
  for (const c of p.clauses) s.addClause(c);
  for (const m of p.atMosts) s.addAtMost(m.terms, m.weights, m.bound, m.act);
  return s;
}

test('agrees with brute force on random formulas, under assumptions, with cores that are unsatisfiable', (t) => {
  const r = rng(20261201);
  let sat = 0;
  let unsat = 0;
  for (let round = 0; round < 1500; round++) {
    const p = randomProblem(r);
    const s = load(p);
    // Several solves on one solver: it must stay correct across calls (learnt clauses are kept).
    for (let k = 0; k < 4; k++) {
      const assumptions = [...new Set(Array.from({ length: Math.floor(r() * 4) }, () => (1 + Math.floor(r() * p.n)) * (r() < 0.5 ? 1 : -1)))];
      const expected = bruteForce(p, assumptions);
      const got = s.solve(assumptions);
      t.is(got, expected, `round ${round} solve ${k}: ${JSON.stringify({ p, assumptions })}`);
      if (got) {
        sat++;
        const a = [false];
        for (let v = 1; v <= p.n; v++) a.push(s.value(v));
        t.true(satisfies(p, a, assumptions), `model of round ${round}`);
      } else {
        unsat++;
        const core = s.core();
        t.true(core.every((x) => assumptions.includes(x)), `core ${core} within ${assumptions}`);
        t.false(bruteForce(p, core), `core ${core} of round ${round} is satisfiable`);
      }
    }
  }
  t.true(sat > 500 && unsat > 500, `${sat} satisfiable, ${unsat} unsatisfiable`);
});

test('a deep implication chain and a wide one solve without recursion', (t) => {
  const n = 200_000;
  const s = new SatSolver();
  for (let v = 1; v <= n; v++) s.newVar();
  for (let v = 1; v < n; v++) s.addClause([-v, v + 1]); // v -> v+1
  t.true(s.solve([1]));
  t.true(s.value(n));
  t.false(s.solve([1, -n]));
  t.deepEqual(s.core().sort((a, b) => a - b), [-n, 1]);
  // Wide: one variable forces 100,000 others false; an at-most over all of them.
  const w = new SatSolver();
  const hub = w.newVar();
  const leaves = Array.from({ length: 100_000 }, () => w.newVar());
  for (const l of leaves) w.addClause([-hub, -l]);
  w.addClause(leaves);
  w.addAtMost(leaves, leaves.map(() => 1), 1);
  t.true(w.solve());
  t.false(w.value(hub));
  t.is(leaves.filter((l) => w.value(l)).length, 1);
  t.false(w.solve([hub]));
  t.deepEqual(w.core(), [hub]);
});

test('solveLimited gives up within its conflict budget, and the same solver then answers exactly', (t) => {
  // n+1 pigeons in n holes: unsatisfiable, and hard for clause learning (no short resolution proof).
  const pigeonhole = (n: number) => {
    const s = new SatSolver();
    const x = Array.from({ length: n + 1 }, () => Array.from({ length: n }, () => s.newVar()));
    for (const row of x) s.addClause(row);
    for (let h = 0; h < n; h++) for (let i = 0; i <= n; i++) for (let j = i + 1; j <= n; j++) s.addClause([-x[i]![h]!, -x[j]![h]!]);
    return s;
  };
  const hard = pigeonhole(9);
  t.is(hard.solveLimited([], 50), undefined);
  t.true(hard.getStats().conflicts <= 50 + 1);
  const small = pigeonhole(5);
  t.is(small.solveLimited([], 10), undefined);
  t.false(small.solve());
});
