/**
 * A damaged store heals itself, through the real CLI: a flipped byte in a cached gzip layer, a .deb, an unpacked tree
 * or a root filesystem, and cut-short metadata, each give one warning naming the entry and are made (or fetched)
 * again; what leaves the store is whole (skopeo as the checker); what killed runs left is removed; `strata verify`
 * finds every kind of damage and drops it.
 */
import test from 'ava';
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { project, manifestFor, closeSharedMirror, STRATA, type Project } from './helpers/project.ts';
import { parseLock } from '../lock/lockfile.ts';
import { ownerTag } from '../store/leftovers.ts';

test.after.always(closeSharedMirror);

const PACKAGES = ['busybox-fixture', 'zlib1g', 'libblas3', 'libopenblas0', 'base-files', 'pkg-zstd', 'pkg-gzip', 'pkg-none'].map((n) => `${n} = "*"`).join('\n');

async function realised(): Promise<{ p: Project; digest: string }> {
  const p = await project();
  p.writeManifest(manifestFor(p, PACKAGES));
  const lock = await p.strata(['lock']);
  if (lock.code !== 0) throw new Error(lock.stderr);
  const r = await p.strata(['realise', '--locked']);
  if (r.code !== 0) throw new Error(r.stderr);
  return { p, digest: digestOf(r.stdout) };
}

function digestOf(stdout: string): string {
  return /^image (sha256:[0-9a-f]{64})$/m.exec(stdout)![1]!;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const warnings = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('warning: '));

/** Flips one byte of `file` at `offset` in place, as a stray write would. */
function flip(file: string, offset: number): void {
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, offset);
    b[0]! ^= 0x20;
    writeSync(fd, b, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

/** The records of the layer cache. */
function layerRecords(p: Project): { diffId: string; gzip?: { digest: string } }[] {
  return readdirSync(join(p.cache, 'layers')).map((rec) => JSON.parse(readFileSync(join(p.cache, 'layers', rec), 'utf8')) as { diffId: string; gzip?: { digest: string } });
}

/** The gzip layer blob in the store whose tar holds `needle`. */
function gzipLayerHolding(p: Project, needle: string): { hex: string; path: string } {
  for (const rec of layerRecords(p)) {
    if (!rec.gzip) continue;
    const hex = rec.gzip.digest.slice(7);
    const path = join(p.cache, 'blobs/sha256', hex);
    if (gunzipSync(readFileSync(path)).indexOf(needle) >= 0) return { hex, path };
  }
  throw new Error(`no gzip layer holds ${needle}`);
}

/** Rewrites a blob's verified stamp to match its current stat: bit rot, which changes the bytes and not the stat. */
function forgeStamp(p: Project, hex: string): void {
  const st = statSync(join(p.cache, 'blobs/sha256', hex), { bigint: true });
  writeFileSync(join(p.cache, 'stamps', `${hex}.json`), JSON.stringify(`${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.ino}`));
}

function everyBlobWhole(t: { is: (a: unknown, b: unknown, m?: string) => void }, dir: string): void {
  for (const b of readdirSync(dir)) t.is(sha256(readFileSync(join(dir, b))), b, `blob ${b}`);
}

function lockOf(p: Project) {
  return parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8'));
}

test('a flipped byte in a cached gzip layer is found before the image leaves the store: one warning, the layer is rebuilt, skopeo copies the output', async (t) => {
  const { p } = await realised();
  const gz = await p.strata(['realise', '--locked', '--gzip']);
  t.is(gz.code, 0, gz.stderr);
  const digest = digestOf(gz.stdout);
  const layer = gzipLayerHolding(p, 'hello from pkg-zstd');
  // A write that then puts the mtime back: the ctime in the verified stamp still tells.
  const before = statSync(layer.path);
  flip(layer.path, Math.floor(before.size / 2));
  utimesSync(layer.path, before.atime, before.mtime);
  const damagedHash = sha256(readFileSync(layer.path)).slice(0, 12);
  t.not(damagedHash, layer.hex.slice(0, 12));

  const oci = join(p.dir, 'oci');
  const r = await p.strata(['realise', '--locked', '--gzip', '--oci', oci]);
  t.is(r.code, 0, r.stderr);
  t.is(digestOf(r.stdout), digest);
  t.deepEqual(warnings(r.stderr), [`warning: the cached layer "packages from source pkg-zstd" (sha256:${layer.hex.slice(0, 12)}…) was damaged (its bytes hash to ${damagedHash}…); building it again`]);
  t.regex(r.stdout, /\(1 built, \d+ cached\)/);
  t.is(sha256(readFileSync(layer.path)), layer.hex, 'the store holds the right bytes again');
  everyBlobWhole(t, join(oci, 'blobs/sha256'));
  const ref = lockOf(p).closure.slice(7, 19);
  const copy = spawnSync('skopeo', ['--insecure-policy', 'copy', `oci:${oci}:${ref}`, `dir:${join(p.dir, 'copied')}`], { encoding: 'utf8' });
  t.is(copy.status, 0, copy.stderr);

  const again = await p.strata(['realise', '--locked', '--gzip']);
  t.deepEqual(warnings(again.stderr), []);
  t.regex(again.stdout, /\(0 built, \d+ cached\)/);
});

test('the store keeps no uncompressed layer: --oci makes each again from the unpacked packages; a file damaged with no trace in its stat stops the output (nothing half-written), verify drops it, the next output is whole', async (t) => {
  const { p, digest } = await realised();
  const blobs = () => new Set(readdirSync(join(p.cache, 'blobs/sha256')));
  t.false(layerRecords(p).some((r) => blobs().has(r.diffId.slice(7))), 'no layer tar in the store');
  const pkg = lockOf(p).packages.find((x) => x.name === 'pkg-zstd')!;
  const file = join(p.cache, 'unpacked', pkg.sha256, 'root/usr/share/pkg-zstd/hello.txt');
  const before = statSync(file);
  flip(file, 3);
  utimesSync(file, before.atime, before.mtime);

  const oci = join(p.dir, 'oci');
  const bad = await p.strata(['realise', '--locked', '--oci', oci]);
  t.is(bad.code, 1, bad.stderr);
  t.regex(bad.stderr, /error: the layer "packages from source pkg-zstd" could not be made again from the store: .*usr\/share\/pkg-zstd\/hello\.txt/);
  t.regex(bad.stderr, /strata verify/);
  t.false(existsSync(join(oci, 'index.json')), 'no image was written');
  if (existsSync(join(oci, 'blobs/sha256'))) {
    t.deepEqual(readdirSync(join(oci, 'blobs/sha256')).filter((n) => n.startsWith('.')), [], 'no temp file left');
    everyBlobWhole(t, join(oci, 'blobs/sha256'));
  }

  const v = await p.strata(['verify']);
  t.is(v.code, 1, v.stdout + v.stderr);
  t.true(v.stdout.split('\n').some((l) => l.startsWith('damaged: unpacked pkg-zstd (') && l.endsWith('; dropped')), v.stdout);
  const out = await p.strata(['realise', '--locked', '--oci', oci]);
  t.is(out.code, 0, out.stderr);
  t.is(digestOf(out.stdout), digest);
  everyBlobWhole(t, join(oci, 'blobs/sha256'));
  const ref = lockOf(p).closure.slice(7, 19);
  const copy = spawnSync('skopeo', ['--insecure-policy', 'copy', `oci:${oci}:${ref}`, `dir:${join(p.dir, 'copied')}`], { encoding: 'utf8' });
  t.is(copy.status, 0, copy.stderr);
  t.false(layerRecords(p).some((r) => blobs().has(r.diffId.slice(7))), 'still no layer tar in the store');
  const clean = await p.strata(['verify']);
  t.is(clean.code, 0, clean.stdout + clean.stderr);
});

test('a damaged cached .deb (xz or uncompressed) is re-hashed before it is unpacked and fetched again', async (t) => {
  const { p, digest } = await realised();
  const lock = lockOf(p);
  for (const name of ['zlib1g', 'pkg-none']) {
    const pkg = lock.packages.find((x) => x.name === name)!;
    const deb = join(p.cache, 'blobs/sha256', pkg.sha256);
    flip(deb, pkg.size - 300);
    if (name === 'pkg-none') forgeStamp(p, pkg.sha256); // and once as bit rot that leaves the stat alone
    // The unpacked tree and the layers are gone (as after a first realise that was interrupted), so the .deb is needed.
    execFileSync('rm', ['-rf', join(p.cache, 'unpacked', pkg.sha256), join(p.cache, 'layers')]);
    const r = await p.strata(['realise', '--locked']);
    t.is(r.code, 0, r.stderr);
    t.is(digestOf(r.stdout), digest);
    const w = warnings(r.stderr);
    t.is(w.length, 1, r.stderr);
    t.regex(w[0]!, new RegExp(`^warning: the cached ${name} ${pkg.version.replace(/[.+]/g, '\\$&')} was damaged \\(its bytes hash to [0-9a-f]{12}…\\); fetching it again$`));
    t.is(sha256(readFileSync(deb)), pkg.sha256);
  }
  everyBlobWhole(t, join(p.cache, 'blobs/sha256'));
});

test('a flipped byte in an unpacked tree is found when a layer is built from it: unpacked again, the image is the same', async (t) => {
  const { p, digest } = await realised();
  const pkg = lockOf(p).packages.find((x) => x.name === 'pkg-zstd')!;
  const file = join(p.cache, 'unpacked', pkg.sha256, 'root/usr/share/pkg-zstd/hello.txt');
  flip(file, 0);
  execFileSync('rm', ['-rf', join(p.cache, 'layers')]); // the layers are built again (as when a neighbour in the group changes)
  const r = await p.strata(['realise', '--locked']);
  t.is(r.code, 0, r.stderr);
  t.is(digestOf(r.stdout), digest);
  const w = warnings(r.stderr);
  t.is(w.length, 1, r.stderr);
  t.regex(w[0]!, /^warning: the unpacked pkg-zstd 1\.0-1 in the store was damaged \(usr\/share\/pkg-zstd\/hello\.txt: its content hashes to [0-9a-f]{12}…, [0-9a-f]{12}… recorded\); unpacking it again$/);
  t.is(readFileSync(file, 'utf8'), 'hello from pkg-zstd\n');
  // A file cut short and a file removed: the same.
  writeFileSync(file, 'hel');
  execFileSync('rm', ['-rf', join(p.cache, 'layers')]);
  const short = await p.strata(['realise', '--locked']);
  t.is(digestOf(short.stdout), digest);
  t.regex(warnings(short.stderr).join('\n'), /^warning: the unpacked pkg-zstd 1\.0-1 in the store was damaged \(usr\/share\/pkg-zstd\/hello\.txt: 3 bytes, 20 recorded\); unpacking it again$/);
  execFileSync('rm', ['-rf', file, join(p.cache, 'layers')]);
  const gone = await p.strata(['realise', '--locked']);
  t.is(digestOf(gone.stdout), digest);
  t.regex(warnings(gone.stderr).join('\n'), /^warning: the unpacked pkg-zstd 1\.0-1 in the store was damaged \(usr\/share\/pkg-zstd\/hello\.txt: the file is gone\); unpacking it again$/);
});

test('cut-short metadata heals: a layer record, an unpacked meta.json and a run pointer each give one warning and are made again', async (t) => {
  const { p, digest } = await realised();
  t.is((await p.strata(['run', '--backend', 'sandbox', '--locked', '--', '/bin/sh', '-c', 'true'])).code, 0);
  const pkg = lockOf(p).packages.find((x) => x.name === 'base-files')!;
  const meta = join(p.cache, 'unpacked', pkg.sha256, 'meta.json');
  writeFileSync(meta, readFileSync(meta).subarray(0, 100));
  const rec = join(p.cache, 'layers', readdirSync(join(p.cache, 'layers'))[0]!);
  writeFileSync(rec, readFileSync(rec).subarray(0, 30));
  const r = await p.strata(['realise', '--locked']);
  t.is(r.code, 0, r.stderr);
  t.is(digestOf(r.stdout), digest);
  const w = warnings(r.stderr);
  t.is(w.length, 2, r.stderr);
  t.true(w.includes(`warning: the unpacked base-files ${pkg.version} in the store was damaged (meta.json cut short or not JSON); unpacking it again`), r.stderr);
  t.regex(w.find((l) => l.includes('record'))!, /^warning: the cached record of layer ".+" was damaged \(cut short or not JSON\); building the layer again$/);
  const again = await p.strata(['realise', '--locked']);
  t.deepEqual(warnings(again.stderr), []);
  t.regex(again.stdout, /\(0 built, \d+ cached\)/);

  const pointer = join(p.cache, 'run', readdirSync(join(p.cache, 'run'))[0]!);
  writeFileSync(pointer, '{"manifestDigest": "sha');
  const run = await p.strata(['run', '--backend', 'sandbox', '--locked', '--', '/bin/sh', '-c', 'echo ok']);
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout, 'ok\n');
  t.deepEqual(warnings(run.stderr), ['warning: the run pointer of this lock in the store was damaged (cut short or not JSON); finding the image again']);
  const warm = await p.strata(['run', '--backend', 'sandbox', '--locked', '--', '/bin/sh', '-c', 'echo ok']);
  t.is(warm.stderr, '');
});

/**
 * Runs the CLI and SIGKILLs it as soon as a temp appears in the store's namespace `ns`; returns the temps left there.
 * Should the CLI finish its entry between the sighting and the kill, `reset` undoes its work and it is tried again.
 */
async function killWhileWriting(p: Project, ns: string, args: string[], reset: () => void): Promise<string[]> {
  const dir = join(p.cache, ns);
  const temps = () => (existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith('.tmp-')) : []);
  for (let attempt = 0; attempt < 5; attempt++) {
    reset();
    const child = spawn(STRATA, args, { cwd: p.dir, env: { ...process.env, CI: '1', STRATA_CACHE_DIR: p.cache }, stdio: 'ignore' });
    const closed = new Promise((res) => child.on('close', res));
    const started = Date.now();
    // A busy loop on purpose: the window is a few milliseconds. Nothing here needs the mirror (the .debs are cached).
    while (temps().length === 0 && child.exitCode === null && Date.now() - started < 60_000) {
      // spin
    }
    child.kill('SIGKILL');
    await closed;
    const left = temps();
    if (left.length > 0) return left;
  }
  throw new Error(`could not catch ${args.join(' ')} writing into ${ns}`);
}

test.serial('what killed runs left in the store is removed by the next run; temps of live writers and young foreign ones are kept', async (t) => {
  const { p, digest } = await realised();
  const lock = lockOf(p);
  const unpackTmps = await killWhileWriting(p, 'unpacked', ['realise', '--locked'], () => execFileSync('rm', ['-rf', join(p.cache, 'unpacked')]));
  t.is((await p.strata(['realise', '--locked'])).code, 0);
  const rootfsDir = join(p.cache, 'rootfs');
  const rootTmps = await killWhileWriting(p, 'rootfs', ['run', '--backend', 'sandbox', '--locked', '--', '/bin/sh', '-c', 'true'], () => {
    if (existsSync(rootfsDir)) for (const n of readdirSync(rootfsDir)) if (/^[0-9a-f]{64}$/.test(n)) execFileSync('rm', ['-rf', join(rootfsDir, n)]);
  });

  // Temps by name: a live writer (this test process), a dead one of this boot and PID namespace, another machine's
  // (young, and a day old), and a name from before owner tags (a day old).
  const mine = ownerTag();
  const dead = spawnSync('true').pid!;
  const old = new Date(Date.now() - 25 * 3600 * 1000);
  const plant = (ns: string, name: string, aged = false) => {
    const d = join(p.cache, ns, name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'f'), 'x');
    if (aged) utimesSync(d, old, old);
    return name;
  };
  const live = plant('unpacked', `.tmp-${'a'.repeat(40)}-${process.pid}-${mine}-00000001`);
  const deadOne = plant('layers', `.tmp-${'b'.repeat(40)}-${dead}-${mine}-00000002`);
  const foreignYoung = plant('unpacked', `.tmp-${'c'.repeat(40)}-${dead}-0badf00d-00000003`);
  const foreignOld = plant('rootfs', `.tmp-${'d'.repeat(40)}-${dead}-0badf00d-00000004`, true);
  const legacyOld = plant('unpacked', `.tmp-${'e'.repeat(40)}-${dead}-00000005`, true);
  const part = join(p.cache, 'tmp', `${'f'.repeat(64)}.${dead}.${mine}.00000006.part`);
  writeFileSync(part, 'partial');

  const r = await p.strata(['run', '--backend', 'sandbox', '--locked', '--', '/bin/sh', '-c', 'echo ok']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'ok\n');
  const left = (ns: string) => readdirSync(join(p.cache, ns)).filter((n) => n.startsWith('.tmp-'));
  t.deepEqual(left('unpacked').sort(), [live, foreignYoung].sort());
  t.deepEqual(left('rootfs'), []);
  t.deepEqual(left('layers'), []);
  t.false(existsSync(part));
  t.false([deadOne, foreignOld, legacyOld, ...rootTmps, ...unpackTmps].some((n) => existsSync(join(p.cache, 'unpacked', n)) || existsSync(join(p.cache, 'rootfs', n))));
  const again = await p.strata(['realise', '--locked']);
  t.is(digestOf(again.stdout), digest);
  t.true(lock.packages.every((x) => existsSync(join(p.cache, 'unpacked', x.sha256, 'meta.json'))));
});

test('strata verify re-checks the whole store: a clean store passes; every kind of damage is named, dropped (or only reported with --dry-run), and made again on next use', async (t) => {
  const { p, digest } = await realised();
  t.is((await p.strata(['run', '--backend', 'sandbox', '--locked', '--', '/bin/sh', '-c', 'true'])).code, 0);
  const clean = await p.strata(['verify']);
  t.is(clean.code, 0, clean.stderr);
  t.regex(clean.stdout, /^store .+\n {2}blobs +\d+ re-hashed \(.+\)\n {2}layers +11 records checked against their blobs\n {2}unpacked +9 packages, \d+ files re-hashed\n {2}rootfs +0 compared with their layers, 1 through the unpacked files they link\n {2}shared +\d+ inodes the root filesystems share \(files strata writes, symlinks\) re-hashed\n {2}records +\d+ other cache records read\n0 damaged entries/);

  const lock = lockOf(p);
  const deb = lock.packages.find((x) => x.name === 'libblas3')!;
  flip(join(p.cache, 'blobs/sha256', deb.sha256), 200);
  forgeStamp(p, deb.sha256); // bit rot: verify re-hashes whatever the stamps say
  const gz = lock.packages.find((x) => x.name === 'pkg-gzip')!;
  flip(join(p.cache, 'unpacked', gz.sha256, 'root/usr/share/pkg-gzip/hello.txt'), 2);
  const rootfsDir = join(p.cache, 'rootfs', readdirSync(join(p.cache, 'rootfs')).find((n) => /^[0-9a-f]{64}$/.test(n))!);
  flip(join(rootfsDir, 'usr/share/pkg-none/hello.txt'), 2);
  const rec = readdirSync(join(p.cache, 'layers'))[0]!;
  writeFileSync(join(p.cache, 'layers', rec), '{"diffId": "sha256:12');

  const dry = await p.strata(['verify', '--dry-run']);
  t.is(dry.code, 1);
  const damaged = (out: string) => out.split('\n').filter((l) => l.startsWith('damaged: '));
  // The root filesystem is hard links to the unpacked packages: a byte flipped in one is flipped in the other.
  t.deepEqual(damaged(dry.stdout).map((l) => l.replace(/[0-9a-f]{12}…/g, 'X…')), [
    `damaged: blob sha256:${deb.sha256}: its bytes hash to X…`,
    `damaged: layer record ${rec.slice(0, -5)}: cut short or not JSON`,
    `damaged: unpacked pkg-none (X…): usr/share/pkg-none/hello.txt has other content than recorded`,
    `damaged: unpacked pkg-gzip (X…): usr/share/pkg-gzip/hello.txt has other content than recorded`,
    `damaged: root filesystem X…: /usr/share/pkg-gzip/hello.txt is a file of the damaged unpacked pkg-gzip; /usr/share/pkg-none/hello.txt is a file of the damaged unpacked pkg-none`,
  ]);
  t.regex(dry.stderr, /^error: the store has 5 damaged entries \(--dry-run: left in place\)$/m);
  t.true(existsSync(join(p.cache, 'blobs/sha256', deb.sha256)) && existsSync(rootfsDir));

  const fix = await p.strata(['verify']);
  t.is(fix.code, 1);
  t.is(damaged(fix.stdout).length, 5);
  t.true(damaged(fix.stdout).every((l) => l.endsWith('; dropped')));
  t.regex(fix.stderr, /^error: the store had 5 damaged entries, now dropped: each is fetched or made again when next needed$/m);
  t.false(existsSync(join(p.cache, 'blobs/sha256', deb.sha256)));
  t.false(existsSync(rootfsDir));
  const after = await p.strata(['verify']);
  t.is(after.code, 0, after.stdout);

  const r = await p.strata(['realise', '--locked']);
  t.is(r.code, 0, r.stderr);
  t.is(digestOf(r.stdout), digest);
  t.regex(r.stderr, /fetching 1 packages/);
  const run = await p.strata(['run', '--backend', 'sandbox', '--locked', '--', '/bin/sh', '-c', 'cat /usr/share/pkg-none/hello.txt /usr/share/pkg-gzip/hello.txt']);
  t.is(run.stdout, 'hello from pkg-none\nhello from pkg-gzip\n', run.stderr);
  const last = await p.strata(['verify']);
  t.is(last.code, 0, last.stdout);
  everyBlobWhole(t, join(p.cache, 'blobs/sha256'));
});

test('a damaged cached Packages index is found when the lock reads it again, fetched again, and the lock is the same', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, PACKAGES));
  t.is((await p.strata(['lock'])).code, 0);
  const lockBytes = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
  // The index the stable channel's signed Release names for main (the only .xz blobs in the store are indexes).
  const xz = readdirSync(join(p.cache, 'blobs/sha256')).filter((b) => readFileSync(join(p.cache, 'blobs/sha256', b)).subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])));
  t.true(xz.length >= 1);
  const victim = xz[0]!;
  flip(join(p.cache, 'blobs/sha256', victim), 40);
  execFileSync('rm', ['-rf', join(p.cache, 'indexes')]); // the parsed form is gone too, so the blob is read again
  const r = await p.strata(['lock']);
  t.is(r.code, 0, r.stderr);
  const w = warnings(r.stderr);
  t.is(w.length, 1, r.stderr);
  t.regex(w[0]!, /^warning: the cached (stable|current) (stable|current)\/(main|contrib)\/binary-amd64\/Packages\.xz was damaged \(its bytes hash to [0-9a-f]{12}…\); fetching it again$/);
  t.is(sha256(readFileSync(join(p.cache, 'blobs/sha256', victim))), victim);
  t.is(readFileSync(join(p.dir, 'strata.lock'), 'utf8'), lockBytes);
});
