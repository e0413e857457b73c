/**
 * A package the manifest names without `channel` comes from the default channel; only dependencies follow a
 * constraint into another one. The case in miniature, two suites of a signed fixture archive as two
 * channels: current's GDAL needs current's Python, stable's NumPy needs stable's. The lock refuses to move NumPy
 * (and with it Python) to current on its own, names the conflict, and offers what would resolve, solved: the same
 * count the lock then gives when the user writes that pin.
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
  mirror = await buildMirror(mkdtempSync(join(tmpdir(), 'strata-default-channel-')), [
    {
      suite: 'stable',
      codename: 'fx-stable',
      components: {
        main: [
          { name: 'libc6', version: '2.41-6', source: 'glibc' },
          { name: 'python3', version: '3.13.5-1', depends: 'libc6 (>= 2.34)' },
          { name: 'python3-numpy', version: '1:2.2.4+ds-1', source: 'numpy', depends: 'python3 (>= 3.13~), python3 (<< 3.14), libc6 (>= 2.34)' },
          { name: 'git', version: '1:2.47.3-0+deb13u1', depends: 'libc6 (>= 2.34)' },
        ],
      },
    },
    {
      suite: 'current',
      codename: 'fx-current',
      date: 'Fri, 30 Oct 2026 12:00:00 UTC',
      components: {
        main: [
          { name: 'libc6', version: '2.42-2', source: 'glibc' },
          { name: 'python3', version: '3.14.0-2', depends: 'libc6 (>= 2.42)' },
          { name: 'python3-numpy', version: '1:2.3.4+ds-1', source: 'numpy', depends: 'python3 (>= 3.14~), python3 (<< 3.15), libc6 (>= 2.42)' },
          { name: 'libgdal37', version: '3.11.4+dfsg-1', source: 'gdal', depends: 'libc6 (>= 2.42)' },
          { name: 'python3-gdal', version: '3.11.4+dfsg-1', source: 'gdal', depends: 'python3 (>= 3.14~), python3-numpy, libgdal37' },
          { name: 'git', version: '1:2.51.0-1', depends: 'libc6 (>= 2.34)' },
        ],
      },
    },
  ]);
  served = await serveMirror(mirror.root);
});
test.after.always(async () => served?.close());

const manifest = (packages: string) =>
  `[project]\nname = "gdal"\narch = "amd64"\n\n[channels.stable]\nurl = "${served.url}"\nsuite = "stable"\nsigned-by = "${mirror.keyring}"\n\n[channels.current]\nurl = "${served.url}"\nsuite = "current"\nsigned-by = "${mirror.keyring}"\n\n[resolve]\nessential = false\n\n[packages]\n${packages}\n`;

test('a root without channel stays in the default channel; the error offers the pin that resolves, with its cost', async (t) => {
  const p = await project();
  p.writeManifest(manifest('git = "*"\npython3-numpy = "*"\npython3-gdal = { channel = "current" }'));
  const r = await p.strata(['lock']);
  t.is(r.code, 4, r.stderr);
  // The conflict, named:
  t.regex(r.stderr, /the manifest asks for python3-numpy from channel "stable" \(the default channel: it names none\)/);
  t.regex(r.stderr, /the manifest asks for python3-gdal from channel "current"/);
  t.regex(r.stderr, /python3-gdal 3\.11\.4\+dfsg-1 \(current\) depends on python3 \(>= 3\.14~\)/);
  t.regex(r.stderr, /python3-numpy 1:2\.2\.4\+ds-1 \(stable\) depends on python3 \(<< 3\.14\)/);
  // Then what works: numpy from current takes python3 and libc6 along (5 packages from current of 6; git stays).
  t.regex(r.stderr, /it resolves if python3-numpy is also taken from "current" \(5 packages from "current", 6 in all\)/);
  t.regex(r.stderr, /hint: to accept that, write in \[packages\]: python3-numpy = \{ channel = "current" \}/);

  // Taking the offer gives exactly that.
  p.writeManifest(manifest('git = "*"\npython3-numpy = { channel = "current" }\npython3-gdal = { channel = "current" }'));
  const ok = await p.strata(['lock']);
  t.is(ok.code, 0, ok.stderr);
  const lock = parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8'));
  const at = Object.fromEntries(lock.packages.map((x) => [x.name, x.channel]));
  t.deepEqual(at, { git: 'stable', libc6: 'current', libgdal37: 'current', python3: 'current', 'python3-gdal': 'current', 'python3-numpy': 'current' });
});

test('a root only another channel has is not taken from it unasked; the error says which channel has it', async (t) => {
  const p = await project();
  p.writeManifest(manifest('libgdal37 = "*"'));
  const r = await p.strata(['lock']);
  t.is(r.code, 4, r.stderr);
  t.regex(r.stderr, /no version of "libgdal37" matches from channel stable \(the default channel: the manifest names none for it\); available: 3\.11\.4\+dfsg-1 \(current\)/);
  t.regex(r.stderr, /it resolves if libgdal37 is also taken from "current" \(2 packages from "current", 2 in all\)/);
  // A dependency still follows a constraint into another channel: gdal's libc6 >= 2.42 is current's.
  p.writeManifest(manifest('git = "*"\nlibgdal37 = { channel = "current" }'));
  const ok = await p.strata(['lock']);
  t.is(ok.code, 0, ok.stderr);
  const lock = parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8'));
  t.deepEqual(Object.fromEntries(lock.packages.map((x) => [x.name, `${x.version}@${x.channel}`])), { git: '1:2.47.3-0+deb13u1@stable', libc6: '2.42-2@current', libgdal37: '3.11.4+dfsg-1@current' });
});

test('when no channel for the unpinned roots resolves it either, the conflict shown is that one', async (t) => {
  const p = await project();
  // stable's libc6 is too old for current's python3, and the manifest pins libc6 itself to stable.
  p.writeManifest(manifest('libc6 = { channel = "stable" }\npython3-numpy = "*"\npython3-gdal = { channel = "current" }'));
  const r = await p.strata(['lock']);
  t.is(r.code, 4, r.stderr);
  t.regex(r.stderr, /this holds whichever channel the packages that name no channel come from/);
  t.regex(r.stderr, /the manifest asks for libc6 from channel "stable"/);
  t.regex(r.stderr, /python3 3\.14\.0-2 \(current\) depends on libc6 \(>= 2\.42\)/);
  t.notRegex(r.stderr, /it resolves if/);
});
