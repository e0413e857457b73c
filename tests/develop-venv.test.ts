/**
 * The project's Python environment (run/develop.ts) through the real CLI, on trixie's python3 from the real
 * Debian archive (skipped with a message when none is reachable): an editable install of a local setuptools
 * project with no index, a wheel from a loopback index, seen by later runs in new processes, in the sandbox and in
 * Docker alike; the image digest and the host's HOME untouched; a changed lock gets a venv of its own.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { reachableDebianMirror } from './helpers/debianMirror.ts';
import { startDockerd, type Dockerd } from './helpers/dockerd.ts';
import { runCli } from './helpers/project.ts';
import { PROJECT_VENV, VENV_CLOSURE_FILE } from '../run/develop.ts';

const digestOf = (stdout: string) => /^image (sha256:[0-9a-f]{64})$/m.exec(stdout)?.[1];

let work: string;
let dir: string;
let home: string;
let skip: string | undefined;
let engine: Dockerd | undefined;
let index: Server | undefined;
let indexUrl: string;

const manifest = (extra = '') => `[project]
name = "devvenv"

[channels.stable]
suite = "trixie"
components = ["main"]

[packages]
python3 = "*"
python3-venv = "*"
python3-wheel-whl = "*"
${extra}`;

function strata(args: string[], extra: Record<string, string> = {}) {
  return runCli(args, { cwd: dir, env: { HOME: home, STRATA_CACHE_DIR: join(work, 'cache'), ...(engine ? { DOCKER_HOST: engine.host } : {}), ...extra }, timeoutMs: 15 * 60_000 });
}

/** Every path under `root` with its size and mtime: what "untouched" compares. */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const s = statSync(p);
      out.push(`${relative(root, p)} ${s.size} ${s.mtimeMs}`);
      if (s.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

/** A setuptools project (pyproject.toml, build-backend setuptools) whose module returns `value`. */
function setuptoolsProject(path: string, name: string, value: string): void {
  mkdirSync(join(path, name), { recursive: true });
  writeFileSync(join(path, 'pyproject.toml'), `[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "${name}"\nversion = "0.1"\n`);
  writeFileSync(join(path, name, '__init__.py'), `VALUE = ${JSON.stringify(value)}\n`);
}

/** A pure-Python wheel made here (the host's zipfile), served from a PEP 503 simple index on loopback. */
async function serveTinyWheel(root: string): Promise<void> {
  const whl = join(root, 'tinywheel-1.0-py3-none-any.whl');
  execFileSync('python3', ['-c', `
import zipfile, sys
files = {
  "tinywheel/__init__.py": "VALUE = 'from the loopback index'\\n",
  "tinywheel-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: tinywheel\\nVersion: 1.0\\n",
  "tinywheel-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: strata-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
files["tinywheel-1.0.dist-info/RECORD"] = "".join(f"{n},,\\n" for n in files) + "tinywheel-1.0.dist-info/RECORD,,\\n"
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for n, c in files.items(): z.writestr(n, c)
`, whl]);
  const bytes = readFileSync(whl);
  const sha = createHash('sha256').update(bytes).digest('hex');
  index = createServer((req, res) => {
    if (req.url === '/simple/tinywheel/') {
      res.setHeader('content-type', 'text/html');
      res.end(`<!DOCTYPE html><html><body><a href="/files/tinywheel-1.0-py3-none-any.whl#sha256=${sha}">tinywheel-1.0-py3-none-any.whl</a></body></html>`);
    } else if (req.url === '/files/tinywheel-1.0-py3-none-any.whl') {
      res.end(bytes);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => index!.listen(0, '127.0.0.1', r));
  const a = index.address();
  indexUrl = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/simple/`;
}

test.before(async () => {
  const m = await reachableDebianMirror();
  if ('skip' in m) {
    skip = m.skip;
    return;
  }
  work = mkdtempSync(join(tmpdir(), 'strata-venv-'));
  chmodSync(work, 0o755);
  dir = join(work, 'project');
  home = join(work, 'home');
  mkdirSync(dir);
  mkdirSync(join(home, '.config'), { recursive: true });
  writeFileSync(join(home, '.config', 'kept'), 'the host user\'s file\n');
  writeFileSync(join(dir, 'strata.toml'), manifest());
  setuptoolsProject(join(dir, 'pkg'), 'devpkg', 'editable from ./pkg');
  setuptoolsProject(join(dir, 'checkout'), 'checkedout', 'built without isolation');
  await serveTinyWheel(work);
});

test.after.always(async () => {
  await engine?.stop();
  await new Promise((r) => (index ? index.close(r) : r(undefined)));
  if (work) rmSync(work, { recursive: true, force: true });
});

test.serial('sandbox: pip install -e with no index, a wheel from a loopback index, seen by the next run; image and HOME untouched', async (t) => {
  if (skip) return void t.log(`skipped: ${skip}`), t.pass();
  t.timeout(15 * 60_000);
  const homeBefore = tree(home);
  const first = await strata(['realise']);
  t.is(first.code, 0, first.stderr);
  const digest = digestOf(first.stdout);
  t.truthy(digest, first.stdout);

  const editable = await strata(['run', '--backend', 'sandbox', '--no-network', '--', 'sh', '-c', 'echo "$VIRTUAL_ENV"; pip install --no-index -e ./pkg']);
  t.is(editable.code, 0, editable.stderr + editable.stdout);
  t.true(editable.stdout.startsWith(`${join(dir, PROJECT_VENV)}\n`), editable.stdout);
  t.regex(editable.stdout, /Successfully installed devpkg-0\.1/);
  const noIsolation = await strata(['run', '--backend', 'sandbox', '--no-network', '--', 'pip', 'install', '--no-index', '--no-build-isolation', '-e', './checkout']);
  t.is(noIsolation.code, 0, noIsolation.stderr + noIsolation.stdout);
  const wheel = await strata(['run', '--backend', 'sandbox', '--', 'pip', 'install', '--index-url', indexUrl, 'tinywheel']);
  t.is(wheel.code, 0, wheel.stderr + wheel.stdout);
  t.regex(wheel.stdout, /Successfully installed tinywheel-1\.0/);

  // A new process, a new sandbox: the venv persists in the project; the image's own NumPy-style packages stay visible.
  const again = await strata(['run', '--backend', 'sandbox', '--no-network', '--', 'python3', '-c', 'import devpkg, checkedout, tinywheel, sys; print(devpkg.VALUE, devpkg.__file__, checkedout.VALUE, tinywheel.VALUE, sys.prefix, sep="|")']);
  t.is(again.code, 0, again.stderr);
  t.is(again.stdout, `editable from ./pkg|${join(dir, 'pkg/devpkg/__init__.py')}|built without isolation|from the loopback index|${join(dir, PROJECT_VENV)}\n`);
  const status = await strata(['status', '--json']);
  t.is(status.code, 0, status.stderr);
  const s = JSON.parse(status.stdout) as { lock: { current: boolean }; venv: { state: string; python: string; packages: { name: string; version: string; editable: boolean; location: string; seeded: boolean }[] } };
  t.true(s.lock.current);
  t.is(s.venv.state, 'current');
  t.regex(s.venv.python, /^3\.\d+\.\d+$/);
  const site = join(dir, PROJECT_VENV, 'lib', `python${s.venv.python.split('.').slice(0, 2).join('.')}`, 'site-packages');
  t.deepEqual(s.venv.packages.filter((p) => !p.seeded).map(({ seeded: _, ...p }) => p), [
    { name: 'checkedout', version: '0.1', editable: true, location: join(dir, 'checkout') },
    { name: 'devpkg', version: '0.1', editable: true, location: join(dir, 'pkg') },
    { name: 'tinywheel', version: '1.0', editable: false, location: site },
  ]);
  t.deepEqual(s.venv.packages.filter((p) => p.seeded).map((p) => p.name).filter((n) => ['pip', 'setuptools', 'wheel'].includes(n)), ['pip', 'setuptools', 'wheel']);
  const text = await strata(['status']);
  t.regex(text.stdout, /^lock: strata\.lock is current/m);
  t.regex(text.stdout, new RegExp(`^ +devpkg 0\\.1 +editable +${join(dir, 'pkg').replace(/[.]/g, '\\.')}$`, 'm'));
  const after = await strata(['realise']);
  t.is(digestOf(after.stdout), digest, 'the image is what it was: the venv lives in the project');
  t.deepEqual(tree(home), homeBefore, "the host's HOME is untouched");
});

test.serial('docker: the same venv, through the project directory mounted in the container', async (t) => {
  if (skip) return void t.log(`skipped: ${skip}`), t.pass();
  t.timeout(15 * 60_000);
  engine = await startDockerd();
  const seen = await strata(['run', '--backend', 'docker', '--no-network', '--', 'python3', '-c', 'import devpkg, tinywheel, os; print(devpkg.VALUE, tinywheel.VALUE, os.environ["VIRTUAL_ENV"], sep="|")']);
  t.is(seen.code, 0, seen.stderr);
  t.is(seen.stdout, `editable from ./pkg|from the loopback index|${join(dir, PROJECT_VENV)}\n`);
  setuptoolsProject(join(dir, 'pkg2'), 'dockerpkg', 'installed through docker');
  const install = await strata(['run', '--backend', 'docker', '--no-network', '--', 'pip', 'install', '--no-index', '-e', './pkg2']);
  t.is(install.code, 0, install.stderr + install.stdout);
  const back = await strata(['run', '--backend', 'sandbox', '--', 'python3', '-c', 'import dockerpkg; print(dockerpkg.VALUE)']);
  t.is(back.code, 0, back.stderr);
  t.is(back.stdout, 'installed through docker\n');
});

test.serial('a changed lock makes the venv again: nothing installed for another closure is reused', async (t) => {
  if (skip) return void t.log(`skipped: ${skip}`), t.pass();
  t.timeout(15 * 60_000);
  const venv = join(dir, PROJECT_VENV);
  const before = readFileSync(join(venv, VENV_CLOSURE_FILE), 'utf8').trim();
  writeFileSync(join(dir, 'strata.toml'), manifest('python3-six = "*"\n'));
  const stale = await strata(['status', '--json']);
  const st = JSON.parse(stale.stdout) as { lock: { current: boolean; reason: string }; venv: { state: string } };
  t.false(st.lock.current);
  t.regex(st.lock.reason, /strata\.toml changed/);
  const r = await strata(['run', '--backend', 'sandbox', '--', 'python3', '-c', 'import six, sys\ntry:\n import devpkg; print("stale")\nexcept ImportError: print("fresh", sys.prefix)']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /the lock changed since .* was made: making it again/);
  t.is(r.stdout, `fresh ${venv}\n`);
  const lock = readFileSync(join(dir, 'strata.lock'), 'utf8');
  const closure = /^closure = "(sha256:[0-9a-f]+)"$/m.exec(lock)![1]!;
  t.not(closure, before);
  t.is(readFileSync(join(venv, VENV_CLOSURE_FILE), 'utf8').trim(), closure);
  const fresh = JSON.parse((await strata(['status', '--json'])).stdout) as { lock: { current: boolean }; venv: { state: string; packages: { seeded: boolean }[] } };
  t.true(fresh.lock.current);
  t.is(fresh.venv.state, 'current');
  t.deepEqual(fresh.venv.packages.filter((p) => !p.seeded), [], 'nothing of the old venv is left');
  const cfg = readFileSync(join(venv, 'pyvenv.cfg'), 'utf8');
  const version = await strata(['run', '--backend', 'sandbox', '--', 'python3', '-c', 'import platform; print(platform.python_version())']);
  t.regex(cfg, new RegExp(`^version = ${version.stdout.trim().replace(/\./g, '\\.')}$`, 'm'));

  writeFileSync(join(dir, 'strata.toml'), manifest('python3-six = "*"\n\n[develop]\nvenv = false\n'));
  const off = await strata(['run', '--backend', 'sandbox', '--', 'sh', '-c', 'echo "${VIRTUAL_ENV:-none} $(command -v python3)"']);
  t.is(off.code, 0, off.stderr);
  t.is(off.stdout, 'none /usr/bin/python3\n');
});
