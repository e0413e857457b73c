/**
 * Locking a manifest's recipes, after its environment is solved: each recipe's build environment resolved with
 * the same solver and policy as `[packages]` (plus the Essential set) into a closure of its own, each git source
 * pinned by the sha256 of its tree's deterministic tar (made now, kept in the store), each `depends` resolved to
 * the environment's locked packages, and each recipe's input hash.
 */
import { dirname } from 'node:path';
import { StrataError } from '../errors.ts';
import { environmentClosure } from '../lock/closure.ts';
import { lockedPackages } from '../lock/fromSolution.ts';
import { canonicalRecipe, packageRequests, recipeClosure, recipeInput, recipeOrder } from '../recipes/recipe.ts';
import { gitTreeTar } from '../recipes/sources.ts';
import { rootCandidates, solve } from '../resolver/solve.ts';
import { suggestNames } from '../resolver/suggest.ts';
import type { Universe } from '../resolver/universe.ts';
import type { Ctx } from './ctx.ts';
import type { LockedChannel, LockedRecipe, LockedSource, LockedWheel, Lockfile, Manifest, PackageRequest, RecipeSpec, SolvedPackage } from '../model.ts';

/** The channel packages a recipe's build environment needs: its build-depends and depends, and those of every recipe it depends on (their outputs run in the build). */
export function buildRoots(r: RecipeSpec, byName: Map<string, RecipeSpec>): PackageRequest[] {
  const deps = recipeClosure(r.name, byName).map((n) => byName.get(n)!);
  return [...packageRequests(r.buildDepends), ...packageRequests(r.depends), ...deps.flatMap((d) => packageRequests(d.depends))];
}

/** Refuses, naming the recipe, a package request no channel knows (before any solving). */
export function checkRecipeNames(manifest: Manifest, universe: Universe): void {
  for (const r of manifest.recipes ?? []) {
    for (const [field, list] of [['build-depends', r.buildDepends], ['depends', r.depends]] as const) {
      for (const p of packageRequests(list)) {
        if (universe.known(p.name)) continue;
        const near = suggestNames(p.name, universe.names());
        throw new StrataError(
          'E_UNKNOWN_PACKAGE',
          `recipe "${r.name}": ${field} names package "${p.name}", which is in none of the channels (${manifest.channels.map((c) => c.name).join(', ')})`,
          near.length > 0 ? `did you mean: ${near.join(', ')}?` : "check the name and the channels' components (main, contrib, non-free)",
        );
      }
    }
  }
}

/**
 * Locks every recipe of the manifest against `universe`; `environment` is the environment's solution, `channels`
 * the locked channels. A pip recipe's requirements are resolved against its index (engine/lockPip.ts), unless
 * `before` (the previous lock) holds the same recipe, as written, with the same build environment: its files are
 * kept then, as pip-compile keeps its pins, and no index is asked.
 */
export async function lockRecipes(manifest: Manifest, universe: Universe, environment: SolvedPackage[], ctx: Ctx, channels: LockedChannel[], before?: Lockfile): Promise<LockedRecipe[]> {
  const recipes = manifest.recipes ?? [];
  if (recipes.length === 0) return [];
  const order = recipeOrder(recipes);
  if (!('order' in order)) throw new Error('recipe order: the manifest reader lets no cycle through');
  const byName = new Map(recipes.map((r) => [r.name, r]));
  const chosen = new Map(environment.map((n) => [n.candidate.name, n.candidate]));
  const inputs = new Map<string, string>();
  const out: LockedRecipe[] = [];
  for (const name of order.order) {
    const r = byName.get(name)!;
    const started = Date.now();
    let solution;
    try {
      solution = solve({
        universe,
        roots: buildRoots(r, byName),
        channels: manifest.channels.map((c) => c.name),
        hostDriver: manifest.image.gpuDriver === 'host',
        withRecommends: manifest.withRecommends,
        withEssential: true,
      });
    } catch (e) {
      if (e instanceof StrataError) throw new StrataError(e.code, `recipe "${name}": its build environment: ${e.message}`, e.hint);
      throw e;
    }
    const buildPackages = lockedPackages(solution.packages);
    const buildClosure = environmentClosure(manifest.arch, buildPackages.map((p) => p.closure), solution.hostProvided);
    const sources: LockedSource[] = [];
    for (const s of r.sources) {
      if ('url' in s) sources.push({ ...s });
      else {
        const tree = await gitTreeTar({ repo: s.git, rev: s.rev, projectDir: dirname(manifest.path), store: ctx.store, reporter: ctx.reporter, label: `recipe ${name}: git source ${s.git}` });
        sources.push({ git: s.git, rev: s.rev, sha256: tree.sha256, ...(s.dest !== undefined ? { dest: s.dest } : {}) });
      }
    }
    const resolvedDepends = r.depends.map((d) => {
      if ('recipe' in d) return `recipe:${d.recipe}`;
      const c = rootCandidates(universe, d.package).find((x) => chosen.get(x.name) === x);
      if (!c) throw new Error(`recipe ${name}: depends ${d.package.name} is not in the environment's solution`);
      return c.name;
    });
    let wheels: LockedWheel[] | undefined;
    if (r.kind === 'pip') {
      const old = before?.recipes?.find((x) => x.name === name);
      if (old?.wheels && old.buildClosure === buildClosure && canonicalRecipe(old) === canonicalRecipe(r)) wheels = old.wheels;
      else {
        const [{ resolvePipRequirements }, { ensureRootfs }] = await Promise.all([import('./lockPip.ts'), import('./ensureEnvironment.ts')]);
        const buildLock: Lockfile = {
          version: 1,
          manifestSha256: '0'.repeat(64),
          project: { name: 'strata-build', arch: manifest.arch },
          closure: buildClosure,
          channels,
          image: { env: {}, alternatives: {} },
          packages: buildPackages,
          hostProvided: solution.hostProvided,
        };
        wheels = await resolvePipRequirements(r, buildLock, ctx, (l) => ensureRootfs(l, ctx, { frozen: false }));
      }
    }
    const partial = { ...r, sources, buildClosure, ...(wheels ? { wheels } : {}) };
    const input = recipeInput(partial, manifest.arch, inputs);
    inputs.set(name, input);
    out.push({ ...partial, buildPackages, buildHostProvided: solution.hostProvided, resolvedDepends: [...new Set(resolvedDepends)].sort(), input });
    ctx.reporter.info(`recipe ${name}: build environment of ${buildPackages.length} packages resolved in ${Date.now() - started} ms`);
  }
  return out;
}
