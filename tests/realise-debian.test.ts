/**
 * End to end against the real Debian archive (skipped with a message when no mirror is reachable): lock and
 * realise trixie python3 + python3-numpy, load it into a real dockerd, and run NumPy and dpkg in a container.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { runCli } from './helpers/project.ts';
import { debianMirrorOrSkip } from './helpers/debianMirror.ts';
import { startDockerd } from './helpers/dockerd.ts';

const strata = (args: string[], cwd: string, env: NodeJS.ProcessEnv) => runCli(args, { cwd, env });

test('trixie python3 + numpy: realise, load into Docker, run numpy and dpkg -l', async (t) => {
  const m = await debianMirrorOrSkip(t);
  if (!m) return;
  const dir = mkdtempSync(join(tmpdir(), 'strata-numpy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'strata.toml'), `[project]\nname = "numpy-e2e"\narch = "amd64"\n\n[channels.stable]\nurl = "${m.url}"\nsuite = "trixie"\ncomponents = ["main"]\n\n[packages]\npython3 = "*"\npython3-numpy = "*"\ndpkg = "*"\n`);
  const env = { STRATA_CACHE_DIR: process.env.STRATA_TEST_DEBIAN_CACHE ?? join(dir, 'cache') };
  const lock = await strata(['lock'], dir, env);
  t.is(lock.code, 0, lock.stderr);
  const d = await startDockerd();
  try {
    const r = await strata(['realise', '--locked', '--load', '--tag', 'numpy-e2e:test'], dir, { ...env, DOCKER_HOST: d.host });
    t.is(r.code, 0, r.stderr);
    const out = execFileSync('docker', ['-H', d.host, 'run', '--rm', '--network', 'none', 'numpy-e2e:test', 'python3', '-c', 'import numpy; print(numpy.linalg.inv(numpy.eye(3)))'], { encoding: 'utf8' });
    t.is(out, '[[1. 0. 0.]\n [0. 1. 0.]\n [0. 0. 1.]]\n');
    const dpkg = execFileSync('docker', ['-H', d.host, 'run', '--rm', '--network', 'none', 'numpy-e2e:test', 'dpkg', '-l'], { encoding: 'utf8' });
    t.regex(dpkg, /^ii {2}python3-numpy\s+1:2\.\S+\s+amd64/m);
    t.regex(dpkg, /^ii {2}libc6:amd64\s/m);
  } finally {
    await d.stop();
  }
});
