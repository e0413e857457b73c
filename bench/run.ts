/**
 * `npm run bench`: strata beside its peers on the same work, reported as ratios.
 *
 *   lock     strata lock (warm indexes, --offline)      vs  apt-get install -s (warm lists)        same roots plus the
 *            Essential names, same components: the environment below, and python3 alone (main); with peak memory
 *   realise  strata realise cold / warm / one-bump       vs  mmdebstrap --variant=essential into a tarball
 *            then BENCH_ADD roots added, and BENCH_REMOVE roots removed: layers new and bytes to re-ship
 *
 *   run      strata run --locked -- true, warm (sandbox: bwrap, unshare, unshare-compat)  vs  the issue's goal, 0.5 s
 *   import   python3 -c 'import numpy, scipy' in strata's realised tree  vs  the same in the apt-installed
 *            (mmdebstrap) tree of the same lock, both entered the same way (bubblewrap, read-only, warm page cache)
 *
 * BENCH_ONLY=lock,realise,run,import picks sections (default: lock,realise,run; import installs the lock a second
 * time with mmdebstrap, so it runs only when asked for; BENCH_KEEP_TREES=1 keeps its two trees); `bump` alone runs the warm realise and the one-package bump
 * over the store BENCH_DIR already holds (no cold realise, no mmdebstrap). The environment is the seed's (the blog post's CUDA + MAGMA + MKL + Python stack) on trixie, or BENCH_PACKAGES.
 * The Debian mirror comes from STRATA_DEBIAN_MIRROR or the host's apt sources. Work goes to BENCH_DIR
 * (default /tmp/strata-bench). Set BENCH_SKIP_MMDEBSTRAP=1 to skip the slowest peer run.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, readFileSync, rmSync, existsSync, copyFileSync, mkdtempSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { channelUrls, defaultKeyring } from '../channels/mirror.ts';
import { parseLock, serializeLock } from '../lock/lockfile.ts';
import type { Lockfile } from '../model.ts';
import { rehashLock } from '../lock/verify.ts';
import { privateApt, aptEssential } from '../tests/helpers/aptOracle.ts';
import { debianInstall } from '../tests/helpers/debianInstall.ts';

const root = resolve(import.meta.dirname, '..');
const strata = join(root, 'bin/strata');
const dir = resolve(process.env.BENCH_DIR ?? '/tmp/strata-bench');
const suite = process.env.BENCH_SUITE ?? 'trixie';
const pkgs = (process.env.BENCH_PACKAGES ?? 'git libhdf5-dev intel-mkl libmagma-dev nvidia-cuda-toolkit python3 python3-numpy python3-scipy python3-sklearn python3-gdal python3-pip python3-wheel python3-pycuda').split(/\s+/).filter(Boolean);
const mirror = channelUrls({ name: 'bench', urls: [] })[0]!;
const keyring = defaultKeyring()!;

interface Timed {
  seconds: number;
  maxRssMiB: number;
  stdout: string;
  stderr: string;
}

/** Runs a command under GNU time for wall time and peak RSS. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Timed {
  const tf = join(dir, 'time.txt');
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', '-o', tf, cmd, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  const [s, kb] = readFileSync(tf, 'utf8').trim().split('\n').pop()!.split(' ');
  return { seconds: Number(s), maxRssMiB: Number(kb) / 1024, stdout: r.stdout, stderr: r.stderr };
}

/** `strata run --frozen -- true` in the environment, through the sandbox (no Docker engine asked). */
function frozenRun(): Timed {
  return timed(strata, ['run', '-m', manifest, '--frozen', '--backend', 'sandbox', '--gpus', 'none', '--', 'true'], { ...env, DOCKER_HOST: 'unix:///nonexistent' });
}

/** Prints what a realise made of the generated output (its `made ...` lines). */
function logMade(t: Timed): void {
  const made = t.stderr.split('\n').filter((l) => /made /.test(l));
  if (made.length > 0) console.log(made.join('\n'));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const rows: string[][] = [];
function report(what: string, mine: number, peer: number | undefined, peerName: string, extra = '') {
  rows.push([what, `${mine.toFixed(2)} s`, peer === undefined ? '-' : `${peer.toFixed(2)} s`, peer === undefined ? '-' : `${(peer / mine).toFixed(1)}x`, `${peerName}${extra ? `; ${extra}` : ''}`]);
  console.log(`${what}: strata ${mine.toFixed(2)} s${peer !== undefined ? `, ${peerName} ${peer.toFixed(2)} s, strata is ${(peer / mine).toFixed(1)}x faster` : ''}${extra ? ` (${extra})` : ''}`);
}

mkdirSync(dir, { recursive: true });
const project = join(dir, 'project');
mkdirSync(project, { recursive: true });
const manifest = join(project, 'strata.toml');
writeFileSync(manifest, `[project]\nname = "bench"\narch = "amd64"\n\n[channels.stable]\nurl = "${mirror}"\nsuite = "${suite}"\ncomponents = ["main", "contrib", "non-free"]\n\n[packages]\n${pkgs.map((p) => `${p} = "*"`).join('\n')}\n\n[gpu]\ndriver = "host"\n`);
const cache = join(dir, 'cache');
const env = { STRATA_CACHE_DIR: cache };

const only = new Set((process.env.BENCH_ONLY ?? 'lock,realise,run').split(',').map((x) => x.trim()));
if (only.has('lock') || only.has('realise') || only.has('bump')) benchLockAndRealise();
if (only.has('run')) benchRun();
if (only.has('import')) benchImport();

console.log('\n| work | strata | peer | ratio (peer / strata) | notes |\n| --- | --- | --- | --- | --- |');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);

/**
 * Warm `strata lock --offline` of `manifestPath` (its indexes cached by a first lock) beside `apt-get install -s` of
 * the same roots plus the Essential names from the same components: medians of three, and each one's peak RSS.
 */
function benchLock(what: string, manifestPath: string, roots: string[], components: string[]): Lockfile {
  timed(strata, ['lock', '-m', manifestPath], env); // cold: fetch and cache indexes
  const runs = [0, 1, 2].map(() => timed(strata, ['lock', '-m', manifestPath, '--offline'], env));
  const aptOpts = privateApt(join(dir, `apt-${components.join('-')}`), `deb [signed-by=${keyring}] ${mirror} ${suite} ${components.join(' ')}`);
  const essential = aptEssential(aptOpts);
  const aptRuns = [0, 1, 2].map(() => timed('apt-get', [...aptOpts, 'install', '-s', ...roots, ...essential]));
  const lock = parseLock(readFileSync(join(dirname(manifestPath), 'strata.lock'), 'utf8'));
  const peak = (ts: Timed[]) => Math.max(...ts.map((x) => x.maxRssMiB)).toFixed(0);
  report(`lock ${what}, warm indexes (resolve + write)`, median(runs.map((x) => x.seconds)), median(aptRuns.map((x) => x.seconds)), 'apt-get install -s', `${lock.packages.length} packages; peak RSS ${peak(runs)} MiB, apt's ${peak(aptRuns)} MiB`);
  return lock;
}

function benchLockAndRealise(): void {
  // ---- lock
  console.log(`environment: ${pkgs.length} roots from ${suite}`);
  const lock = benchLock(`of the environment (${pkgs.length} roots)`, manifest, pkgs, ['main', 'contrib', 'non-free']);
  const alone = join(dir, 'python3-project');
  mkdirSync(alone, { recursive: true });
  writeFileSync(join(alone, 'strata.toml'), `[project]\nname = "bench-python3"\narch = "amd64"\n\n[channels.stable]\nurl = "${mirror}"\nsuite = "${suite}"\n\n[packages]\npython3 = "*"\n`);
  benchLock('of python3 alone', join(alone, 'strata.toml'), ['python3'], ['main']);
  if (!only.has('realise') && !only.has('bump')) return;

  // ---- realise: cold, warm
  const bumpOnly = !only.has('realise');
  if (!bumpOnly) {
    rmSync(join(cache, 'blobs'), { recursive: true, force: true });
    rmSync(join(cache, 'unpacked'), { recursive: true, force: true });
    rmSync(join(cache, 'layers'), { recursive: true, force: true });
  }
  const cold = bumpOnly ? undefined : timed(strata, ['realise', '-m', manifest, '--locked'], env);
  const warm = timed(strata, ['realise', '-m', manifest, '--locked'], env);
  logMade(warm);
  const layers = /in (\d+) layers/.exec((cold ?? warm).stdout)?.[1] ?? '?';
  let peer: number | undefined;
  if (!process.env.BENCH_SKIP_MMDEBSTRAP && !bumpOnly) {
    const out = join(dir, 'mmdebstrap.tar');
    rmSync(out, { force: true });
    const names = lock.packages.map((p) => p.name).join(',');
    peer = timed('mmdebstrap', ['--quiet', '--variant=essential', `--components=main,contrib,non-free`, `--include=${names}`, suite, out, mirror]).seconds;
    rmSync(out, { force: true });
}
if (cold) report('realise cold (download, verify, unpack, layers)', cold.seconds, peer, 'mmdebstrap --variant=essential to a tarball', `${layers} layers, peak RSS ${cold.maxRssMiB.toFixed(0)} MiB`);
report('realise warm (nothing changed)', warm.seconds, peer, 'mmdebstrap (it has no warm path)', `peak RSS ${warm.maxRssMiB.toFixed(0)} MiB`);
if (cold) benchStore(lock);

// ---- one package bumped: rebuild that .deb with one more file, put it in the store, point the lock at it.
const victim = lock.packages.find((p) => p.name === 'python3-wheel') ?? lock.packages[lock.packages.length - 1]!;
const work = mkdtempSync(join(dir, 'bump-'));
const debPath = join(cache, 'blobs', 'sha256', victim.sha256);
execFileSync('dpkg-deb', ['-R', debPath, join(work, 'x')]);
mkdirSync(join(work, 'x/usr/share/doc', victim.name), { recursive: true });
writeFileSync(join(work, 'x/usr/share/doc', victim.name, 'BUMPED'), 'bumped\n');
execFileSync('dpkg-deb', ['--root-owner-group', '-b', join(work, 'x'), join(work, 'bumped.deb')], { stdio: 'ignore' });
const bytes = readFileSync(join(work, 'bumped.deb'));
const sha = createHash('sha256').update(bytes).digest('hex');
copyFileSync(join(work, 'bumped.deb'), join(cache, 'blobs', 'sha256', sha));
// Closures recomputed too: a lock whose closures do not match its sha256s is refused on read.
const bumpedLock = rehashLock({ ...lock, packages: lock.packages.map((p) => (p === victim ? { ...p, sha256: sha, size: bytes.length } : p)) });
const lockPath = join(project, 'strata.lock');
const original = readFileSync(lockPath, 'utf8');
writeFileSync(lockPath, serializeLock(bumpedLock));
const beforeOci = join(dir, 'oci-before');
const afterOci = join(dir, 'oci-after');
rmSync(beforeOci, { recursive: true, force: true });
rmSync(afterOci, { recursive: true, force: true });
// The bump's own work first (the new .deb unpacked, the generated parts it changes, the layers' records), then the
// same realise written as a fresh OCI layout (every layer's tar made again from the store: most of that time).
const bumpOnlyRealise = timed(strata, ['realise', '-m', manifest, '--locked'], env);
logMade(bumpOnlyRealise);
const bump = timed(strata, ['realise', '-m', manifest, '--locked', '--oci', afterOci], env);
// The first run after a realise: the bumped lock's environment, in the sandbox.
const firstRun = frozenRun();
writeFileSync(lockPath, original);
timed(strata, ['realise', '-m', manifest, '--locked', '--oci', beforeOci], env);
const layerSet = (d: string) => {
  const idx = JSON.parse(readFileSync(join(d, 'index.json'), 'utf8'));
  const man = JSON.parse(readFileSync(join(d, 'blobs/sha256', idx.manifests[0].digest.slice(7)), 'utf8'));
  return man.layers as { digest: string; size: number }[];
};
const before = new Set(layerSet(beforeOci).map((l) => l.digest));
const changed = layerSet(afterOci).filter((l) => !before.has(l.digest));
const changedBytes = changed.reduce((n, l) => n + l.size, 0);
report(`realise after bumping ${victim.name}, no output`, bumpOnlyRealise.seconds, undefined, '', 'the .deb unpacked, the generated parts it changes, the layer records');
report(`realise after bumping ${victim.name}, --oci into a fresh directory`, bump.seconds, peer, 'mmdebstrap (full rebuild)', `${changed.length} layers changed, ${(changedBytes / 1e6).toFixed(1)} MB to re-ship`);
report('first run --frozen after that realise (strata run -- true)', firstRun.seconds, 1, "the issue's goal");
rmSync(work, { recursive: true, force: true });
benchRoots(beforeOci, layerSet, lock.packages.length);
if (existsSync(beforeOci)) rmSync(beforeOci, { recursive: true, force: true });
if (existsSync(afterOci)) rmSync(afterOci, { recursive: true, force: true });
}

/**
 * The store after a cold realise and a first run of the environment, beside what it holds: the .debs (the lock's
 * sizes) plus the installed size (the packages' own Installed-Size fields, as dpkg counts it). The store is measured
 * by `du` (disk blocks, hard links once, as a quota counts them); `strata cache info` gives it by kind.
 */
function benchStore(lock: Lockfile): void {
  const first = frozenRun();
  report('first run --frozen after a cold realise (strata run -- true)', first.seconds, 1, "the issue's goal");
  const warmRuns = [0, 1, 2, 3, 4, 5, 6].map(() => frozenRun().seconds);
  report('run warm in this environment (strata run --frozen -- true)', median(warmRuns), 0.25, "the issue's goal", `median of 7, min ${Math.min(...warmRuns).toFixed(2)} s`);
  const debs = lock.packages.reduce((n, p) => n + p.size, 0);
  const installed = lock.packages.reduce((n, p) => n + 1024 * Number(execFileSync('dpkg-deb', ['-f', join(cache, 'blobs', 'sha256', p.sha256), 'Installed-Size'], { encoding: 'utf8' }).trim() || 0), 0);
  const store = 1024 * Number(execFileSync('du', ['-sk', cache], { encoding: 'utf8' }).split('\t')[0]);
  const gb = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;
  console.log(execFileSync(strata, ['cache', 'info'], { env: { ...process.env, ...env }, encoding: 'utf8' }).trim());
  rows.push([`store after realise and a first run`, gb(store), gb(installed + debs), `${(store / (installed + debs)).toFixed(2)}x of it`, `installed ${gb(installed)} + .debs ${gb(debs)}; the goal: at most 1.3x`]);
  console.log(`store: ${gb(store)} against installed ${gb(installed)} + .debs ${gb(debs)} (${(store / (installed + debs)).toFixed(2)}x)`);
}

/**
 * The environment with other roots, locked and realised over the same store: which layers differ from the
 * environment's (`beforeOci`), and how many bytes a registry would receive again (the layer set is compared by
 * digest, as a registry does). Adding: the same roots plus BENCH_ADD (default six small tools, about ten packages with
 * what they need). Removing: the same roots less BENCH_REMOVE (default python3-gdal and python3-sklearn, with what
 * only they need).
 */
function benchRoots(beforeOci: string, layerSet: (d: string) => { digest: string; size: number }[], had: number): void {
  const words = (v: string) => v.split(/\s+/).filter(Boolean);
  const extra = words(process.env.BENCH_ADD ?? 'jq tree zstd hdf5-tools rsync htop');
  const drop = new Set(words(process.env.BENCH_REMOVE ?? 'python3-gdal python3-sklearn'));
  const text = readFileSync(manifest, 'utf8');
  const variants = [
    { name: 'added', what: `adding ${extra.length} roots`, manifest: text.replace('[packages]\n', `[packages]\n${extra.map((p) => `${p} = "*"`).join('\n')}\n`) },
    { name: 'removed', what: `removing ${drop.size} roots`, manifest: text.split('\n').filter((l) => !drop.has(l.split(' = ')[0]!)).join('\n') },
  ];
  const before = new Set(layerSet(beforeOci).map((l) => l.digest));
  const mb = (n: number) => (n / 1e6).toFixed(1);
  for (const v of variants) {
    const project = join(dir, `${v.name}-project`);
    mkdirSync(project, { recursive: true });
    const m = join(project, 'strata.toml');
    writeFileSync(m, v.manifest);
    timed(strata, ['lock', '-m', m], env);
    const count = parseLock(readFileSync(join(project, 'strata.lock'), 'utf8')).packages.length;
    const out = join(dir, `oci-${v.name}`);
    rmSync(out, { recursive: true, force: true });
    const r = timed(strata, ['realise', '-m', m, '--locked', '--oci', out], env);
    const after = layerSet(out);
    const changed = after.filter((l) => !before.has(l.digest));
    const bytes = (ls: { size: number }[]) => ls.reduce((n, l) => n + l.size, 0);
    report(`realise after ${v.what} (${Math.abs(count - had)} packages)`, r.seconds, undefined, '-', `${changed.length} of ${after.length} layers new, ${mb(bytes(changed))} MB of ${mb(bytes(after))} MB to re-ship`);
    rmSync(out, { recursive: true, force: true });
    rmSync(project, { recursive: true, force: true });
  }
}

/** Entering a realised environment: python3 from the suite, sandbox backend, each method that is installed. */
function benchRun(): void {
  const runProject = join(dir, 'run-project');
  mkdirSync(runProject, { recursive: true });
  const runManifest = join(runProject, 'strata.toml');
  writeFileSync(runManifest, `[project]\nname = "bench-run"\narch = "amd64"\n\n[channels.stable]\nurl = "${mirror}"\nsuite = "${suite}"\n\n[packages]\npython3 = "*"\n`);
  const runEnv = { ...env, DOCKER_HOST: 'unix:///nonexistent' };
  timed(strata, ['lock', '-m', runManifest], runEnv);
  timed(strata, ['run', '-m', runManifest, '--locked', '--backend', 'sandbox', '--', 'true'], runEnv); // realise + unpack once
  const methods = ['bwrap', 'unshare', 'unshare-compat'].filter((m) => spawnSync('sh', ['-c', `command -v ${m === 'bwrap' ? 'bwrap' : 'unshare'}`]).status === 0);
  for (const m of methods) {
    const runs = [0, 1, 2, 3, 4, 5, 6].map(() => timed(strata, ['run', '-m', runManifest, '--locked', '--backend', 'sandbox', '--', 'true'], { ...runEnv, STRATA_SANDBOX: m }).seconds);
    report(`run warm, sandbox ${m} (strata run -- true)`, median(runs), 0.5, 'the issue\'s goal', `median of 7, min ${Math.min(...runs).toFixed(2)} s`);
  }
}

/**
 * The start of a Python program that imports NumPy and SciPy, in strata's environment and in Debian's install of the
 * same lock. strata's tree is the image it realises (its OCI layout unpacked by umoci), Debian's is mmdebstrap's;
 * each is entered the same way, `bwrap --ro-bind TREE /` with a fresh /proc, /dev and /tmp and a fixed environment,
 * so the figure compares the trees (bytecode, the loader cache, the libraries), not how each is entered: `strata run`
 * adds its sandbox's start (the run section), and is reported beside it.
 */
function benchImport(): void {
  const work = join(dir, 'import');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  timed(strata, ['lock', '-m', manifest], env);
  const lock = parseLock(readFileSync(join(project, 'strata.lock'), 'utf8'));
  const oci = join(work, 'oci');
  timed(strata, ['realise', '-m', manifest, '--locked', '--oci', oci], env);
  const ref = JSON.parse(readFileSync(join(oci, 'index.json'), 'utf8')).manifests[0].annotations['org.opencontainers.image.ref.name'];
  const strataRoot = join(work, 'strata-root');
  execFileSync('umoci', ['raw', 'unpack', '--image', `${oci}:${ref}`, strataRoot], { stdio: 'ignore' });
  rmSync(oci, { recursive: true, force: true });
  const debianRoot = join(work, 'debian-root');
  debianInstall(lock, debianRoot, mirror, ['main', 'contrib', 'non-free'], suite);
  const program = 'import numpy, scipy';
  const enter = (root: string) => ['--ro-bind', root, '/', '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--unshare-all', '--die-with-parent', '--clearenv',
    '--setenv', 'PATH', '/usr/bin:/bin', '--setenv', 'HOME', '/tmp', '--setenv', 'LC_ALL', 'C.UTF-8', '/usr/bin/python3', '-c', program];
  const once = (root: string) => {
    const t0 = process.hrtime.bigint();
    const r = spawnSync('bwrap', enter(root), { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`python3 -c '${program}' failed in ${root} (${r.status}):\n${r.stderr}`);
    return Number(process.hrtime.bigint() - t0) / 1e9;
  };
  for (const root of [strataRoot, debianRoot]) for (let i = 0; i < 2; i++) once(root); // warm the page cache
  const mine: number[] = [];
  const theirs: number[] = [];
  for (let i = 0; i < 11; i++) {
    mine.push(once(strataRoot));
    theirs.push(once(debianRoot));
  }
  const a = median(mine);
  const b = median(theirs);
  report(`python3 -c '${program}' (bwrap of each tree, warm)`, a, b, 'the same in the apt-installed (mmdebstrap) tree of the lock', `strata / apt = ${(a / b).toFixed(2)} (goal <= 1.3), median of 11, ${lock.packages.length} packages`);
  const run = () => timed(strata, ['run', '-m', manifest, '--frozen', '--backend', 'sandbox', '--gpus', 'none', '--', 'python3', '-c', program], { ...env, DOCKER_HOST: 'unix:///nonexistent' }).seconds;
  run(); // the first run after a realise may still make the sandbox's root filesystem
  const viaRun = [0, 1, 2, 3, 4].map(run);
  report(`strata run --frozen -- python3 -c '${program}'`, median(viaRun), b, 'bwrap of the apt-installed tree', "includes strata run's own start (CLI, run pointer, sandbox); median of 5");
  // BENCH_KEEP_TREES=1 keeps both trees, the lock and its manifest (a directory STRATA_TEST_ORACLE_REUSE can compare).
  if (process.env.BENCH_KEEP_TREES === '1') for (const f of ['strata.lock', 'strata.toml']) copyFileSync(join(project, f), join(work, f));
  else rmSync(work, { recursive: true, force: true });
}
