/**
 * Reading a lock verifies it (lock/verify.ts), and `lock --check --online` compares it with the channels' signed
 * indexes (lock/checkOnline.ts). End to end: the real CLI against real signed archives served on loopback; every
 * tampered lock is refused by `lock --check`, `realise` and `run` alike, before anything is built or entered.
 */
import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { project, manifestFor, closeSharedMirror, runCli, type Project } from './helpers/project.ts';
import { buildMirror, serveMirror, type FixturePackage, type FixtureSuite } from './helpers/mirror.ts';
import { parseLock, serializeLock } from '../lock/lockfile.ts';
import { rehashLock } from '../lock/verify.ts';
import { StrataError } from '../errors.ts';
import { lockFromSolution } from '../lock/fromSolution.ts';
import type { Candidate, LockedPackage, Lockfile, Manifest } from '../model.ts';

test.after.always(closeSharedMirror);

// zlib1g needs libc6, as jq needs libjq1: the root and the dependency of the tampering.
const PACKAGES = 'busybox-fixture = "*"\nzlib1g = "*"';
const ENV = '\n[env]\nGREETING = "hello from strata"\n';

async function lockedProject(): Promise<{ p: Project; text: string; lock: Lockfile }> {
  const p = await project();
  p.writeManifest(manifestFor(p, PACKAGES, ENV));
  const r = await p.strata(['lock']);
  if (r.code !== 0) throw new Error(r.stderr);
  const text = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
  return { p, text, lock: parseLock(text) };
}

const pkg = (lock: Lockfile, name: string): LockedPackage => lock.packages.find((x) => x.name === name)!;
const edit = (lock: Lockfile, f: (x: LockedPackage) => LockedPackage | undefined): Lockfile => ({
  ...lock,
  packages: lock.packages.map(f).filter((x): x is LockedPackage => x !== undefined),
});

/** Each tamper: the lock text it writes and what the refusal must say. */
function tampers(text: string, lock: Lockfile): { what: string; text: string; message: RegExp }[] {
  const libc6 = pkg(lock, 'libc6');
  const closureMismatch = (name: string) => new RegExp(`strata\\.lock: package ${name}: recorded closure sha256:[0-9a-f]{12}… but its sha256 and dependencies give sha256:[0-9a-f]{12}…`);
  const zlibBlock = /\n\[\[package\]\]\nname = "zlib1g"\n[\s\S]*?closure = "[^"]+"\n/.exec(text)![0];
  return [
    {
      what: "zlib1g's sha256, size and filename swapped for libc6's",
      text: serializeLock(edit(lock, (x) => (x.name === 'zlib1g' ? { ...x, sha256: libc6.sha256, size: libc6.size, filename: libc6.filename } : x))),
      message: closureMismatch('zlib1g'),
    },
    {
      what: 'libc6 and its edges deleted',
      text: serializeLock(edit(lock, (x) => (x.name === 'libc6' ? undefined : { ...x, depends: x.depends.filter((d) => d !== 'libc6') }))),
      message: closureMismatch('zlib1g'),
    },
    {
      what: 'libc6 deleted, its edges kept',
      text: serializeLock(edit(lock, (x) => (x.name === 'libc6' ? undefined : x))),
      message: /package zlib1g depends on libc6, which the lock does not contain/,
    },
    {
      what: 'every package deleted',
      text: serializeLock({ ...lock, packages: [] }),
      message: /strata\.lock: it holds no packages/,
    },
    {
      what: 'every root deleted, closures recomputed',
      text: serializeLock(rehashLock(edit(lock, (x) => (x.root ? undefined : x)))),
      message: /strata\.lock: no package is marked root = true/,
    },
    {
      what: 'zlib1g no longer marked root (root is not hashed)',
      text: serializeLock(edit(lock, (x) => (x.name === 'zlib1g' ? { ...x, root: false } : x))),
      message: /strata\.lock records the sha256 of strata\.toml, but package zlib1g: the manifest asks for it, but the lock does not mark it root = true/,
    },
    {
      what: 'libc6 marked root',
      text: serializeLock(edit(lock, (x) => (x.name === 'libc6' ? { ...x, root: true } : x))),
      message: /package libc6: marked root = true, but the manifest does not ask for it/,
    },
    {
      what: 'an environment variable added to [image.env] (not hashed)',
      text: serializeLock({ ...lock, image: { ...lock.image, env: { ...lock.image.env, LD_PRELOAD: '/tmp/evil.so' } } }),
      message: /the lock's \[image\] settings are not the ones the manifest gives/,
    },
    {
      what: 'a package name with ../',
      text: serializeLock(edit(lock, (x) => (x.name === 'busybox-fixture' ? { ...x, name: '../../../tmp/busybox-fixture' } : x))),
      message: /package "\.\.\/\.\.\/\.\.\/tmp\/busybox-fixture": not a valid Debian package name/,
    },
    {
      what: 'a filename with ..',
      text: serializeLock(edit(lock, (x) => (x.name === 'zlib1g' ? { ...x, filename: `pool/../../${x.filename}` } : x))),
      message: /package zlib1g: filename "pool\/\.\.\/\.\.\/pool\/[^"]+" has a `\.\.` segment/,
    },
    {
      what: 'a repeated package block',
      text: text + zlibBlock,
      message: /package zlib1g is listed twice/,
    },
    {
      what: 'an edge naming an unlocked package',
      text: serializeLock(edit(lock, (x) => (x.name === 'busybox-fixture' ? { ...x, depends: ['libnothere'] } : x))),
      message: /package busybox-fixture depends on libnothere, which the lock does not contain/,
    },
  ];
}

test('an untouched lock passes lock --check, realise and run', async (t) => {
  const { p } = await lockedProject();
  const check = await p.strata(['lock', '--check']);
  t.is(check.code, 0, check.stderr);
  t.regex(check.stdout, /strata\.lock is up to date \(4 packages\)/);
  const oci = join(p.dir, 'oci');
  const real = await p.strata(['realise', '--locked', '--oci', oci]);
  t.is(real.code, 0, real.stderr);
  t.true(existsSync(join(oci, 'index.json')));
  const run = await p.strata(['run', '--locked', '--backend', 'sandbox', '--', 'sh', '-c', 'echo "$GREETING"; cat /etc/debian_version; ls /lib/x86_64-linux-gnu']);
  t.is(run.code, 0, run.stderr);
  t.regex(run.stdout, /^hello from strata\n12\.4\n/);
  t.regex(run.stdout, /libz\.so\.1/);
  t.regex(run.stdout, /libc\.so\.6/);
});

test('every tamper of the issue is refused by lock --check, realise and run with exit 3, naming the package', async (t) => {
  const { p, text, lock } = await lockedProject();
  const lockPath = join(p.dir, 'strata.lock');
  for (const tamper of tampers(text, lock)) {
    t.not(tamper.text, text, tamper.what);
    writeFileSync(lockPath, tamper.text);
    const oci = join(p.dir, 'oci');
    for (const args of [['lock', '--check'], ['realise', '--oci', oci], ['run', '--backend', 'sandbox', '--', 'cat', '/etc/debian_version']]) {
      const r = await p.strata(args);
      const label = `${tamper.what}: strata ${args[0]}`;
      t.is(r.code, 3, `${label}: ${r.stderr}`);
      t.regex(r.stderr, tamper.message, label);
      t.regex(r.stderr, /the lock was edited or damaged\nhint: run `strata lock` to re-create it from strata\.toml/, label);
      t.notRegex(r.stderr, /internal error|at .*\.ts:\d+/, label);
      t.is(r.stdout, '', label);
    }
    t.false(existsSync(oci), tamper.what);
    t.is(readFileSync(lockPath, 'utf8'), tamper.text, `${tamper.what}: nothing rewrote the lock`);
  }
  // The hint is honest: `strata lock` writes a good lock again, and it is the original.
  const relock = await p.strata(['lock']);
  t.is(relock.code, 0, relock.stderr);
  t.is(readFileSync(lockPath, 'utf8'), text);
  t.is((await p.strata(['lock', '--check'])).code, 0);
});

// ---- --online: a small archive of its own, rebuilt in place (same key, same URL) to move the channel on.

const app = (version: string, note = ''): FixturePackage => ({ name: 'app', version, depends: 'libapp1', files: [{ path: 'usr/bin/app', content: `app ${version}${note}\n` }] });
const libapp1 = (version: string): FixturePackage => ({ name: 'libapp1', version, section: 'libs', files: [{ path: 'usr/lib/libapp.so.1', content: `libapp ${version}\n` }] });
// `tool` is virtual: the manifest asks for it, the lock holds its provider tool-impl as the root.
const toolImpl: FixturePackage = { name: 'tool-impl', version: '2.0-1', provides: 'tool' };
const suite = (pkgs: FixturePackage[], date: string): FixtureSuite[] => [{ suite: 'stable', codename: 'verify-stable', date, components: { main: [...pkgs, toolImpl] } }];

test('lock --check --online: passes on a fresh lock, names the packages once the channel no longer offers them', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'strata-verify-mirror-'));
  const mirror = await buildMirror(root, suite([app('1.0-1'), libapp1('1.0-1')], 'Sat, 01 Jun 2024 12:00:00 UTC'));
  const own = await serveMirror(root);
  try {
    const dir = mkdtempSync(join(tmpdir(), 'strata-project-'));
    writeFileSync(
      join(dir, 'strata.toml'),
      `[project]\nname = "online"\narch = "amd64"\n\n[channels.stable]\nurl = "${own.url}"\nsuite = "stable"\ncomponents = ["main"]\nsigned-by = "${mirror.keyring}"\n\n[packages]\napp = "*"\nlibapp1 = "*"\ntool = "*"\n`,
    );
    const p = { strata: (args: string[]) => runCli(args, { cwd: dir, env: { STRATA_CACHE_DIR: join(dir, '.cache') } }) };
    t.is((await p.strata(['lock'])).code, 0);
    const lockPath = join(dir, 'strata.lock');
    const lockText = readFileSync(lockPath, 'utf8');
    t.deepEqual(parseLock(lockText).packages.filter((x) => x.root).map((x) => x.name), ['app', 'libapp1', 'tool-impl']);

    const usage = await p.strata(['lock', '--online']);
    t.is(usage.code, 64);
    t.regex(usage.stderr, /--online goes with --check/);

    const before = own.requests.length;
    const fresh = await p.strata(['lock', '--check', '--online']);
    t.is(fresh.code, 0, fresh.stderr);
    t.regex(fresh.stdout, /strata\.lock is up to date \(3 packages\)\nonline: all 3 locked packages are still offered by the channels' signed indexes\n {2}stable +3 {2}verify-stable: Release unchanged since the lock\n/);
    t.true(own.requests.slice(before).includes('/dists/stable/InRelease'), 'the Release was fetched now, not taken from the cache');

    // A root deleted with every closure recomputed is consistent, and the offline check cannot tell it from a request
    // met through a provider (tool); the indexes' Provides can.
    writeFileSync(lockPath, serializeLock(rehashLock({ ...parseLock(lockText), packages: parseLock(lockText).packages.filter((x) => x.name !== 'app') })));
    t.is((await p.strata(['lock', '--check'])).code, 0);
    const deleted = await p.strata(['lock', '--check', '--online']);
    t.is(deleted.code, 3, deleted.stderr);
    t.regex(deleted.stderr, /error: strata\.lock no longer matches the channels' signed indexes: 1 requested package is not among the lock's roots\n {2}app \(asked for by strata\.toml\): no locked root is or provides it\n/);
    t.notRegex(deleted.stderr, /tool/);
    t.regex(deleted.stderr, /hint: the lock was edited; run `strata lock` to re-create it/);
    writeFileSync(lockPath, lockText);

    // A forged InRelease is refused: --online verifies the signature as `strata lock` does.
    const inRelease = readFileSync(join(root, 'dists/verify-stable/InRelease'), 'utf8');
    own.tamper('dists/stable/InRelease', Buffer.from(inRelease.replace('Date: Sat, 01 Jun 2024', 'Date: Sun, 02 Jun 2024')));
    const forged = await p.strata(['lock', '--check', '--online']);
    t.is(forged.code, 1, forged.stderr);
    t.regex(forged.stderr, /error: channel "stable": the InRelease of suite "stable" does not match its signature/);
    own.tamper('dists/stable/InRelease', null);

    // The channel moves on without touching what is locked: still a pass, and it says the Release changed.
    await buildMirror(root, suite([app('1.0-1'), libapp1('1.0-1'), { name: 'extra', version: '1.0-1' }], 'Sun, 02 Jun 2024 12:00:00 UTC'));
    const moved = await p.strata(['lock', '--check', '--online']);
    t.is(moved.code, 0, moved.stderr);
    t.regex(moved.stdout, /online: all 3 locked packages are still offered/);
    t.regex(moved.stdout, /verify-stable: Release changed since the lock \(Sat, 01 Jun 2024 12:00:00 UTC -> Sun, 02 Jun 2024 12:00:00 UTC\)/);

    // libapp1 1.0-1 replaced by 1.1-1, and app 1.0-1 rebuilt with other bytes under the same version.
    await buildMirror(root, suite([app('1.0-1', ' rebuilt'), libapp1('1.1-1')], 'Mon, 03 Jun 2024 12:00:00 UTC'));
    const stale = await p.strata(['lock', '--check', '--online']);
    t.is(stale.code, 3, stale.stderr);
    t.regex(stale.stderr, /error: strata\.lock no longer matches the channels' signed indexes: 2 of 3 locked packages are not offered as locked\n/);
    t.regex(stale.stderr, /\n {2}app 1\.0-1 \(stable\): the index lists 1\.0-1 as another file: sha256 [0-9a-f]{12}… \(locked [0-9a-f]{12}…\), size \d+ \(locked \d+\)\n/);
    t.regex(stale.stderr, /\n {2}libapp1 1\.0-1 \(stable\): 1\.0-1 is gone; the index has 1\.1-1\n/);
    t.notRegex(stale.stderr, /tool-impl/);
    t.regex(stale.stderr, /hint: run `strata lock` to lock against what the channels offer now/);
    // Offline, the lock is still consistent and up to date with the manifest: only --online can tell.
    const offline = await p.strata(['lock', '--check']);
    t.is(offline.code, 0, offline.stderr);
    t.is(readFileSync(lockPath, 'utf8'), lockText);
    // Locking again takes what is offered now, and the online check passes.
    t.is((await p.strata(['lock'])).code, 0);
    const relocked = await p.strata(['lock', '--check', '--online']);
    t.is(relocked.code, 0, relocked.stderr);
  } finally {
    await own.close();
  }
});

test('lock --check --online also checks the packages a recipe builds with, naming the recipe', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'strata-verify-mirror-'));
  const buildtool = (version: string): FixturePackage => ({ name: 'buildtool', version, files: [{ path: 'usr/bin/buildtool', content: `buildtool ${version}\n` }] });
  const mirror = await buildMirror(root, suite([app('1.0-1'), libapp1('1.0-1'), buildtool('1.0-1')], 'Sat, 01 Jun 2024 12:00:00 UTC'));
  const own = await serveMirror(root);
  try {
    const dir = mkdtempSync(join(tmpdir(), 'strata-project-'));
    const recipe = `[recipes.demo]\nversion = "1.0"\nsource = { url = "mirror://stable/demo.tar.gz", sha256 = "${'a'.repeat(64)}" }\nbuild-depends = ["buildtool"]\nbuild = ["true"]\n`;
    writeFileSync(join(dir, 'strata.toml'), `[project]\nname = "online"\narch = "amd64"\n\n[channels.stable]\nurl = "${own.url}"\nsuite = "stable"\ncomponents = ["main"]\nsigned-by = "${mirror.keyring}"\n\n[packages]\napp = "*"\n\n${recipe}`);
    const p = { strata: (args: string[]) => runCli(args, { cwd: dir, env: { STRATA_CACHE_DIR: join(dir, '.cache') } }) };
    const locked = await p.strata(['lock']);
    t.is(locked.code, 0, locked.stderr);
    const fresh = await p.strata(['lock', '--check', '--online']);
    t.is(fresh.code, 0, fresh.stderr);
    t.regex(fresh.stdout, /online: all \d+ locked packages are still offered/);
    // buildtool leaves the archive: the image is still realisable, the recipe can no longer be built.
    await buildMirror(root, suite([app('1.0-1'), libapp1('1.0-1')], 'Sun, 02 Jun 2024 12:00:00 UTC'));
    const gone = await p.strata(['lock', '--check', '--online']);
    t.is(gone.code, 3, gone.stderr);
    t.regex(gone.stderr, /\n {2}buildtool 1\.0-1 \(stable; to build recipe demo\): not in the index any more\n/);
  } finally {
    await own.close();
  }
});

// ---- The verifier on its own, on the golden lock (tests/golden/strata.lock): app -> zlib1g -> libc6 <-> libgcc-s1.

const golden = readFileSync(join(import.meta.dirname, 'golden/strata.lock'), 'utf8');
const refused = (t: import('ava').ExecutionContext, text: string) => t.throws(() => parseLock(text), { instanceOf: StrataError });

test('the first node named is the lowest that differs, not the packages above it', (t) => {
  const lock = parseLock(golden);
  const bump = (name: string) => serializeLock(edit(lock, (x) => (x.name === name ? { ...x, sha256: '0'.repeat(64) } : x)));
  // zlib1g's change reaches app, which sorts first: zlib1g is named.
  t.regex(refused(t, bump('zlib1g')).message, /^strata\.lock: package zlib1g: recorded closure sha256:[0-9a-f]{12}… but its sha256 and dependencies give sha256:[0-9a-f]{12}… \(the closures of 1 more package differ too\): the lock was edited or damaged$/);
  // A cycle is hashed as one unit: its first member is named, with the cycle.
  t.regex(refused(t, bump('libgcc-s1')).message, /^strata\.lock: package libc6: recorded closure .* but its sha256, with its dependency cycle \(libgcc-s1\), and dependencies give .* \(the closures of 3 more packages differ too\)/);
  // Only the environment's closure edited.
  t.regex(refused(t, golden.replace(/^closure = "sha256:[0-9a-f]{64}"$/m, `closure = "sha256:${'1'.repeat(64)}"`)).message, /recorded environment closure sha256:111111111111… but its packages and host-provided requirements give/);
  // A host-provided requirement is part of the environment's closure.
  t.regex(refused(t, golden.replace('requires = ">= 550"', 'requires = ">= 450"')).message, /recorded environment closure/);
  // Recomputing every closure makes an edited lock consistent again: the closures vouch for consistency, not origin.
  const edited = edit(lock, (x) => (x.name === 'app' ? { ...x, depends: ['libc6'] } : x));
  t.throws(() => parseLock(serializeLock(edited)), { message: /package app: recorded closure/ });
  t.notThrows(() => parseLock(serializeLock(rehashLock(edited))));
});

test('malformed blocks are one E_LOCK message each, never a crash', (t) => {
  const cases: [string, string, RegExp][] = [
    ['name = "zlib1g"', 'name = "../zlib1g"', /package "\.\.\/zlib1g": not a valid Debian package name/],
    ['name = "zlib1g"', 'name = "Zlib"', /package "Zlib": not a valid Debian package name/],
    ['version = "1.0-1"\narch = "amd64"\nchannel = "stable"\nsource = "zlib1g"', 'version = "1.0 -1"\narch = "amd64"\nchannel = "stable"\nsource = "zlib1g"', /package zlib1g: version "1\.0 -1" is not a valid Debian version/],
    ['filename = "pool/main/z/zlib1g', 'filename = "/pool/main/z/zlib1g', /package zlib1g: filename "\/pool\/main\/z\/zlib1g[^"]*" is absolute/],
    ['filename = "pool/main/z/zlib1g', 'filename = "pool/main/%2e%2e/zlib1g', /has an encoded `\.\.` segment/],
    ['arch = "amd64"\nchannel = "stable"\nsource = "zlib1g"', 'arch = "arm64"\nchannel = "stable"\nsource = "zlib1g"', /package zlib1g: architecture "arm64" is neither the project's \(amd64\) nor "all"/],
    ['source = "zlib1g"', 'source = "zlib/../x"', /package zlib1g: source "zlib\/\.\.\/x" is not a valid Debian source package name/],
    ['channel = "stable"\nsource = "zlib1g"', 'channel = "elsewhere"\nsource = "zlib1g"', /package zlib1g: names channel "elsewhere", which the lock does not contain/],
    ['size = 1234\nsha256 = "7a6c', 'size = -1\nsha256 = "7a6c', /package zlib1g: size -1 is not a number of bytes/],
    ['depends = [\n  "libc6",\n]\nclosure = "sha256:', 'depends = [\n  "libc6",\n  "libc6",\n]\nclosure = "sha256:', /package libgcc-s1 lists the dependency libc6 twice/],
    ['[[package]]\nname = "zlib1g"', '[[package]]\nname = "zlib1g"\nroot = "yes"', /is malformed: package\[\d\] \("zlib1g"\)\.root must be true or false/],
    ['OMP_NUM_THREADS = "4"', 'OMP_NUM_THREADS = 4', /is malformed: \[image\.env\] is missing or has the wrong type/],
  ];
  for (const [from, to, message] of cases) {
    t.true(golden.includes(from), from);
    const e = refused(t, golden.replace(from, to));
    t.is(e.code, 'E_LOCK', to);
    t.regex(e.message, message, to);
  }
});

test('an index entry no lock may hold is refused when the lock is made: what strata writes, it reads back', (t) => {
  const cand = (name: string, filename: string): Candidate => ({
    name, version: '1.0-1', arch: 'amd64', channel: 'stable', channelRank: 0, source: name, sourceVersion: '1.0-1', essential: false,
    depends: '', preDepends: '', recommends: '', provides: '', conflicts: '', breaks: '', filename, size: 10, sha256: 'a'.repeat(64),
  });
  const manifest = { path: '/x/strata.toml', sha256: 'f'.repeat(64), name: 'x', arch: 'amd64', channels: [], packages: [{ name: 'app' }], withRecommends: false, withEssential: true, image: { env: {}, alternatives: {} } } satisfies Manifest;
  const channels = [{ name: 'stable', suite: 's', codename: 's', components: ['main'], date: 'd', releaseSha256: 'b'.repeat(64), urls: [] }];
  const ok = lockFromSolution(manifest, channels, [{ candidate: cand('app', 'pool/main/a/app/app_1.0-1_amd64.deb'), root: true, depends: [] }], []);
  t.notThrows(() => parseLock(serializeLock(ok)));
  const e = t.throws(() => lockFromSolution(manifest, channels, [{ candidate: cand('app', 'pool/../../../etc/app.deb'), root: true, depends: [] }], []), { instanceOf: StrataError });
  t.is(e.code, 'E_DEB');
  t.regex(e.message, /^cannot write strata\.lock from what the channels offer: package app: filename "pool\/\.\.\/\.\.\/\.\.\/etc\/app\.deb" has a `\.\.` segment$/);
});

test("a lock read before comes from the store's memo; edited bytes are read and verified afresh; verify parses each memo entry again", async (t) => {
  const { p, text, lock } = await lockedProject();
  const lockPath = join(p.dir, 'strata.lock');
  const memoDir = join(p.cache, 'locks');
  const entries = () => (existsSync(memoDir) ? readdirSync(memoDir).filter((f) => f.endsWith('.json')) : []);
  const real = await p.strata(['realise', '--locked']);
  t.is(real.code, 0, real.stderr);
  t.is(entries().length, 1, 'the lock read once is in the memo');
  const [entry] = entries();
  const memo = JSON.parse(readFileSync(join(memoDir, entry!), 'utf8')) as { text: string; lock: Lockfile };
  t.is(memo.text, text);
  t.deepEqual(memo.lock, JSON.parse(JSON.stringify(parseLock(text))), 'the memo holds what reading the text gives');

  // Another lock text is never taken from the good one's entry: each tamper is refused as before, twice (a tamper
  // that reads as a consistent lock, refused only against the manifest, is remembered as read, and refused again).
  for (const tamper of tampers(text, lock)) {
    writeFileSync(lockPath, tamper.text);
    for (const attempt of [1, 2]) {
      const r = await p.strata(['run', '--backend', 'sandbox', '--', 'true']);
      t.is(r.code, 3, `${tamper.what}, attempt ${attempt}: ${r.stderr}`);
      t.regex(r.stderr, tamper.message, tamper.what);
    }
  }
  writeFileSync(lockPath, text);
  const memoOf = (name: string) => JSON.parse(readFileSync(join(memoDir, name), 'utf8')) as { text: string };
  t.true(entries().every((e) => e === entry || memoOf(e).text !== text), 'one entry per lock text');

  // An entry whose lock is not what its text gives (a damaged store) is named by verify and dropped.
  const damaged = { ...memo, lock: { ...memo.lock, packages: memo.lock.packages.filter((x) => x.name !== 'libc6') } };
  writeFileSync(join(memoDir, entry!), JSON.stringify(damaged));
  const verify = await p.strata(['verify']);
  t.is(verify.code, 1, verify.stderr);
  t.regex(verify.stdout + verify.stderr, new RegExp(`damaged: lock memo ${entry!.replace(/\.json$/, '')}: the lock it holds is not what its text gives; dropped`));
  t.false(entries().includes(entry!));
  const again = await p.strata(['run', '--locked', '--backend', 'sandbox', '--', 'cat', '/etc/debian_version']);
  t.is(again.code, 0, again.stderr);
  t.is(again.stdout, '12.4\n');
  t.true(entries().includes(entry!), 'made again by the next read');
  const clean = await p.strata(['verify']);
  t.is(clean.code, 0, clean.stderr);
});
