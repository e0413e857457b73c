/**
 * What every workflow of the engine is given: the one store and the one reporter of this invocation, built once at
 * the top (by a command) and passed down. The engine never prints and never reads the process's arguments.
 */
import { openStore, type Store } from '../store/store.ts';
import { terminalReporter, type Reporter } from '../report/reporter.ts';

export interface Ctx {
  store: Store;
  reporter: Reporter;
  /** The manifest's directory, when a command works for one: where a recipe's git source given as a path lives. */
  projectDir?: string;
}

/** The store at its default place (STRATA_CACHE_DIR, XDG, ~/.cache) and the terminal reporter. */
export async function openCtx(reporter: Reporter = terminalReporter(), projectDir?: string): Promise<Ctx> {
  return { store: await openStore(), reporter, ...(projectDir !== undefined ? { projectDir } : {}) };
}
