/**
 * Recommends that matter and the one-line BLAS choice, the pure parts: which skipped Recommends the lock's summary
 * names (libraries only, once each, with who recommends them), what `[resolve] recommends = [...]` and
 * `[alternatives] blas = ...` add to the environment, and which registered alternative `blas` picks.
 */
import test from 'ava';
import { universeOf } from './helpers/universe.ts';
import { solve } from '../resolver/solve.ts';
import { skippedLibraryRecommends, describeSkippedRecommends } from '../resolver/skippedRecommends.ts';
import { parseManifest } from '../manifest/manifest.ts';
import { chooseAlternatives, parseAlternatives } from '../realiser/tree.ts';
import { blasInterface } from '../debian/blas.ts';
import { StrataError } from '../errors.ts';
import type { Candidate } from '../model.ts';

function pkg(name: string, fields: Partial<Candidate> = {}): Candidate {
  return {
    name, version: '1', arch: 'amd64', channel: 'stable', channelRank: 0, source: name, sourceVersion: '1', essential: false,
    depends: '', preDepends: '', recommends: '', provides: '', conflicts: '', breaks: '',
    filename: `pool/main/${name}_1_amd64.deb`, size: 1, sha256: name.padEnd(64, '0').slice(0, 64), ...fields,
  };
}

test('the summary names skipped Recommends that are libraries, once each, with who recommends them', (t) => {
  const cands = [
    pkg('libmkl-rt', { section: 'non-free/libs', recommends: 'libomp-dev | libomp-x.y-dev, libgcc-14-dev, mkl-docs' }),
    pkg('libmkl-dev', { section: 'non-free/libdevel', depends: 'libmkl-rt', recommends: 'libomp-dev | libomp-x.y-dev' }),
    pkg('libomp-dev', { section: 'libdevel' }),
    pkg('libomp-19-dev', { section: 'libdevel', provides: 'libomp-x.y-dev' }),
    pkg('libgcc-14-dev', { section: 'libdevel' }),
    pkg('mkl-docs', { section: 'doc' }),
    pkg('python3-numpy', { section: 'python', depends: 'libmkl-rt', recommends: 'python3-pytest, libgcc-14-dev | libomp-dev' }),
    pkg('libomp-dev-user', { section: 'libs', depends: 'libomp-19-dev', recommends: 'libomp-x.y-dev' }),
  ];
  const u = universeOf(cands);
  const sol = solve({ universe: u, roots: [{ name: 'python3-numpy' }, { name: 'libmkl-dev' }], channels: ['stable'], hostDriver: false, withRecommends: false });
  const skipped = skippedLibraryRecommends(u, sol.packages.map((p) => p.candidate));
  t.deepEqual(skipped, [
    { name: 'libgcc-14-dev', by: ['libmkl-rt', 'python3-numpy'] },
    { name: 'libomp-dev', by: ['libmkl-dev', 'libmkl-rt'] },
  ], 'docs and python modules are not libraries; each name once');
  const lines = describeSkippedRecommends(skipped);
  t.regex(lines[0]!, /^skipped 2 Recommends that are libraries.*: libgcc-14-dev \(recommended by libmkl-rt, python3-numpy\), libomp-dev \(recommended by libmkl-dev, libmkl-rt\)$/);
  t.regex(lines[1]!, /\[resolve\] recommends = \["libgcc-14-dev"\]/);

  // A group already met by any alternative or provider is not skipped.
  const met = solve({ universe: u, roots: [{ name: 'libmkl-dev' }, { name: 'libomp-dev-user' }, { name: 'libgcc-14-dev' }], channels: ['stable'], hostDriver: false, withRecommends: false });
  t.deepEqual(skippedLibraryRecommends(u, met.packages.map((p) => p.candidate)), [], 'libomp-19-dev provides libomp-x.y-dev');
  t.deepEqual(describeSkippedRecommends([]), []);
});

const MANIFEST = (extra: string) => `[project]\nname = "x"\narch = "amd64"\n\n[channels.stable]\nurl = "http://127.0.0.1:9/d"\nsuite = "trixie"\n\n[packages]\npython3-numpy = "*"\nlibopenblas0-pthread = ">= 0.3"\n${extra}`;

test('[resolve] recommends = [...] and [alternatives] blas add their packages as the manifest\'s own, once', (t) => {
  const m = parseManifest(MANIFEST('\n[resolve]\nrecommends = ["libomp-dev", "python3-numpy"]\n\n[alternatives]\nblas = "mkl"\n'), '/p/strata.toml', 'x');
  t.deepEqual(m.packages.map((p) => p.name), ['python3-numpy', 'libopenblas0-pthread', 'libmkl-rt', 'libomp-dev']);
  t.false(m.withRecommends);
  t.is(m.image.alternatives.blas, 'mkl');
  const ob = parseManifest(MANIFEST('\n[alternatives]\nblas = "openblas"\n'), '/p/strata.toml', 'x');
  t.deepEqual(ob.packages.map((p) => [p.name, p.constraint?.version]), [['python3-numpy', undefined], ['libopenblas0-pthread', '0.3']], 'a package the manifest already names keeps its constraint');
  t.true(parseManifest(MANIFEST('\n[resolve]\nrecommends = true\n'), '/p/strata.toml', 'x').withRecommends);
  const bad = t.throws(() => parseManifest(MANIFEST('\n[resolve]\nrecommends = ["Not A Name"]\n'), '/p/strata.toml', 'x'), { instanceOf: StrataError });
  t.regex(bad.message, /resolve\.recommends: "Not A Name" is not a valid Debian package name/);
});

const POSTINST = {
  'libblas3': 'update-alternatives --install /usr/lib/x86_64-linux-gnu/libblas.so.3 libblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/blas/libblas.so.3 10',
  'liblapack3': 'update-alternatives --install /usr/lib/x86_64-linux-gnu/liblapack.so.3 liblapack.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3 10',
  'libopenblas0-pthread': [
    'update-alternatives --install /usr/lib/x86_64-linux-gnu/libblas.so.3 libblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 100',
    'update-alternatives --install /usr/lib/x86_64-linux-gnu/liblapack.so.3 liblapack.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack.so.3 100',
  ].join('\n'),
  'libmkl-rt': [
    '_mkl_rt_priority=1',
    'update-alternatives --install /usr/lib/x86_64-linux-gnu/libblas.so.3 \\\n libblas.so.3-x86_64-linux-gnu \\\n /usr/lib/x86_64-linux-gnu/libmkl_rt.so \\\n $_mkl_rt_priority',
    'update-alternatives --install /usr/lib/x86_64-linux-gnu/liblapack.so.3 liblapack.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/libmkl_rt.so $_mkl_rt_priority',
    'update-alternatives --install /usr/lib/x86_64-linux-gnu/libblas64.so.3 libblas64.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/libmkl_rt.so $_mkl_rt_priority',
  ].join('\n'),
};
const ALL = Object.entries(POSTINST).flatMap(([p, s]) => parseAlternatives(s, p, 'amd64'));
const chosenPaths = (overrides: Record<string, string>) =>
  Object.fromEntries(chooseAlternatives(ALL, () => true, overrides).map((c) => [c.name, `${c.chosen.path}${c.manual ? ' (manual)' : ''}`]));

test('blas picks the implementation\'s registration for BLAS and LAPACK both, in manual mode', (t) => {
  t.deepEqual(chosenPaths({}), {
    'libblas.so.3-x86_64-linux-gnu': '/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3',
    'libblas64.so.3-x86_64-linux-gnu': '/usr/lib/x86_64-linux-gnu/libmkl_rt.so',
    'liblapack.so.3-x86_64-linux-gnu': '/usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack.so.3',
  }, 'auto mode: the highest priority, OpenBLAS');
  t.deepEqual(chosenPaths({ blas: 'mkl' }), {
    'libblas.so.3-x86_64-linux-gnu': '/usr/lib/x86_64-linux-gnu/libmkl_rt.so (manual)',
    'libblas64.so.3-x86_64-linux-gnu': '/usr/lib/x86_64-linux-gnu/libmkl_rt.so',
    'liblapack.so.3-x86_64-linux-gnu': '/usr/lib/x86_64-linux-gnu/libmkl_rt.so (manual)',
  });
  t.deepEqual(chosenPaths({ blas: 'reference' })['liblapack.so.3-x86_64-linux-gnu'], '/usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3 (manual)');
  t.deepEqual(
    chosenPaths({ blas: 'mkl', 'liblapack.so.3-x86_64-linux-gnu': '/usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3' })['liblapack.so.3-x86_64-linux-gnu'],
    '/usr/lib/x86_64-linux-gnu/lapack/liblapack.so.3 (manual)',
    'a name set in [alternatives] wins over blas',
  );
  const missing = t.throws(() => chooseAlternatives(ALL, () => true, { blas: 'blis' }), { instanceOf: StrataError });
  t.regex(missing.message, /blas = "blis": no package of the environment registers blis for libblas\.so\.3-x86_64-linux-gnu/);
  t.is(blasInterface('libblas.so-x86_64-linux-gnu'), 'blas');
  t.is(blasInterface('liblapack.so.3'), 'lapack');
  t.is(blasInterface('libblas64.so.3-x86_64-linux-gnu'), undefined);
  t.is(blasInterface('libopenblas.so.0-x86_64-linux-gnu'), undefined);
});
