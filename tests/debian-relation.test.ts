/**
 * Relationship-field parsing on every relation field of the host's real Packages indexes and dpkg
 * status file (checked against an independent regex reading and by round trip), plus hand-written cases.
 */
import test from 'ava';
import {
  formatConstraint,
  formatGroup,
  formatRelation,
  formatRelations,
  parseConstraint,
  parseProvides,
  parseRelations,
  satisfiesVersion,
  strongerRequirement,
  type Relation,
} from '../debian/relation.ts';
import { aptPackagesIndexes, dpkgStatusText, scanFieldValues } from './helpers/aptIndexes.ts';

const FIELDS = ['Depends', 'Pre-Depends', 'Recommends', 'Suggests', 'Enhances', 'Conflicts', 'Breaks', 'Replaces', 'Provides'];

/** A second, regex-based reading of one alternative, independent of the parser under test. */
const ALT = /^\s*([^\s:(|,]+)(?::([^\s(|,]+))?\s*(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([^\s)]+)\s*\))?\s*$/;

function naive(field: string): Relation[][] {
  return field
    .split(',')
    .filter((g) => g.trim() !== '')
    .map((g) =>
      g.split('|').map((a) => {
        const m = ALT.exec(a);
        if (!m) throw new Error(`naive reader cannot read "${a}"`);
        const r: Relation = { name: m[1]! };
        if (m[2] !== undefined) r.archQualifier = m[2];
        if (m[3] !== undefined) {
          r.op = m[3] === '<' ? '<=' : m[3] === '>' ? '>=' : (m[3] as Relation['op']);
          r.version = m[4]!;
        }
        return r;
      }),
    );
}

test('every relation field of the real indexes parses, matches a naive reading and round-trips', (t) => {
  const texts = [dpkgStatusText(), ...aptPackagesIndexes().map((i) => i.text)].filter((x) => x !== '');
  let fields = 0;
  let relations = 0;
  let verbatim = 0;
  const ops = new Set<string>();
  const quals = new Set<string>();
  const problems: string[] = [];
  for (const text of texts) {
    for (const name of FIELDS) {
      for (const value of scanFieldValues(text, name)) {
        fields++;
        let groups: Relation[][];
        try {
          groups = parseRelations(value);
        } catch (e) {
          problems.push(`${name}: ${(e as Error).message}`);
          continue;
        }
        for (const g of groups) {
          for (const r of g) {
            relations++;
            if (r.op) ops.add(r.op);
            if (r.archQualifier) quals.add(r.archQualifier);
          }
        }
        const expected = naive(value);
        if (JSON.stringify(groups) !== JSON.stringify(expected)) problems.push(`${name}: "${value}" parsed as ${JSON.stringify(groups)}`);
        const formatted = formatRelations(groups);
        if (formatted === value) verbatim++;
        if (JSON.stringify(parseRelations(formatted)) !== JSON.stringify(groups)) problems.push(`${name}: "${value}" does not round-trip via "${formatted}"`);
        if (name === 'Provides') parseProvides(value);
      }
    }
  }
  t.log(`${fields} fields, ${relations} relations, ${verbatim} formatted back byte for byte; ops ${[...ops].sort().join(' ')}; qualifiers ${[...quals].sort().join(' ')}`);
  t.deepEqual(problems.slice(0, 20), []);
  t.true(fields > 100, 'the host has relation fields to read');
  // Archive tools write relation fields canonically, so formatting reproduces nearly all of them exactly.
  t.true(verbatim / fields > 0.99, `${verbatim}/${fields} verbatim`);
});

test('each operator, the obsolete < and >, alternatives and arch qualifiers', (t) => {
  t.deepEqual(parseRelations('a (<< 1), b (<= 2), c (= 3), d (>= 4), e (>> 5), f (< 6), g (> 7)'), [
    [{ name: 'a', op: '<<', version: '1' }],
    [{ name: 'b', op: '<=', version: '2' }],
    [{ name: 'c', op: '=', version: '3' }],
    [{ name: 'd', op: '>=', version: '4' }],
    [{ name: 'e', op: '>>', version: '5' }],
    [{ name: 'f', op: '<=', version: '6' }],
    [{ name: 'g', op: '>=', version: '7' }],
  ]);
  t.deepEqual(parseRelations('libcuda1 (>= 550) | libcuda.so.1 (>= 550), python3:any, libfoo:amd64 (= 1:2.0-1), perl:native'), [
    [
      { name: 'libcuda1', op: '>=', version: '550' },
      { name: 'libcuda.so.1', op: '>=', version: '550' },
    ],
    [{ name: 'python3', archQualifier: 'any' }],
    [{ name: 'libfoo', archQualifier: 'amd64', op: '=', version: '1:2.0-1' }],
    [{ name: 'perl', archQualifier: 'native' }],
  ]);
});

test('whitespace, newlines, empty groups, arch restriction and profile lists are tolerated', (t) => {
  t.deepEqual(parseRelations(''), []);
  t.deepEqual(parseRelations('  \n '), []);
  t.deepEqual(parseRelations('a(>=1)|b,c'), [[{ name: 'a', op: '>=', version: '1' }, { name: 'b' }], [{ name: 'c' }]]);
  t.deepEqual(parseRelations('\n a\n  ( >=\t1.0 )\n |\n b ,\n c ,'), [[{ name: 'a', op: '>=', version: '1.0' }, { name: 'b' }], [{ name: 'c' }]]);
  t.deepEqual(parseRelations('a [amd64 !i386] <!nocheck> <stage1 cross>, b (>= 2) [linux-any] | c <!noudeb>'), [
    [{ name: 'a' }],
    [{ name: 'b', op: '>=', version: '2' }, { name: 'c' }],
  ]);
});

test('malformed fields are errors that name the field', (t) => {
  for (const bad of ['a (>= 1', 'a (~ 1)', 'a ()', 'a (>=)', 'a b', '| a', 'a |', 'a:', 'a [amd64', 'a <!nocheck', '(>= 1)']) {
    t.throws(() => parseRelations(bad), { message: /invalid relationship field/ }, bad);
  }
});

test('versioned Provides', (t) => {
  t.deepEqual(parseProvides('libblas.so.3, libcuda.so.1 (= 550.54.15), node-acorn-walk (= 8.2.0)'), [
    { name: 'libblas.so.3' },
    { name: 'libcuda.so.1', version: '550.54.15' },
    { name: 'node-acorn-walk', version: '8.2.0' },
  ]);
  t.deepEqual(parseProvides(''), []);
  t.throws(() => parseProvides('a | b'), { message: /alternatives/ });
  t.throws(() => parseProvides('a (>= 1)'), { message: /only "="/ });
  t.throws(() => parseProvides('a:any'), { message: /qualifiers/ });
});

test('satisfiesVersion applies each operator with dpkg ordering', (t) => {
  t.true(satisfiesVersion('2.36-9+deb12u4', '>=', '2.36'));
  t.false(satisfiesVersion('2.36~rc1', '>=', '2.36'));
  t.true(satisfiesVersion('1.0', '=', '1.0-0'));
  t.true(satisfiesVersion('1:0.1', '>>', '9.9'));
  t.false(satisfiesVersion('1.0', '>>', '1.0'));
  t.true(satisfiesVersion('1.0', '<=', '1.0'));
  t.true(satisfiesVersion('1.0~', '<<', '1.0'));
  t.false(satisfiesVersion('1.0', '<<', '1.0'));
});

test('formatting', (t) => {
  t.is(formatRelation({ name: 'libc6', op: '>=', version: '2.36' }), 'libc6 (>= 2.36)');
  t.is(formatRelation({ name: 'python3', archQualifier: 'any' }), 'python3:any');
  t.is(formatGroup([{ name: 'libblas3' }, { name: 'libblas.so.3' }]), 'libblas3 | libblas.so.3');
  t.is(formatConstraint({ op: '>=', version: '550' }), '>= 550');
});

test('parseConstraint reads manifest constraints and rejects nonsense clearly', (t) => {
  t.is(parseConstraint('*'), undefined);
  t.is(parseConstraint('  '), undefined);
  t.deepEqual(parseConstraint('>= 12.4'), { op: '>=', version: '12.4' });
  t.deepEqual(parseConstraint('=1.2-3'), { op: '=', version: '1.2-3' });
  t.deepEqual(parseConstraint('<<2:1.0~rc1'), { op: '<<', version: '2:1.0~rc1' });
  t.deepEqual(parseConstraint(' >>  1 '), { op: '>>', version: '1' });
  t.deepEqual(parseConstraint('<= 3'), { op: '<=', version: '3' });
  t.deepEqual(parseConstraint('1.2-3'), { op: '=', version: '1.2-3' });
  t.throws(() => parseConstraint('> 1'), { message: /ambiguous.*">>"/ });
  t.throws(() => parseConstraint('< 1'), { message: /ambiguous.*"<<"/ });
  t.throws(() => parseConstraint('~= 1.2'), { message: /unknown operator "~="/ });
  t.throws(() => parseConstraint('>='), { message: /a version must follow/ });
  t.throws(() => parseConstraint('>= latest'), { message: /not a valid Debian version/ });
  t.throws(() => parseConstraint('1.0 || 2.0'), { message: /not a valid Debian version/ });
});

test('strongerRequirement keeps the tightest bound', (t) => {
  const c = (op: Relation['op'] & string, version: string) => ({ op, version });
  t.deepEqual(strongerRequirement(c('>=', '525'), c('>=', '550')), c('>=', '550'));
  t.deepEqual(strongerRequirement(c('>=', '550'), c('>=', '525')), c('>=', '550'));
  t.deepEqual(strongerRequirement(c('>=', '550'), c('>=', '0:550')), c('>=', '550'), 'equal versions keep the first');
  t.deepEqual(strongerRequirement(c('>=', '550'), c('>>', '550')), c('>>', '550'));
  t.deepEqual(strongerRequirement(c('>=', '550~'), c('>=', '550')), c('>=', '550'), 'dpkg ordering, not string ordering');
  t.deepEqual(strongerRequirement(c('>=', '9'), c('>=', '10')), c('>=', '10'));
  t.deepEqual(strongerRequirement(c('>=', '550'), c('>=', '550.0')), c('>=', '550.0'));
  t.deepEqual(strongerRequirement(undefined, c('>=', '1')), c('>=', '1'));
  t.deepEqual(strongerRequirement(c('>=', '1'), undefined), c('>=', '1'));
  t.is(strongerRequirement(undefined, undefined), undefined);
  t.deepEqual(strongerRequirement(c('<<', '600'), c('>=', '550')), c('>=', '550'), 'a lower bound wins over an upper bound');
  t.deepEqual(strongerRequirement(c('<<', '600'), c('<=', '590')), c('<=', '590'));
  t.deepEqual(strongerRequirement(c('<=', '600'), c('<<', '600')), c('<<', '600'));
});
