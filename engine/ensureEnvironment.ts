/**
 * An enterable environment for a lock: an unpacked root filesystem for the sandbox backend, or an image in a Docker
 * engine for the Docker backend, realised first when it is not there yet (unless `frozen`).
 *
 * Fast path: a run pointer in the store's `run` cache maps a lock (its whole content, plus SOURCE_DATE_EPOCH) to the image it
 * realised: manifest digest, config digest and environment. When that pointer and the unpacked rootfs exist, the
 * sandbox starts without loading the realiser at all. Heavy modules (the realiser, dockerode) are imported only on
 * the paths that need them.
 *
 * A layer found damaged while it is unpacked into a root filesystem (its bytes do not hash to its diffId) is dropped
 * from the store and the image realised again, which builds that layer anew, once, with one warning. A damaged run
 * pointer is said and made again.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import type Dockerode from 'dockerode';
import { StrataError } from '../errors.ts';
import { rootfsKey } from '../run/rootfs.ts';
import type { DerivedCache } from '../store/store.ts';
import type { BuiltImage } from '../realiser/oci/image.ts';
import type { RealisedImage, RealiseOptions } from '../realiser/realise.ts';
import type { Ctx } from './ctx.ts';
import type { Lockfile } from '../model.ts';

/** What realising a lock produced, as far as running it needs. */
export interface ImagePointer {
  manifestDigest: string;
  configDigest: string;
  /** The image config's Env, `K=V`. */
  env: string[];
}

export interface SandboxEnvironment {
  pointer: ImagePointer;
  /** The unpacked root filesystem (read-only by contract). */
  rootfs: string;
  /** An empty directory the unshare method mounts the new root on. */
  stage: string;
  /** Where the unshare method keeps the skeletons it copies onto the new root. */
  skeletons: DerivedCache;
}

/** The run pointer's key: the lock's whole content, plus SOURCE_DATE_EPOCH (which changes the image). */
function pointerKey(lock: Lockfile, generated = true): string {
  return createHash('sha256').update(JSON.stringify([lock, process.env.SOURCE_DATE_EPOCH ?? '', ...(generated ? [] : ['without the generated layer'])])).digest('hex');
}

/**
 * Realises a lock: its recipes first when it has any (engine/buildRecipes.ts: each output not in the store is
 * built, its build environment made with `ensureRootfs`), their outputs as layers above the packages'; then, unless
 * `generated` is false, the layers of what the maintainer scripts would have made (engine/generated.ts: made in the
 * same realise, once the packages are unpacked, by the environment's own tools in the sandbox over trees of hard
 * links to the packages they read, for the parts the store does not hold). Records the run pointer, so that
 * `run --frozen` finds the image.
 */
export async function realiseLock(lock: Lockfile, ctx: Ctx, opts: RealiseOpts = {}, generated = true): Promise<RealisedImage> {
  const result = await realiseImage(lock, ctx, opts, generated);
  await ctx.store.cache('run').writeJson(pointerKey(lock, generated), pointerOf(result.plain));
  return result;
}

type RealiseOpts = Omit<RealiseOptions, 'store' | 'reporter' | 'extraJobs' | 'extraInstalled' | 'searchPaths' | 'generated'>;

async function realiseImage(lock: Lockfile, ctx: Ctx, opts: RealiseOpts, generated: boolean): Promise<RealisedImage> {
  const { realise, layerMtime } = await import('../realiser/realise.ts');
  // The cache registry, when one is set (engine/substitute.ts): asked before anything is built.
  const sub = ctx.cache;
  const mtime = layerMtime(lock, opts.env);
  const { generatedHook } = await import('./generated.ts');
  let generatedKeys: string[] | undefined;
  const hook = generated
    ? generatedHook(packagesOnly(lock), ctx, { mtime, keys: (k) => (generatedKeys = k), ...(opts.frozen ? { frozen: true } : {}), ...(opts.env ? { env: opts.env } : {}), ...(sub ? { substitute: (k: string, label: string) => sub.output('generated', k, label) } : {}) })
    : undefined;
  const base = { store: ctx.store, reporter: ctx.reporter, ...opts, ...(sub ? { substitute: (j: { key: string; label: string }) => sub.layer(j) } : {}), ...(hook ? { generated: hook } : {}) };
  const withKeys = (r: RealisedImage): RealisedImage => (generatedKeys ? { ...r, generatedKeys } : r);
  if ((lock.recipes ?? []).length === 0) {
    const cached = await sub?.image(lock, generated, { mtime, gzip: opts.gzip ?? false });
    return cached ?? withKeys(await realise(lock, base));
  }
  const { ensureRecipeOutputs, recipeLayers } = await import('./buildRecipes.ts');
  const outputs = await ensureRecipeOutputs(lock, ctx, { rootfsFor: (l) => ensureRootfs(l, ctx, { frozen: false }), projectDir: ctx.projectDir ?? process.cwd(), ...(opts.env ? { env: opts.env } : {}), ...(sub ? { substitute: (k: string, label: string) => sub.output('recipes', k, label) } : {}) });
  const { jobs, installed, paths } = recipeLayers(lock, outputs, mtime);
  const cached = await sub?.image(lock, generated, { mtime, gzip: opts.gzip ?? false, paths });
  return cached ?? withKeys(await realise(lock, { ...base, extraJobs: jobs, extraInstalled: installed, searchPaths: paths }));
}

/** The lock of the packages alone (its recipes left out): what the generated layer is made over. */
export function packagesOnly(lock: Lockfile): Lockfile {
  const { recipes: _recipes, ...rest } = lock;
  return rest;
}

function pointerOf(image: BuiltImage): ImagePointer {
  const config = JSON.parse(image.config.toString('utf8')) as { config?: { Env?: string[] } };
  return { manifestDigest: image.manifestDigest, configDigest: image.configDigest, env: config.config?.Env ?? [] };
}

async function sandboxEnvironment(ctx: Ctx, pointer: ImagePointer): Promise<SandboxEnvironment> {
  const rootfs = ctx.store.cache('rootfs');
  return { pointer, rootfs: rootfs.path(rootfsKey(pointer.manifestDigest)), stage: await rootfs.ensureDir('.stage'), skeletons: ctx.store.cache('skeletons') };
}

function pointerProblem(v: unknown): string | undefined {
  const p = v as Partial<ImagePointer> | null;
  if (typeof p !== 'object' || p === null) return 'not an object';
  if (typeof p.manifestDigest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(p.manifestDigest) || typeof p.configDigest !== 'string' || !Array.isArray(p.env)) return 'fields missing';
  return undefined;
}

/** The run pointer of a lock, saying so when a damaged one is to be made again. */
async function readPointer(lock: Lockfile, ctx: Ctx, generated = true): Promise<ImagePointer | undefined> {
  const read = await ctx.store.cache('run').readEntry<ImagePointer>(pointerKey(lock, generated), pointerProblem);
  if (read.state === 'damaged') ctx.reporter.warn(`the run pointer of this lock in the store was damaged (${read.reason}); finding the image again`);
  return read.state === 'ok' ? read.value : undefined;
}

/**
 * The root filesystem of the lock's image, realising it first when needed; with `generated` false, of the image
 * without the generated layer. The tree is made of hard links to the files the store holds (the unpacked packages,
 * the generated and recipe outputs), not a copy of them. With `frozen`, the lock must have been realised before
 * (`strata realise` records it): making the tree from what the store holds is allowed, fetching or running a tool is not.
 */
export async function ensureRootfs(lock: Lockfile, ctx: Ctx, o: { frozen: boolean }, generated = true): Promise<SandboxEnvironment> {
  const rootfs = ctx.store.cache('rootfs');
  const known = await readPointer(lock, ctx, generated);
  if (known && existsSync(rootfs.path(rootfsKey(known.manifestDigest)))) return sandboxEnvironment(ctx, known);
  if (o.frozen && !known) {
    throw new StrataError('E_RUN', 'the environment is not realised yet and --frozen forbids realising it', 'run `strata realise` first, or drop --frozen');
  }
  if (!known) ctx.reporter.info('preparing the environment: realising it (cached layers are reused)');
  const result = await realiseLock(lock, ctx, o.frozen ? { frozen: true } : {}, generated);
  return sandboxEnvironment(ctx, await makeRootfs(result, ctx));
}

/**
 * Makes the root filesystem of a realised image unless the store has it: hard links to the stored files (or, for
 * an image from a cache registry, whose packages were never unpacked here, its layers unpacked from the gzip blobs).
 * `strata realise` calls it too, so that the first `strata run` after it enters at once.
 */
export async function makeRootfs(result: RealisedImage, ctx: Ctx): Promise<ImagePointer> {
  const rootfs = ctx.store.cache('rootfs');
  const pointer = pointerOf(result.plain);
  if (existsSync(rootfs.path(rootfsKey(pointer.manifestDigest)))) return pointer;
  const { linkRootfs, unpackRootfs } = await import('../run/rootfs.ts');
  const jobs = result.layerJobs;
  if (jobs) {
    const layers = jobs.map((j, i) => ({ diffId: result.plain.layers[i]!.diffId, size: result.plain.layers[i]!.size, entries: j.entries }));
    await linkRootfs(rootfs, pointer.manifestDigest, layers, result.mtime);
  } else {
    const { layerStream } = await import('../realiser/oci/files.ts');
    const layers = result.plain.layers.map((l) => ({ path: l.path ?? `layer ${l.diffId}`, size: l.size, diffId: l.diffId, open: () => layerStream(l) }));
    await unpackRootfs(rootfs, pointer.manifestDigest, layers, ctx.reporter);
  }
  return pointer;
}

/** The engine's ID of the image `tag`, or undefined when it has none. */
function imageId(docker: Dockerode, tag: string): Promise<string | undefined> {
  return docker
    .getImage(tag)
    .inspect()
    .then((i) => i.Id)
    .catch(() => undefined);
}

/** The lock's image in the Docker engine under its default tag, realising and loading it first when needed. */
export async function ensureDockerImage(lock: Lockfile, ctx: Ctx, o: { docker: Dockerode; frozen: boolean }): Promise<ImagePointer & { tag: string }> {
  const { defaultTag } = await import('../realiser/realise.ts');
  const tag = defaultTag(lock);
  const known = await readPointer(lock, ctx);
  const id = known || o.frozen ? await imageId(o.docker, tag) : undefined;
  if (known && id === known.configDigest) return { ...known, tag };
  if (o.frozen) {
    if (id !== undefined) return { manifestDigest: '', configDigest: id, env: [], tag };
    throw new StrataError('E_RUN', `the Docker engine has no image ${tag} and --frozen forbids realising it`, 'run `strata realise --load` first, or drop --frozen');
  }
  const result = await realiseLock(lock, ctx);
  const pointer = pointerOf(result.plain);
  const image = result.plain;
  const { loadImage } = await import('../realiser/oci/dockerLoad.ts');
  await loadImage(image, tag, { docker: o.docker, reporter: ctx.reporter });
  return { ...pointer, tag };
}
