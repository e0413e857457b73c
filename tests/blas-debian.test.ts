/**
 * `[alternatives] blas = ...` against the real Debian archive (skipped with a message when no mirror is reachable):
 * trixie python3-numpy, python3-scipy and python3-threadpoolctl, with nothing but the blas line naming the
 * implementation. Inside `strata run`: a matrix product maps the implementation's library (read from
 * /proc/self/maps), threadpoolctl reports it, and scipy.linalg.cho_solve on a random SPD matrix has a residual
 * below 1e-10. "openblas" (main) runs in the default suite; "mkl" (non-free: about 140 MB of .debs and 1 GB
 * unpacked, minutes on two cores) runs with STRATA_TEST_MKL=1, as scripts/long-checks.sh sets it.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/project.ts';
import { debianMirrorOrSkip, longCheckOrSkip } from './helpers/debianMirror.ts';

const CHECK = `
import numpy, scipy.linalg, threadpoolctl
a = numpy.random.default_rng(1).standard_normal((400, 400))
spd = a @ a.T + 400 * numpy.eye(400)
b = numpy.ones(400)
x = scipy.linalg.cho_solve(scipy.linalg.cho_factor(spd), b)
maps = open('/proc/self/maps').read()
print('maps', ' '.join(sorted({l.rsplit('/', 1)[-1] for l in maps.splitlines() if 'libmkl' in l or 'openblas' in l or 'libblas' in l or 'libblis' in l})))
print('threadpoolctl', ' '.join(sorted({i['internal_api'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'})))
print('residual', float(numpy.linalg.norm(spd @ x - b) / numpy.linalg.norm(b)))
`;

for (const blas of ['openblas', 'mkl'] as const) {
  test(`blas = "${blas}": numpy and scipy use it, through BLAS and LAPACK both`, async (t) => {
    if (blas === 'mkl' && !longCheckOrSkip(t, 'STRATA_TEST_MKL', 'the MKL case')) return;
    t.timeout(20 * 60_000);
    const m = await debianMirrorOrSkip(t);
    if (!m) return;
    const dir = mkdtempSync(join(tmpdir(), `strata-blas-${blas}-`));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(
      join(dir, 'strata.toml'),
      `[project]\nname = "blas-${blas}"\narch = "amd64"\n\n[channels.stable]\nurl = "${m.url}"\nsuite = "trixie"\ncomponents = ["main", "non-free"]\n\n` +
        `[packages]\npython3-numpy = "*"\npython3-scipy = "*"\npython3-threadpoolctl = "*"\n\n[alternatives]\nblas = "${blas}"\n`,
    );
    writeFileSync(join(dir, 'check.py'), CHECK);
    const env = { STRATA_CACHE_DIR: process.env.STRATA_TEST_DEBIAN_CACHE ?? join(dir, 'cache') };
    const strata = (args: string[]) => runCli(args, { cwd: dir, env, timeoutMs: 540_000 });
    const lock = await strata(['lock']);
    t.is(lock.code, 0, lock.stderr);
    const started = Date.now();
    const run = await strata(['run', '--backend', 'sandbox', '--', 'python3', 'check.py']);
    t.is(run.code, 0, run.stderr);
    t.log(`realise and run: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const out = Object.fromEntries(run.stdout.trim().split('\n').map((l) => [l.split(' ')[0], l.slice(l.indexOf(' ') + 1)]));
    t.log(out);
    if (blas === 'mkl') {
      t.regex(out.maps ?? '', /\blibmkl_rt\.so\b/, 'libmkl_rt is mapped');
      t.regex(out.maps ?? '', /\blibmkl_(core|intel_thread)\.so\b/, "MKL's kernels and threading layer are loaded");
      t.is(out.threadpoolctl, 'mkl');
    } else {
      t.regex(out.maps ?? '', /openblas/, 'OpenBLAS is mapped');
      t.notRegex(out.maps ?? '', /libmkl/);
      t.is(out.threadpoolctl, 'openblas');
    }
    t.true(Number(out.residual) < 1e-10, `residual ${out.residual}`);
    const alts = await strata(['run', '--backend', 'sandbox', '--', 'sh', '-c', 'head -2 /var/lib/dpkg/alternatives/libblas.so.3-x86_64-linux-gnu /var/lib/dpkg/alternatives/liblapack.so.3-x86_64-linux-gnu; readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 /usr/lib/x86_64-linux-gnu/liblapack.so.3']);
    t.is(alts.code, 0, alts.stderr);
    t.regex(alts.stdout, /libblas\.so\.3-x86_64-linux-gnu <==\nmanual\n/, 'the BLAS alternative is set by hand, as update-alternatives --set would');
    t.regex(alts.stdout, /liblapack\.so\.3-x86_64-linux-gnu <==\nmanual\n/, 'so is LAPACK');
    const [blasLib, lapackLib] = alts.stdout.trim().split('\n').slice(-2);
    t.regex(blasLib!, blas === 'mkl' ? /libmkl_rt\.so$/ : /openblas-pthread\/libblas\.so\.3$/);
    t.regex(lapackLib!, blas === 'mkl' ? /libmkl_rt\.so$/ : /openblas-pthread\/liblapack\.so\.3$/);
  });
}

test('blas = "atlas" is refused at its line, naming the choices', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-blas-bad-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'strata.toml'), `[project]\nname = "x"\narch = "amd64"\n\n[channels.stable]\nurl = "http://127.0.0.1:9/debian"\nsuite = "trixie"\n\n[packages]\npython3 = "*"\n\n[alternatives]\nblas = "atlas"\n`);
  const r = await runCli(['lock', '--offline'], { cwd: dir, env: { STRATA_CACHE_DIR: join(dir, 'cache') } });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /strata\.toml:13:1.*alternatives\.blas must be one of "mkl", "openblas", "blis", "reference", not "atlas"/);
});
