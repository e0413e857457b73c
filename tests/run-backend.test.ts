/**
 * The run backends as a library, the way a recipe build will use them: prepare an environment once, then run
 * specs with their output captured to log files, stdin empty and no signal forwarding. Real bubblewrap, unshare
 * and a private dockerd.
 */
import test from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { project, manifestFor, closeSharedMirror } from './helpers/project.ts';
import { startDockerd } from './helpers/dockerd.ts';
import { openStore } from '../store/store.ts';
import { quietReporter } from '../report/reporter.ts';
import { parseLock } from '../lock/lockfile.ts';
import { sandboxBackend, dockerBackend, type RunBackend } from '../engine/backends.ts';
import { runSpecFor, type HostFacts } from '../run/runSpec.ts';

test.after.always(closeSharedMirror);

async function lockedFixture() {
  const p = await project();
  p.writeManifest(manifestFor(p, 'busybox-fixture = "*"'));
  const r = await p.strata(['lock']);
  if (r.code !== 0) throw new Error(r.stderr);
  return { p, lock: parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8')) };
}

async function captured(t: import('ava').ExecutionContext, backend: RunBackend, env: NodeJS.ProcessEnv = {}) {
  const { p, lock } = await lockedFixture();
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    const ctx = { store: await openStore(join(p.dir, 'lib-cache')), reporter: quietReporter() };
    const environment = await backend.prepare(lock, ctx, { frozen: false });
    const host: HostFacts = { cwd: p.dir, uid: 0, gid: 0, sudo: false };
    const logs = mkdtempSync(join(tmpdir(), 'strata-logs-'));
    const io = { stdio: 'files' as const, stdout: join(logs, 'out.log'), stderr: join(logs, 'err.log'), forwardSignals: false };
    writeFileSync(io.stdout, 'earlier line\n');
    const spec = runSpecFor(lock, p.dir, host, { command: ['sh', '-c', 'echo built in $(pwd); read x || echo "stdin empty"; echo oops >&2; exit 7'], network: false });
    t.is(await environment.run(spec, io), 7);
    t.is(readFileSync(io.stdout, 'utf8'), `earlier line\nbuilt in ${p.dir}\nstdin empty\n`);
    t.is(readFileSync(io.stderr, 'utf8'), 'oops\n');
    // the same prepared environment runs a second spec
    t.is(await environment.run(runSpecFor(lock, p.dir, host, { command: ['sh', '-c', 'exit 0'], network: false }), io), 0);
  } finally {
    for (const k of Object.keys(env)) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

for (const method of ['bwrap', 'unshare', 'unshare-compat']) {
  test.serial(`sandbox (${method}): a run with its output captured to log files, stdin empty`, async (t) => {
    if (process.getuid?.() !== 0) return t.pass();
    await captured(t, sandboxBackend(), { STRATA_SANDBOX: method });
  });
}

test.serial('docker: a run with its output captured to log files, stdin empty', async (t) => {
  const d = await startDockerd();
  try {
    await captured(t, dockerBackend(d.docker));
  } finally {
    await d.stop();
  }
});
