/** `strata lock` end to end: the real CLI against the signed fixture archive served on loopback. */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { project, manifestFor } from './helpers/project.ts';
import { closeSharedMirror } from './helpers/project.ts';
import { serveMirror } from './helpers/mirror.ts';
import { parseLock } from '../lock/lockfile.ts';

test.after.always(closeSharedMirror);

test('locks a stable + current mix that apt calls held broken, deterministically', async (t) => {
  const p = await project();
  // libc6-dev names no channel, so it comes from the default one; current's libfoo1 needs current's libc6, and
  // stable's libc6-dev needs stable's: the error says so, and what would resolve, solved.
  p.writeManifest(manifestFor(p, 'libc6-dev = "*"\nlibfoo-dev = { channel = "current" }\nbusybox-fixture = "*"'));
  const unpinned = await p.strata(['lock']);
  t.is(unpinned.code, 4, unpinned.stderr);
  t.regex(unpinned.stderr, /the manifest asks for libc6-dev from channel "stable" \(the default channel: it names none\)/);
  t.regex(unpinned.stderr, /libc6-dev 2\.36-9 \(stable\) depends on libc6 \(= 2\.36-9\)/);
  t.regex(unpinned.stderr, /a package that names no channel comes from the default channel "stable"; it resolves if libc6-dev is also taken from "current" \(4 packages from "current", 6 in all\)/);
  t.regex(unpinned.stderr, /hint: to accept that, write in \[packages\]: libc6-dev = \{ channel = "current" \}/);
  p.writeManifest(manifestFor(p, 'libc6-dev = { channel = "current" }\nlibfoo-dev = { channel = "current" }\nbusybox-fixture = "*"'));
  const r = await p.strata(['lock']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /wrote strata\.lock/);
  t.regex(r.stdout, /stable\s+2\s+stable \(strata-stable/);
  t.regex(r.stdout, /current\s+4\s+current \(strata-current/);
  const text = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
  const lock = parseLock(text);
  const got = Object.fromEntries(lock.packages.map((x) => [x.name, `${x.version}@${x.channel}`]));
  // base-files is the fixture's Essential package: every environment gets it, unrequested.
  t.deepEqual(got, { 'base-files': '12.4@stable', 'busybox-fixture': '1.35.0-4@stable', libc6: '2.41-6@current', 'libc6-dev': '2.41-6@current', 'libfoo-dev': '1.2-1@current', libfoo1: '1.2-1@current' });
  t.deepEqual(lock.packages.filter((x) => x.root).map((x) => x.name), ['busybox-fixture', 'libc6-dev', 'libfoo-dev']);
  t.deepEqual(lock.channels.map((c) => c.codename), ['strata-stable', 'strata-current']);
  const deb = p.mirror.debs.find((d) => d.name === 'libc6' && d.version === '2.41-6')!;
  t.is(lock.packages.find((x) => x.name === 'libc6')!.sha256, deb.sha256);
  t.is(lock.packages.find((x) => x.name === 'libc6')!.filename, deb.filename);

  // Same inputs in another directory with another cache: the same bytes.
  const q = await project();
  q.writeManifest(readFileSync(join(p.dir, 'strata.toml'), 'utf8'));
  t.is((await q.strata(['lock'])).code, 0);
  t.is(readFileSync(join(q.dir, 'strata.lock'), 'utf8'), text);
  // Again in place: unchanged, and says so.
  const again = await p.strata(['lock']);
  t.regex(again.stdout, /unchanged: strata\.lock[\s\S]*no package changed/);
});

test('lock --check: 0 when up to date, 3 with the reason when the manifest changed', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'busybox-fixture = "*"'));
  t.is((await p.strata(['lock', '--check'])).code, 3);
  t.is((await p.strata(['lock'])).code, 0);
  const ok = await p.strata(['lock', '--check']);
  t.is(ok.code, 0);
  t.regex(ok.stdout, /up to date/);
  p.writeManifest(manifestFor(p, 'busybox-fixture = "*"\nzlib1g = "*"'));
  const stale = await p.strata(['lock', '--check']);
  t.is(stale.code, 3);
  t.regex(stale.stderr, /strata\.toml changed since strata\.lock was written/);
  const relock = await p.strata(['lock']);
  t.regex(relock.stdout, /changes since the previous lock: 2 added[\s\S]*\+ libc6 2\.36-9 \(stable\)[\s\S]*\+ zlib1g 1:1\.2\.13\.dfsg-1\+b1 \(stable\)/);
});

test('an unknown package exits 4 and suggests the closest names', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'python3-numpi = "*"'));
  const r = await p.strata(['lock']);
  t.is(r.code, 4);
  t.regex(r.stderr, /package "python3-numpi" is in none of the channels/);
  t.regex(r.stderr, /did you mean: python3-numpy/);
  t.notRegex(r.stderr, /at .*\.ts:\d+/); // no stack trace for a user mistake
});

test('an impossible pin is explained as a chain and exits 4', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'libc6-dev = { channel = "stable" }\nlibfoo-dev = { channel = "current" }'));
  const r = await p.strata(['lock']);
  t.is(r.code, 4);
  t.regex(r.stderr, /libfoo1 1\.2-1 \(current\) depends on libc6 \(>= 2\.40\)/);
  t.regex(r.stderr, /libc6-dev 2\.36-9 \(stable\) depends on libc6 \(= 2\.36-9\)/);
});

test('host-provided driver packages stay out of the closure and are recorded with their requirement', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'cuda-user = "*"', '\n[gpu]\ndriver = "host"\n'));
  const r = await p.strata(['lock']);
  t.is(r.code, 0, r.stderr);
  const lock = parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8'));
  t.deepEqual(lock.packages.map((x) => x.name), ['base-files', 'cuda-user', 'libc6', 'libcudart12']);
  t.deepEqual(lock.hostProvided, [
    { name: 'libcuda.so.1', requires: '>= 545' },
    { name: 'libcuda1', requires: '>= 550' },
  ]);
  t.regex(r.stdout, /host-provided libcuda1 >= 550/);
});

test('a Release signed by another key is refused; trusted = true proceeds with a warning', async (t) => {
  const p = await project();
  const body = manifestFor(p, 'busybox-fixture = "*"').replaceAll(p.mirror.keyring, p.mirror.otherKeyring);
  p.writeManifest(body);
  const r = await p.strata(['lock']);
  t.is(r.code, 1);
  t.regex(r.stderr, /error: channel "stable": the InRelease of suite "stable" is not signed by a key in/);
  p.writeManifest(body.replace('suite = "stable"\n', 'suite = "stable"\ntrusted = true\n').replace(/\[channels\.current\][\s\S]*?\n\n/, ''));
  const trusted = await p.strata(['lock']);
  t.is(trusted.code, 0, trusted.stderr);
  t.regex(trusted.stderr, /warning: channel "stable" is marked trusted = true: its signature is NOT checked/);
});

test('a Packages index that does not match the signed Release is refused', async (t) => {
  const p = await project();
  const own = await serveMirror(p.mirror.root); // private server: the tampering must not reach other tests
  try {
    p.writeManifest(manifestFor({ ...p, served: own }, 'busybox-fixture = "*"'));
    // Same size, other bytes: only the sha256 the signed Release lists can tell.
    const path = 'dists/stable/main/binary-amd64/Packages.xz';
    const real = readFileSync(join(p.mirror.root, path));
    const forged = Buffer.from(real);
    forged[forged.length - 20]! ^= 0xff;
    own.tamper(path, forged);
    const r = await p.strata(['lock']);
    t.is(r.code, 1);
    t.regex(r.stderr, /error: .*stable\/main\/binary-amd64\/Packages\.xz.*sha256/i);
    t.regex(r.stderr, /expected [0-9a-f]{64}/);
    const short = await (async () => {
      own.tamper(path, real.subarray(0, 100));
      return p.strata(['lock']);
    })();
    t.is(short.code, 1);
    t.regex(short.stderr, /size mismatch/);
  } finally {
    await own.close();
  }
});

test('lock --offline uses only cached indexes, and says what is missing when there are none', async (t) => {
  const p = await project();
  const own = await serveMirror(p.mirror.root); // private server: its request log is this test's alone
  try {
    const q = { ...p, served: own };
    p.writeManifest(manifestFor(q, 'busybox-fixture = "*"'));
    const cold = await p.strata(['lock', '--offline']);
    t.is(cold.code, 1);
    t.regex(cold.stderr, /--offline: channel "stable" \(stable\) has never been fetched on this machine/);
    t.is(own.requests.length, 0);
    t.is((await p.strata(['lock'])).code, 0);
    const before = own.requests.length;
    p.writeManifest(manifestFor(q, 'busybox-fixture = "*"\nzlib1g = "*"'));
    const warm = await p.strata(['lock', '--offline']);
    t.is(warm.code, 0, warm.stderr);
    t.is(own.requests.length, before);
  } finally {
    await own.close();
  }
});
