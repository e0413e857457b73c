/**
 * `strata build NAME`: builds one recipe of the manifest (and the recipes it depends on) into the store, as
 * `realise` would; `--rebuild` builds it again even when its output is stored; `--check` builds it a second
 * time in a fresh sandbox and compares the two outputs byte for byte, naming the first file that differs.
 */
import { dirname } from 'node:path';
import { loadManifest } from '../manifest/manifest.ts';
import { StrataError } from '../errors.ts';
import { openProjectCtx } from '../engine/projectCtx.ts';
import { ensureLock } from '../engine/ensureLock.ts';
import { ensureRootfs } from '../engine/ensureEnvironment.ts';
import { checkRecipe, ensureRecipeOutputs, type RecipeBuildOptions } from '../engine/buildRecipes.ts';

export interface BuildOptions {
  manifest: string;
  rebuild?: boolean;
  check?: boolean;
  locked?: boolean;
  insecure?: boolean;
}

export async function buildCommand(name: string, opts: BuildOptions): Promise<void> {
  const manifest = loadManifest(opts.manifest);
  const known = (manifest.recipes ?? []).map((r) => r.name);
  if (!known.includes(name)) {
    throw new StrataError('E_USAGE', `strata.toml has no recipe "${name}"`, known.length > 0 ? `its recipes: ${known.join(', ')}` : 'define one as [recipes.NAME] (see the README\'s Recipes section)');
  }
  const ctx = await openProjectCtx(manifest, opts);
  const lock = await ensureLock(manifest, ctx, opts.locked ? 'locked' : 'relock');
  // The cache is asked for outputs, not for the one --check must build twice here.
  const sub = ctx.cache;
  const o: RecipeBuildOptions = {
    rootfsFor: (l) => ensureRootfs(l, ctx, { frozen: false }),
    projectDir: dirname(manifest.path),
    ...(opts.rebuild ? { rebuild: new Set([name]) } : {}),
    ...(sub && !opts.check ? { substitute: (k: string, label: string) => sub.output('recipes', k, label) } : {}),
  };
  const out = (s: string) => process.stdout.write(`${s}\n`);
  if (opts.check) {
    const { first, files } = await checkRecipe(lock, name, ctx, o);
    out(`recipe ${name} ${first.recipe.version}: output ${first.meta.digest}`);
    out(`check: a second build in a fresh sandbox is identical, byte for byte (${files} files)`);
    return;
  }
  const outputs = await ensureRecipeOutputs(lock, ctx, o, name);
  const r = outputs.get(name)!;
  out(`recipe ${name} ${r.recipe.version}: output ${r.meta.digest}`);
  out(`  input ${r.recipe.input}, ${r.meta.entries.filter((e) => e.type !== 'dir').length} files under ${r.recipe.prefix}, ${r.built ? `built in ${r.meta.seconds} s` : 'already built (cached)'}`);
}
