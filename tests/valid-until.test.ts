/**
 * A channel whose Release has expired (a lagging mirror, a snapshot archive): refused by default, accepted with
 * `check-valid-until = false` with one warning, and its signature is still checked. Real gpg-signed fixture archive.
 */
import test from 'ava';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildMirror, serveMirror, type ServedMirror, type FixtureMirror } from './helpers/mirror.ts';
import { project, closeSharedMirror } from './helpers/project.ts';

test.after.always(closeSharedMirror);

let mirror: FixtureMirror;
let served: ServedMirror;
test.before(async () => {
  mirror = await buildMirror(mkdtempSync(join(tmpdir(), 'strata-expired-')), [
    { suite: 'lagging', codename: 'strata-lagging', validUntil: 'Fri, 06 Nov 2026 08:00:00 UTC', components: { main: [{ name: 'hello-old', version: '1.0-1' }] } },
  ]);
  served = await serveMirror(mirror.root);
});
test.after.always(async () => served?.close());

const manifest = (extra: string) =>
  `[project]\nname = "expired"\narch = "amd64"\n\n[channels.lagging]\nurl = "${served.url}"\nsuite = "lagging"\nsigned-by = "${mirror.keyring}"\n${extra}\n[resolve]\nessential = false\n\n[packages]\nhello-old = "*"\n`;

test('an expired Release is refused by default and accepted with check-valid-until = false, signature still checked', async (t) => {
  const p = await project();
  p.writeManifest(manifest(''));
  const refused = await p.strata(['lock']);
  t.is(refused.code, 1, refused.stderr);
  t.regex(refused.stderr, /error: channel "lagging": the Release of "lagging" expired on Fri, 06 Nov 2026 08:00:00 UTC \(Valid-Until\)/);
  t.regex(refused.stderr, /hint: .*check-valid-until = false/);

  p.writeManifest(manifest('check-valid-until = false\n'));
  const ok = await p.strata(['lock']);
  t.is(ok.code, 0, ok.stderr);
  t.is(ok.stderr.match(/expired on .*accepted because check-valid-until = false \(its signature was verified\)/g)?.length, 1, ok.stderr);
  t.regex(readFileSync(join(p.dir, 'strata.lock'), 'utf8'), /name = "hello-old"/);

  // a tampered expired Release is still refused: the signature is checked
  const inRelease = readFileSync(join(mirror.root, 'dists/strata-lagging/InRelease'), 'utf8');
  served.tamper('dists/lagging/InRelease', Buffer.from(inRelease.replace('Valid-Until: Fri, 06 Nov 2026', 'Valid-Until: Fri, 06 Nov 2099')));
  const forged = await p.strata(['lock'], { env: { STRATA_CACHE_DIR: join(p.dir, 'fresh-cache') } });
  t.is(forged.code, 1, forged.stderr);
  t.regex(forged.stderr, /error: channel "lagging": the InRelease of suite "lagging" does not match its signature/);
  served.tamper('dists/lagging/InRelease', null);

  p.writeManifest(manifest('check-valid-until = "no"\n'));
  const typo = await p.strata(['lock']);
  t.is(typo.code, 1);
  t.regex(typo.stderr, /strata\.toml:\d+:\d+: .*check-valid-until/);
});
