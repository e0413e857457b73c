/**
 * Explanations of unsatisfiable requests at a scale that used to overflow the stack or exhaust the solver's heap:
 * a 20,000-package dependency chain, a dependency with 5,000 alternatives, and 10,000 roots of which two
 * conflict. Each must be refuted and explained, in bounded time, without recursion.
 */
import test from 'ava';
import { universeOf } from './helpers/universe.ts';
import { solve } from '../resolver/solve.ts';
import { minimalCore, type Constraint } from '../resolver/explain.ts';
import { StrataError } from '../errors.ts';
import type { Candidate } from '../model.ts';

function pkg(name: string, fields: Partial<Candidate> = {}): Candidate {
  return {
    name, version: '1', arch: 'amd64', channel: 'stable', channelRank: 0, source: name, sourceVersion: '1', essential: false,
    depends: '', preDepends: '', recommends: '', provides: '', conflicts: '', breaks: '',
    filename: `pool/main/${name}_1_amd64.deb`, size: 1, sha256: '0'.repeat(64), ...fields,
  };
}

/** Refutes and explains; `ms` is CPU time (this process's), which a loaded machine does not inflate. */
function unsatisfiable(cands: Candidate[], roots: string[]): { message: string; ms: number } {
  const started = process.cpuUsage();
  const err = (() => {
    try {
      solve({ universe: universeOf(cands), roots: roots.map((name) => ({ name })), channels: ['stable'], hostDriver: false, withRecommends: false });
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  if (!(err instanceof StrataError) || err.code !== 'E_UNSATISFIABLE') throw new Error(`expected E_UNSATISFIABLE, got ${String(err)}`);
  const used = process.cpuUsage(started);
  return { message: err.message, ms: Math.round((used.user + used.system) / 1000) };
}

test('a 20,000-package chain that ends in a conflict with its root is explained from the root down', (t) => {
  const n = 20_000;
  const cands = [pkg('p0', { depends: 'p1' })];
  for (let i = 1; i < n; i++) cands.push(pkg(`p${i}`, { depends: i === n - 1 ? 'end' : `p${i + 1}` }));
  cands.push(pkg('end', { conflicts: 'p0' }));
  const { message, ms } = unsatisfiable(cands, ['p0']);
  t.log(`${ms} ms of CPU`);
  const lines = message.split('\n');
  t.is(lines[1], '  - the manifest asks for p0');
  t.is(lines[2], '  - p0 1 (stable) depends on p1');
  t.regex(message, /\.\.\. and \d+ more requirements along the same chain/);
  t.true(lines.length < 500, `${lines.length} lines`);
  t.true(ms < 60_000, `${ms} ms`);
});

test('a dependency with 5,000 alternatives, none installable, names the dependency and why each fails', (t) => {
  const n = 5_000;
  const alts = Array.from({ length: n }, (_, i) => `w${i}`);
  const cands = [pkg('hub', { depends: alts.join(' | ') }), ...alts.map((a) => pkg(a, { depends: `missing-${a}` }))];
  const { message, ms } = unsatisfiable(cands, ['hub']);
  t.log(`${ms} ms of CPU`);
  t.regex(message, /the manifest asks for hub/);
  t.regex(message, /hub 1 \(stable\) depends on w0 \| w1 \| w2/);
  t.regex(message, /w0 1 \(stable\) depends on missing-w0\n {6}candidates: missing-w0 exists in no channel/);
  t.true(ms < 60_000, `${ms} ms`);
});

test('10,000 roots of which two conflict: the explanation is just those two', (t) => {
  const n = 10_000;
  const cands = Array.from({ length: n }, (_, i) => pkg(`r${i}`, i === 7777 ? { conflicts: 'r1234' } : {}));
  const { message, ms } = unsatisfiable(cands, cands.map((c) => c.name));
  t.log(`${ms} ms of CPU`);
  t.is(message.split('\n').filter((l) => l.startsWith('  - ')).length, 3, message);
  t.regex(message, /the manifest asks for r1234\n/);
  t.regex(message, /the manifest asks for r7777\n/);
  t.regex(message, /r7777 1 \(stable\) conflicts r1234, which rules out r1234 1 \(stable\)/);
  t.true(ms < 60_000, `${ms} ms`);
});

test('minimalCore keeps only what the refutation needs', (t) => {
  // Variables: 1 = a, 2 = b, 3 = c. Roots a and b; a conflicts with b; an unrelated requirement c.
  const dummy = pkg('x');
  const k = (clauses: number[][]): Constraint => ({ kind: 'depends', owner: dummy, group: [{ name: 'x' }], clauses });
  const constraints = [k([[1]]), k([[3]]), k([[2]]), k([[-1, -2]]), k([[-3, 1]])];
  t.deepEqual(minimalCore(3, [], constraints).map((c) => constraints.indexOf(c)), [0, 2, 3]);
  t.throws(() => minimalCore(3, [], constraints.slice(0, 3)), { message: /satisfiable/ });
});
