/**
 * The context of a command that works for a manifest, with its cache registry (kept apart from ctx.ts, which the
 * engine's modules import, so that only commands reach the registry client through it).
 */
import { dirname } from 'node:path';
import { openCtx, type Ctx } from './ctx.ts';
import type { Manifest } from '../model.ts';

/**
 * The context of a command that works for a manifest (realise, push, run, shell, build): `openCtx` for the
 * manifest's directory, with the cache registry attached when one is configured, so that whatever the command
 * realises is asked of the cache before it is built. Asking costs nothing until something is to be built.
 */
export async function openProjectCtx(manifest: Pick<Manifest, 'path' | 'cache'>, o: { insecure?: boolean } = {}): Promise<Ctx> {
  const ctx = await openCtx(undefined, dirname(manifest.path));
  // The registry client is loaded only when there is a cache to ask: a warm `run` stays fast without one.
  if (process.env.STRATA_CACHE_REGISTRY?.trim() || manifest.cache?.registry) {
    const { attachCache } = await import('./substitute.ts');
    const ref = attachCache(ctx, manifest, o.insecure ? { insecure: true } : {});
    if (ref) ctx.cacheRef = ref;
  }
  return ctx;
}
