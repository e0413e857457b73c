/**
 * A CDCL satisfiability solver (the MiniSat design: two watched literals, 1-UIP clause learning, VSIDS, phase
 * saving, Luby restarts, learnt-clause reduction), with what the resolver needs and logic-solver lacks:
 *
 *  - solving under many assumptions at once, and after an unsatisfiable answer the subset of assumptions that the
 *    proof used (an unsatisfiable core), which is what makes a minimal explanation cheap;
 *  - native weighted at-most constraints `act -> sum(w_i * t_i) <= bound`, propagated directly (no adder
 *    circuits), for the lexicographic optimisation;
 *  - memory that grows with the problem (plain JavaScript arrays, no fixed heap), and no recursion anywhere, so
 *    neither problem size nor proof depth can overflow the stack.
 *
 * Variables are numbered from 1; a literal is `v` or `-v`, as in DIMACS. The solver is deterministic: the same
 * calls in the same order give the same answers and models.
 */

/** Internal literal: 2v for v, 2v+1 for -v. */
const lit = (x: number) => (x > 0 ? 2 * x : -2 * x + 1);
const ext = (l: number) => (l & 1 ? -(l >> 1) : l >> 1);

class Clause {
  lits: Int32Array;
  learnt: boolean;
  activity = 0;
  removed = false;
  constructor(lits: Int32Array, learnt: boolean) {
    this.lits = lits;
    this.learnt = learnt;
  }
}

/** act -> sum(weights[i] * terms[i]) <= bound; terms sorted by weight, heaviest first. */
class AtMost {
  terms: Int32Array;
  weights: Float64Array;
  bound: number;
  act: number; // internal literal, or -1 when always active
  sum = 0; // weight of the terms currently true
  removed = false;
  constructor(terms: Int32Array, weights: Float64Array, bound: number, act: number) {
    this.terms = terms;
    this.weights = weights;
    this.bound = bound;
    this.act = act;
  }
}

type Reason = Clause | AtMost | null;

interface Occurrence {
  c: AtMost;
  /** The term's weight; 0 for the activation literal. */
  w: number;
}

export interface SatStats {
  vars: number;
  clauses: number;
  learnts: number;
  conflicts: number;
  decisions: number;
  propagations: number;
  solves: number;
}

export class SatSolver {
  private nVars = 0;
  private ok = true;
  // Per literal.
  private val: Int8Array = new Int8Array(2);
  private watches: Clause[][] = [[], []];
  private occurs: Occurrence[][] = [[], []];
  // Per variable.
  private level: Int32Array = new Int32Array(1);
  private trailPos: Int32Array = new Int32Array(1);
  private reason: Reason[] = [null];
  private activity: Float64Array = new Float64Array(1);
  private phase: Uint8Array = new Uint8Array(1); // 1: last value was true
  private seen: Uint8Array = new Uint8Array(1);
  private heapIndex: Int32Array = new Int32Array(1).fill(-1);
  private heap: number[] = [];
  // Search state.
  private trail: number[] = [];
  private trailLim: number[] = [];
  private qhead = 0;
  private clauses: Clause[] = [];
  private learnts: Clause[] = [];
  private atMosts: AtMost[] = [];
  private varInc = 1;
  private clauseInc = 1;
  private maxLearnts = 0;
  private model: Int8Array = new Int8Array(1);
  private failed: number[] = [];
  private readonly stats = { conflicts: 0, decisions: 0, propagations: 0, solves: 0 };

  /** A new variable (1, 2, 3, ...). */
  newVar(): number {
    const v = ++this.nVars;
    if (v >= this.level.length) this.grow(Math.max(2 * this.level.length, v + 1));
    this.watches.push([], []);
    this.occurs.push([], []);
    this.reason.push(null);
    this.heapIndex[v] = -1;
    this.heapInsert(v);
    return v;
  }

  get numVars(): number {
    return this.nVars;
  }

  private grow(cap: number): void {
    const g8 = (a: Int8Array, n: number) => { const b = new Int8Array(n); b.set(a); return b; };
    const gu8 = (a: Uint8Array, n: number) => { const b = new Uint8Array(n); b.set(a); return b; };
    const g32 = (a: Int32Array, n: number, fill = 0) => { const b = new Int32Array(n).fill(fill); b.set(a); return b; };
    this.val = g8(this.val, 2 * cap);
    this.level = g32(this.level, cap);
    this.trailPos = g32(this.trailPos, cap);
    const act = new Float64Array(cap);
    act.set(this.activity);
    this.activity = act;
    this.phase = gu8(this.phase, cap);
    this.seen = gu8(this.seen, cap);
    this.heapIndex = g32(this.heapIndex, cap, -1);
  }

  private checkLits(lits: readonly number[]): void {
    for (const x of lits) {
      if (!Number.isInteger(x) || x === 0 || Math.abs(x) > this.nVars) throw new Error(`sat: bad literal ${x}`);
    }
  }

  /** Adds a clause (a disjunction of literals). Returns false once the clauses are unsatisfiable on their own. */
  addClause(lits: readonly number[]): boolean {
    if (!this.ok) return false;
    this.checkLits(lits);
    this.cancelUntil(0);
    const ls: number[] = [];
    const mark = new Set<number>();
    for (const x of lits) {
      const l = lit(x);
      if (mark.has(l ^ 1) || this.val[l] === 1) return true; // tautology or already satisfied
      if (mark.has(l) || this.val[l] === -1) continue;
      mark.add(l);
      ls.push(l);
    }
    if (ls.length === 0) return (this.ok = false);
    if (ls.length === 1) {
      this.enqueue(ls[0]!, null);
      if (this.propagate() !== null) this.ok = false;
      return this.ok;
    }
    const c = new Clause(Int32Array.from(ls), false);
    this.attach(c);
    this.clauses.push(c);
    return true;
  }

  /**
   * Adds `activation -> sum(weights[i] * terms[i]) <= bound` (weights positive; without `activation`, always).
   * Returns false once the constraints are unsatisfiable on their own.
   */
  addAtMost(terms: readonly number[], weights: readonly number[], bound: number, activation?: number): boolean {
    if (!this.ok) return false;
    this.checkLits(terms);
    if (activation !== undefined) this.checkLits([activation]);
    if (terms.length !== weights.length) throw new Error('sat: terms and weights differ in length');
    this.cancelUntil(0);
    const order = terms.map((_, i) => i).filter((i) => weights[i]! > 0).sort((a, b) => weights[b]! - weights[a]! || a - b);
    const seenTerms = new Set<number>();
    for (const i of order) {
      if (seenTerms.has(terms[i]!)) throw new Error(`sat: term ${terms[i]} twice in one constraint`);
      seenTerms.add(terms[i]!);
    }
    const c = new AtMost(Int32Array.from(order, (i) => lit(terms[i]!)), Float64Array.from(order, (i) => weights[i]!), bound, activation === undefined ? -1 : lit(activation));
    for (let j = 0; j < c.terms.length; j++) {
      const t = c.terms[j]!;
      this.occurs[t]!.push({ c, w: c.weights[j]! });
      if (this.val[t] === 1) c.sum += c.weights[j]!;
    }
    if (c.act >= 0) this.occurs[c.act]!.push({ c, w: 0 });
    this.atMosts.push(c);
    if (this.checkAtMost(c) !== null || this.propagate() !== null) this.ok = false;
    return this.ok;
  }

  /**
   * Searches for a model in which every assumption holds. True: `value` reads the model. False: the clauses and
   * the assumptions cannot hold together, and `core()` names the assumptions that the refutation used (empty when
   * the clauses alone are unsatisfiable).
   */
  solve(assumptions: readonly number[] = []): boolean {
    return this.solveLimited(assumptions, Infinity)!;
  }

  /** `solve`, giving up (undefined) after `maxConflicts` conflicts; what was learnt so far is kept. */
  solveLimited(assumptions: readonly number[], maxConflicts: number): boolean | undefined {
    this.stats.solves++;
    this.failed = [];
    if (!this.ok) return false;
    this.checkLits(assumptions);
    const assume = assumptions.map(lit);
    this.cancelUntil(0);
    if (this.propagate() !== null) return (this.ok = false);
    if (this.maxLearnts === 0) this.maxLearnts = Math.max(5000, this.clauses.length / 3);
    const limit = this.stats.conflicts + maxConflicts;
    let restart = 0;
    for (;;) {
      const budget = Math.min(100 * luby(2, restart++), limit - this.stats.conflicts);
      const status = budget > 0 ? this.search(budget, assume) : 0;
      if (status !== 0) {
        this.cancelUntil(0);
        return status === 1;
      }
      if (this.stats.conflicts >= limit) {
        this.cancelUntil(0);
        return undefined;
      }
      this.maxLearnts *= 1.05;
    }
  }

  /** The value of a variable (or literal) in the last model. */
  value(x: number): boolean {
    const v = Math.abs(x);
    const t = this.model[v] === 1;
    return x > 0 ? t : !t;
  }

  /** After an unsatisfiable `solve(assumptions)`: the assumptions the refutation used (a subset, in trail order). */
  core(): number[] {
    return this.failed.map(ext);
  }

  getStats(): SatStats {
    return { vars: this.nVars, clauses: this.clauses.length, learnts: this.learnts.length, ...this.stats };
  }

  // --- search -------------------------------------------------------------------------------------------------

  /** 1: satisfiable, -1: unsatisfiable (under the assumptions), 0: restart. */
  private search(conflictBudget: number, assume: number[]): number {
    let conflicts = 0;
    for (;;) {
      const confl = this.propagate();
      if (confl !== null) {
        this.stats.conflicts++;
        conflicts++;
        if (this.trailLim.length === 0) {
          this.ok = false;
          return -1;
        }
        const { learnt, btLevel } = this.analyze(confl);
        this.cancelUntil(btLevel);
        if (learnt.length === 1) {
          this.enqueue(learnt[0]!, null);
        } else {
          const c = new Clause(Int32Array.from(learnt), true);
          this.attach(c);
          this.learnts.push(c);
          this.bumpClause(c);
          this.enqueue(learnt[0]!, c);
        }
        this.varInc /= 0.95;
        this.clauseInc /= 0.999;
        continue;
      }
      if (conflicts >= conflictBudget) {
        this.cancelUntil(0);
        return 0;
      }
      if (this.learnts.length - this.trail.length >= this.maxLearnts) this.reduceLearnts();
      let next = -1;
      while (this.trailLim.length < assume.length) {
        const p = assume[this.trailLim.length]!;
        if (this.val[p] === 1) {
          this.trailLim.push(this.trail.length); // already true: an empty level keeps levels and assumptions aligned
        } else if (this.val[p] === -1) {
          this.analyzeFinal(p);
          return -1;
        } else {
          next = p;
          break;
        }
      }
      if (next === -1) {
        next = this.pickBranch();
        if (next === -1) {
          this.model = new Int8Array(this.nVars + 1);
          for (let v = 1; v <= this.nVars; v++) this.model[v] = this.val[2 * v]!;
          return 1;
        }
      }
      this.stats.decisions++;
      this.trailLim.push(this.trail.length);
      this.enqueue(next, null);
    }
  }

  private enqueue(l: number, r: Reason): void {
    const v = l >> 1;
    this.val[l] = 1;
    this.val[l ^ 1] = -1;
    this.level[v] = this.trailLim.length;
    this.trailPos[v] = this.trail.length;
    this.reason[v] = r;
    this.trail.push(l);
    for (const o of this.occurs[l]!) if (o.w > 0) o.c.sum += o.w;
  }

  private cancelUntil(lvl: number): void {
    if (this.trailLim.length <= lvl) return;
    const stop = this.trailLim[lvl]!;
    for (let i = this.trail.length - 1; i >= stop; i--) {
      const l = this.trail[i]!;
      const v = l >> 1;
      this.val[l] = 0;
      this.val[l ^ 1] = 0;
      this.reason[v] = null;
      this.phase[v] = l & 1 ? 0 : 1;
      for (const o of this.occurs[l]!) if (o.w > 0) o.c.sum -= o.w;
      if (this.heapIndex[v]! < 0) this.heapInsert(v);
    }
    this.trail.length = stop;
    this.trailLim.length = lvl;
    this.qhead = Math.min(this.qhead, stop);
  }

  private attach(c: Clause): void {
    this.watches[c.lits[0]!]!.push(c);
    this.watches[c.lits[1]!]!.push(c);
  }

  /** Unit propagation; returns a conflicting constraint or null. */
  private propagate(): Clause | AtMost | null {
    const val = this.val;
    while (this.qhead < this.trail.length) {
      const p = this.trail[this.qhead++]!;
      this.stats.propagations++;
      const f = p ^ 1; // just became false
      const ws = this.watches[f]!;
      let i = 0;
      let j = 0;
      let confl: Clause | null = null;
      while (i < ws.length) {
        const c = ws[i++]!;
        if (c.removed) continue;
        const ls = c.lits;
        if (ls[0] === f) {
          ls[0] = ls[1]!;
          ls[1] = f;
        }
        const first = ls[0]!;
        if (val[first] === 1) {
          ws[j++] = c;
          continue;
        }
        let moved = false;
        for (let k = 2; k < ls.length; k++) {
          const l = ls[k]!;
          if (val[l] !== -1) {
            ls[1] = l;
            ls[k] = f;
            this.watches[l]!.push(c);
            moved = true;
            break;
          }
        }
        if (moved) continue;
        ws[j++] = c;
        if (val[first] === -1) {
          confl = c;
          while (i < ws.length) ws[j++] = ws[i++]!;
        } else {
          this.enqueue(first, c);
        }
      }
      ws.length = j;
      if (confl !== null) {
        this.qhead = this.trail.length;
        return confl;
      }
      const occ = this.occurs[p]!;
      let k = 0;
      for (let m = 0; m < occ.length; m++) {
        const o = occ[m]!;
        if (o.c.removed) continue;
        occ[k++] = o;
        const bad = this.checkAtMost(o.c);
        if (bad !== null) {
          for (m++; m < occ.length; m++) occ[k++] = occ[m]!;
          occ.length = k;
          this.qhead = this.trail.length;
          return bad;
        }
      }
      occ.length = k;
    }
    return null;
  }

  /** Propagates one at-most constraint; returns it when it is violated. */
  private checkAtMost(c: AtMost): AtMost | null {
    const actVal = c.act < 0 ? 1 : this.val[c.act]!;
    if (actVal === -1) {
      if (this.level[c.act >> 1] === 0) c.removed = true;
      return null;
    }
    const slack = c.bound - c.sum;
    if (slack < 0) {
      if (actVal === 1) return c;
      this.enqueue(c.act ^ 1, c);
      return null;
    }
    if (actVal !== 1) return null;
    for (let j = 0; j < c.terms.length; j++) {
      if (c.weights[j]! <= slack) break;
      const t = c.terms[j]!;
      if (this.val[t] === 0) this.enqueue(t ^ 1, c);
    }
    return null;
  }

  /**
   * The clause form of a reason or conflict: for a reason, the implied literal first, then false literals that
   * were assigned before it; for a conflict (`implied` -1), false literals only.
   */
  private reasonLits(r: Clause | AtMost, implied: number): ArrayLike<number> {
    if (r instanceof Clause) return r.lits;
    const out: number[] = [];
    // The true terms assigned before the implied literal weigh more than `over`: enough to force it.
    let over: number;
    let before: number;
    if (implied < 0) {
      over = r.bound;
      before = this.trail.length;
    } else {
      out.push(implied);
      before = this.trailPos[implied >> 1]!;
      if (implied === (r.act ^ 1)) over = r.bound;
      else over = r.bound - r.weights[r.terms.indexOf(implied ^ 1)]!;
    }
    let acc = 0;
    for (let j = 0; j < r.terms.length && acc <= over; j++) {
      const t = r.terms[j]!;
      if (this.val[t] === 1 && this.trailPos[t >> 1]! < before) {
        out.push(t ^ 1);
        acc += r.weights[j]!;
      }
    }
    if (r.act >= 0 && implied !== (r.act ^ 1)) out.push(r.act ^ 1);
    return out;
  }

  private analyze(confl: Clause | AtMost): { learnt: number[]; btLevel: number } {
    const seen = this.seen;
    const learnt: number[] = [-1];
    const current = this.trailLim.length;
    let pathC = 0;
    let p = -1;
    let idx = this.trail.length - 1;
    let r: Clause | AtMost = confl;
    for (;;) {
      if (r instanceof Clause && r.learnt) this.bumpClause(r);
      const ls = this.reasonLits(r, p);
      for (let k = p === -1 ? 0 : 1; k < ls.length; k++) {
        const q = ls[k]!;
        const v = q >> 1;
        if (seen[v] === 0 && this.level[v]! > 0) {
          this.bumpVar(v);
          seen[v] = 1;
          if (this.level[v]! >= current) pathC++;
          else learnt.push(q);
        }
      }
      while (seen[this.trail[idx]! >> 1] === 0) idx--;
      p = this.trail[idx]!;
      idx--;
      seen[p >> 1] = 0;
      pathC--;
      if (pathC <= 0) break;
      r = this.reason[p >> 1]!;
    }
    learnt[0] = p ^ 1;
    // Drop literals implied by the others through a clause (local minimisation; no recursion).
    let n = 1;
    const dropped: number[] = [];
    for (let i = 1; i < learnt.length; i++) {
      const q = learnt[i]!;
      const rr = this.reason[q >> 1];
      let redundant = false;
      if (rr instanceof Clause) {
        redundant = true;
        for (let k = 1; k < rr.lits.length; k++) {
          const v = rr.lits[k]! >> 1;
          if (seen[v] === 0 && this.level[v]! > 0) {
            redundant = false;
            break;
          }
        }
      }
      if (redundant) dropped.push(q);
      else learnt[n++] = q;
    }
    for (let i = 1; i < learnt.length; i++) seen[learnt[i]! >> 1] = 0;
    for (const q of dropped) seen[q >> 1] = 0;
    learnt.length = n;
    let btLevel = 0;
    if (n > 1) {
      let maxI = 1;
      for (let i = 2; i < n; i++) if (this.level[learnt[i]! >> 1]! > this.level[learnt[maxI]! >> 1]!) maxI = i;
      const t = learnt[1]!;
      learnt[1] = learnt[maxI]!;
      learnt[maxI] = t;
      btLevel = this.level[learnt[1]! >> 1]!;
    }
    return { learnt, btLevel };
  }

  /** `p` is an assumption found false: collect the assumptions that forced it. */
  private analyzeFinal(p: number): void {
    const out: number[] = [p];
    if (this.trailLim.length === 0) {
      this.failed = out;
      return;
    }
    const seen = this.seen;
    seen[p >> 1] = 1;
    for (let i = this.trail.length - 1; i >= this.trailLim[0]!; i--) {
      const l = this.trail[i]!;
      const v = l >> 1;
      if (seen[v] === 0) continue;
      const r = this.reason[v];
      if (r === null || r === undefined) {
        out.push(l); // an assumption
      } else {
        const ls = this.reasonLits(r, l);
        for (let k = 1; k < ls.length; k++) {
          const u = ls[k]! >> 1;
          if (this.level[u]! > 0) seen[u] = 1;
        }
      }
      seen[v] = 0;
    }
    seen[p >> 1] = 0;
    this.failed = out;
  }

  private reduceLearnts(): void {
    const locked = (c: Clause) => this.reason[c.lits[0]! >> 1] === c && this.val[c.lits[0]!] === 1;
    const sorted = [...this.learnts].sort((a, b) => (a.lits.length === 2 ? 1 : 0) - (b.lits.length === 2 ? 1 : 0) || a.activity - b.activity);
    const limit = this.clauseInc / sorted.length;
    const keep: Clause[] = [];
    for (let i = 0; i < sorted.length; i++) {
      const c = sorted[i]!;
      if (c.lits.length > 2 && !locked(c) && (i < sorted.length / 2 || c.activity < limit)) c.removed = true;
      else keep.push(c);
    }
    this.learnts = keep;
    for (const ws of this.watches) {
      let j = 0;
      for (let i = 0; i < ws.length; i++) if (!ws[i]!.removed) ws[j++] = ws[i]!;
      ws.length = j;
    }
  }

  // --- heuristics ---------------------------------------------------------------------------------------------

  private bumpVar(v: number): void {
    if ((this.activity[v]! += this.varInc) > 1e100) {
      for (let u = 1; u <= this.nVars; u++) this.activity[u]! *= 1e-100;
      this.varInc *= 1e-100;
    }
    if (this.heapIndex[v]! >= 0) this.heapUp(this.heapIndex[v]!);
  }

  private bumpClause(c: Clause): void {
    if ((c.activity += this.clauseInc) > 1e20) {
      for (const d of this.learnts) d.activity *= 1e-20;
      this.clauseInc *= 1e-20;
    }
  }

  /** The unassigned variable of highest activity (ties: lowest number), with its saved phase (false at first). */
  private pickBranch(): number {
    while (this.heap.length > 0) {
      const v = this.heapPop();
      if (this.val[2 * v] === 0) return this.phase[v] ? 2 * v : 2 * v + 1;
    }
    return -1;
  }

  private before(a: number, b: number): boolean {
    const x = this.activity[a]!;
    const y = this.activity[b]!;
    return x > y || (x === y && a < b);
  }

  private heapInsert(v: number): void {
    this.heapIndex[v] = this.heap.length;
    this.heap.push(v);
    this.heapUp(this.heap.length - 1);
  }

  private heapUp(i: number): void {
    const h = this.heap;
    const v = h[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const u = h[parent]!;
      if (!this.before(v, u)) break;
      h[i] = u;
      this.heapIndex[u] = i;
      i = parent;
    }
    h[i] = v;
    this.heapIndex[v] = i;
  }

  private heapPop(): number {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    this.heapIndex[top] = -1;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && this.before(h[r]!, h[l]!) ? r : l;
        if (!this.before(h[c]!, last)) break;
        h[i] = h[c]!;
        this.heapIndex[h[i]!] = i;
        i = c;
      }
      h[i] = last;
      this.heapIndex[last] = i;
    }
    return top;
  }
}

/** The Luby sequence scaled by `y` (1, 1, 2, 1, 1, 2, 4, ...), as MiniSat computes it. */
function luby(y: number, x: number): number {
  let size = 1;
  let seq = 0;
  while (size < x + 1) {
    seq++;
    size = 2 * size + 1;
  }
  while (size - 1 !== x) {
    size = (size - 1) >> 1;
    seq--;
    x = x % size;
  }
  return Math.pow(y, seq);
}
