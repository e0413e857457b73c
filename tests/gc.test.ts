/**
 * `strata gc` through the real CLI: it keeps what a live project needs and frees what a deleted one used; --dry-run
 * changes nothing; a realise or a run going on meanwhile is not broken; a realise after everything went rebuilds the
 * same digest.
 */
import test from 'ava';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { project, manifestFor, closeSharedMirror, runCli, type Project } from './helpers/project.ts';

test.after.always(closeSharedMirror);

const A = ['busybox-fixture', 'zlib1g', 'pkg-zstd'].map((n) => `${n} = "*"`).join('\n');
const B = ['busybox-fixture', 'libblas3', 'libopenblas0', 'pkg-gzip'].map((n) => `${n} = "*"`).join('\n');

const digestOf = (stdout: string) => /^image (sha256:[0-9a-f]{64})$/m.exec(stdout)![1]!;
const freedOf = (stdout: string) => Number(/\((\d+) bytes\) in \d+ entries/.exec(stdout)![1]);
const ls = (p: Project, ns: string) => (existsSync(join(p.cache, ns)) ? readdirSync(join(p.cache, ns)).filter((n) => !n.startsWith('.')).sort() : []);

async function ok(p: Project, args: string[], opts: { cwd?: string } = {}) {
  const r = await p.strata(args, opts);
  if (r.code !== 0) throw new Error(`strata ${args.join(' ')}: ${r.stderr}`);
  return r;
}

/** Project `p` (its store) and a second project, in another directory, sharing that store. */
async function two(): Promise<{ p: Project; other: string; digestA: string; digestB: string }> {
  const p = await project();
  p.writeManifest(manifestFor(p, A));
  await ok(p, ['lock']);
  const digestA = digestOf((await ok(p, ['realise', '--locked'])).stdout);
  await ok(p, ['run', '--backend', 'sandbox', '--locked', '--', '/bin/sh', '-c', 'true']);
  const other = join(p.dir, 'other');
  const { mkdirSync, writeFileSync } = await import('node:fs');
  mkdirSync(other);
  writeFileSync(join(other, 'strata.toml'), manifestFor(p, B));
  await ok(p, ['lock'], { cwd: other });
  const digestB = digestOf((await ok(p, ['realise', '--locked'], { cwd: other })).stdout);
  await ok(p, ['run', '--backend', 'sandbox', '--locked', '--', '/bin/sh', '-c', 'true'], { cwd: other });
  return { p, other, digestA, digestB };
}

test('gc keeps what a live project needs and frees what a deleted project used', async (t) => {
  const { p, other, digestA, digestB } = await two();
  t.not(digestA, digestB);
  t.truthy(ls(p, 'rootfs').includes(digestB.slice(7)));
  rmSync(other, { recursive: true });
  const gc = await ok(p, ['gc', '--keep-days', '0']);
  t.true(freedOf(gc.stdout) > 0, gc.stdout);
  t.false(ls(p, 'rootfs').includes(digestB.slice(7)), 'the deleted project\'s rootfs went');
  t.true(ls(p, 'rootfs').includes(digestA.slice(7)), 'the live project\'s rootfs stayed');
  // The live project: nothing to fetch, no layer to build, the run starts without preparing.
  const again = await ok(p, ['realise', '--locked']);
  t.is(digestOf(again.stdout), digestA);
  t.regex(again.stdout, /\(0 built, \d+ cached\)/);
  const run = await ok(p, ['run', '--backend', 'sandbox', '--frozen', '--', '/bin/sh', '-c', 'cat /usr/share/pkg-zstd/hello.txt']);
  t.notRegex(run.stderr, /preparing|unpacking/);
  t.true(run.stdout.length > 0);
  // A second gc finds nothing more to free.
  t.is(freedOf((await ok(p, ['gc', '--keep-days', '0'])).stdout), 0);
});

test('gc keeps what was used within --keep-days, whatever became of its project', async (t) => {
  const { p, other, digestB } = await two();
  rmSync(other, { recursive: true });
  await ok(p, ['gc']);
  t.true(ls(p, 'rootfs').includes(digestB.slice(7)));
});

test('gc --dry-run lists what would go and its bytes, and changes nothing', async (t) => {
  const { p, other } = await two();
  rmSync(other, { recursive: true });
  const snapshot = () => ['blobs/sha256', 'layers', 'unpacked', 'rootfs', 'run', 'roots'].map((ns) => ls(p, ns).join(','));
  const before = snapshot();
  const dry = await ok(p, ['gc', '--dry-run', '--keep-days', '0']);
  t.regex(dry.stdout, /^would remove blob [0-9a-f]{64} \(downloads, \d+ bytes\)$/m);
  t.regex(dry.stdout, /^would remove rootfs\/[0-9a-f]{64} /m);
  t.regex(dry.stdout, /^ {2}trees +\d+ entries/m);
  const would = freedOf(dry.stdout);
  t.true(would > 0);
  t.deepEqual(snapshot(), before);
  const info = await ok(p, ['cache', 'info']);
  t.regex(info.stdout, /^ {2}downloads +\d+ entries/m);
  t.regex(info.stdout, /^ {2}layers +\d+ entries/m);
  t.is(freedOf((await ok(p, ['gc', '--keep-days', '0'])).stdout), would);
});

test('gc during a realise does not break it, and a realise after gc of everything rebuilds the same digest', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, A));
  await ok(p, ['lock']);
  const digest = digestOf((await ok(p, ['realise', '--locked'])).stdout);
  rmSync(join(p.dir, 'strata.lock'));
  const gone = await ok(p, ['gc', '--keep-days', '0']);
  t.true(freedOf(gone.stdout) > 0);
  t.deepEqual(ls(p, 'blobs/sha256'), []);
  t.deepEqual(ls(p, 'layers'), []);
  await ok(p, ['lock']);
  // Start a cold realise, and gc over and over while it runs.
  const realise = p.strata(['realise', '--locked']);
  let done = false;
  void realise.then(() => (done = true));
  let gcs = 0;
  while (!done) {
    const g = await runCli(['gc', '--keep-days', '0'], { cwd: p.dir, env: { STRATA_CACHE_DIR: p.cache } });
    t.is(g.code, 0, g.stderr);
    gcs++;
  }
  const r = await realise;
  t.is(r.code, 0, r.stderr);
  t.is(digestOf(r.stdout), digest);
  t.true(gcs > 0);
  // What it made is rooted now: a gc keeps it.
  await ok(p, ['gc', '--keep-days', '0']);
  t.regex((await ok(p, ['realise', '--locked'])).stdout, /\(0 built, \d+ cached\)/);
});

test('a running strata run keeps its environment through a gc', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, A));
  await ok(p, ['lock']);
  await ok(p, ['realise', '--locked']);
  await ok(p, ['run', '--backend', 'sandbox', '--locked', '--', '/bin/sh', '-c', 'true']);
  const run = runCli(['run', '--backend', 'sandbox', '--locked', '--', '/bin/sh', '-c', 'echo started; sleep 2; cat /usr/share/pkg-zstd/hello.txt'], {
    cwd: p.dir,
    env: { STRATA_CACHE_DIR: p.cache },
  });
  // Once the command runs, the lock goes: only the run's own marker keeps its rootfs now.
  // A marker may be renamed between the listing and the read (it is rewritten whole): that one is read next time.
  const marker = (n: string) => {
    try {
      return readFileSync(join(p.cache, 'active', n), 'utf8');
    } catch {
      return '';
    }
  };
  // The marker of a live process (an earlier run's could still be there if it was not removed yet).
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const running = () => ls(p, 'active').some((n) => marker(n).includes('"running"') && alive(Number(n.split('-')[0])));
  for (let i = 0; !running(); i++) {
    if (i > 1200) throw new Error('the run never started its command (60 s)');
    await new Promise((r) => setTimeout(r, 50));
  }
  rmSync(join(p.dir, 'strata.lock'));
  const gc = await ok(p, ['gc', '--keep-days', '0']);
  const r = await run;
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /started\n.+/);
  t.is(ls(p, 'rootfs').filter((n) => !n.endsWith('.json')).length, 1, gc.stdout);
  // Once it ended, nothing roots it: the next gc frees it.
  await ok(p, ['gc', '--keep-days', '0']);
  t.deepEqual(ls(p, 'rootfs'), []);
});
