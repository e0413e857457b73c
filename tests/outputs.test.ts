/**
 * What `realise` and `lock` write for the user (an OCI layout, a docker archive, strata.lock, standard output) when
 * the target is wrong, the disk fills up, the filesystem refuses, the reader goes away, or a previous run was killed:
 * the real CLI, the signed fixture mirror, real tmpfs mounts and real pipes; skopeo as the independent reader.
 */
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { closeSharedMirror, manifestFor, project, STRATA, type CliResult, type Project } from './helpers/project.ts';

test.after.always(closeSharedMirror);

const PACKAGES = ['busybox-fixture = "*"', 'zlib1g = "*"', 'base-files = "*"'].join('\n');

async function locked(): Promise<Project> {
  const p = await project();
  p.writeManifest(manifestFor(p, PACKAGES));
  const r = await p.strata(['lock']);
  if (r.code !== 0) throw new Error(r.stderr);
  return p;
}

/** Runs the CLI in `p` with stdout on `stdout` ('pipe', or an fd); `closeStdout` closes our end of the pipe at once. */
function strataRaw(p: Project, args: string[], opts: { stdout?: 'pipe' | number; closeStdout?: boolean; killAfterMs?: number } = {}): Promise<CliResult & { killed: boolean }> {
  return new Promise((res, rej) => {
    const child = spawn(STRATA, args, { cwd: p.dir, env: { ...process.env, CI: '1', STRATA_CACHE_DIR: p.cache }, stdio: ['ignore', opts.stdout ?? 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let killed = false;
    if (opts.closeStdout) child.stdout!.destroy();
    else child.stdout?.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, opts.killAfterMs ?? 120_000);
    child.on('error', rej);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code: code ?? -1, stdout, stderr, killed });
    });
  });
}

/** stderr without the progress lines a quiet (CI) run still prints. */
function withoutProgress(stderr: string): string {
  return stderr.replace(/^ *(fetching|resolved) .*\n/gm, '');
}

function clean(t: { notRegex(s: string, r: RegExp): void }, stderr: string): void {
  t.notRegex(stderr, /internal error/);
  t.notRegex(stderr, /\n\s+at /); // no stack trace
  t.notRegex(stderr, /Unhandled|node:internal/);
}

/** Mounts a tmpfs of `size` at `dir` (created); false where that is impossible (not root, no mount). */
function tmpfs(dir: string, size: string): boolean {
  if (process.getuid?.() !== 0) return false;
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
    return true;
  } catch {
    return false;
  }
}

/** Fills the filesystem at `dir` with `dir/fill` until `leave` bytes (or fewer) are free. */
function fill(dir: string, leave = 0): void {
  const free = () => {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  };
  const fd = openSync(join(dir, 'fill'), 'a');
  try {
    const chunk = Buffer.alloc(64 << 10, 1);
    for (let room = free(); room > leave; room = free()) {
      try {
        writeFileSync(fd, chunk.subarray(0, Math.min(chunk.length, Math.max(4096, room - leave))));
      } catch {
        break; // ENOSPC: full
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** Every file under `dir`, relative, sorted. */
function tree(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

function assertLayoutSound(t: { is(a: unknown, b: unknown, m?: string): void; deepEqual(a: unknown, b: unknown): void }, layout: string, stdout: string): void {
  const digest = /^image (sha256:[0-9a-f]{64})$/m.exec(stdout)![1]!;
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  t.is(index.manifests.at(-1).digest, digest);
  const ref = index.manifests.at(-1).annotations['org.opencontainers.image.ref.name'];
  t.is(JSON.parse(execFileSync('skopeo', ['--insecure-policy', 'inspect', `oci:${layout}:${ref}`], { encoding: 'utf8' })).Digest, digest);
  for (const b of readdirSync(join(layout, 'blobs/sha256'))) {
    t.is(createHash('sha256').update(readFileSync(join(layout, 'blobs/sha256', b))).digest('hex'), b, `blob ${b}`);
  }
  t.deepEqual(tree(layout).filter((f) => f.split('/').some((c) => c.startsWith('.'))), []);
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn('true');
  await new Promise((res) => child.on('close', res));
  return child.pid!;
}

test('--oci at a file, through a file, under /proc or /sys: one message naming the path, at once, before building', async (t) => {
  const p = await locked();
  writeFileSync(join(p.dir, 'afile'), 'x');
  const cases: Array<[string, number, RegExp]> = [
    ['afile', 64, /cannot write the OCI image layout afile: it exists and is not a directory/],
    ['afile/sub', 64, /cannot write the OCI image layout afile\/sub: afile is not a directory/],
    ['/proc/strata-out', 1, /cannot write the OCI image layout \/proc\/strata-out: the filesystem at \/proc does not allow creating anything there/],
    ['/proc/strata-out/deeper', 1, /cannot write the OCI image layout \/proc\/strata-out\/deeper: the filesystem at \/proc does not allow creating/],
    ['/sys/strata-out', 1, /cannot write the OCI image layout \/sys\/strata-out: /],
  ];
  for (const [target, code, message] of cases) {
    const started = Date.now();
    const r = await strataRaw(p, ['realise', '--locked', '--oci', target], { killAfterMs: 60_000 });
    t.false(r.killed, `${target}: still running after 60 s`);
    t.true(Date.now() - started < 30_000, target);
    t.is(r.code, code, `${target}: ${r.stderr}`);
    t.regex(r.stderr, message);
    t.is(r.stderr.match(/^error: /gm)?.length, 1, r.stderr);
    clean(t, r.stderr);
    t.is(r.stdout, '', `${target}: refused before anything was built`);
  }
  t.is(readFileSync(join(p.dir, 'afile'), 'utf8'), 'x');
  t.false(existsSync('/proc/strata-out'));
  t.false(existsSync('/sys/strata-out'));
});

test('--docker-archive at a directory, under a missing directory or under /proc: one message naming the path, before building', async (t) => {
  const p = await locked();
  mkdirSync(join(p.dir, 'adir'));
  writeFileSync(join(p.dir, 'afile'), 'x');
  const cases: Array<[string, number, RegExp]> = [
    ['adir', 64, /cannot write the docker archive adir: it is a directory/],
    ['missing/image.tar', 64, /cannot write the docker archive missing\/image\.tar: the directory missing does not exist/],
    ['afile/image.tar', 64, /cannot write the docker archive afile\/image\.tar: afile is not a directory/],
    ['/proc/image.tar', 1, /cannot write the docker archive \/proc\/image\.tar: the filesystem at \/proc does not allow creating/],
  ];
  for (const [target, code, message] of cases) {
    const r = await strataRaw(p, ['realise', '--locked', '--docker-archive', target], { killAfterMs: 60_000 });
    t.is(r.code, code, `${target}: ${r.stderr}`);
    t.regex(r.stderr, message);
    clean(t, r.stderr);
    t.is(r.stdout, '', `${target}: refused before anything was built`);
  }
  t.deepEqual(readdirSync(join(p.dir, 'adir')), []);
  t.false(existsSync(join(p.dir, 'missing')));
  t.deepEqual(readdirSync(p.dir).filter((n) => n.includes('.tmp')), []);
});

test('a closed stdout (| head -1): the layout and archive are written whole and strata ends quietly with 141', async (t) => {
  const p = await locked();
  // Our end of the pipe closed before strata writes a byte: its first write gets EPIPE, deterministically.
  const layout = join(p.dir, 'oci');
  const archive = join(p.dir, 'image.tar');
  const r = await strataRaw(p, ['realise', '--locked', '--oci', layout, '--docker-archive', archive], { closeStdout: true });
  t.is(r.code, 141, r.stderr);
  t.is(withoutProgress(r.stderr), '');
  const full = await p.strata(['realise', '--locked']);
  assertLayoutSound(t, layout, full.stdout);
  t.notThrows(() => execFileSync('skopeo', ['--insecure-policy', 'inspect', `docker-archive:${archive}`], { stdio: 'pipe' }));
  // The shell's way, with pipefail: head gets the first line, strata ends 0 or 141 (whether it wrote after head left).
  const layout2 = join(p.dir, 'oci2');
  const sh = execFileSync('bash', ['-o', 'pipefail', '-c', `"${STRATA}" realise --locked --oci "${layout2}" 2>"${p.dir}/err" | head -1; echo "status \${PIPESTATUS[0]}"`], { cwd: p.dir, env: { ...process.env, CI: '1', STRATA_CACHE_DIR: p.cache }, encoding: 'utf8' });
  t.regex(sh, /^image sha256:[0-9a-f]{64}\nstatus (0|141)\n$/);
  t.is(withoutProgress(readFileSync(join(p.dir, 'err'), 'utf8')), '');
  assertLayoutSound(t, layout2, full.stdout);
  // The lock the same way: written whole, quietly.
  rmSync(join(p.dir, 'strata.lock'));
  const lock = await strataRaw(p, ['lock'], { closeStdout: true });
  t.is(lock.code, 141, lock.stderr);
  t.is(withoutProgress(lock.stderr), '');
  t.is((await p.strata(['lock', '--check'])).code, 0);
});

test('stdout on a full device (> /dev/full): the outputs are complete, and one message says standard output is full', async (t) => {
  const p = await locked();
  const layout = join(p.dir, 'oci');
  const fd = openSync('/dev/full', 'w');
  let r;
  try {
    r = await strataRaw(p, ['realise', '--locked', '--oci', layout], { stdout: fd });
  } finally {
    closeSync(fd);
  }
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /^error: no space left on the device holding standard output/m);
  t.is(r.stderr.match(/^error: /gm)?.length, 1, r.stderr);
  clean(t, r.stderr);
  assertLayoutSound(t, layout, (await p.strata(['realise', '--locked'])).stdout);
});

test('a full disk under a new --oci DIR: one message, no directory left, and the rerun with room succeeds', async (t) => {
  const p = await locked();
  const small = join(p.dir, 'small');
  if (!tmpfs(small, '1m')) return void t.pass('skipped: mounting a tmpfs needs root');
  try {
    const layout = join(small, 'deep', 'oci');
    const r = await p.strata(['realise', '--locked', '--oci', layout]);
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, new RegExp(`^error: no space left on the device holding ${layout} while writing the OCI image layout$`, 'm'));
    clean(t, r.stderr);
    t.deepEqual(readdirSync(small), [], 'the directories it made and the blobs it wrote are gone');
    execFileSync('mount', ['-o', 'remount,size=8m', small]);
    const ok = await p.strata(['realise', '--locked', '--oci', layout]);
    t.is(ok.code, 0, ok.stderr);
    assertLayoutSound(t, layout, ok.stdout);
  } finally {
    execFileSync('umount', [small]);
  }
});

test('a full disk adding to an existing --oci layout leaves it as it was; with room the rerun succeeds', async (t) => {
  const p = await locked();
  const small = join(p.dir, 'small');
  if (!tmpfs(small, '4m')) return void t.pass('skipped: mounting a tmpfs needs root');
  try {
    const layout = join(small, 'oci');
    const first = await p.strata(['realise', '--locked', '--oci', layout]);
    t.is(first.code, 0, first.stderr);
    const before = tree(layout);
    const index = readFileSync(join(layout, 'index.json'));
    fill(small, 400 << 10); // the gzip layers (about 1.1 MiB, all new) do not fit
    const r = await p.strata(['realise', '--locked', '--gzip', '--oci', layout]);
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, /^error: no space left on the device holding .*\/small\/oci while writing the OCI image layout$/m);
    clean(t, r.stderr);
    t.deepEqual(tree(layout), before);
    t.deepEqual(readFileSync(join(layout, 'index.json')), index);
    assertLayoutSound(t, layout, first.stdout);
    rmSync(join(small, 'fill'));
    const ok = await p.strata(['realise', '--locked', '--gzip', '--oci', layout]);
    t.is(ok.code, 0, ok.stderr);
    assertLayoutSound(t, layout, ok.stdout);
  } finally {
    execFileSync('umount', [small]);
  }
});

test('a full disk under --docker-archive: one message, no archive and no temp file; with room it is written', async (t) => {
  const p = await locked();
  const small = join(p.dir, 'small');
  if (!tmpfs(small, '1m')) return void t.pass('skipped: mounting a tmpfs needs root');
  try {
    const archive = join(small, 'image.tar');
    const r = await p.strata(['realise', '--locked', '--docker-archive', archive]);
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, new RegExp(`^error: no space left on the device holding ${archive} while writing the docker archive$`, 'm'));
    t.is(r.stderr.match(/^error: /gm)?.length, 1, r.stderr);
    clean(t, r.stderr);
    t.deepEqual(readdirSync(small), []);
    execFileSync('mount', ['-o', 'remount,size=8m', small]);
    const ok = await p.strata(['realise', '--locked', '--docker-archive', archive]);
    t.is(ok.code, 0, ok.stderr);
    t.notThrows(() => execFileSync('skopeo', ['--insecure-policy', 'inspect', `oci-archive:${archive}`], { stdio: 'pipe' }));
    t.deepEqual(readdirSync(small), ['image.tar']);
  } finally {
    execFileSync('umount', [small]);
  }
});

test('a full disk while writing strata.lock: one message, the previous lock intact, no temp files', async (t) => {
  const p = await project();
  const small = join(p.dir, 'small');
  if (!tmpfs(small, '1m')) return void t.pass('skipped: mounting a tmpfs needs root');
  try {
    const manifest = join(small, 'strata.toml');
    writeFileSync(manifest, manifestFor(p, PACKAGES));
    t.is((await p.strata(['lock', '-m', manifest])).code, 0);
    const lock = readFileSync(join(small, 'strata.lock'));
    writeFileSync(manifest, manifestFor(p, `${PACKAGES}\nmailer = "*"`));
    fill(small);
    const r = await p.strata(['lock', '-m', manifest]);
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, /^error: no space left on the device holding .*small\/strata\.lock while writing the lock$/m);
    clean(t, r.stderr);
    t.deepEqual(readdirSync(small).sort(), ['fill', 'strata.lock', 'strata.toml']);
    t.deepEqual(readFileSync(join(small, 'strata.lock')), lock);
    // realise relocks a stale lock: the same message, the same state
    const re = await p.strata(['realise', '-m', manifest]);
    t.is(re.code, 1, re.stderr);
    t.regex(re.stderr, /no space left on the device holding .*strata\.lock while writing the lock/);
    t.deepEqual(readdirSync(small).sort(), ['fill', 'strata.lock', 'strata.toml']);
    rmSync(join(small, 'fill'));
    const ok = await p.strata(['lock', '-m', manifest]);
    t.is(ok.code, 0, ok.stderr);
    t.deepEqual(readdirSync(small).sort(), ['strata.lock', 'strata.toml']);
  } finally {
    execFileSync('umount', [small]);
  }
});

test('a read-only filesystem: --oci, --docker-archive and the lock each end in one message naming the path, exit 1', async (t) => {
  const p = await project();
  const ro = join(p.dir, 'ro');
  if (!tmpfs(ro, '4m')) return void t.pass('skipped: mounting a tmpfs needs root');
  try {
    const manifest = join(ro, 'strata.toml');
    writeFileSync(manifest, manifestFor(p, PACKAGES));
    execFileSync('mount', ['-o', 'remount,ro', ro]);
    const lock = await p.strata(['lock', '-m', manifest]);
    t.is(lock.code, 1, lock.stderr);
    t.regex(lock.stderr, /^error: cannot write the lock .*ro\/strata\.lock: the filesystem is read-only \(EROFS\)$/m);
    clean(t, lock.stderr);
    // the manifest elsewhere, the outputs on the read-only filesystem
    p.writeManifest(manifestFor(p, PACKAGES));
    for (const [flag, target, what] of [['--oci', join(ro, 'oci'), 'the OCI image layout'], ['--docker-archive', join(ro, 'image.tar'), 'the docker archive']] as const) {
      const r = await p.strata(['realise', flag, target]);
      t.is(r.code, 1, r.stderr);
      t.true(r.stderr.includes(`error: cannot write ${what} ${target}: the filesystem is read-only (EROFS)`), r.stderr);
      clean(t, r.stderr);
      t.false(existsSync(join(p.dir, 'strata.lock')), 'refused before locking or building');
    }
    t.deepEqual(readdirSync(ro), ['strata.toml']);
  } finally {
    execFileSync('umount', [ro]);
  }
});

test('an --oci directory a killed run left (temp files, an empty blobs tree, no oci-layout) is taken up and cleaned', async (t) => {
  const p = await locked();
  const layout = join(p.dir, 'oci');
  const dead = await deadPid();
  // What a run killed before writing oci-layout left: the blobs tree, and partial files under temp names.
  mkdirSync(join(layout, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(layout, `.oci-layout.tmp-${dead}-0badf00d`), '{"imageLa');
  writeFileSync(join(layout, 'blobs', 'sha256', `.${'a'.repeat(64)}.tmp-${dead}-deadbeef`), 'partial');
  // A live run's temp file (this test's pid) is not touched.
  const live = join(layout, 'blobs', 'sha256', `.${'b'.repeat(64)}.tmp-${process.pid}-12345678`);
  writeFileSync(live, 'in progress');
  const r = await p.strata(['realise', '--locked', '--oci', layout]);
  t.is(r.code, 0, r.stderr);
  t.false(existsSync(join(layout, `.oci-layout.tmp-${dead}-0badf00d`)));
  t.false(existsSync(join(layout, 'blobs', 'sha256', `.${'a'.repeat(64)}.tmp-${dead}-deadbeef`)));
  t.true(existsSync(live));
  rmSync(live);
  assertLayoutSound(t, layout, r.stdout);
  // Partial blobs a killed run left in a complete layout do not survive the next successful run either.
  const partial = join(layout, 'blobs', 'sha256', `.${'c'.repeat(64)}.tmp-${await deadPid()}-cafebabe`);
  writeFileSync(partial, 'half a layer');
  const again = await p.strata(['realise', '--locked', '--oci', layout]);
  t.is(again.code, 0, again.stderr);
  t.false(existsSync(partial));
  // A directory with anything else in it is still refused.
  const other = join(p.dir, 'other');
  mkdirSync(join(other, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(other, 'blobs', 'sha256', 'notes.txt'), 'mine');
  const refused = await p.strata(['realise', '--locked', '--oci', other]);
  t.is(refused.code, 64);
  t.regex(refused.stderr, /is not empty and is not an OCI image layout/);
  t.is(readFileSync(join(other, 'blobs', 'sha256', 'notes.txt'), 'utf8'), 'mine');
});

test('temp files of killed lock runs, old names and new, are removed by the next lock', async (t) => {
  const p = await locked();
  const dead = await deadPid();
  const stale = [`strata.lock.${dead}.tmp`, `.strata.lock.tmp-${dead}-0a0b0c0d`];
  for (const n of stale) writeFileSync(join(p.dir, n), 'partial lock');
  const live = `.strata.lock.tmp-${process.pid}-01020304`;
  writeFileSync(join(p.dir, live), 'in progress');
  const r = await p.strata(['lock']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^unchanged: strata\.lock$/m);
  for (const n of stale) t.false(existsSync(join(p.dir, n)), n);
  t.true(existsSync(join(p.dir, live)));
});
