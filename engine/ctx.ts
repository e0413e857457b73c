/**
 * What every workflow of the engine is given: the one store and the one reporter of this invocation, built once at
 * the top (by a command) and passed down. The engine never prints and never reads the process's arguments.
 */
import { openStore, type Store } from '../store/store.ts';
import { terminalReporter, type Reporter } from '../report/reporter.ts';
import type { LayerRecord } from '../realiser/layers.ts';
import type { RealisedImage } from '../realiser/realise.ts';
import type { SearchPaths } from '../realiser/imageConfig.ts';
import type { Lockfile } from '../model.ts';

/**
 * A cache registry seen from the engine (engine/substitute.ts makes one): before a layer, a recipe output, a
 * generated output or a whole image is built, it is asked for it by its input key. Each answers undefined (or false)
 * on a miss, and on an unreachable cache (said once).
 */
export interface Substituter {
  layer(job: { key: string; label: string }): Promise<LayerRecord | undefined>;
  /** Puts the output stored under `key` in the store's `namespace` cache when the cache has it; true when it did. */
  output(namespace: 'recipes' | 'generated', key: string, label: string): Promise<boolean>;
  image(lock: Lockfile, generated: boolean, o: { mtime: number; gzip: boolean; paths?: SearchPaths }): Promise<RealisedImage | undefined>;
}

export interface Ctx {
  store: Store;
  reporter: Reporter;
  /** The manifest's directory, when a command works for one: where a recipe's git source given as a path lives. */
  projectDir?: string;
  /** The cache registry (`[cache] registry`, STRATA_CACHE_REGISTRY), when one is set, and its reference. */
  cache?: Substituter;
  cacheRef?: string;
}

/** The store at its default place (STRATA_CACHE_DIR, XDG, ~/.cache) and the terminal reporter. */
export async function openCtx(reporter: Reporter = terminalReporter(), projectDir?: string): Promise<Ctx> {
  return { store: await openStore(), reporter, ...(projectDir !== undefined ? { projectDir } : {}) };
}

