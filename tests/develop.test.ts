/** Daily-use pieces of `run` and `init` through the real CLI: -e per flag, ${PROJECT}/${HOME} in [env], --share-tmp. */
import test from 'ava';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { project, manifestFor, runCli, closeSharedMirror } from './helpers/project.ts';
import { loadManifest } from '../manifest/manifest.ts';
import { hostAptSources } from '../channels/mirror.ts';
import { buildMirror, serveMirror, standardSuites, type FixturePackage, type ServedMirror } from './helpers/mirror.ts';
import { makeFakeGpuTree } from './helpers/runEnv.ts';

let cudaMirror: ServedMirror | undefined;
test.after.always(closeSharedMirror);
test.after.always(async () => cudaMirror?.close());

/** Debian's nvidia-cuda-toolkit as it lays out nvcc (the wrapper in /usr/bin, the compiler under /usr/lib), nothing else. */
const FAKE_TOOLKIT: FixturePackage = {
  name: 'nvidia-cuda-toolkit',
  version: '12.4.131~12.4.1-2',
  section: 'non-free/devel',
  files: [
    { path: 'usr/bin/nvcc', mode: 0o755, content: '#!/bin/sh\n\nexport PATH="/usr/lib/nvidia-cuda-toolkit/bin:$PATH"\nexec /usr/lib/nvidia-cuda-toolkit/bin/nvcc "$@"\n' },
    { path: 'usr/lib/nvidia-cuda-toolkit/bin/nvcc', mode: 0o755, content: '#!/bin/sh\necho "Cuda compilation tools, release 12.4 (fixture)"\n' },
  ],
};

test('run: -e takes one KEY=VALUE per flag and never swallows the command; [env] may use ${PROJECT} and ${HOME}; --share-tmp', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'busybox-fixture = "*"', '\n[env]\nDATA = "${PROJECT}/data"\nCONF = "${HOME}/.conf"\nPLAIN = "x"\n'));
  const home = mkdtempSync(join(tmpdir(), 'strata-home-'));
  const env = { HOME: home };
  const r = await p.strata(['run', '--backend', 'sandbox', '-e', 'A=1', '-e', 'B=2', '--', 'sh', '-c', 'echo "$A$B $DATA $CONF $PLAIN"'], { env });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `12 ${p.dir}/data ${home}/.conf x\n`);
  const bare = await p.strata(['run', '--backend', 'sandbox', '-e', 'FOO=1', 'sh', '-c', 'echo "hi $FOO"'], { env });
  t.is(bare.code, 0, bare.stderr);
  t.is(bare.stdout, 'hi 1\n');
  const marker = join(tmpdir(), `strata-share-${process.pid}`);
  writeFileSync(marker, 'from the host\n');
  try {
    const priv = await p.strata(['run', '--backend', 'sandbox', '--', 'sh', '-c', `cat ${marker} 2>/dev/null || echo private`], { env });
    t.is(priv.stdout, 'private\n');
    const shared = await p.strata(['run', '--backend', 'sandbox', '--share-tmp', '--', 'sh', '-c', `cat ${marker}; echo "$DATA"`], { env });
    t.is(shared.code, 0, shared.stderr);
    t.is(shared.stdout, `from the host\n${p.dir}/data\n`);
  } finally {
    rmSync(marker, { force: true });
  }
});

test('init writes a starter strata.toml that strata reads, takes the host suite, and never overwrites', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'My Project-'));
  const r = await runCli(['init', '--suite', 'trixie', 'python3', 'git'], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  const m = loadManifest(join(dir, 'strata.toml'));
  t.is(m.channels[0]!.suite, 'trixie');
  t.deepEqual(m.packages.map((x) => x.name).sort(), ['git', 'python3']);
  t.regex(m.name, /^my-project-/);
  const again = await runCli(['init'], { cwd: dir });
  t.is(again.code, 64);
  t.regex(again.stderr, /already exists/);
  const bad = await runCli(['init', '--suite', 'Trixie Bad'], { cwd: mkdtempSync(join(tmpdir(), 'strata-init-')) });
  t.is(bad.code, 64);
  const host = hostAptSources().flatMap((s) => s.suites).find((s) => !/-security$|-updates$|\/updates$|-backports$/.test(s));
  const other = mkdtempSync(join(tmpdir(), 'strata-init-'));
  const auto = await runCli(['init'], { cwd: other });
  if (host) {
    t.is(auto.code, 0, auto.stderr);
    t.regex(readFileSync(join(other, 'strata.toml'), 'utf8'), new RegExp(`^suite = "${host.replace(/[.+/]/g, '\\$&')}"$`, 'm'));
  } else {
    t.is(auto.code, 64);
    t.false(existsSync(join(other, 'strata.toml')));
  }
});

test('run: CUDA_PATH/CUDA_HOME for Debian\'s toolkit layout, the driver\'s directory on LIBRARY_PATH, ${PROJECT} in [env]; the hook runs for run, and its aliases stay in the shell', async (t) => {
  const stable = standardSuites.find((s) => s.suite === 'stable')!;
  const suites = standardSuites.map((s) => (s === stable ? { ...s, components: { ...s.components, main: [...(s.components.main ?? []), FAKE_TOOLKIT] } } : s));
  const work = mkdtempSync(join(tmpdir(), 'strata-cuda-'));
  try {
    const mirror = await buildMirror(join(work, 'mirror'), suites);
    cudaMirror = await serveMirror(mirror.root);
    const gpu = makeFakeGpuTree(join(work, 'gpuhost'));
    const dir = join(work, 'project');
    mkdirSync(dir);
    writeFileSync(join(dir, 'strata.toml'), `[project]\nname = "cuda"\n\n[channels.stable]\nurl = "${cudaMirror.url}"\nsuite = "stable"\ncomponents = ["main", "contrib"]\nsigned-by = "${mirror.keyring}"\n\n[packages]\nbusybox-fixture = "*"\nlibcudart12 = "*"\nnvidia-cuda-toolkit = "*"\n\n[gpu]\ndriver = "host"\n\n[env]\nDATA = "\${PROJECT}/data"\n\n[shell]\nhook = "alias hi='echo hi-from-alias'; echo hook-ran"\n`);
    const env = { STRATA_CACHE_DIR: join(work, 'cache'), STRATA_GPU_ROOT: gpu.root, HOME: join(work, 'home') };
    mkdirSync(env.HOME);
    const r = await runCli(['run', '--backend', 'sandbox', '--', 'sh', '-c', 'echo "$CUDA_PATH|$CUDA_HOME|$LIBRARY_PATH|$LD_LIBRARY_PATH|$DATA"; nvcc --version; ls "$LIBRARY_PATH" | grep "^libcuda.so$"'], { cwd: dir, env });
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, `/usr|/usr|/run/opengl-driver/lib|/run/opengl-driver/lib|${dir}/data\nCuda compilation tools, release 12.4 (fixture)\nlibcuda.so\n`);
    t.regex(r.stderr, /^hook-ran$/m, 'the hook runs for run, its output on stderr');
    const own = await runCli(['run', '--backend', 'sandbox', '-e', 'CUDA_PATH=/opt/cuda', '--', 'sh', '-c', 'echo "$CUDA_PATH $CUDA_HOME"'], { cwd: dir, env });
    t.is(own.stdout, '/opt/cuda /opt/cuda\n', 'a CUDA_PATH set by the user wins');
    const sh = await runCli(['shell', '--backend', 'sandbox'], { cwd: dir, env, input: 'hi\necho "cuda=$CUDA_PATH"\nexit 0\n' });
    t.is(sh.code, 0, sh.stderr);
    t.regex(sh.stdout + sh.stderr, /hi-from-alias/);
    t.regex(sh.stdout + sh.stderr, /cuda=\/usr/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
