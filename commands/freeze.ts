/**
 * `strata freeze`: writes what was pip-installed into the project's venv into strata.toml as recipes (see
 * engine/freeze.ts), and lists what it could not freeze with the reason. The next `strata lock` pins the files.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { freezeVenv, FROZEN_RECIPE } from '../engine/freeze.ts';
import { loadManifest } from '../manifest/manifest.ts';

export interface FreezeOptions {
  manifest: string;
}

export async function freezeCommand(opts: FreezeOptions): Promise<void> {
  const manifest = loadManifest(opts.manifest);
  const before = readFileSync(manifest.path, 'utf8');
  const result = await freezeVenv(dirname(manifest.path), before, (manifest.recipes ?? []).map((r) => r.name));
  const out = (s: string) => process.stdout.write(`${s}\n`);
  if (result.text !== before) {
    writeFileSync(manifest.path, result.text);
    try {
      loadManifest(manifest.path);
    } catch (e) {
      writeFileSync(manifest.path, before);
      throw e;
    }
  }
  const index = result.items.filter((i) => i.kind === 'index');
  const gits = result.items.filter((i) => i.kind === 'git');
  const not = result.items.filter((i) => i.kind === 'not-freezable');
  out(`froze ${result.venv}: ${index.length} package${index.length === 1 ? '' : 's'} from an index into [recipes.${FROZEN_RECIPE}], ${gits.length} git checkout${gits.length === 1 ? '' : 's'} as git recipes`);
  for (const i of index) out(`  ${i.name} == ${i.version}`);
  for (const g of gits) out(`  ${g.name} ${g.version}: git ${g.kind === 'git' ? `${g.git} at ${g.rev}` : ''}`);
  if (not.length > 0) {
    out('not freezable:');
    for (const n of not) out(`  ${n.name} ${n.version}: ${n.kind === 'not-freezable' ? n.reason : ''}`);
  }
  out(result.text !== before ? 'strata.toml updated; run `strata lock` to pin the files' : 'strata.toml already says this');
}
