/**
 * A declared channel that supplies nothing does not block a lock: one that cannot be read (its Release expired,
 * its fetch fails) is left out with one warning naming it and why, and recorded as unread; one that a package
 * needs (pinned to it, or a dependency only it has) still fails with its own message. Real signed fixture archive.
 */
import test from 'ava';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildMirror, serveMirror, type FixtureMirror, type ServedMirror } from './helpers/mirror.ts';
import { project, closeSharedMirror } from './helpers/project.ts';
import { parseLock } from '../lock/lockfile.ts';

test.after.always(closeSharedMirror);

let mirror: FixtureMirror;
let served: ServedMirror;
test.before(async () => {
  mirror = await buildMirror(mkdtempSync(join(tmpdir(), 'strata-unused-')), [
    { suite: 'stable', codename: 'fx-stable', components: { main: [{ name: 'hello', version: '1.0-1' }, { name: 'needs-new', version: '1.0-1', depends: 'only-new' }] } },
    { suite: 'lagging', codename: 'fx-lagging', validUntil: 'Fri, 06 Nov 2026 08:00:00 UTC', components: { main: [{ name: 'only-new', version: '2.0-1' }, { name: 'hello', version: '2.0-1' }] } },
  ]);
  served = await serveMirror(mirror.root);
});
test.after.always(async () => served?.close());

const manifest = (packages: string, suite = 'lagging') =>
  `[project]\nname = "unused"\narch = "amd64"\n\n[channels.stable]\nurl = "${served.url}"\nsuite = "stable"\nsigned-by = "${mirror.keyring}"\n\n[channels.current]\nurl = "${served.url}"\nsuite = "${suite}"\nsigned-by = "${mirror.keyring}"\n\n[resolve]\nessential = false\n\n[packages]\n${packages}\n`;

test('an expired channel no package needs is left out with one warning; a needed one still fails', async (t) => {
  const p = await project();
  p.writeManifest(manifest('hello = "*"'));
  const r = await p.strata(['lock']);
  t.is(r.code, 0, r.stderr);
  const warnings = r.stderr.match(/^warning: .*$/gm) ?? [];
  t.deepEqual(warnings, ['warning: channel "current" could not be read (the Release of "lagging" expired on Fri, 06 Nov 2026 08:00:00 UTC (Valid-Until)); no package needs it, so the lock leaves it out and records it as unread']);
  t.regex(r.stdout, /current\s+0\s+lagging \(not read: no package needs it\)/);
  const text = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
  t.regex(text, /\[\[channel\]\]\nname = "current"\nsuite = "lagging"\nunread = true\ncomponents = \["main"\]\n/);
  const lock = parseLock(text);
  t.deepEqual(lock.packages.map((x) => `${x.name} ${x.version} ${x.channel}`), ['hello 1.0-1 stable']);
  t.is((await p.strata(['lock', '--check'])).code, 0);
  const online = await p.strata(['lock', '--check', '--online']);
  t.is(online.code, 0, online.stderr);
  t.regex(online.stdout, /current\s+0\s+not read; the lock takes no package from it/);

  // Pinned to it: needed, so its own error.
  p.writeManifest(manifest('hello = { channel = "current" }'));
  const pinned = await p.strata(['lock']);
  t.is(pinned.code, 1, pinned.stderr);
  t.regex(pinned.stderr, /error: channel "current": the Release of "lagging" expired on Fri, 06 Nov 2026 08:00:00 UTC \(Valid-Until\)/);
  t.regex(pinned.stderr, /hint: .*check-valid-until = false/);

  // A dependency only it has: the manifest does not resolve without it, so again its own error.
  p.writeManifest(manifest('needs-new = "*"'));
  const dep = await p.strata(['lock']);
  t.is(dep.code, 1, dep.stderr);
  t.regex(dep.stderr, /error: channel "current": the Release of "lagging" expired/);

  // With check-valid-until = false it is read, and supplies the dependency.
  p.writeManifest(manifest('needs-new = "*"').replace('suite = "lagging"\n', 'suite = "lagging"\ncheck-valid-until = false\n'));
  const ok = await p.strata(['lock']);
  t.is(ok.code, 0, ok.stderr);
  t.deepEqual(parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8')).packages.map((x) => `${x.name} ${x.channel}`), ['needs-new stable', 'only-new current']);
});

test('a channel whose fetch fails is not fatal while nothing needs it', async (t) => {
  const p = await project();
  p.writeManifest(manifest('hello = "*"', 'no-such-suite'));
  const r = await p.strata(['lock']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /^warning: channel "current" could not be read \(suite "no-such-suite" not found at http:\/\/127\.0\.0\.1:\d+ \(HTTP 404 for dists\/no-such-suite\/Release\)\); no package needs it/m);
});
