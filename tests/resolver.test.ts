import test from 'ava';
import { universeOf } from './helpers/universe.ts';
import { solve, type SolveRequest } from '../resolver/solve.ts';
import { StrataError } from '../errors.ts';
import { parseConstraint } from '../debian/relation.ts';
import type { Candidate, PackageRequest } from '../model.ts';

const CHANNELS = ['stable', 'current'];

function pkg(channel: string, name: string, version: string, fields: Partial<Candidate> = {}): Candidate {
  return {
    name,
    version,
    arch: 'amd64',
    channel,
    channelRank: CHANNELS.indexOf(channel),
    source: name,
    sourceVersion: version,
    essential: false,
    depends: '',
    preDepends: '',
    recommends: '',
    provides: '',
    conflicts: '',
    breaks: '',
    filename: `pool/main/${name[0]}/${name}/${name}_${version}_amd64.deb`,
    size: 1000,
    sha256: `${name}-${version}-${channel}`.padEnd(64, '0').slice(0, 64),
    ...fields,
  };
}

const S = (n: string, v: string, f?: Partial<Candidate>) => pkg('stable', n, v, f);
const C = (n: string, v: string, f?: Partial<Candidate>) => pkg('current', n, v, f);

function req(spec: string): PackageRequest {
  // "name", "name@channel", "name >= 1.0"
  const [head, ...rest] = spec.split(' ');
  const [name, channel] = head!.split('@');
  const r: PackageRequest = { name: name! };
  if (channel) r.channel = channel;
  const c = parseConstraint(rest.join(' '));
  if (c) r.constraint = c;
  return r;
}

function run(cands: Candidate[], roots: string[], extra: Partial<SolveRequest> = {}) {
  return solve({ universe: universeOf(cands), roots: roots.map(req), channels: CHANNELS, hostDriver: false, withRecommends: false, ...extra });
}

function chosen(sol: ReturnType<typeof solve>): string[] {
  return sol.packages.map((p) => `${p.candidate.name}=${p.candidate.version}@${p.candidate.channel}`);
}

const glibc = [
  S('libc6', '2.36-9'),
  C('libc6', '2.41-6'),
  S('libc6-dev', '2.36-9', { depends: 'libc6 (= 2.36-9)' }),
  C('libc6-dev', '2.41-6', { depends: 'libc6 (= 2.41-6)' }),
  C('libfoo1', '1.0-1', { depends: 'libc6 (>= 2.40)' }),
  C('libfoo-dev', '1.0-1', { depends: 'libfoo1 (= 1.0-1), libc6-dev' }),
];

test('follows Depends and prefers the default channel', (t) => {
  const sol = run(glibc, ['libc6-dev']);
  t.deepEqual(chosen(sol), ['libc6=2.36-9@stable', 'libc6-dev=2.36-9@stable']);
  t.deepEqual(sol.packages.find((p) => p.candidate.name === 'libc6-dev')!.depends, ['libc6']);
  t.true(sol.packages.find((p) => p.candidate.name === 'libc6-dev')!.root);
  t.false(sol.packages.find((p) => p.candidate.name === 'libc6')!.root);
});

test('a current library drags libc6 and its exact-version sibling libc6-dev to current (apt gives up here)', (t) => {
  const sol = run(glibc, ['libc6-dev', 'libfoo-dev@current']);
  t.deepEqual(chosen(sol), ['libc6=2.41-6@current', 'libc6-dev=2.41-6@current', 'libfoo-dev=1.0-1@current', 'libfoo1=1.0-1@current']);
});

test('a version constraint in the manifest takes the other channel only for what it needs', (t) => {
  const cands = [...glibc, S('zlib1g', '1:1.2.13', { depends: 'libc6 (>= 2.14)' }), C('zlib1g', '1:1.3.1', { depends: 'libc6 (>= 2.14)' })];
  const sol = run(cands, ['zlib1g >= 1:1.3']);
  t.deepEqual(chosen(sol), ['libc6=2.36-9@stable', 'zlib1g=1:1.3.1@current']);
});

test('the newest version within the preferred channel wins', (t) => {
  const sol = run([S('a', '1.0'), S('a', '1.2'), S('a', '1.10'), C('a', '2.0')], ['a']);
  t.deepEqual(chosen(sol), ['a=1.10@stable']);
});

test('virtual packages: one provider, chosen deterministically whatever the input order', (t) => {
  const cands = [
    S('mailer', '1', { depends: 'mail-transport-agent' }),
    S('posty', '1', { provides: 'mail-transport-agent' }),
    S('exim-lite', '1', { provides: 'mail-transport-agent' }),
  ];
  const a = chosen(run(cands, ['mailer']));
  const b = chosen(run([...cands].reverse(), ['mailer']));
  t.deepEqual(a, ['exim-lite=1@stable', 'mailer=1@stable']);
  t.deepEqual(a, b);
});

test('versioned Provides satisfy versioned dependencies; unversioned ones do not', (t) => {
  const cands = [
    S('viewer', '1', { depends: 'libjpeg (>= 8)' }),
    S('libjpeg-old', '1', { provides: 'libjpeg' }),
    S('libjpeg-turbo', '2', { provides: 'libjpeg (= 8)' }),
  ];
  t.deepEqual(chosen(run(cands, ['viewer'])), ['libjpeg-turbo=2@stable', 'viewer=1@stable']);
});

test('alternatives: the first that can be met wins; a missing first alternative falls through', (t) => {
  const cands = [S('app', '1', { depends: 'ghost | real-b | real-c' }), S('real-b', '1'), S('real-c', '1')];
  t.deepEqual(chosen(run(cands, ['app'])), ['app=1@stable', 'real-b=1@stable']);
});

test('a dependency already met by a package the solution has anyway pulls nothing in, whichever alternative or provider meets it (as apt)', (t) => {
  // x11-common: Depends: lsb-base, which the Essential sysvinit-utils provides.
  const lsb = [
    S('x11-common', '1', { depends: 'lsb-base' }),
    S('lsb-base', '11.6', { depends: 'sysvinit-utils (>= 3)' }),
    S('sysvinit-utils', '3.1', { essential: true, provides: 'lsb-base (= 11.1.0)' }),
  ];
  t.deepEqual(chosen(run(lsb, ['x11-common'], { withEssential: true })), ['sysvinit-utils=3.1@stable', 'x11-common=1@stable']);
  // Without the Essential set nothing has sysvinit-utils anyway: the real lsb-base is the preferred one.
  t.deepEqual(chosen(run(lsb, ['x11-common'])), ['lsb-base=11.6@stable', 'sysvinit-utils=3.1@stable', 'x11-common=1@stable']);
  // python3-jaraco.context: Depends: python3-setuptools | python3-supported-min (>= 3.12); python3 provides it and
  // is there for another package's sake.
  const py = [
    S('app', '1', { depends: 'python3, ctx' }),
    S('ctx', '1', { depends: 'setuptools | supported-min (>= 3.12)' }),
    S('setuptools', '78', { depends: 'zipp' }),
    S('zipp', '3'),
    S('python3', '3.13', { provides: 'supported-min (= 3.13)' }),
  ];
  t.deepEqual(chosen(run(py, ['app'])), ['app=1@stable', 'ctx=1@stable', 'python3=3.13@stable']);
  // Alone, ctx takes its first alternative: python3 would be there only for this group's sake.
  t.deepEqual(chosen(run(py, ['ctx'])), ['ctx=1@stable', 'setuptools=78@stable', 'zipp=3@stable']);
  // Two second choices cannot excuse each other: each group takes its first alternative.
  const pair = [
    S('top', '1', { depends: 'one, two' }),
    S('one', '1', { depends: 'a | shared' }),
    S('two', '1', { depends: 'b | shared' }),
    S('a', '1'), S('b', '1'), S('shared', '1'),
  ];
  t.deepEqual(chosen(run(pair, ['top'])), ['a=1@stable', 'b=1@stable', 'one=1@stable', 'top=1@stable', 'two=1@stable']);
  // But a second choice that one group is forced to make is there anyway for the other.
  const forced = [...pair.filter((c) => c.name !== 'b'), S('b', '1', { depends: 'ghost' })];
  t.deepEqual(chosen(run(forced, ['top'])), ['one=1@stable', 'shared=1@stable', 'top=1@stable', 'two=1@stable']);
});

test('a root that names a real package takes it, not a provider of its name (as apt-get install NAME)', (t) => {
  const cands = [S('pkg-config', '1.8', { depends: 'pkgconf' }), S('pkgconf', '1.8', { provides: 'pkg-config (= 1.8)' })];
  t.deepEqual(chosen(run(cands, ['pkg-config'])), ['pkg-config=1.8@stable', 'pkgconf=1.8@stable']);
  t.deepEqual(chosen(run([S('tool', '1', { depends: 'pkg-config' }), ...cands], ['tool'])), ['pkg-config=1.8@stable', 'pkgconf=1.8@stable', 'tool=1@stable']);
  // A purely virtual root takes a provider.
  t.deepEqual(chosen(run([cands[1]!], ['pkg-config'])), ['pkgconf=1.8@stable']);
});

test('Conflicts and Breaks are never violated', (t) => {
  const cands = [
    S('app', '1', { depends: 'backend-a | backend-b' }),
    S('backend-a', '1', { conflicts: 'tool' }),
    S('backend-b', '1'),
    S('tool', '1'),
    S('lib', '1'),
    S('newlib', '2', { breaks: 'lib (<< 2)' }),
  ];
  t.deepEqual(chosen(run(cands, ['app', 'tool'])), ['app=1@stable', 'backend-b=1@stable', 'tool=1@stable']);
  const err = t.throws(() => run(cands, ['lib', 'newlib']), { instanceOf: StrataError });
  t.is(err.code, 'E_UNSATISFIABLE');
  t.regex(err.message, /newlib 2 \(stable\) breaks lib \(<< 2\)/);
});

test('dependency cycles resolve, with edges both ways', (t) => {
  const cands = [S('cyc-a', '1', { depends: 'cyc-b' }), S('cyc-b', '1', { preDepends: 'cyc-a' })];
  const sol = run(cands, ['cyc-a']);
  t.deepEqual(chosen(sol), ['cyc-a=1@stable', 'cyc-b=1@stable']);
  t.deepEqual(sol.packages[0]!.depends, ['cyc-b']);
  t.deepEqual(sol.packages[1]!.depends, ['cyc-a']);
});

test('host-provided driver packages satisfy dependencies without entering the closure', (t) => {
  const cands = [
    S('libcuda1', '550.1', { source: 'nvidia-graphics-drivers', provides: 'libcuda.so.1 (= 550.1)', depends: 'nvidia-kernel-support' }),
    S('nvidia-kernel-support', '550.1', { source: 'nvidia-graphics-drivers' }),
    S('libcudart12', '12.4', { source: 'nvidia-cuda-toolkit', recommends: 'libcuda1 (>= 550)' }),
    S('cuda-user', '1', { depends: 'libcuda1 (>= 545) | libcuda.so.1 (>= 545), libcudart12' }),
  ];
  const sol = run(cands, ['cuda-user'], { hostDriver: true });
  t.deepEqual(chosen(sol), ['cuda-user=1@stable', 'libcudart12=12.4@stable']);
  t.deepEqual(sol.hostProvided, [
    { name: 'libcuda.so.1', requires: '>= 545' },
    { name: 'libcuda1', requires: '>= 550' },
  ]);
  const without = run(cands, ['cuda-user']);
  t.true(chosen(without).includes('libcuda1=550.1@stable'));
  t.true(chosen(without).includes('nvidia-kernel-support=550.1@stable'));
});

test('an unknown package suggests the closest names', (t) => {
  const err = t.throws(() => run([S('python3-numpy', '1'), S('python3-numba', '1'), S('zsh', '1')], ['python3-numpi']), { instanceOf: StrataError });
  t.is(err.code, 'E_UNKNOWN_PACKAGE');
  t.regex(err.hint!, /python3-numpy/);
});

test('an impossible mix is explained as a chain naming each step and channel', (t) => {
  const err = t.throws(() => run(glibc, ['libc6-dev@stable', 'libfoo-dev@current']), { instanceOf: StrataError });
  t.is(err.code, 'E_UNSATISFIABLE');
  const m = err.message;
  t.regex(m, /asks for libc6-dev from channel "stable"/);
  t.regex(m, /asks for libfoo-dev from channel "current"/);
  t.regex(m, /libfoo1 1\.0-1 \(current\) depends on libc6 \(>= 2\.40\)/);
  t.regex(m, /libc6-dev 2\.36-9 \(stable\) depends on libc6 \(= 2\.36-9\)/);
  t.regex(m, /2\.36-9 \(stable\) does not match/);
  t.notRegex(m, /libc6-dev 2\.41-6/); // not part of the minimal reason
});

test('a request no version can meet says what is available', (t) => {
  const err = t.throws(() => run(glibc, ['libc6 >= 3']), { instanceOf: StrataError });
  t.regex(err.message, /available: 2\.36-9 \(stable\), 2\.41-6 \(current\)/);
});

test('solutions do not depend on the order candidates arrive in', (t) => {
  const cands = [...glibc, S('mailer', '1', { depends: 'mail-transport-agent' }), S('posty', '1', { provides: 'mail-transport-agent' }), S('exim-lite', '1', { provides: 'mail-transport-agent' })];
  const want = chosen(run(cands, ['libfoo-dev@current', 'mailer', 'libc6-dev']));
  for (let seed = 1; seed < 6; seed++) {
    const shuffled = [...cands].sort((a, b) => ((a.name.length * seed + a.version.length) % 7) - ((b.name.length * seed + b.version.length) % 7));
    t.deepEqual(chosen(run(shuffled, ['libfoo-dev@current', 'mailer', 'libc6-dev'])), want);
  }
});

test('the default channel\'s Essential set is required but not recorded as requested', (t) => {
  const cands = [
    S('libc6', '2.36-9'),
    S('dash', '0.5.12-2', { essential: true, preDepends: 'libc6 (>= 2.34)' }),
    S('coreutils', '9.1-1', { essential: true, preDepends: 'libc6 (>= 2.34)' }),
    C('coreutils', '9.7-3', { essential: true }),
    // Essential only in a non-default channel: a newer suite's addition is not forced on a stable environment.
    C('newly-essential', '1.0-1', { essential: true }),
    S('hello', '2.10-3', { depends: 'libc6' }),
  ];
  const sol = run(cands, ['hello'], { withEssential: true });
  t.deepEqual(chosen(sol), ['coreutils=9.1-1@stable', 'dash=0.5.12-2@stable', 'hello=2.10-3@stable', 'libc6=2.36-9@stable']);
  t.deepEqual(sol.packages.filter((p) => p.root).map((p) => p.candidate.name), ['hello']);
  // Opting out gives the bare closure; asking for an essential package by name records it as requested.
  t.deepEqual(chosen(run(cands, ['hello'])), ['hello=2.10-3@stable', 'libc6=2.36-9@stable']);
  const named = run(cands, ['hello', 'dash'], { withEssential: true });
  t.deepEqual(named.packages.filter((p) => p.root).map((p) => p.candidate.name), ['dash', 'hello']);
});

test('a first model far from the optimum still ends at the optimum of each priority', (t) => {
  // 300 libraries in both channels and 7 only in current; one root needs them all. The default channel must win
  // for every library that has it: exactly the 7 come from current.
  const cands: Candidate[] = [];
  const names = Array.from({ length: 307 }, (_, i) => `lib${String(i).padStart(3, '0')}`);
  names.forEach((n, i) => {
    if (i % 44 !== 0) cands.push(S(n, '1.0'));
    cands.push(C(n, '2.0'));
  });
  cands.push(S('app', '1', { depends: names.join(', ') }));
  const sol = chosen(run(cands, ['app']));
  t.is(sol.length, 308);
  t.deepEqual(sol.filter((x) => x.endsWith('@current')), names.filter((_, i) => i % 44 === 0).map((n) => `${n}=2.0@current`));
});
