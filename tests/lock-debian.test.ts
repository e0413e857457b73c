/**
 * `strata lock` against the real Debian archive, with apt as the oracle: for a stable-only manifest, strata's
 * closure must be exactly what `apt-get install -s` (no Recommends, empty dpkg status) would install.
 */
import test from 'ava';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadManifest } from '../manifest/manifest.ts';
import { lockManifest } from '../engine/lockManifest.ts';
import { openStore } from '../store/store.ts';
import { quietReporter } from '../report/reporter.ts';
import { debianMirrorOrSkip } from './helpers/debianMirror.ts';
import { privateApt, aptPlan, aptEssential, aptWithHostDriver } from './helpers/aptOracle.ts';

const ROOTS = ['git', 'python3', 'python3-numpy', 'python3-scipy', 'libhdf5-dev'];

test.serial('a trixie lock equals apt\'s own plan, and locking twice gives the same bytes', async (t) => {
  const m = await debianMirrorOrSkip(t);
  if (!m) return;
  const dir = mkdtempSync(join(tmpdir(), 'strata-debian-'));
  const manifestPath = join(dir, 'strata.toml');
  writeFileSync(manifestPath, `[project]\nname = "oracle"\narch = "amd64"\n\n[channels.stable]\nurl = "${m.url}"\nsuite = "trixie"\ncomponents = ["main"]\n\n[packages]\n${ROOTS.map((r) => `${r} = "*"`).join('\n')}\n`);
  const storeRoot = join(dir, 'cache');
  const manifest = loadManifest(manifestPath);
  const first = await lockManifest(manifest, { store: await openStore(storeRoot), reporter: quietReporter() });
  const bytes = readFileSync(join(dir, 'strata.lock'), 'utf8');
  const mine = first.lock.packages.map((p) => `${p.name} ${p.version}`).sort();
  const aptOpts = privateApt(join(dir, 'apt'), `deb [signed-by=${m.keyring}] ${m.url} trixie main`);
  // apt installs the Essential set only when told to (mmdebstrap names it); strata includes it by default.
  const essential = aptEssential(aptOpts);
  t.true(essential.includes('dash') && essential.includes('coreutils'), essential.join(' '));
  const apt = aptPlan(aptOpts, [...ROOTS, ...essential]);
  t.true(mine.length > 50, `${mine.length} packages`);
  t.deepEqual(mine, apt);
  t.deepEqual(first.lock.packages.filter((p) => p.root).map((p) => p.name).sort(), [...ROOTS].sort());
  // Warm and offline: the same bytes, without downloading any index.
  const again = await lockManifest(manifest, { store: await openStore(storeRoot), reporter: quietReporter() }, { offline: true });
  t.false(again.written);
  t.is(readFileSync(join(dir, 'strata.lock'), 'utf8'), bytes);
});

/**
 * The differential test: varied real environments, each locked by strata and planned by `apt-get install -s` (its
 * roots plus the Essential names, no Recommends, empty dpkg status; for `[gpu] driver = "host"` a status in which
 * the host's NVIDIA driver packages are installed, see aptWithHostDriver), compared package by package and version
 * by version. One apt state and one strata store serve them all: the indexes are read once.
 */
const ENVIRONMENTS: { name: string; roots: string[]; gpu?: boolean }[] = [
  { name: 'gpu', gpu: true, roots: ['python3-h5py', 'python3-matplotlib', 'libopenmpi-dev', 'python3-pycuda', 'gfortran', 'cmake', 'python3-pandas', 'libcublas12', 'python3-skimage'] },
  { name: 'seed', gpu: true, roots: ['git', 'libhdf5-dev', 'intel-mkl', 'libmagma-dev', 'nvidia-cuda-toolkit', 'python3', 'python3-numpy', 'python3-scipy', 'python3-sklearn', 'python3-gdal', 'python3-pip', 'python3-wheel', 'python3-pycuda'] },
  { name: 'science', roots: ['r-base-core', 'octave', 'python3-statsmodels', 'python3-sympy', 'gnuplot-nox'] },
  { name: 'machine learning (CPU)', roots: ['python3-torch', 'python3-pandas', 'python3-sklearn'] },
  { name: 'web', roots: ['nginx', 'postgresql', 'python3-django', 'python3-flask', 'nodejs', 'redis-server'] },
  { name: 'build tools', roots: ['build-essential', 'cmake', 'ninja-build', 'meson', 'clang', 'autoconf', 'automake', 'libtool', 'pkg-config', 'git'] },
  { name: 'desktop libraries', roots: ['libgtk-3-dev', 'qt6-base-dev', 'libsdl2-dev', 'gir1.2-gtk-3.0', 'libgl-dev'] },
  { name: 'JVM', roots: ['default-jdk-headless', 'maven'] },
  { name: 'Rust and Go', roots: ['rustc', 'cargo', 'golang-go'] },
  { name: 'contrib', roots: ['ttf-mscorefonts-installer', 'libdvd-pkg', 'game-data-packager'] },
  { name: 'non-free', roots: ['unrar', 'rar', 'p7zip-rar', 'libfdk-aac-dev'] },
];

/**
 * What strata and apt still choose differently, per environment, each explained in README.md ("Agreement with
 * apt"): `+name` strata only, `-name` apt only (by name, so that a point release's new versions do not move it; a
 * version difference shows as both `+name` and `-name` and is never known).
 */
const KNOWN_DIFFERENCES: Record<string, string[]> = {
  // python3-asgiref: Depends: python3-typing-extensions | python3-supported-min (>= 3.11), python3:any. python3 is
  // in the solution anyway (that very package's next dependency), so strata leaves the group to it; apt decides the
  // group before it reaches python3:any and installs the first alternative.
  web: ['-python3-typing-extensions'],
};

test.serial('varied environments lock to what apt installs, package by package and version by version', async (t) => {
  const m = await debianMirrorOrSkip(t);
  if (!m) return;
  const dir = mkdtempSync(join(tmpdir(), 'strata-apt-diff-'));
  const started = Date.now();
  const aptOpts = privateApt(join(dir, 'apt'), `deb [signed-by=${m.keyring}] ${m.url} trixie main contrib non-free`);
  const aptHost = aptWithHostDriver(aptOpts, join(dir, 'apt'));
  const essential = aptEssential(aptOpts);
  const storeRoot = join(dir, 'cache');
  const found: Record<string, string[]> = {};
  const lines: string[] = [];
  for (const [i, env] of ENVIRONMENTS.entries()) {
    const envDir = join(dir, `env${i}`);
    mkdirSync(envDir);
    const manifestPath = join(envDir, 'strata.toml');
    writeFileSync(manifestPath, `[project]\nname = "diff${i}"\narch = "amd64"\n\n[channels.stable]\nurl = "${m.url}"\nsuite = "trixie"\ncomponents = ["main", "contrib", "non-free"]\n\n[packages]\n${env.roots.map((r) => `"${r}" = "*"`).join('\n')}\n${env.gpu ? '\n[gpu]\ndriver = "host"\n' : ''}`);
    const t0 = Date.now();
    const locked = await lockManifest(loadManifest(manifestPath), { store: await openStore(storeRoot), reporter: quietReporter() }, { offline: i > 0 });
    const lockMs = Date.now() - t0;
    const mine = new Map(locked.lock.packages.map((p) => [p.name, p.version]));
    const t1 = Date.now();
    const apt = new Map(aptPlan(env.gpu ? aptHost : aptOpts, [...env.roots, ...essential]).map((l) => l.split(' ') as [string, string]));
    const aptMs = Date.now() - t1;
    const diff: string[] = [];
    for (const [n, ver] of mine) if (apt.get(n) !== ver) diff.push(`+${n} ${ver}`);
    for (const [n, ver] of apt) if (mine.get(n) !== ver) diff.push(`-${n} ${ver}`);
    diff.sort((a, b) => (a.slice(1) < b.slice(1) ? -1 : a.slice(1) > b.slice(1) ? 1 : 0));
    if (diff.length > 0) found[env.name] = diff.map((d) => d.split(' ')[0]!);
    lines.push(`${env.name}: strata ${mine.size}, apt ${apt.size}, lock ${(lockMs / 1000).toFixed(1)} s, apt ${(aptMs / 1000).toFixed(1)} s${diff.length > 0 ? `; differences: ${diff.join(', ')}` : ''}`);
  }
  t.log(lines.join('\n'));
  t.log(`${ENVIRONMENTS.length} environments in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  t.deepEqual(found, KNOWN_DIFFERENCES);
});
