/**
 * A flat repository (no `dists/`, no components; `Packages` and a signed `InRelease` at the URL itself, as NVIDIA's
 * CUDA and Intel's oneAPI repositories publish them) as a channel of its own: signature verified like any channel,
 * locked and realised. Built by the fixture helpers, signed with real gpg, served on loopback below a path.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFlatRepository, serveMirror, type FixtureMirror, type ServedMirror } from './helpers/mirror.ts';
import { project, channels, closeSharedMirror, type Project } from './helpers/project.ts';
import { parseLock } from '../lock/lockfile.ts';

test.after.always(closeSharedMirror);

let flat: FixtureMirror;
let served: ServedMirror;
let url: string;
test.before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-flat-'));
  flat = await buildFlatRepository(join(dir, 'repos/debian12/x86_64'), [
    { name: 'cuda-fixture-runtime', version: '12.4.127-1', depends: 'libc6 (>= 2.36)' },
    { name: 'cuda-fixture-runtime', version: '12.6.77-1', depends: 'libc6 (>= 2.36)', files: [{ path: 'usr/local/cuda-12.6/lib64/libcudart-fixture.so.12', content: 'cudart 12.6\n' }] },
    { name: 'cuda-fixture-tools', version: '12.6.77-1', arch: 'all', depends: 'cuda-fixture-runtime (= 12.6.77-1)' },
    { name: 'cuda-fixture-arm', version: '12.6.77-1', arch: 'arm64' },
  ]);
  served = await serveMirror(dir);
  url = `${served.url}/repos/debian12/x86_64`;
});
test.after.always(async () => served?.close());

const manifest = (p: Project, cuda: string, packages: string) =>
  `[project]\nname = "flat"\narch = "amd64"\n\n${channels(p.served, p.mirror)}\n[channels.cuda]\n${cuda}\n\n[packages]\n${packages}\n`;

test('a flat repository is a channel: verified, locked, realised', async (t) => {
  const p = await project();
  p.writeManifest(manifest(p, `url = "${url}"\nsuite = "/"\nsigned-by = "${flat.keyring}"`, 'cuda-fixture-tools = { channel = "cuda" }'));
  const r = await p.strata(['lock']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /cuda\s+2\s+\/ \(flat repository, Sat, 01 Jun 2024 12:00:00 UTC\)/);
  const text = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
  t.regex(text, /\[\[channel\]\]\nname = "cuda"\nsuite = "\/"\ncodename = ""\ncomponents = \[\]\n/);
  const lock = parseLock(text);
  const got = Object.fromEntries(lock.packages.map((x) => [x.name, `${x.version}@${x.channel} ${x.filename}`]));
  t.is(got['cuda-fixture-runtime'], '12.6.77-1@cuda cuda-fixture-runtime_12.6.77-1_amd64.deb');
  t.is(got['cuda-fixture-tools'], '12.6.77-1@cuda cuda-fixture-tools_12.6.77-1_all.deb');
  t.regex(got.libc6!, /@stable /); // the dependency from the default channel
  t.false('cuda-fixture-arm' in got);
  const deb = flat.debs.find((d) => d.name === 'cuda-fixture-runtime' && d.version === '12.6.77-1')!;
  t.is(lock.packages.find((x) => x.name === 'cuda-fixture-runtime')!.sha256, deb.sha256);
  t.is((await p.strata(['lock', '--check'])).code, 0);

  // Realised: the .deb is fetched from the flat repository's URL and its file is in the image.
  const oci = join(p.dir, 'oci');
  const built = await p.strata(['realise', '--oci', oci]);
  t.is(built.code, 0, built.stderr);
  t.true(served.requests.includes('/repos/debian12/x86_64/cuda-fixture-runtime_12.6.77-1_amd64.deb'), served.requests.join('\n'));
  const index = JSON.parse(readFileSync(join(oci, 'index.json'), 'utf8'));
  const blob = (d: string) => join(oci, 'blobs', ...d.split(':'));
  const image = JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8'));
  const listed = image.layers.flatMap((l: { digest: string }) => execFileSync('tar', ['-tf', blob(l.digest)], { encoding: 'utf8' }).split('\n'));
  t.true(listed.some((f: string) => /usr\/local\/cuda-12\.6\/lib64\/libcudart-fixture\.so\.12$/.test(f)));
});

test('a flat repository signed by another key is refused; one without InRelease verifies through Release.gpg; bad manifests are named', async (t) => {
  const p = await project();
  p.writeManifest(manifest(p, `url = "${url}"\nsuite = "/"\nsigned-by = "${flat.otherKeyring}"`, 'cuda-fixture-tools = { channel = "cuda" }'));
  const other = await p.strata(['lock']);
  t.is(other.code, 1, other.stderr);
  t.regex(other.stderr, /error: channel "cuda": the InRelease of suite "\/" is not signed by a key in/);

  // Release + Release.gpg only (the InRelease answered 404): verified against the detached signature.
  served.failNext('/repos/debian12/x86_64/InRelease', 1, 404);
  p.writeManifest(manifest(p, `url = "${url}"\nsuite = "./"\nsigned-by = "${flat.keyring}"`, 'cuda-fixture-runtime = { version = "<< 12.6", channel = "cuda" }'));
  const detached = await p.strata(['lock']);
  t.is(detached.code, 0, detached.stderr);
  t.is(parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8')).packages.find((x) => x.name === 'cuda-fixture-runtime')!.version, '12.4.127-1');
  // A tampered Release.gpg-verified Release is refused.
  served.failNext('/repos/debian12/x86_64/InRelease', 1, 404);
  served.tamper('/repos/debian12/x86_64/Release', Buffer.from(readFileSync(join(flat.root, 'Release'), 'utf8').replace('2024', '2025')));
  const forged = await p.strata(['lock'], { env: { STRATA_CACHE_DIR: join(p.dir, 'fresh') } });
  served.tamper('/repos/debian12/x86_64/Release', null);
  t.is(forged.code, 1, forged.stderr);
  t.regex(forged.stderr, /error: channel "cuda": the Release of suite "\.\/" does not match its signature/);

  p.writeManifest(manifest(p, `url = "${url}"\nsuite = "/"\ncomponents = ["main"]\nsigned-by = "${flat.keyring}"`, 'cuda-fixture-tools = { channel = "cuda" }'));
  const comps = await p.strata(['lock']);
  t.is(comps.code, 1);
  t.regex(comps.stderr, /strata\.toml:\d+:\d+: channel "cuda": suite = "\/" is a flat repository, which has no components/);
  p.writeManifest(manifest(p, `suite = "/"\nsigned-by = "${flat.keyring}"`, 'cuda-fixture-tools = { channel = "cuda" }'));
  const nourl = await p.strata(['lock']);
  t.is(nourl.code, 1);
  t.regex(nourl.stderr, /channel "cuda": suite = "\/" is a flat repository, which needs its url/);
  p.writeManifest(manifest(p, `url = "${served.url}/nothing-here"\nsuite = "/"\nsigned-by = "${flat.keyring}"`, 'cuda-fixture-tools = { channel = "cuda" }'));
  const missing = await p.strata(['lock']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /error: channel "cuda": no flat repository at http:\/\/127\.0\.0\.1:\d+\/nothing-here\/ \(HTTP 404 for Release\)/);
});
