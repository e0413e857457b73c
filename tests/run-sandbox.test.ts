/**
 * `strata run` / `strata shell` through the sandbox backend, end to end: the real CLI, a real environment
 * locked and realised from the fixture mirror, bubblewrap and the unshare fallback, as root and rootless.
 */
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, chownSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { standardMirror, serveMirror, type ServedMirror } from './helpers/mirror.ts';
import { FAKE_DRIVER, makeFakeGpuTree, runManifest, strata, type FakeGpuTree } from './helpers/runEnv.ts';

const USER = 'strata-rl';
let work: string;
let served: ServedMirror;
let keyring: string;
let gpuTree: FakeGpuTree;
let oldTree: FakeGpuTree;
let uid: number;

function project(name: string, manifest: string, owner?: number): string {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'strata.toml'), manifest);
  if (owner !== undefined) chownSync(dir, owner, owner);
  return dir;
}

const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, STRATA_CACHE_DIR: join(work, 'cache'), HOME: join(work, 'nohome'), ...extra });

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-run-'));
  chmodSync(work, 0o755);
  const m = await standardMirror(join(work, 'mirror'));
  keyring = m.keyring;
  execFileSync('chmod', ['-R', 'a+rX', m.root]);
  served = await serveMirror(m.root);
  gpuTree = makeFakeGpuTree(join(work, 'gpuhost'));
  oldTree = makeFakeGpuTree(join(work, 'oldgpuhost'), '520.61.05');
  try {
    execFileSync('id', ['-u', USER], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['-M', '-s', '/bin/sh', USER]);
  }
  uid = Number(execFileSync('id', ['-u', USER], { encoding: 'utf8' }).trim());
});

test.after.always(async () => {
  await served?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

for (const method of ['bwrap', 'unshare', 'unshare-compat']) {
  test.serial(`${method}: exit code, stdin and stdout pass through; the project dir is the working dir`, async (t) => {
    const dir = project(`p-${method}`, runManifest(served.url, keyring));
    const r = await strata(['run', '--', 'sh', '-c', 'cat; echo "$GREETING in $(pwd)"; touch made-here; exit 7'], { cwd: dir, env: env({ STRATA_SANDBOX: method }), input: 'from stdin\n' });
    t.is(r.code, 7, r.stderr);
    t.is(r.stdout, `from stdin\nhello from strata in ${dir}\n`);
    t.regex(r.stderr, /using the sandbox backend/);
    t.is(statSync(join(dir, 'made-here')).uid, 0);
    if (method !== 'bwrap') {
      // Which way the root was assembled: unshare's fast path has no /dev tmpfs of its own (it must not have
      // fallen back silently), the compat path mounts one.
      const how = await strata(['run', '--', 'sh', '-c', 'grep -q " /dev rw,[^ ]* - tmpfs strata-dev " /proc/self/mountinfo && echo per-mount || echo skeleton'], { cwd: dir, env: env({ STRATA_SANDBOX: method }) });
      t.is(how.stdout, method === 'unshare' ? 'skeleton\n' : 'per-mount\n', how.stderr);
    }
  });
}

for (const method of ['bwrap', 'unshare', 'unshare-compat']) {
  test.serial(`${method}: a signal to strata, or to its process group, reaches the command once, which exits on its own terms`, async (t) => {
    const dir = project(`p-sig-${method}`, runManifest(served.url, keyring));
    const script = (sig: string) => `trap "echo got-${sig}; exit 42" ${sig}; echo ready; while :; do sleep 0.1; done`;
    for (const [sig, group] of [['TERM', false], ['INT', false], ['INT', true], ['HUP', true]] as const) {
      const r = await strata(['run', '--', 'sh', '-c', script(sig)], { cwd: dir, env: env({ STRATA_SANDBOX: method }), signal: { after: 'ready', sig: `SIG${sig}`, group } });
      t.is(r.code, 42, `SIG${sig} to ${group ? 'the group' : 'strata'}: ${r.stderr}`);
      t.is(r.stdout, `ready\ngot-${sig}\n`, `SIG${sig} to ${group ? 'the group' : 'strata'}`);
    }
    // A command without a handler is not PID 1 of its namespace: SIGTERM's default action ends it.
    const plain = await strata(['run', '--', 'sh', '-c', 'echo ready; exec sleep 30'], { cwd: dir, env: env({ STRATA_SANDBOX: method }), signal: { after: 'ready', sig: 'SIGTERM' } });
    t.is(plain.code, 143, plain.stderr);
  });
}

// bubblewrap is left out: its clean Ctrl-C needs the image's GNU `env --default-signal`, which the fixture image
// (busybox) lacks; with it (any image with Debian's Essential set) it was checked by hand, see the README.
for (const method of ['unshare', 'unshare-compat']) {
  test.serial(`${method}: Ctrl-C on a terminal reaches the command, whose handler finishes and sets the exit code`, async (t) => {
    const dir = project(`p-ctrlc-${method}`, runManifest(served.url, keyring));
    const helper = join(import.meta.dirname, 'helpers', 'typeahead.py');
    const cli = join(import.meta.dirname, '..', 'bin', 'strata');
    // Ctrl-C typed once the command says it is ready (its trap set), a moment later.
    const ctrlC = { TYPEAHEAD_THEN: 'ready', TYPEAHEAD_THEN_INPUT: '\x03', TYPEAHEAD_THEN_DELAY: '0.3', TYPEAHEAD_TIMEOUT: '60' };
    // Asynchronously: the fixture mirror that the first lock reads is served from this process.
    const { stdout: out } = await promisify(execFile)('python3', [helper, '', cli, 'run', '--', 'sh', '-c', 'trap "sleep 0.3; echo cleaned-up; exit 42" INT; echo ready; while :; do sleep 0.1; done'], { cwd: dir, env: env({ STRATA_SANDBOX: method, ...ctrlC }), encoding: 'utf8' });
    const r = JSON.parse(out) as { exit: number; output: string };
    t.is(r.exit, 42, r.output);
    t.regex(r.output, /cleaned-up/);
  });
}

test.serial('the image is read-only, /tmp is private and writable, /proc is the new PID namespace', async (t) => {
  const dir = project('p-ro', runManifest(served.url, keyring));
  const r = await strata(['run', '--', 'sh', '-c', 'touch /etc/x 2>/dev/null && echo etc-writable; touch /tmp/y && echo tmp-ok; ls /proc | grep -c "^[0-9]"'], { cwd: dir, env: env() });
  t.is(r.code, 0, r.stderr);
  const [tmp, procs] = r.stdout.trim().split('\n');
  t.is(tmp, 'tmp-ok');
  t.true(Number(procs) <= 5, `processes visible: ${procs}`);
});

test.serial('a stale lock is refused with --locked, and locked again without it', async (t) => {
  const dir = project('p-stale', runManifest(served.url, keyring));
  t.is((await strata(['run', '--', 'sh', '-c', ':'], { cwd: dir, env: env() })).code, 0);
  writeFileSync(join(dir, 'strata.toml'), runManifest(served.url, keyring, { env: { GREETING: 'changed' } }));
  const refused = await strata(['run', '--locked', '--', 'sh', '-c', 'echo $GREETING'], { cwd: dir, env: env() });
  t.is(refused.code, 3);
  t.regex(refused.stderr, /strata\.lock is stale/);
  t.is(refused.stdout, '');
  const ok = await strata(['run', '--', 'sh', '-c', 'echo $GREETING'], { cwd: dir, env: env() });
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stderr, /locking first/);
  t.is(ok.stdout, 'changed\n');
});

test.serial('shell: the hook runs first, the prompt names the environment', async (t) => {
  const dir = project('p-shell', runManifest(served.url, keyring, { hook: 'export HOOKED=yes' }));
  const r = await strata(['shell'], { cwd: dir, env: env(), input: 'echo "hook=$HOOKED ps1=$PS1"\nexit 4\n' });
  t.is(r.code, 4, r.stderr);
  t.regex(r.stdout, /hook=yes ps1=\(strata:runtest\) \$ /);
});

for (const method of ['bwrap', 'unshare', 'unshare-compat']) {
  test.serial(`${method}: rootless as an ordinary user; files in the project dir are theirs`, async (t) => {
    const dir = project(`p-user-${method}`, runManifest(served.url, keyring), uid);
    const cache = join(work, `cache-${method}-${USER}`);
    mkdirSync(cache);
    chownSync(cache, uid, uid);
    const r = await strata(['run', '--', 'sh', '-c', 'id -u; touch mine; exit 5'], { cwd: dir, env: { STRATA_CACHE_DIR: cache, STRATA_SANDBOX: method, HOME: '/nonexistent' }, user: USER });
    t.is(r.code, 5, r.stderr);
    t.is(r.stdout, `${uid}\n`);
    t.is(statSync(join(dir, 'mine')).uid, uid);
  });
}

test.serial('an environment that asks for a GPU on a host without one: a clear error, and --gpus none carries on', async (t) => {
  const dir = project('p-nogpu', runManifest(served.url, keyring, { gpu: true }));
  const r = await strata(['run', '--', 'sh', '-c', ':'], { cwd: dir, env: env({ STRATA_GPU_ROOT: join(work, 'no-driver-here') }) });
  t.is(r.code, 1);
  t.regex(r.stderr, /asks for a GPU .* but this host has no NVIDIA driver/);
  t.regex(r.stderr, /--gpus none/);
  const ok = await strata(['run', '--gpus', 'none', '--', 'sh', '-c', 'echo ${NVIDIA_VISIBLE_DEVICES:-unset}; ls /run/opengl-driver/lib | wc -l'], { cwd: dir, env: env({ STRATA_GPU_ROOT: join(work, 'no-driver-here') }) });
  t.is(ok.code, 0, ok.stderr);
  t.is(ok.stdout.replace(/ +/g, ''), 'unset\n0\n');
});

test.serial('a driver too old for the CUDA runtime is refused before starting, naming both versions', async (t) => {
  const dir = project('p-oldgpu', runManifest(served.url, keyring, { gpu: true }));
  const r = await strata(['run', '--', 'sh', '-c', 'echo started'], { cwd: dir, env: env({ STRATA_GPU_ROOT: oldTree.root }) });
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.regex(r.stderr, /needs NVIDIA driver >= 525, but the host driver is 520\.61\.05/);
});

for (const method of ['bwrap', 'unshare', 'unshare-compat']) {
  test.serial(`${method}: the fake GPU's nodes, libraries and nvidia-smi are at the right paths inside`, async (t) => {
    const dir = project(`p-gpu-${method}`, runManifest(served.url, keyring, { gpu: true }));
    const script = [
      'ls /dev | grep nvidia | sort | tr "\\n" " "; echo',
      'ls /dev/nvidia-caps | tr "\\n" " "; echo',
      'cat /run/opengl-driver/lib/libcuda.so.1 /run/opengl-driver/lib/libnvidia-ml.so.1 /run/opengl-driver/lib/libnvidia-nvvm.so.4',
      'ls /run/opengl-driver/lib | wc -l',
      'echo "$NVIDIA_VISIBLE_DEVICES $NVIDIA_DRIVER_CAPABILITIES $LD_LIBRARY_PATH"',
      'command -v nvidia-smi',
      'touch /run/opengl-driver/lib/x 2>/dev/null && echo libs-writable',
      gpuTree.realNodes ? 'ls -l /dev/nvidia1 | cut -c1' : 'echo c',
    ].join('\n');
    const r = await strata(['run', '--gpus', '1', '--', 'sh', '-c', script], { cwd: dir, env: env({ STRATA_GPU_ROOT: gpuTree.root, STRATA_SANDBOX: method }) });
    t.is(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n').map((l) => l.trim());
    t.deepEqual(lines.slice(0, 9), [
      'nvidia-caps nvidia-uvm nvidia-uvm-tools nvidia1 nvidiactl',
      'nvidia-cap1 nvidia-cap2',
      `fake libcuda ${FAKE_DRIVER}`,
      `fake libnvidia-ml ${FAKE_DRIVER}`,
      `fake libnvidia-nvvm ${FAKE_DRIVER}`,
      '17',
      '1 compute,utility /run/opengl-driver/lib',
      '/run/opengl-driver/bin/nvidia-smi',
      'c',
    ]);
  });
}

// How fast is measured by `npm run bench` (BENCH_ONLY=run); this checks that a warm run takes the fast path.
test.serial('a warm run goes straight to the unpacked environment, without locking or realising', async (t) => {
  const dir = project('p-warm', runManifest(served.url, keyring));
  const first = await strata(['run', '--', 'sh', '-c', ':'], { cwd: dir, env: env() });
  t.is(first.code, 0, first.stderr);
  for (const method of ['bwrap', 'unshare']) {
    const r = await strata(['run', '--locked', '--', 'sh', '-c', 'echo warm'], { cwd: dir, env: env({ STRATA_SANDBOX: method }) });
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, 'warm\n');
    t.notRegex(r.stderr, /preparing|locking|fetching|unpacking/);
  }
});
