/**
 * `strata run` through the docker backend against a private dockerd, with a real environment realised from the
 * fixture mirror and loaded by the CLI itself.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { standardMirror, serveMirror, type ServedMirror } from './helpers/mirror.ts';
import { startDockerd, type Dockerd } from './helpers/dockerd.ts';
import { FAKE_DRIVER, makeFakeGpuTree, runManifest, strata, type FakeGpuTree } from './helpers/runEnv.ts';

let work: string;
let served: ServedMirror;
let keyring: string;
let engine: Dockerd;
let gpuTree: FakeGpuTree;

function project(name: string, manifest: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'strata.toml'), manifest);
  return dir;
}

const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ PATH: process.env.PATH, STRATA_CACHE_DIR: join(work, 'cache'), HOME: join(work, 'nohome'), DOCKER_HOST: engine.host, ...extra });

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-rund-'));
  chmodSync(work, 0o755);
  const m = await standardMirror(join(work, 'mirror'));
  keyring = m.keyring;
  served = await serveMirror(m.root);
  gpuTree = makeFakeGpuTree(join(work, 'gpuhost'));
  engine = await startDockerd();
});

test.after.always(async () => {
  await engine?.stop();
  await served?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

test.serial('the default backend is docker when an engine answers; exit code, stdin and stdout pass through', async (t) => {
  const dir = project('p-basic', runManifest(served.url, keyring));
  const r = await strata(['run', '--', 'sh', '-c', 'cat; echo "$GREETING in $(pwd)"; exit 7'], { cwd: dir, env: env(), input: 'from stdin\n' });
  t.is(r.code, 7, r.stderr);
  t.regex(r.stderr, /using the docker backend/);
  t.is(r.stdout, `from stdin\nhello from strata in ${dir}\n`);
  const left = await engine.docker.listContainers({ all: true });
  t.is(left.length, 0, 'the container is removed');
  const again = await strata(['run', '--backend', 'docker', '--', 'sh', '-c', 'echo again >&2'], { cwd: dir, env: env() });
  t.is(again.code, 0);
  t.regex(again.stderr, /again/);
  t.notRegex(again.stderr, /loading/);
});

test.serial('signals to strata reach the command through the init; a handler sets the exit code, SIGTERM ends a plain command', async (t) => {
  const dir = project('p-signal', runManifest(served.url, keyring));
  const trapped = await strata(['run', '--', 'sh', '-c', 'trap "echo got-TERM; exit 42" TERM; echo ready; while :; do sleep 0.1; done'], { cwd: dir, env: env(), signal: { after: 'ready', sig: 'SIGTERM' } });
  t.is(trapped.code, 42, trapped.stderr);
  t.is(trapped.stdout, 'ready\ngot-TERM\n');
  const plain = await strata(['run', '--', 'sh', '-c', 'echo ready; exec sleep 30'], { cwd: dir, env: env(), signal: { after: 'ready', sig: 'SIGTERM' } });
  t.is(plain.code, 143, plain.stderr);
  t.is((await engine.docker.listContainers({ all: true })).length, 0, 'the containers are removed');
});

test.serial("files created in the project dir belong to the invoking user (root running for a sudo user)", async (t) => {
  const dir = project('p-owner', runManifest(served.url, keyring));
  chmodSync(dir, 0o777);
  const r = await strata(['run', '--backend', 'docker', '--', 'sh', '-c', 'id -u; touch mine'], { cwd: dir, env: env({ SUDO_UID: '4321', SUDO_GID: '4322' }) });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '4321\n');
  const st = statSync(join(dir, 'mine'));
  t.is(st.uid, 4321);
  t.is(st.gid, 4322);
});

test.serial('a stale lock is refused with --locked and locked again without it', async (t) => {
  const dir = project('p-stale', runManifest(served.url, keyring));
  t.is((await strata(['run', '--backend', 'docker', '--', 'sh', '-c', ':'], { cwd: dir, env: env() })).code, 0);
  writeFileSync(join(dir, 'strata.toml'), runManifest(served.url, keyring, { env: { GREETING: 'changed' } }));
  const refused = await strata(['run', '--backend', 'docker', '--locked', '--', 'sh', '-c', 'echo $GREETING'], { cwd: dir, env: env() });
  t.is(refused.code, 3);
  t.regex(refused.stderr, /stale/);
  const ok = await strata(['run', '--backend', 'docker', '--', 'sh', '-c', 'echo $GREETING'], { cwd: dir, env: env() });
  t.is(ok.code, 0, ok.stderr);
  t.is(ok.stdout, 'changed\n');
});

test.serial('no engine reachable for --backend docker: one clear E_DOCKER message', async (t) => {
  const dir = project('p-noengine', runManifest(served.url, keyring));
  const r = await strata(['run', '--backend', 'docker', '--', 'sh', '-c', ':'], { cwd: dir, env: env({ DOCKER_HOST: `unix://${join(work, 'no.sock')}` }) });
  t.is(r.code, 1);
  t.regex(r.stderr, /error: cannot reach the Docker engine at unix:\/\/.*no\.sock/);
  t.regex(r.stderr, /hint: .*--backend sandbox/);
});

test.serial("the fake GPU's nodes and libraries are injected without the NVIDIA runtime", async (t) => {
  const dir = project('p-gpu', runManifest(served.url, keyring, { gpu: true }));
  const script = [
    'ls /dev | grep nvidia | sort | tr "\\n" " "; echo',
    'cat /run/opengl-driver/lib/libcuda.so.1 /run/opengl-driver/lib/libnvidia-nvvm.so.4',
    'ls /run/opengl-driver/lib | wc -l',
    'echo "$NVIDIA_VISIBLE_DEVICES $LD_LIBRARY_PATH"',
    'command -v nvidia-smi',
  ].join('\n');
  const r = await strata(['run', '--backend', 'docker', '--gpus', '0', '--', 'sh', '-c', script], { cwd: dir, env: env({ STRATA_GPU_ROOT: gpuTree.root }) });
  if (!gpuTree.realNodes) {
    // Docker only passes real device nodes; without mknod the fake tree cannot be injected.
    t.is(r.code, 1);
    return;
  }
  t.is(r.code, 0, r.stderr);
  t.deepEqual(r.stdout.split('\n').map((l) => l.trim()).slice(0, 7), [
    'nvidia-caps nvidia-uvm nvidia-uvm-tools nvidia0 nvidiactl',
    `fake libcuda ${FAKE_DRIVER}`,
    `fake libnvidia-nvvm ${FAKE_DRIVER}`,
    '17',
    '0 /run/opengl-driver/lib',
    '/run/opengl-driver/bin/nvidia-smi',
    '',
  ]);
});

test.serial('the store under HOME is read-only in the container, and the directory holding it cannot be renamed', async (t) => {
  const dir = project('p-store', runManifest(served.url, keyring));
  const home = join(work, 'store-home');
  mkdirSync(home);
  const store = join(home, '.cache', 'strata');
  // No STRATA_CACHE_DIR: the store in its default place, ~/.cache/strata, and HOME bound read-write.
  const e = { PATH: process.env.PATH, HOME: home, DOCKER_HOST: engine.host };
  const first = await strata(['run', '--backend', 'docker', '--', 'cat', '/etc/hostname'], { cwd: dir, env: e });
  t.is(first.code, 0, first.stderr);
  const blob = join(store, 'blobs', 'sha256', readdirSync(join(store, 'blobs', 'sha256'))[0]!);
  const before = readFileSync(blob);
  const script = [
    'id -u',
    `echo pwned >> ${blob} || echo blob-blocked`,
    `touch ${store}/pwned || echo create-blocked`,
    `mv ${home}/.cache ${home}/.cache.moved || echo rename-blocked`,
    `mv ${store} ${store}.moved || echo rename-store-blocked`,
    `grep -E " ${store} " /proc/self/mountinfo | cut -d" " -f6 | cut -d, -f1`,
    'grep -E "^CapEff" /proc/self/status',
  ].join('\n');
  // As root, then as a user who owns the store (as a rootless user owns theirs): permissions do not protect it.
  for (const user of [{}, { SUDO_UID: '4321', SUDO_GID: '4321' }]) {
    if (user.SUDO_UID) execFileSync('chown', ['-R', '4321:4321', home]);
    const r = await strata(['run', '--backend', 'docker', '--', 'sh', '-c', script], { cwd: dir, env: { ...e, ...user } });
    t.is(r.code, 0, r.stderr);
    const out = r.stdout.split('\n');
    t.is(out[0], user.SUDO_UID ?? '0');
    t.deepEqual(out.slice(1, 6), ['blob-blocked', 'create-blocked', 'rename-blocked', 'rename-store-blocked', 'ro']);
    t.log(r.stdout, r.stderr);
  }
  t.deepEqual(readFileSync(blob), before);
  t.false(existsSync(join(store, 'pwned')));
  t.true(existsSync(join(home, '.cache', 'strata', 'run')));
});

test.serial('strata shell on a terminal: input typed before the container starts is run, and its output shown, also after a Ctrl-D', async (t) => {
  const dir = project('p-typeahead', runManifest(served.url, keyring));
  const warm = await strata(['run', '--backend', 'docker', '--', 'sh', '-c', ':'], { cwd: dir, env: env() });
  t.is(warm.code, 0, warm.stderr);
  const helper = join(import.meta.dirname, 'helpers', 'typeahead.py');
  const shell = (input: string, extra: Record<string, string> = {}) => {
    const out = execFileSync('python3', [helper, input, join(import.meta.dirname, '..', 'bin', 'strata'), 'shell', '--backend', 'docker'], { cwd: dir, env: env({ TERM: 'xterm', TYPEAHEAD_TIMEOUT: '60', ...extra }), encoding: 'utf8' });
    return JSON.parse(out) as { exit: number | null; output: string };
  };
  for (let i = 0; i < 4; i++) {
    const r = shell('echo typed-$((6*7))\nexit 3\n');
    // Everything the session printed arrives: the shell's prompt before each typed-ahead line, the command's output between.
    t.regex(r.output, /\(strata:runtest\) \$ [^\n]*echo typed-\$\(\(6\*7\)\)\r+\n(?:\x1b\[\?2004l\r)?typed-42\r+\n[^\n]*\(strata:runtest\) \$ [^\n]*exit 3/, `try ${i + 1}: ${JSON.stringify(r.output)}`);
    // null: strata still running after the session (the attach connection left open kept it alive).
    t.is(r.exit, 3, `try ${i + 1}: ${JSON.stringify(r.output)}`);
  }
  // A Ctrl-D typed ahead reaches strata as the end of its input, while the terminal is still canonical. Sent on as
  // the end of the attach stream, it made the engine close the container's output: nothing after it was shown, and
  // the shell waited on. `exit 4` is typed once the command's output shows (when the Ctrl-D did not end the shell).
  for (let i = 0; i < 2; i++) {
    const r = shell('echo typed-$((6*7))\n\x04', { TYPEAHEAD_THEN: 'typed-42', TYPEAHEAD_THEN_INPUT: 'exit 4\n' });
    t.regex(r.output, /typed-42\r+\n/, `Ctrl-D try ${i + 1}: ${JSON.stringify(r.output)}`);
    t.true(r.exit === 0 || r.exit === 4, `Ctrl-D try ${i + 1}: exit ${r.exit}: ${JSON.stringify(r.output)}`);
  }
});
