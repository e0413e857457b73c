/**
 * Puts a built image into a Docker engine, addressed by DOCKER_HOST (`unix:///path`, `tcp://host:port`)
 * or the default local socket.
 *
 * "Send only what the engine lacks" is limited by the Engine API: `POST /images/load` (API 1.41, Docker
 * 20.10) takes a complete docker-archive and has no way to skip layers the engine already holds, and there
 * is no local endpoint to push single blobs. So the one saving available is whole-image: when the engine
 * already has the image (its ID is the config digest, or the manifest digest with the containerd image
 * store), nothing is uploaded and the image is only tagged. Otherwise the archive is built on the fly and
 * streamed, never written to disk; the engine then skips unpacking layers it already has (by chain ID).
 */
import type Dockerode from 'dockerode';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { StrataError } from '../../errors.ts';
import { formatBytes, quietReporter } from '../../report/reporter.ts';
import type { Reporter } from '../../report/reporter.ts';
import { dockerFromEnv, dockerHostOf, isNotFound, refused, unreachable, PING_TIMEOUT_MS, type HttpError, type WithAbort } from '../../docker/engine.ts';
import { dockerArchiveStream } from './archive.ts';
import type { BuiltImage } from './image.ts';
import { parseReference } from './reference.ts';
import { MEDIA_TYPE_LAYER_TAR_ZSTD } from './spec.ts';

/** Docker's classic image store refuses images deeper than this. */
const MAX_LAYERS = 125;
/** First Docker release whose `docker load` reads zstd-compressed layers. */
const ZSTD_MIN_MAJOR = 23;

/** The engine's ID of the image when it already has it, else null. */
async function findImage(docker: Dockerode, img: BuiltImage): Promise<string | null> {
  for (const ref of [img.configDigest, img.manifestDigest]) {
    try {
      const info = (await docker.getImage(ref).inspect()) as { Id: string };
      return info.Id;
    } catch (e) {
      if (isNotFound(e)) continue;
      throw refused(docker, `inspect image ${ref}`, e);
    }
  }
  return null;
}

/** Counts bytes passing through, for progress. */
function byteCounter(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
}

/** Reads the JSON-lines answer of `POST /images/load` to its end; returns the first error it reports. */
function readLoadAnswer(answer: NodeJS.ReadableStream): Promise<string | null> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    let error: string | null = null;
    const take = (line: string) => {
      if (line.trim() === '') return;
      try {
        const msg = JSON.parse(line) as { error?: string; errorDetail?: { message?: string } };
        if (error === null && (msg.error || msg.errorDetail)) error = msg.errorDetail?.message ?? msg.error ?? 'unknown error';
      } catch {
        if (error === null) error = line.trim();
      }
    };
    answer.on('data', (chunk: Buffer | string) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        take(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
    answer.on('error', reject);
    answer.on('end', () => {
      take(buffered);
      resolve(error);
    });
  });
}

export interface LoadResult {
  /** The engine's image ID. */
  imageId: string;
  /** Layers uploaded: all of them, or none when the engine already had the image. */
  sentLayers: number;
  skippedLayers: number;
}

/**
 * Makes `repoTag` name `img` in the Docker engine: tags the image when the engine already has it, else
 * streams a docker-archive of it to `POST /images/load`. Throws E_DOCKER when the engine is unreachable,
 * too old for the image's layer compression, or refuses the image.
 */
export async function loadImage(
  img: BuiltImage,
  repoTag: string,
  opts: { docker?: Dockerode; reporter?: Reporter } = {},
): Promise<LoadResult> {
  const docker = opts.docker ?? dockerFromEnv();
  const reporter = opts.reporter ?? quietReporter();
  const ref = parseReference(repoTag);
  if (ref.digest) throw new StrataError('E_USAGE', `image reference ${repoTag} has a digest; give name:tag`);
  const { repository: repo, tag } = ref;

  let version: { Version?: string; ApiVersion?: string };
  try {
    version = await (docker as unknown as WithAbort).version({ abortSignal: AbortSignal.timeout(PING_TIMEOUT_MS) });
  } catch (e) {
    if (typeof e === 'object' && e !== null && (e as HttpError).statusCode !== undefined) {
      throw refused(docker, 'report its version', e);
    }
    throw unreachable(docker, e);
  }

  const existing = await findImage(docker, img);
  if (existing !== null) {
    try {
      await docker.getImage(existing).tag({ repo, tag });
    } catch (e) {
      throw refused(docker, `tag image ${existing} as ${repoTag}`, e);
    }
    reporter.info(`the Docker engine already has ${repoTag} (${existing.slice(0, 19)}); tagged it, uploaded nothing`);
    return { imageId: existing, sentLayers: 0, skippedLayers: img.layers.length };
  }

  if (img.layers.length > MAX_LAYERS) {
    throw new StrataError(
      'E_DOCKER',
      `image ${repoTag} has ${img.layers.length} layers; Docker refuses images with more than ${MAX_LAYERS}`,
      'realise the image with fewer layers',
    );
  }
  const major = Number.parseInt(version.Version ?? '', 10);
  if (img.layers.some((l) => l.mediaType === MEDIA_TYPE_LAYER_TAR_ZSTD) && Number.isFinite(major) && major < ZSTD_MIN_MAJOR) {
    throw new StrataError(
      'E_DOCKER',
      `the Docker engine at ${dockerHostOf(docker)} (${version.Version}) cannot load zstd-compressed layers`,
      `realise the image with gzip or uncompressed layers, or use Docker ${ZSTD_MIN_MAJOR} or later`,
    );
  }

  const total = img.layers.reduce((n, l) => n + l.size, 0) + img.config.length + img.manifest.length;
  reporter.info(`loading ${repoTag} into the Docker engine: ${img.layers.length} layers, ${formatBytes(total)}`);
  const progress = reporter.progress(`loading ${repoTag}`, total, 'bytes');
  const archive = dockerArchiveStream(img, repoTag);
  const counted = archive.pipe(byteCounter((n) => progress.tick(n)));
  let archiveError: Error | null = null;
  archive.on('error', (err) => {
    archiveError = err;
    counted.destroy(err);
  });
  let answerError: string | null;
  try {
    const answer = await docker.loadImage(counted, { quiet: true });
    answerError = await readLoadAnswer(answer);
  } catch (e) {
    archive.destroy();
    // A layer file that cannot be read is our failure, not the engine's.
    if (archiveError !== null) throw archiveError;
    if (typeof e === 'object' && e !== null && (e as HttpError).statusCode !== undefined) {
      throw refused(docker, `load image ${repoTag}`, e);
    }
    const err = e as NodeJS.ErrnoException;
    if (err.syscall === 'connect' || err.code === 'ECONNRESET' || err.code === 'EPIPE') throw unreachable(docker, e);
    throw e;
  } finally {
    progress.done();
  }
  if (answerError !== null) throw refused(docker, `load image ${repoTag}`, new Error(answerError));

  const loaded = await findImage(docker, img);
  if (loaded === null) {
    throw new StrataError('E_DOCKER', `the Docker engine at ${dockerHostOf(docker)} accepted ${repoTag} but does not list it`);
  }
  // Engines that import the archive's OCI index rather than its manifest.json may not apply RepoTags.
  try {
    await docker.getImage(loaded).tag({ repo, tag });
  } catch (e) {
    throw refused(docker, `tag image ${loaded} as ${repoTag}`, e);
  }
  return { imageId: loaded, sentLayers: img.layers.length, skippedLayers: 0 };
}
