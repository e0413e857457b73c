import test from 'ava';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Dockerode from 'dockerode';
import { isStrataError } from '../errors.ts';
import { recordingReporter } from '../report/reporter.ts';
import { dockerAt, dockerFromEnv, dockerHostOf, pingDocker } from '../docker/engine.ts';
import { loadImage } from '../realiser/oci/dockerLoad.ts';
import { buildImage } from '../realiser/oci/image.ts';
import { writeDockerArchive } from '../realiser/oci/archive.ts';
import type { BuiltImage, LayerBlob } from '../realiser/oci/image.ts';
import { MEDIA_TYPE_LAYER_TAR_ZSTD } from '../realiser/oci/spec.ts';
import { startDockerd } from './helpers/dockerd.ts';
import type { Dockerd } from './helpers/dockerd.ts';
import { GREETING, makeTinyLayers, tinyImageInput } from './helpers/tinyImage.ts';

let work: string;
let layers: LayerBlob[];
let engine: Dockerd;

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-docker-'));
  layers = await makeTinyLayers(work);
  engine = await startDockerd();
});

test.after.always(async () => {
  await engine?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Splits the multiplexed (non-TTY) log stream of a container into stdout and stderr. */
function demux(buf: Buffer): { stdout: string; stderr: string } {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const size = buf.readUInt32BE(i + 4);
    const frame = buf.subarray(i + 8, i + 8 + size);
    (buf[i] === 2 ? err : out).push(frame);
    i += 8 + size;
  }
  return { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

async function runIn(docker: Dockerode, image: string, script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const container = await docker.createContainer({
    Image: image,
    Cmd: ['/bin/sh', '-c', script],
    HostConfig: { NetworkMode: 'none' },
  });
  try {
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    const logs = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
    return { code: StatusCode, ...demux(logs) };
  } finally {
    await container.remove({ force: true });
  }
}

function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    stream.on('data', (c: Buffer | string) => (text += c.toString()));
    stream.on('end', () => resolve(text));
    stream.on('error', reject);
  });
}

test('docker load of the archive gives an image whose container prints hi', async (t) => {
  const img = buildImage(tinyImageInput(layers));
  const file = join(work, 'tiny.tar');
  await writeDockerArchive(file, img, 'strata-test/tiny:archive');
  const answer = await readAll(await engine.docker.loadImage(file, { quiet: true }));
  t.notRegex(answer, /error/i);
  const info = (await engine.docker.getImage('strata-test/tiny:archive').inspect()) as { Id: string; Config: { Env: string[] } };
  t.is(info.Id, img.configDigest);
  t.deepEqual(info.Config.Env, ['PATH=/bin']);
  const result = await runIn(engine.docker, 'strata-test/tiny:archive', 'echo hi; cat /etc/greeting');
  t.is(result.code, 0);
  t.is(result.stdout, `hi\n${GREETING}`);
});

test('loadImage uploads the image once, then only tags it', async (t) => {
  const img = buildImage(tinyImageInput(layers, { env: ['PATH=/bin', 'WHICH=loadImage'] }));
  const reporter = recordingReporter();
  const first = await loadImage(img, 'strata-test/tiny:one', { docker: engine.docker, reporter });
  t.deepEqual(first, { imageId: img.configDigest, sentLayers: 2, skippedLayers: 0 });
  t.true(reporter.lines.some((l) => l.startsWith('loading strata-test/tiny:one')));

  // Layer files that no longer exist prove the second call sends nothing.
  const gone: BuiltImage = { ...img, layers: img.layers.map((l) => ({ ...l, path: join(work, 'gone') })) };
  const second = await loadImage(gone, 'strata-test/tiny:two', { docker: engine.docker });
  t.deepEqual(second, { imageId: img.configDigest, sentLayers: 0, skippedLayers: 2 });
  const tagged = (await engine.docker.getImage('strata-test/tiny:two').inspect()) as { Id: string; RepoTags: string[] };
  t.is(tagged.Id, img.configDigest);
  t.deepEqual([...tagged.RepoTags].sort(), ['strata-test/tiny:one', 'strata-test/tiny:two']);

  const result = await runIn(engine.docker, 'strata-test/tiny:two', 'echo "$WHICH"');
  t.is(result.stdout, 'loadImage\n');
});

test('an image the engine refuses is E_DOCKER', async (t) => {
  const wrong = layers.map((l, i) => (i === 1 ? { ...l, diffId: layers[0]!.diffId } : l));
  const img = buildImage(tinyImageInput(wrong, { env: ['PATH=/bin', 'WHICH=wrong'] }));
  const err = await t.throwsAsync(loadImage(img, 'strata-test/tiny:wrong', { docker: engine.docker }));
  t.true(isStrataError(err));
  t.is((err as { code?: string }).code, 'E_DOCKER');
  t.regex(err!.message, /refused to load image strata-test\/tiny:wrong/);
});

test('a layer file that cannot be read fails the load with that reason', async (t) => {
  const img = buildImage(tinyImageInput(layers, { env: ['PATH=/bin', 'WHICH=missing'] }));
  const broken: BuiltImage = { ...img, layers: img.layers.map((l, i) => (i === 1 ? { ...l, path: join(work, 'missing') } : l)) };
  await t.throwsAsync(loadImage(broken, 'strata-test/tiny:missing', { docker: engine.docker }), { message: /missing/ });
  const err = await t.throwsAsync(engine.docker.getImage(img.configDigest).inspect());
  t.is((err as { statusCode?: number }).statusCode, 404);
});

test('zstd layers are refused before uploading to an engine older than Docker 23', async (t) => {
  const zstd = layers.map((l, i) => (i === 1 ? { ...l, mediaType: MEDIA_TYPE_LAYER_TAR_ZSTD } : l));
  const img = buildImage(tinyImageInput(zstd, { env: ['PATH=/bin', 'WHICH=zstd'] }));
  const err = await t.throwsAsync(loadImage(img, 'strata-test/tiny:zstd', { docker: engine.docker }));
  t.true(isStrataError(err));
  t.regex(err!.message, /cannot load zstd/);
});

test('an unreachable engine is E_DOCKER naming the host', async (t) => {
  const img = buildImage(tinyImageInput(layers));
  const socket = join(work, 'no-such.sock');
  const docker = dockerAt(`unix://${socket}`);
  t.false(await pingDocker(docker));
  t.true(await pingDocker(engine.docker));
  const err = await t.throwsAsync(loadImage(img, 'strata-test/tiny:x', { docker }));
  t.true(isStrataError(err));
  t.is((err as { code?: string }).code, 'E_DOCKER');
  t.true(err!.message.startsWith(`cannot reach the Docker engine at unix://${socket}: `));
  t.regex((err as { hint?: string }).hint ?? '', /DOCKER_HOST/);

  const viaEnv = dockerFromEnv({ DOCKER_HOST: 'tcp://127.0.0.1:1' });
  t.is(dockerHostOf(viaEnv), 'tcp://127.0.0.1:1');
  const tcpErr = await t.throwsAsync(loadImage(img, 'strata-test/tiny:x', { docker: viaEnv }));
  t.is((tcpErr as { code?: string }).code, 'E_DOCKER');
  t.is(dockerHostOf(dockerFromEnv({ DOCKER_HOST: engine.host })), engine.host);
  t.true(await pingDocker(dockerFromEnv({ DOCKER_HOST: engine.host })));
});

test('a private dockerd stops without leaving mounts or files', async (t) => {
  const other = await startDockerd();
  const img = buildImage(tinyImageInput(layers, { env: ['PATH=/bin', 'WHICH=other'] }));
  await loadImage(img, 'strata-test/tiny:other', { docker: other.docker });
  const result = await runIn(other.docker, 'strata-test/tiny:other', 'echo hi');
  t.is(result.stdout, 'hi\n');
  await other.stop();
  t.false(existsSync(other.dir));
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  t.false(mounts.includes(other.dir));
});
