/**
 * Where the store lives, and where Node keeps strata's compiled modules beside it. It imports only Node's own
 * modules: cli.ts reads it before loading the rest of strata.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

/** $STRATA_CACHE_DIR, else $XDG_CACHE_HOME/strata, else ~/.cache/strata. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.STRATA_CACHE_DIR) return resolve(env.STRATA_CACHE_DIR);
  // The XDG spec says relative values are invalid and must be ignored.
  if (env.XDG_CACHE_HOME && isAbsolute(env.XDG_CACHE_HOME)) return join(env.XDG_CACHE_HOME, 'strata');
  return join(homedir(), '.cache', 'strata');
}

/**
 * Node's compile cache for strata's modules (each one type-stripped and compiled, checked against its source by
 * Node): in the store's root, the user's own, not in the shared temp directory, where another user could plant one.
 * Undefined while the store does not exist, so that a command that needs none (`--help`) makes none. It is not a
 * namespace of the store: nothing in it is strata's data, and Node replaces what goes stale.
 */
export function compileCacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const root = defaultCacheDir(env);
  return existsSync(root) ? join(root, 'compile-cache') : undefined;
}
