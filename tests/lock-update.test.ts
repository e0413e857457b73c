/**
 * `strata lock --update [PKG...]` against a two-state fixture archive: the mirror is locked at one state, then
 * serves a newer one (the old versions still listed, as a repository that keeps several versions does). A re-lock
 * keeps every locked version; `--update PKG` moves PKG and what it now needs, nothing else; `--update` alone moves
 * everything. Real signed archive on loopback, the real CLI.
 */
import test from 'ava';
import { mkdtempSync, readFileSync, renameSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildMirror, serveMirror, type FixturePackage, type FixtureMirror, type ServedMirror } from './helpers/mirror.ts';
import { project, closeSharedMirror } from './helpers/project.ts';
import { parseLock } from '../lock/lockfile.ts';

test.after.always(closeSharedMirror);

const before: FixturePackage[] = [
  { name: 'app', version: '1.0-1', depends: 'libfoo1 (>= 1.0)' },
  { name: 'libfoo1', version: '1.2-1', source: 'foo', depends: 'libc6 (>= 2.30)' },
  { name: 'libc6', version: '2.36-9', source: 'glibc' },
  { name: 'tool', version: '1.0-1', depends: 'libc6' },
];
const after: FixturePackage[] = [
  ...before,
  { name: 'app', version: '1.1-1', depends: 'libfoo1 (>= 1.3)' },
  { name: 'libfoo1', version: '1.3-1', source: 'foo', depends: 'libc6 (>= 2.30), libbar1' },
  { name: 'libbar1', version: '1.0-1' },
  { name: 'libc6', version: '2.36-10', source: 'glibc' },
  { name: 'tool', version: '1.1-1', depends: 'libc6' },
];

let dir: string;
let state1: FixtureMirror;
let served: ServedMirror;
test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'strata-two-state-'));
  state1 = await buildMirror(join(dir, 'state1'), [{ suite: 'stable', codename: 'fx-stable', components: { main: before } }]);
  await buildMirror(join(dir, 'state2'), [{ suite: 'stable', codename: 'fx-stable', date: 'Mon, 01 Jul 2024 12:00:00 UTC', components: { main: after } }]);
  symlinkSync(join(dir, 'state1'), join(dir, 'served'));
  served = await serveMirror(join(dir, 'served'));
});
test.after.always(async () => served?.close());

/** The mirror serves the newer state from now on. */
function moveOn(): void {
  symlinkSync(join(dir, 'state2'), join(dir, 'served.next'));
  renameSync(join(dir, 'served.next'), join(dir, 'served'));
}

test.serial('a re-lock keeps locked versions; --update PKG moves PKG and what it needs; --update alone moves everything', async (t) => {
  const p = await project();
  p.writeManifest(`[project]\nname = "update"\narch = "amd64"\n\n[channels.stable]\nurl = "${served.url}"\nsuite = "stable"\nsigned-by = "${state1.keyring}"\n\n[resolve]\nessential = false\n\n[packages]\napp = "*"\ntool = "*"\n`);
  const versions = () => Object.fromEntries(parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8')).packages.map((x) => [x.name, x.version]));
  const first = await p.strata(['lock']);
  t.is(first.code, 0, first.stderr);
  t.deepEqual(versions(), { app: '1.0-1', libc6: '2.36-9', libfoo1: '1.2-1', tool: '1.0-1' });

  moveOn();
  // The manifest did not change and the mirror moved on: a plain re-lock keeps every version still offered.
  const relock = await p.strata(['lock']);
  t.is(relock.code, 0, relock.stderr);
  t.regex(relock.stdout, /no package changed since the previous lock/);
  t.deepEqual(versions(), { app: '1.0-1', libc6: '2.36-9', libfoo1: '1.2-1', tool: '1.0-1' });

  // A fresh lock of the same manifest would take the newest of everything (so the re-lock above really kept them).
  const q = await project();
  q.writeManifest(readFileSync(join(p.dir, 'strata.toml'), 'utf8'));
  t.is((await q.strata(['lock'])).code, 0);
  t.deepEqual(Object.fromEntries(parseLock(readFileSync(join(q.dir, 'strata.lock'), 'utf8')).packages.map((x) => [x.name, x.version])), { app: '1.1-1', libbar1: '1.0-1', libc6: '2.36-10', libfoo1: '1.3-1', tool: '1.1-1' });

  // A manifest change moves only what it forces: a new root that needs libbar1 (which the old state did not have)
  // adds it, and every locked version stays.
  const body = readFileSync(join(p.dir, 'strata.toml'), 'utf8');
  p.writeManifest(`${body}libbar1 = "*"\n`);
  const changed = await p.strata(['lock']);
  t.is(changed.code, 0, changed.stderr);
  t.regex(changed.stdout, /changes since the previous lock: 1 added, 0 removed, 0 changed/);
  t.deepEqual(versions(), { app: '1.0-1', libbar1: '1.0-1', libc6: '2.36-9', libfoo1: '1.2-1', tool: '1.0-1' });
  p.writeManifest(body);
  t.is((await p.strata(['lock'])).code, 0);

  // --update app: app 1.1-1 needs libfoo1 >= 1.3, which needs libbar1; libc6 and tool stay.
  const one = await p.strata(['lock', '--update', 'app']);
  t.is(one.code, 0, one.stderr);
  t.deepEqual(versions(), { app: '1.1-1', libbar1: '1.0-1', libc6: '2.36-9', libfoo1: '1.3-1', tool: '1.0-1' });
  t.regex(one.stdout, /changes since the previous lock: 1 added, 0 removed, 2 changed/);
  t.regex(one.stdout, /^ {2}~ app 1\.0-1 -> 1\.1-1 \(stable\)$/m);
  t.regex(one.stdout, /^ {2}~ libfoo1 1\.2-1 -> 1\.3-1 \(stable\)$/m);
  t.regex(one.stdout, /^ {2}\+ libbar1 1\.0-1 \(stable\)$/m);
  t.notRegex(one.stdout, /libc6|tool/);

  // --update alone, as JSON: everything newer.
  const all = await p.strata(['lock', '--update', '--json']);
  t.is(all.code, 0, all.stderr);
  t.deepEqual(versions(), { app: '1.1-1', libbar1: '1.0-1', libc6: '2.36-10', libfoo1: '1.3-1', tool: '1.1-1' });
  const j = JSON.parse(all.stdout);
  t.deepEqual(j.changes, [
    { name: 'libc6', from: { version: '2.36-9', channel: 'stable' }, to: { version: '2.36-10', channel: 'stable' } },
    { name: 'tool', from: { version: '1.0-1', channel: 'stable' }, to: { version: '1.1-1', channel: 'stable' } },
  ]);
  t.deepEqual(j.changed, ['libc6', 'tool']);

  // An unknown name is an error that says what it expected, with the nearest names; the lock is left alone.
  const lockBytes = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
  const unknown = await p.strata(['lock', '--update', 'libfoo']);
  t.is(unknown.code, 4, unknown.stderr);
  t.regex(unknown.stderr, /error: --update libfoo: "libfoo" is neither locked in strata\.lock nor asked for in strata\.toml/);
  t.regex(unknown.stderr, /did you mean: libfoo1/);
  t.is(readFileSync(join(p.dir, 'strata.lock'), 'utf8'), lockBytes);
  t.is((await p.strata(['lock', '--update', 'app', '--check'])).code, 64);
});
