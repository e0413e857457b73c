import test from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { extract as tarExtract } from 'tar-stream';
import { createReadStream } from 'node:fs';
import { isStrataError } from '../errors.ts';
import { buildImage } from '../realiser/oci/image.ts';
import { writeOciLayout } from '../realiser/oci/layout.ts';
import { writeDockerArchive } from '../realiser/oci/archive.ts';
import type { LayerBlob } from '../realiser/oci/image.ts';
import { ANNOTATION_REF_NAME, canonicalJson, platformForDebianArch } from '../realiser/oci/spec.ts';
import type { ImageIndex, ImageManifest } from '../realiser/oci/spec.ts';
import { loadOciSchemas } from './helpers/ociSchema.ts';
import { GREETING, makeTinyLayers, tinyImageInput } from './helpers/tinyImage.ts';

const run = promisify(execFile);

let work: string;
let layers: LayerBlob[];

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-oci-'));
  layers = await makeTinyLayers(work);
});

test.after.always(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

async function skopeo(...args: string[]): Promise<string> {
  const { stdout } = await run('skopeo', ['--insecure-policy', ...args], { maxBuffer: 16 << 20 });
  return stdout;
}

function sha256(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

async function tarEntries(file: string): Promise<Array<{ name: string; mtime: number; uid: number; body: Buffer }>> {
  const out: Array<{ name: string; mtime: number; uid: number; body: Buffer }> = [];
  const ex = tarExtract();
  createReadStream(file).pipe(ex);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    out.push({ name: entry.header.name, mtime: entry.header.mtime?.getTime() ?? -1, uid: entry.header.uid ?? -1, body: Buffer.concat(chunks) });
  }
  return out;
}

test('canonicalJson sorts keys, drops undefined, has no whitespace', (t) => {
  const text = canonicalJson({ b: 1, a: { d: [3, { z: true, y: null }], c: 'x"y' }, u: undefined }).toString();
  t.is(text, '{"a":{"c":"x\\"y","d":[3,{"y":null,"z":true}]},"b":1}');
  t.is(canonicalJson({ 'Z': 1, 'a': 2, 'os.version': 3, 'os': 4 }).toString(), '{"Z":1,"a":2,"os":4,"os.version":3}');
  t.throws(() => canonicalJson({ n: Number.NaN }));
  t.throws(() => canonicalJson({ d: new Date(0) }));
});

test('platformForDebianArch maps Debian names to OCI names', (t) => {
  t.deepEqual(platformForDebianArch('amd64'), { architecture: 'amd64', os: 'linux' });
  t.deepEqual(platformForDebianArch('armhf'), { architecture: 'arm', os: 'linux', variant: 'v7' });
  t.deepEqual(platformForDebianArch('ppc64el'), { architecture: 'ppc64le', os: 'linux' });
});

test('buildImage is deterministic and fills rootfs from the layers', (t) => {
  const a = buildImage(tinyImageInput(layers, { refName: 'tiny:1' }));
  const b = buildImage(tinyImageInput(layers, { refName: 'tiny:1' }));
  t.is(a.manifestDigest, b.manifestDigest);
  t.true(a.manifest.equals(b.manifest));
  t.is(a.configDigest, sha256(a.config));
  t.is(a.manifestDigest, sha256(a.manifest));
  t.is(a.manifestSize, a.manifest.length);
  const config = JSON.parse(a.config.toString());
  t.deepEqual(config.rootfs, { type: 'layers', diff_ids: layers.map((l) => l.diffId) });
  const manifest = JSON.parse(a.manifest.toString()) as ImageManifest;
  t.deepEqual(manifest.layers.map((l) => l.digest), layers.map((l) => l.digest));
  t.is(manifest.config.size, a.config.length);
  t.true(a.manifest.equals(canonicalJson(manifest)));
  const other = buildImage(tinyImageInput(layers, { env: ['PATH=/bin', 'X=1'] }));
  t.not(other.configDigest, a.configDigest);
  const badHistory = tinyImageInput(layers);
  badHistory.config.history = badHistory.config.history!.slice(0, 1);
  t.throws(() => buildImage(badHistory), { message: /history/ });
});

test('an OCI layout is read by skopeo and umoci and valid against the image-spec schemas', async (t) => {
  const dir = join(work, 'layout');
  const img = buildImage(tinyImageInput(layers, { refName: 'tiny:1' }));
  await writeOciLayout(dir, img);

  const schemas = await loadOciSchemas();
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as ImageIndex;
  t.deepEqual(schemas.validate('index', index), []);
  t.deepEqual(schemas.validate('layout', JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8'))), []);
  const blob = (d: string) => readFile(join(dir, 'blobs', 'sha256', d.slice(7)));
  const manifest = JSON.parse((await blob(img.manifestDigest)).toString());
  t.deepEqual(schemas.validate('manifest', manifest), []);
  t.deepEqual(schemas.validate('config', JSON.parse((await blob(img.configDigest)).toString())), []);
  for (const d of [...manifest.layers, manifest.config, ...index.manifests]) t.deepEqual(schemas.validate('descriptor', d), []);
  // The validator does reject what the spec forbids.
  t.not(schemas.validate('manifest', { schemaVersion: 2, layers: [] }).length, 0);
  t.not(schemas.validate('descriptor', { mediaType: 'x', digest: 'nope', size: -1 }).length, 0);

  for (const l of layers) t.true(sha256(await blob(l.digest)) === l.digest);

  const inspected = JSON.parse(await skopeo('inspect', `oci:${dir}:tiny:1`));
  t.is(inspected.Digest, img.manifestDigest);
  t.deepEqual(inspected.Layers, layers.map((l) => l.digest));
  t.is(inspected.Architecture, 'amd64');
  t.deepEqual(inspected.Env, ['PATH=/bin']);
  const rawConfig = await skopeo('inspect', '--config', '--raw', `oci:${dir}:tiny:1`);
  t.is(rawConfig, img.config.toString());

  const archive = join(work, 'copied.tar');
  await skopeo('copy', '--preserve-digests', `oci:${dir}:tiny:1`, `oci-archive:${archive}:tiny:1`);
  const reinspected = JSON.parse(await skopeo('inspect', `oci-archive:${archive}:tiny:1`));
  t.deepEqual(reinspected.Layers, layers.map((l) => l.digest));

  const bundle = join(work, 'bundle');
  await run('umoci', ['unpack', '--image', `${dir}:tiny:1`, bundle]);
  const busybox = await stat(join(bundle, 'rootfs', 'bin', 'busybox'));
  t.is(busybox.mode & 0o777, 0o755);
  t.is(await readFile(join(bundle, 'rootfs', 'etc', 'greeting'), 'utf8'), GREETING);
  const runtimeConfig = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8'));
  t.deepEqual(runtimeConfig.process.args, ['/bin/sh']);
});

test('writing into an existing layout adds or replaces by ref name and keeps the rest', async (t) => {
  const dir = join(work, 'shared-layout');
  const one = buildImage(tinyImageInput(layers, { refName: 'app:one' }));
  const two = buildImage(tinyImageInput(layers, { refName: 'app:two', env: ['PATH=/bin', 'TWO=2'] }));
  const twoAgain = buildImage(tinyImageInput(layers, { refName: 'app:two', env: ['PATH=/bin', 'TWO=3'] }));
  await writeOciLayout(dir, one);
  await writeOciLayout(dir, two);
  await writeOciLayout(dir, twoAgain);
  await writeOciLayout(dir, one);
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as ImageIndex;
  const refs = index.manifests.map((d) => [d.annotations?.[ANNOTATION_REF_NAME], d.digest]);
  t.deepEqual(refs, [
    ['app:two', twoAgain.manifestDigest],
    ['app:one', one.manifestDigest],
  ]);
  t.is(JSON.parse(await skopeo('inspect', `oci:${dir}:app:one`)).Digest, one.manifestDigest);
  t.deepEqual(JSON.parse(await skopeo('inspect', `oci:${dir}:app:two`)).Env, ['PATH=/bin', 'TWO=3']);
  // No temp files left behind.
  t.deepEqual((await readdir(dir)).sort(), ['blobs', 'index.json', 'oci-layout']);
  t.false((await readdir(join(dir, 'blobs', 'sha256'))).some((n) => n.startsWith('.')));
  // Layer blobs are copies, never hard links into the store: damage in the output cannot reach the source.
  const src = await stat(layers[0]!.path!);
  const out = join(dir, 'blobs', 'sha256', layers[0]!.digest.slice(7));
  t.not((await stat(out)).ino, src.ino);
  const before = await readFile(layers[0]!.path!);
  await writeFile(out, 'damaged');
  t.deepEqual(await readFile(layers[0]!.path!), before);
  await writeOciLayout(dir, one);
  t.deepEqual(await readFile(out), before);

  const notLayout = join(work, 'not-a-layout');
  await mkdir(notLayout);
  await writeFile(join(notLayout, 'something'), 'x');
  const err = await t.throwsAsync(writeOciLayout(notLayout, one));
  t.true(isStrataError(err));
});

test('the docker archive is byte-identical for the same image and readable as docker-archive and OCI', async (t) => {
  const img = buildImage(tinyImageInput(layers, { refName: 'tiny:1' }));
  const a = join(work, 'a.tar');
  const b = join(work, 'b.tar');
  await writeDockerArchive(a, img, 'tiny:1');
  await writeDockerArchive(b, buildImage(tinyImageInput(layers, { refName: 'tiny:1' })), 'tiny:1');
  const bytesA = await readFile(a);
  t.true(bytesA.equals(await readFile(b)));

  const entries = await tarEntries(a);
  const names = entries.map((e) => e.name);
  t.deepEqual(names, [...names].sort());
  t.deepEqual(names.slice(-3), ['index.json', 'manifest.json', 'oci-layout']);
  t.true(entries.every((e) => e.mtime === 0 && e.uid === 0));
  const dockerManifest = JSON.parse(entries.find((e) => e.name === 'manifest.json')!.body.toString());
  t.deepEqual(dockerManifest, [
    {
      Config: `blobs/sha256/${img.configDigest.slice(7)}`,
      RepoTags: ['tiny:1'],
      Layers: layers.map((l) => `blobs/sha256/${l.digest.slice(7)}`),
    },
  ]);
  for (const l of layers) {
    const body = entries.find((e) => e.name === `blobs/sha256/${l.digest.slice(7)}`)!.body;
    t.is(sha256(body), l.digest);
  }
  const schemas = await loadOciSchemas();
  t.deepEqual(schemas.validate('index', JSON.parse(entries.find((e) => e.name === 'index.json')!.body.toString())), []);

  // skopeo resolves a docker-archive reference through manifest.json's RepoTags.
  const asDocker = JSON.parse(await skopeo('inspect', `docker-archive:${a}:tiny:1`));
  t.is(asDocker.Layers.length, layers.length);
  await t.throwsAsync(skopeo('inspect', `docker-archive:${a}:other:1`));
  const asOci = JSON.parse(await skopeo('inspect', `oci-archive:${a}`));
  t.is(asOci.Digest, img.manifestDigest);
  const rawConfig = await skopeo('inspect', '--config', '--raw', `docker-archive:${a}`);
  t.is(sha256(Buffer.from(rawConfig)), img.configDigest);
});

test('a missing or changed layer file fails the archive and leaves no file', async (t) => {
  const img = buildImage(tinyImageInput([{ ...layers[0]!, size: layers[0]!.size + 1 }, layers[1]!]));
  const out = join(work, 'bad.tar');
  await t.throwsAsync(writeDockerArchive(out, img, 'bad:1'), { message: /bytes/ });
  t.false((await readdir(work)).some((n) => n.includes('bad.tar')));
});
