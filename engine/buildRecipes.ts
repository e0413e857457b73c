/**
 * Building a lock's recipes and turning their outputs into layers.
 *
 * For each recipe, in dependency order, whose output is not in the store (`recipes/<key>`, key: the input hash
 * and the layers' mtime): fetch its sources into the store (verified against their sha256), make its build
 * environment (a lock of its build packages, realised and unpacked like any environment: `rootfsFor`), unpack
 * the sources into a scratch source tree, copy in the outputs of the recipes it depends on that share its prefix
 * (those under another prefix are bound read-only there), run the build commands in the sandbox
 * (recipes/build.ts states its rules) with the log in the store (`build-logs/<key>/build.log`), then read the
 * output tree back and store the recipe's own part of it whole (a failed build stores nothing under its key).
 *
 * Each output becomes a `LayerJob` (keyed by its input hash and its content), a dpkg database entry
 * `strata-recipe-NAME`, and the search paths it adds (bin, lib, lib/pkgconfig).
 */
import { availableParallelism } from 'node:os';
import { chmod, copyFile, lstat, mkdir, readdir, readFile, readlink, rename, symlink, writeFile } from 'node:fs/promises';
import { lstatSync } from 'node:fs';
import { basename, join, posix } from 'node:path';
import { StrataError } from '../errors.ts';
import { channelSources } from '../realiser/realise.ts';
import { layerKey, type LayerJob } from '../realiser/layers.ts';
import { MULTIARCH, type InstalledPackage } from '../realiser/tree.ts';
import { layerMtime } from '../realiser/realise.ts';
import type { SearchPaths } from '../realiser/imageConfig.ts';
import {
  BUILD_HOME,
  BUILD_SRC,
  buildArgv,
  buildEnvironment,
  dpkgControl,
  failedStep,
  firstDifference,
  layerEntries,
  md5sums,
  ownEntries,
  ownedPaths,
  outputDigest,
  removeBaseline,
  searchPaths,
  walkOutput,
  type OutputEntry,
} from '../recipes/build.ts';
import { mirrorUrl, recipeClosure, recipeOrder } from '../recipes/recipe.ts';
import { gitTreeTar, unpackSource } from '../recipes/sources.ts';
import { removeTree } from '../run/rootfs.ts';
import type { Bind } from '../run/sandbox/rootSteps.ts';
import type { DerivedCache } from '../store/store.ts';
import type { Ctx } from './ctx.ts';
import { PIP_REQUIREMENTS_FILE, pipRequirementsText } from '../recipes/pip.ts';
import type { LockedRecipe, LockedSource, LockedWheel, Lockfile } from '../model.ts';

/** Bump when what a build is given or how its output is read changes: it invalidates stored outputs. */
const OUTPUT_FORMAT = 'strata-recipe-output-v1';
const LOG_TAIL = 20;

/** An unpacked root filesystem the sandbox can enter (engine/ensureEnvironment.ts makes them). */
export interface BuildRoot {
  rootfs: string;
  stage: string;
  skeletons: DerivedCache;
}

export interface RecipeBuildOptions {
  /** The unpacked rootfs of a lock without recipes: how a build environment is realised. */
  rootfsFor(lock: Lockfile): Promise<BuildRoot>;
  /** The manifest's directory: where a git source given as a relative path lives. */
  projectDir: string;
  env?: NodeJS.ProcessEnv;
  /** Build these recipes again even when their output is stored (the new output replaces the old). */
  rebuild?: Set<string>;
  /** Asked for an output the store does not hold before it is built (a cache registry): true when it put it there. */
  substitute?: (key: string, label: string) => Promise<boolean>;
}

/** What the store records beside an output tree. */
interface OutputMeta {
  name: string;
  input: string;
  digest: string;
  entries: OutputEntry[];
  /** Every entry of the tree the build left (before the dependencies' copies were taken out): for md5sums. */
  md5: Record<string, string>;
  seconds: number;
}

export interface RecipeOutput {
  recipe: LockedRecipe;
  /** The stored output tree (relative to `$PREFIX`). */
  dir: string;
  meta: OutputMeta;
  built: boolean;
}

/** A lock's recipes by name, in build order. */
export function recipesInOrder(lock: Lockfile): LockedRecipe[] {
  const recipes = lock.recipes ?? [];
  const order = recipeOrder(recipes);
  if (!('order' in order)) throw new Error('recipe order: a verified lock has no cycle');
  const byName = new Map(recipes.map((r) => [r.name, r]));
  return order.order.map((n) => byName.get(n)!);
}

/** The store key of a recipe's output: its input hash and the mtime its build is given. */
export function outputKey(r: LockedRecipe, mtime: number): string {
  return layerKey(OUTPUT_FORMAT, mtime, [r.input]);
}

/** The lock of a recipe's build environment: its build packages, on the lock's channels, with no image settings. */
export function buildLockOf(lock: Lockfile, r: LockedRecipe): Lockfile {
  return {
    version: 1,
    manifestSha256: '0'.repeat(64),
    project: { name: 'strata-build', arch: lock.project.arch },
    closure: r.buildClosure,
    channels: lock.channels,
    image: { env: {}, alternatives: {} },
    packages: r.buildPackages,
    hostProvided: r.buildHostProvided,
  };
}

async function fetchSource(r: LockedRecipe, s: LockedSource, lock: Lockfile, ctx: Ctx, o: RecipeBuildOptions): Promise<string> {
  const { store } = ctx;
  if ('git' in s) {
    const have = await store.has(s.sha256);
    if (have) return have;
    const tree = await gitTreeTar({ repo: s.git, rev: s.rev, projectDir: o.projectDir, store, reporter: ctx.reporter, label: `recipe ${r.name}: git source ${s.git}` });
    if (tree.sha256 !== s.sha256) {
      throw new StrataError('E_HASH', `recipe ${r.name}: git source ${s.git} at ${s.rev} gives a tree whose tar has sha256 ${tree.sha256}, but strata.lock records ${s.sha256}`, 'the lock was edited, or this strata writes trees differently from the one that locked it: run `strata lock` again');
    }
    return tree.path;
  }
  const m = mirrorUrl(s.url);
  let urls = [s.url];
  if (m) {
    const c = lock.channels.find((x) => x.name === m.channel)!;
    const src = channelSources(c, o.env);
    urls = [...src.live, ...src.snapshot].map((b) => `${b}/${m.path}`);
  }
  const label = `recipe ${r.name}: source ${s.url}`;
  try {
    return await store.fetch({ urls, sha256: s.sha256, label });
  } catch (e) {
    if (!(e instanceof StrataError)) throw e;
    if (e.code === 'E_HASH') throw new StrataError('E_HASH', e.message, `the sha256 in strata.toml does not match what ${s.url} serves: check the file (sha256sum) and correct the recipe's sha256, or the URL`);
    if (e.code === 'E_FETCH' && /HTTP 40[34]|HTTP 410/.test(e.message)) {
      throw new StrataError('E_FETCH', `recipe ${r.name}: source ${s.url} is not there (${/HTTP \d+/.exec(e.message)![0]} from ${urls.length === 1 ? 'the server' : `all ${urls.length} mirrors`})`, 'correct the URL in strata.toml');
    }
    throw e;
  }
}

/** A pip recipe's locked file, fetched into the store and verified against its sha256 (the store is the judge). */
async function fetchWheel(r: LockedRecipe, w: LockedWheel, ctx: Ctx): Promise<string> {
  try {
    return await ctx.store.fetch({ urls: [w.url], sha256: w.sha256, label: `recipe ${r.name}: file ${w.filename}` });
  } catch (e) {
    if (e instanceof StrataError && e.code === 'E_HASH') throw new StrataError('E_HASH', e.message, `the index now serves other bytes for ${w.filename} than when strata.lock was made; if that is expected, lock again without the old pins (remove strata.lock, then run \`strata lock\`)`);
    throw e;
  }
}

function tail(text: string, n: number): string {
  const lines = text.replace(/\n$/, '').split('\n');
  return lines.slice(-n).map((l) => `  | ${l}`).join('\n');
}

/** Builds one recipe into a fresh scratch directory; returns the output's entries and where the tree is. Throws E_BUILD on failure. */
async function buildOnce(r: LockedRecipe, lock: Lockfile, ctx: Ctx, o: RecipeBuildOptions, outputs: Map<string, RecipeOutput>, scratch: string, logFile: string): Promise<{ own: OutputEntry[]; all: OutputEntry[]; out: string }> {
  const mtime = layerMtime(lock, o.env);
  const files = await Promise.all(r.sources.map((s) => fetchSource(r, s, lock, ctx, o)));
  const wheels = await Promise.all((r.wheels ?? []).map((w) => fetchWheel(r, w, ctx)));
  const root = await o.rootfsFor(buildLockOf(lock, r));
  if (!lstatSync(join(root.rootfs, 'usr/bin/sh'), { throwIfNoEntry: false })) {
    throw new StrataError('E_BUILD', `recipe ${r.name}: its build environment has no /bin/sh to run the build commands with`, 'add a shell to build-depends (dash, bash or busybox), or leave [resolve] essential at its default');
  }
  const src = join(scratch, 'src');
  const home = join(scratch, 'home');
  const out = join(scratch, 'out');
  await Promise.all([src, home, out].map((d) => mkdir(d, { recursive: true })));
  for (let i = 0; i < r.sources.length; i++) {
    const s = r.sources[i]!;
    const name = 'url' in s ? basename(new URL(s.url.replace(/^mirror:\/\//, 'http://')).pathname) || 'source' : 'source';
    await unpackSource(files[i]!, src, s.dest ?? '', { label: `recipe ${r.name}: source ${'url' in s ? s.url : s.git}`, name, strip: 'url' in s });
  }
  // A pip recipe's locked files, under their own names beside the requirements file its install step reads.
  for (let i = 0; i < wheels.length; i++) await copyFile(wheels[i]!, join(src, r.wheels![i]!.filename));
  if (r.kind === 'pip') await writeFile(join(src, PIP_REQUIREMENTS_FILE), pipRequirementsText(r.wheels ?? []));
  // The outputs of the recipes it depends on: copied into $PREFIX when they share it, bound read-only elsewhere.
  const binds: Bind[] = [
    { source: src, target: BUILD_SRC, writable: true },
    { source: home, target: BUILD_HOME, writable: true },
    { source: out, target: r.prefix, writable: true },
  ];
  const byName = new Map((lock.recipes ?? []).map((x) => [x.name, x]));
  for (const d of recipeClosure(r.name, byName)) {
    const dep = outputs.get(d)!;
    const p = dep.recipe.prefix;
    if (p === r.prefix || p.startsWith(`${r.prefix}/`)) {
      await copyMerged(dep.dir, join(out, posix.relative(r.prefix, p)), (path) => {
        throw new StrataError('E_BUILD', `recipe ${r.name}: recipe ${d} and another recipe it depends on both install ${posix.join(p, path)}`, 'give one of them another prefix');
      });
    } else if (r.prefix.startsWith(`${p}/`)) {
      throw new StrataError('E_BUILD', `recipe ${r.name}: its prefix ${r.prefix} lies inside the prefix ${p} of recipe ${d}, which it depends on`, 'give it a prefix of its own, or the same one');
    } else binds.push({ source: dep.dir, target: p, writable: false });
  }
  const baseline = await walkOutput(out, `recipe ${r.name}`);
  await writeFile(logFile, '');
  const env = buildEnvironment(r, { sourceDateEpoch: mtime, jobs: availableParallelism() });
  const [{ chooseMethod }, { runSandbox }] = await Promise.all([import('../run/sandbox/choose.ts'), import('../run/sandbox/supervise.ts')]);
  const code = await runSandbox(
    { rootfs: root.rootfs, argv: buildArgv(r.build), env, cwd: BUILD_SRC, binds, network: false, build: true },
    chooseMethod(o.env),
    { stage: root.stage, skeletons: root.skeletons },
    // A Ctrl-C or a TERM to strata reaches every process of the build (which then fails as stopped), never leaving it running.
    { stdio: 'files', stdout: logFile, stderr: logFile, forwardSignals: true, signalGroup: true },
  );
  if (code !== 0) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    const step = failedStep(log);
    const how = code > 128 && code < 128 + 65 ? `was stopped by signal ${code - 128}` : `failed with exit code ${code}`;
    const what = step !== undefined ? `build step ${step} of ${r.build.length} (${JSON.stringify(r.build[step - 1]!.length > 80 ? `${r.build[step - 1]!.slice(0, 77)}...` : r.build[step - 1])}) ${how}` : `its build ${how}`;
    throw new StrataError('E_BUILD', `recipe ${r.name}: ${what}; the last lines of its log:\n${tail(log, LOG_TAIL)}`, `the whole log: ${logFile}`);
  }
  const all = await walkOutput(out, `recipe ${r.name}`);
  const own = ownEntries(all, baseline);
  await removeBaseline(out, all, own);
  return { own, all, out };
}

/** Copies the tree `from` into `to` (merging directories, keeping modes and symlinks); `clash` is called for a path both hold. */
async function copyMerged(from: string, to: string, clash: (path: string) => never, rel = ''): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const name of await readdir(from)) {
    const src = join(from, name);
    const dst = join(to, name);
    const st = await lstat(src);
    const there = await lstat(dst).catch(() => undefined);
    if (st.isDirectory()) {
      if (there && !there.isDirectory()) clash(posix.join(rel, name));
      if (!there) await mkdir(dst);
      await copyMerged(src, dst, clash, posix.join(rel, name));
      await chmod(dst, st.mode & 0o7777);
    } else {
      if (there) clash(posix.join(rel, name));
      if (st.isSymbolicLink()) await symlink(await readlink(src), dst);
      else {
        await copyFile(src, dst);
        await chmod(dst, st.mode & 0o7777);
      }
    }
  }
}

async function storedOutput(cache: DerivedCache, key: string): Promise<{ dir: string; meta: OutputMeta } | undefined> {
  const dir = cache.path(key);
  const meta = await readFile(join(dir, 'meta.json'), 'utf8')
    .then((t) => JSON.parse(t) as OutputMeta)
    .catch(() => undefined);
  return meta ? { dir: join(dir, 'out'), meta } : undefined;
}

/**
 * The output of every recipe of the lock (or of `only` and what it depends on), building those the store does
 * not hold, in dependency order. Says which recipe builds and how long it took.
 */
export async function ensureRecipeOutputs(lock: Lockfile, ctx: Ctx, o: RecipeBuildOptions, only?: string): Promise<Map<string, RecipeOutput>> {
  const { store, reporter } = ctx;
  const mtime = layerMtime(lock, o.env);
  const cache = store.cache('recipes');
  const logs = store.cache('build-logs');
  const outputs = new Map<string, RecipeOutput>();
  let wanted = recipesInOrder(lock);
  if (only !== undefined) {
    const byName = new Map(wanted.map((r) => [r.name, r]));
    const need = new Set([...recipeClosure(only, byName), only]);
    wanted = wanted.filter((r) => need.has(r.name));
  }
  for (const r of wanted) {
    const key = outputKey(r, mtime);
    if (o.rebuild?.has(r.name)) await cache.remove(key);
    let have = await storedOutput(cache, key);
    if (!have && !o.rebuild?.has(r.name) && (await o.substitute?.(key, `recipe ${r.name} ${r.version}`))) have = await storedOutput(cache, key);
    if (have) {
      outputs.set(r.name, { recipe: r, ...have, built: false });
      continue;
    }
    const started = Date.now();
    const logFile = join(await logs.ensureDir(key), 'build.log');
    reporter.info(`building recipe ${r.name} ${r.version} (log: ${logFile})`);
    const scratch = await store.tmpDir();
    try {
      const { own, all, out } = await buildOnce(r, lock, ctx, o, outputs, scratch, logFile);
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      const meta: OutputMeta = { name: r.name, input: r.input, digest: outputDigest(own), entries: own, md5: Object.fromEntries(all.filter((e) => e.md5).map((e) => [e.path, e.md5!])), seconds };
      const dir = await cache.dir(key, async (tmp) => {
        await rename(out, join(tmp, 'out'));
        await writeFile(join(tmp, 'build.log'), await readFile(logFile));
        await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta));
      });
      outputs.set(r.name, { recipe: r, dir: join(dir, 'out'), meta, built: true });
      const files = own.filter((e) => e.type !== 'dir').length;
      reporter.info(`built recipe ${r.name} ${r.version} in ${seconds} s: ${files} files under ${r.prefix}`);
      if (files === 0) reporter.warn(`recipe ${r.name} installed nothing under $PREFIX (${r.prefix}); its build commands should install there`);
    } finally {
      await removeTree(scratch);
    }
  }
  return outputs;
}

/** `strata build NAME --check`: builds the recipe again in a fresh sandbox and compares the two outputs byte for byte. */
export async function checkRecipe(lock: Lockfile, name: string, ctx: Ctx, o: RecipeBuildOptions): Promise<{ first: RecipeOutput; files: number }> {
  const outputs = await ensureRecipeOutputs(lock, ctx, o, name);
  const first = outputs.get(name)!;
  const key = outputKey(first.recipe, layerMtime(lock, o.env));
  const logFile = join(await ctx.store.cache('build-logs').ensureDir(key), 'check.log');
  ctx.reporter.info(`building recipe ${name} a second time to compare (log: ${logFile})`);
  const scratch = await ctx.store.tmpDir();
  try {
    const { own } = await buildOnce(first.recipe, lock, ctx, o, outputs, scratch, logFile);
    const diff = firstDifference(first.meta.entries, own);
    if (diff) {
      throw new StrataError('E_BUILD', `recipe ${name} is not reproducible: the second build differs from the first at ${first.recipe.prefix}/${diff.path}: ${diff.why}`, 'builds must not depend on time, randomness, the host or the order of directory listings; SOURCE_DATE_EPOCH is set for tools that stamp dates');
    }
    return { first, files: own.filter((e) => e.type !== 'dir').length };
  } finally {
    await removeTree(scratch);
  }
}

/** The image's share of the recipes: one layer each (dependency order), their dpkg entries, their search paths. */
export function recipeLayers(lock: Lockfile, outputs: Map<string, RecipeOutput>, mtime: number): { jobs: LayerJob[]; installed: InstalledPackage[]; paths: SearchPaths } {
  const arch = lock.project.arch;
  const jobs: LayerJob[] = [];
  const installed: InstalledPackage[] = [];
  const paths: SearchPaths = { bin: [], lib: [], pkgconfig: [] };
  for (const r of recipesInOrder(lock)) {
    const out = outputs.get(r.name)!;
    const { entries, digest } = out.meta;
    jobs.push({
      label: `recipe ${r.name} ${r.version}`,
      key: layerKey('recipe', mtime, [r.name, r.input, r.resolvedDepends, digest]),
      entries: () => layerEntries(r, arch, entries, out.dir, digest),
      comment: `${r.name}=${r.version} input ${r.input}`,
    });
    const all = entries.map((e) => ({ ...e, ...(out.meta.md5[e.path] ? { md5: out.meta.md5[e.path] } : {}) }));
    installed.push({ name: `strata-recipe-${r.name}`, arch, control: dpkgControl(r, arch, entries, digest), paths: ownedPaths(r, entries), md5sums: md5sums(r, entries, all), conffiles: [] });
    const sp = searchPaths(r, entries, MULTIARCH[arch]);
    paths.bin.push(...sp.bin);
    paths.lib.push(...sp.lib);
    paths.pkgconfig.push(...sp.pkgconfig);
  }
  return { jobs, installed, paths };
}
