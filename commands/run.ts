/**
 * `strata run -- CMD` and `strata shell`: enter the locked environment through Docker or the sandbox.
 *
 * Both lock and realise first when the lock or the image is missing or stale (saying so), unless `--locked` /
 * `--frozen` (engine/ensureLock.ts, engine/ensureEnvironment.ts). The project directory (the manifest's) is
 * mounted at its own path and is the working directory (the current directory when it lies inside the project);
 * HOME is the invoking user's, mounted when it exists; the command runs as the invoking user (the sudo invoker when
 * root runs for one). See run/runSpec.ts.
 */
import { dirname, resolve } from 'node:path';
import { lockPathFor } from '../lock/lockfile.ts';
import { loadManifest } from '../manifest/manifest.ts';
import { StrataError } from '../errors.ts';
import { gpuForImage, gpuForRun } from '../run/gpu.ts';
import { hostFacts, runSpecFor } from '../run/runSpec.ts';
import { openCtx } from '../engine/ctx.ts';
import { openProjectCtx } from '../engine/projectCtx.ts';
import { ensureLock } from '../engine/ensureLock.ts';
import { pickBackend } from '../engine/backends.ts';

export interface RunOptions {
  manifest: string;
  backend?: string;
  gpus?: string;
  locked?: boolean;
  frozen?: boolean;
  /** false with --no-network. */
  network?: boolean;
  env?: string[];
  shareTmp?: boolean;
  /** Run this pulled (or pulled now) image instead of the manifest's environment. */
  image?: string;
  insecure?: boolean;
}

export async function runCommand(command: string[], opts: RunOptions): Promise<void> {
  if (command.length === 0) throw new StrataError('E_USAGE', 'strata run needs a command: strata run -- CMD [ARGS...]');
  process.exitCode = await enter(command, opts);
}

export async function shellCommand(opts: RunOptions): Promise<void> {
  process.exitCode = await enter(undefined, opts);
}

async function enter(command: string[] | undefined, opts: RunOptions): Promise<number> {
  if (opts.image !== undefined) return enterImage(opts.image, command, opts);
  const manifest = loadManifest(opts.manifest);
  const ctx = await openProjectCtx(manifest, opts);
  const lock = await ensureLock(manifest, ctx, opts.locked || opts.frozen ? 'locked' : 'relock');
  const host = hostFacts();
  const backend = await pickBackend(opts.backend, ctx, { uid: host.uid });
  const gpu = gpuForRun(lock, opts.gpus, process.env.STRATA_GPU_ROOT || '/');
  const spec = runSpecFor(lock, dirname(manifest.path), host, { ...(command ? { command } : {}), ...(opts.env ? { env: opts.env } : {}), network: opts.network !== false, ...(gpu ? { gpu } : {}), ...(opts.shareTmp ? { shareTmp: true } : {}), venv: manifest.develop?.venv ?? 'auto' });
  const environment = await backend.prepare(lock, ctx, { frozen: Boolean(opts.frozen) });
  const { recordRoot, runningNow } = await import('../engine/gc.ts');
  await recordRoot(ctx.store, { lockPath: resolve(lockPathFor(manifest.path)), closure: lock.closure });
  runningNow(ctx.store);
  return environment.run(spec);
}

/** `--image REF`: no manifest and no lock; the image from the store (pulled first when missing), through the sandbox. */
async function enterImage(ref: string, command: string[] | undefined, opts: RunOptions): Promise<number> {
  if (opts.backend !== undefined && opts.backend !== 'sandbox') throw new StrataError('E_USAGE', `--image runs through the sandbox backend; --backend ${opts.backend} is not supported with it yet`, 'drop --backend, or pull the image with docker pull');
  const ctx = await openCtx();
  const { imageFor } = await import('../engine/images.ts');
  const img = await imageFor(ref, ctx, { noPull: Boolean(opts.frozen), ...(opts.insecure ? { insecure: true } : {}) });
  const host = hostFacts();
  const gpu = gpuForImage(img.gpuDriverHost, opts.gpus, process.env.STRATA_GPU_ROOT || '/');
  const subject = { project: { name: img.title ?? 'image' }, image: {} };
  const spec = runSpecFor(subject, host.cwd, host, { ...(command ? { command } : {}), ...(opts.env ? { env: opts.env } : {}), network: opts.network !== false, ...(gpu ? { gpu } : {}) });
  const { prepareImage } = await import('../engine/backends.ts');
  const environment = await prepareImage(img, ctx);
  const { recordRoot, runningNow } = await import('../engine/gc.ts');
  await recordRoot(ctx.store, { image: ref });
  runningNow(ctx.store);
  return environment.run(spec);
}
