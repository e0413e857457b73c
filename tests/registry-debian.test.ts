/**
 * Registries with the real Debian archive (skipped with a message when no mirror is reachable): trixie's python3
 * (with the generated layer: bytecode, ld.so.cache) pushed to Debian's docker-registry on loopback, pulled by the
 * private dockerd and run with `python3 -c`; and the same lock realised on a second machine, whose mirror is a
 * closed port, from the cache registry alone (the generated output included), with the first machine's digest.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, copyFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { debianMirrorOrSkip } from './helpers/debianMirror.ts';
import { runCli } from './helpers/project.ts';
import { startDockerd } from './helpers/dockerd.ts';
import { haveRegistry, startRegistry } from './helpers/registry.ts';

const run = promisify(execFile);
const imageLine = (stdout: string) => /^image (sha256:[0-9a-f]{64})$/m.exec(stdout)?.[1];

test('trixie python3: pushed, pulled by dockerd and run with python3 -c; realised from the cache on a machine with no mirror, same digest', async (t) => {
  t.timeout(20 * 60_000);
  const m = await debianMirrorOrSkip(t);
  if (!m) return;
  if (!haveRegistry()) throw new Error('docker-registry is not installed (scripts/setup-host.sh installs it)');
  const reg = await startRegistry();
  const dirA = mkdtempSync(join(tmpdir(), 'strata-py-a-'));
  const dirB = mkdtempSync(join(tmpdir(), 'strata-py-b-'));
  const manifest = `[project]\nname = "py"\narch = "amd64"\n\n[channels.stable]\nsuite = "trixie"\ncomponents = ["main"]\n\n[packages]\npython3 = "*"\n`;
  writeFileSync(join(dirA, 'strata.toml'), manifest);
  writeFileSync(join(dirB, 'strata.toml'), manifest);
  const cacheRepo = `${reg.host}/team/strata-cache`;
  const cli = (dir: string, args: string[], env: NodeJS.ProcessEnv) => runCli(args, { cwd: dir, env: { STRATA_CACHE_DIR: join(dir, '.cache'), STRATA_CACHE_REGISTRY: cacheRepo, ...env }, timeoutMs: 900_000 });
  const engine = await startDockerd();
  try {
    const a = await cli(dirA, ['realise', '--push-cache'], { STRATA_DEBIAN_MIRROR: m.url });
    t.is(a.code, 0, a.stderr);
    t.regex(a.stdout, /^cache: \d+ entries pushed/m);
    const ref = `${reg.host}/team/py:v1`;
    const pushed = await cli(dirA, ['push', ref, '--locked'], { STRATA_DEBIAN_MIRROR: m.url });
    t.is(pushed.code, 0, pushed.stderr);
    const docker = (...args: string[]) => run('docker', args, { env: { PATH: process.env.PATH, DOCKER_HOST: engine.host, DOCKER_CONFIG: join(engine.dir, 'docker-config') }, timeout: 300_000 });
    await docker('pull', ref);
    const { stdout } = await docker('run', '--rm', '--network', 'none', ref, 'python3', '-c', 'import sys, json; print(json.dumps([6 * 7, sys.version_info[0]]))');
    t.is(stdout.trim(), '[42, 3]');

    copyFileSync(join(dirA, 'strata.lock'), join(dirB, 'strata.lock'));
    const b = await cli(dirB, ['realise', '--locked'], { STRATA_DEBIAN_MIRROR: 'http://127.0.0.1:9/debian' });
    t.is(b.code, 0, b.stderr);
    // The image whole from the cache: the generated parts are made inside a realise, so none is asked for.
    t.regex(b.stderr, /^took the image of this lock from the cache/m);
    t.notRegex(b.stderr, /making what the maintainer scripts would have/);
    t.is(imageLine(b.stdout), imageLine(a.stdout));
  } finally {
    await Promise.all([engine.stop(), reg.stop()]);
  }
});
