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
import { mkdir, rename } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type Dockerode from 'dockerode';
import { StrataError } from '../errors.ts';
import { rootfsKey, type RootfsEntry } from '../run/rootfs.ts';
import type { DerivedCache } from '../store/store.ts';
import type { BuildRoot } from './buildRecipes.ts';
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
 * `generated` is false, the layer of what the maintainer scripts would have made (engine/generated.ts: made by the
 * environment's own tools in the sandbox over a tree of the packages alone, hard links to the stored unpacked
 * packages, when the store does not hold it). Records the run pointer, so that `run --frozen` finds the image.
 */
export async function realiseLock(lock: Lockfile, ctx: Ctx, opts: RealiseOpts = {}, generated = true): Promise<RealisedImage> {
  const trees: ToolsTree[] = [];
  try {
    const result = await realiseImage(lock, ctx, opts, generated, trees);
    await ctx.store.cache('run').writeJson(pointerKey(lock, generated), pointerOf(result.plain));
    if (trees[0] && (lock.recipes ?? []).length === 0) await adoptToolsTree(ctx, trees[0], result);
    return result;
  } finally {
    if (trees.length > 0) {
      const { removeTree } = await import('../run/rootfs.ts');
      for (const t of trees) await removeTree(t.scratch);
    }
  }
}

type RealiseOpts = Omit<RealiseOptions, 'store' | 'reporter' | 'extraJobs' | 'extraInstalled' | 'searchPaths'>;

/** The tree the generated layer's tools ran over: the image without that layer, in a scratch directory. */
interface ToolsTree {
  scratch: string;
  tree: string;
  add: (entries: RootfsEntry[], mtime: number) => Promise<void>;
  finish: () => Promise<void>;
  image: RealisedImage;
}

async function realiseImage(lock: Lockfile, ctx: Ctx, opts: RealiseOpts, generated: boolean, trees: ToolsTree[] = []): Promise<RealisedImage> {
  const { realise, layerMtime } = await import('../realiser/realise.ts');
  // The cache registry, when one is set (engine/substitute.ts): asked before anything is built.
  const sub = ctx.cache;
  const base = { store: ctx.store, reporter: ctx.reporter, ...opts, ...(sub ? { substitute: (j: { key: string; label: string }) => sub.layer(j) } : {}) };
  const mtime = layerMtime(lock, opts.env);
  const { generatedSteps, generatedLayer } = await import('./generated.ts');
  const rootfsFor = async (l: Lockfile): Promise<BuildRoot> => {
    const t = await packagesTree(l, ctx, opts);
    trees.push(t);
    return { rootfs: t.tree, stage: await ctx.store.cache('rootfs').ensureDir('.stage'), skeletons: ctx.store.cache('skeletons') };
  };
  const genJob = generated && generatedSteps(lock).length > 0
    ? await generatedLayer(packagesOnly(lock), ctx, { rootfsFor, mtime, ...(opts.frozen ? { frozen: true } : {}), ...(opts.env ? { env: opts.env } : {}), ...(sub ? { substitute: (k: string, label: string) => sub.output('generated', k, label) } : {}) })
    : undefined;
  const genJobs = genJob ? [genJob] : [];
  if ((lock.recipes ?? []).length === 0) {
    const cached = await sub?.image(lock, generated, { mtime, gzip: opts.gzip ?? false });
    return cached ?? realise(lock, genJobs.length > 0 ? { ...base, extraJobs: genJobs } : base);
  }
  const { ensureRecipeOutputs, recipeLayers } = await import('./buildRecipes.ts');
  const outputs = await ensureRecipeOutputs(lock, ctx, { rootfsFor: (l) => ensureRootfs(l, ctx, { frozen: false }), projectDir: ctx.projectDir ?? process.cwd(), ...(opts.env ? { env: opts.env } : {}), ...(sub ? { substitute: (k: string, label: string) => sub.output('recipes', k, label) } : {}) });
  const { jobs, installed, paths } = recipeLayers(lock, outputs, mtime);
  const cached = await sub?.image(lock, generated, { mtime, gzip: opts.gzip ?? false, paths });
  return cached ?? realise(lock, { ...base, extraJobs: [...jobs, ...genJobs], extraInstalled: installed, searchPaths: paths });
}

/**
 * A private tree of the image of `lock` without the generated layer, hard links to the stored unpacked packages,
 * made in a scratch directory: what the generated layer's tools run over.
 */
async function packagesTree(lock: Lockfile, ctx: Ctx, opts: RealiseOpts): Promise<ToolsTree> {
  const image = await realiseImage(lock, ctx, { ...(opts.env ? { env: opts.env } : {}), ...(opts.jobs ? { jobs: opts.jobs } : {}), ...(opts.frozen ? { frozen: true } : {}) }, false);
  const { linkedTree, removeTree } = await import('../run/rootfs.ts');
  const scratch = await ctx.store.tmpDir();
  const tree = join(scratch, 'root');
  try {
    await mkdir(tree);
    const t = linkedTree(tree);
    if (!image.layerJobs) {
      throw new StrataError('E_RUN', 'the cache registry gave the image of the packages but not the files the generated layer holds, and this machine has no unpacked packages to make them from', 'push the cache again from a machine that realised this lock (`strata push --cache`), or realise without the cache');
    }
    for (const j of image.layerJobs) await t.add(await j.entries(), image.mtime);
    await t.finish();
    return { scratch, tree, ...t, image };
  } catch (e) {
    await removeTree(scratch);
    throw e;
  }
}

/**
 * Makes the tools' tree the image's root filesystem by adding the generated layer, when that gives what the image's
 * layers give: the tree's layers are the image's but that one, and the generated layer (below the top layer in the
 * image, above it in the tree) shares no path with the top layer. Otherwise the tree is removed, and `ensureRootfs`
 * links one when a run needs it.
 */
async function adoptToolsTree(ctx: Ctx, t: ToolsTree, result: RealisedImage): Promise<void> {
  const layers = result.plain.layers;
  const treeLayers = t.image.plain.layers;
  if (layers.length !== treeLayers.length + 1) return;
  const genAt = layers.length - 2;
  const rest = [...layers.slice(0, genAt), layers[genAt + 1]!];
  if (rest.some((l, i) => l.diffId !== treeLayers[i]!.diffId)) return;
  if (!result.layerJobs) return;
  const top = new Map((await result.layerJobs[genAt + 1]!.entries()).map((e) => [e.path, e.type]));
  const gen = await result.layerJobs[genAt]!.entries();
  for (const e of gen) {
    if (top.has(e.path)) return;
    for (let d = posix.dirname(e.path); d !== '.'; d = posix.dirname(d)) if (top.has(d) && top.get(d) !== 'dir') return;
  }
  const rootfs = ctx.store.cache('rootfs');
  const key = rootfsKey(result.plain.manifestDigest);
  if (existsSync(rootfs.path(key))) return;
  try {
    await t.add(gen, result.mtime);
    await t.finish();
  } catch {
    return; // a path the tree cannot take as the layers would: ensureRootfs makes the tree afresh
  }
  const { removeTree } = await import('../run/rootfs.ts');
  await rootfs.dir(
    key,
    async (tmp) => {
      await rename(t.tree, tmp);
      await rootfs.writeJson(key, { layers: layers.map((l) => ({ diffId: l.diffId, size: l.size })) });
    },
    { remove: removeTree },
  );
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
  const { linkRootfs, unpackRootfs } = await import('../run/rootfs.ts');
  const result = await realiseLock(lock, ctx, o.frozen ? { frozen: true } : {}, generated);
  const pointer = pointerOf(result.plain);
  const jobs = result.layerJobs;
  if (jobs) {
    const layers = jobs.map((j, i) => ({ diffId: result.plain.layers[i]!.diffId, size: result.plain.layers[i]!.size, entries: j.entries }));
    await linkRootfs(rootfs, pointer.manifestDigest, layers, result.mtime);
  } else {
    // An image from a cache registry: its packages were never unpacked here; its layers come from the gzip blobs.
    const { layerStream } = await import('../realiser/oci/files.ts');
    const layers = result.plain.layers.map((l) => ({ path: l.path ?? `layer ${l.diffId}`, size: l.size, diffId: l.diffId, open: () => layerStream(l) }));
    await unpackRootfs(rootfs, pointer.manifestDigest, layers, ctx.reporter);
  }
  return sandboxEnvironment(ctx, pointer);
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
