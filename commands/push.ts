/**
 * `strata push REF`: realise the environment (gzip-compressed layers, the encoding registries and HPC runtimes read
 * best; the pushed digest is then `strata realise --gzip`'s) and push it to an OCI distribution registry, under the
 * reference's tag and each `--tag` (default: the lock's closure prefix). Prints one line per blob (pushed, or
 * already there) and `REF@sha256:...`.
 */
import { loadManifest } from '../manifest/manifest.ts';
import { parseReference } from '../realiser/oci/reference.ts';
import { StrataError } from '../errors.ts';
import { formatBytes } from '../report/reporter.ts';
import type { Ctx } from '../engine/ctx.ts';
import { openProjectCtx } from '../engine/projectCtx.ts';
import type { Lockfile } from '../model.ts';
import type { RealisedImage } from '../realiser/realise.ts';
import { ensureLock } from '../engine/ensureLock.ts';
import { realiseLock } from '../engine/ensureEnvironment.ts';
import { RegistryClient } from '../registry/client.ts';
import { pushImage, CHUNK_BYTES } from '../registry/push.ts';

export interface PushOptions {
  manifest: string;
  tag?: string[];
  insecure?: boolean;
  locked?: boolean;
  jobs?: string;
  cache?: boolean;
}

/** Whether the reference text names a tag itself (parseReference fills in `latest` when it does not). */
function namesTag(ref: string): boolean {
  const name = ref.split('@')[0]!;
  return name.lastIndexOf(':') > name.lastIndexOf('/');
}

export async function pushCommand(refText: string | undefined, opts: PushOptions): Promise<void> {
  if (refText === undefined) {
    if (!opts.cache) throw new StrataError('E_USAGE', 'strata push needs a reference (host[:port]/name[:tag]), or --cache');
    return pushCacheOnly(opts);
  }
  const ref = parseReference(refText);
  if (ref.digest) throw new StrataError('E_USAGE', `${refText} has a digest; push to a name[:tag]`, 'the digest is what the push prints');
  const extra = (opts.tag ?? []).map((t) => {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(t)) throw new StrataError('E_USAGE', `--tag ${t} is not a tag: letters, digits, _ . - (at most 128, not starting with . or -)`);
    return t;
  });
  const jobs = Number(opts.jobs ?? 8);
  if (!Number.isInteger(jobs) || jobs < 1) throw new StrataError('E_USAGE', `--jobs must be a positive integer, not "${opts.jobs}"`);
  const chunkEnv = process.env.STRATA_REGISTRY_CHUNK_BYTES;
  const chunkBytes = chunkEnv ? Number(chunkEnv) : CHUNK_BYTES;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 1) throw new StrataError('E_USAGE', `STRATA_REGISTRY_CHUNK_BYTES=${chunkEnv} is not a positive integer`);
  const client = new RegistryClient(ref, 'pull,push', { ...(opts.insecure ? { insecure: true } : {}) });
  const manifest = loadManifest(opts.manifest);
  // Unreachable, or refusing these credentials: said now, before anything is built.
  await client.send('HEAD', client.url(`blobs/sha256:${'0'.repeat(64)}`), { discard: true });
  const ctx = await openProjectCtx(manifest, opts);
  const lock = await ensureLock(manifest, ctx, opts.locked ? 'locked' : 'relock');
  const result = await realiseLock(lock, ctx, { jobs, gzip: true });
  if (opts.cache) await toCache(lock, result, ctx, ctx.cacheRef, opts);
  const img = result.gzip ?? result.image;
  const { defaultTag } = await import('../realiser/realise.ts');
  const tags = [...new Set([...(namesTag(refText) ? [ref.tag] : []), ...extra])];
  if (tags.length === 0) tags.push(defaultTag(lock).split(':')[1]!);
  const out = (s: string) => process.stdout.write(`${s}\n`);
  out(`pushing ${ref.repository} (${tags.join(', ')}): ${img.layers.length} layers and a config`);
  const r = await pushImage(client, img, tags, { chunkBytes, say: out });
  out(`${r.pushed} blobs pushed (${formatBytes(r.pushedBytes)}), ${r.present} already there`);
  // The lock rides along as an OCI 1.1 artifact whose subject is the image (registry/referrers.ts).
  const { attachLock } = await import('../registry/referrers.ts');
  const { serializeLock } = await import('../lock/lockfile.ts');
  const artifact = await attachLock(client, { digest: img.manifestDigest, size: img.manifest.length }, serializeLock(lock), { 'dev.strata.closure': lock.closure });
  out(`strata.lock attached: ${ref.repository}@${artifact}`);
  for (const t of tags) out(`${ref.repository}:${t}`);
  out(`${ref.repository}@${r.manifestDigest}`);
}

/** `strata push --cache` without a reference: realise, then upload to the cache registry what it lacks. */
async function pushCacheOnly(opts: PushOptions): Promise<void> {
  const jobs = Number(opts.jobs ?? 8);
  if (!Number.isInteger(jobs) || jobs < 1) throw new StrataError('E_USAGE', `--jobs must be a positive integer, not "${opts.jobs}"`);
  const manifest = loadManifest(opts.manifest);
  const ctx = await openProjectCtx(manifest, opts);
  const lock = await ensureLock(manifest, ctx, opts.locked ? 'locked' : 'relock');
  const result = await realiseLock(lock, ctx, { jobs, gzip: true });
  await toCache(lock, result, ctx, ctx.cacheRef, opts);
}

async function toCache(lock: Lockfile, result: RealisedImage, ctx: Ctx, cacheRef: string | undefined, opts: PushOptions): Promise<void> {
  if (!cacheRef) throw new StrataError('E_USAGE', '--cache needs a cache registry', 'set [cache] registry = "host[:port]/repository" in strata.toml, or STRATA_CACHE_REGISTRY');
  const { pushCache } = await import('../engine/substitute.ts');
  const say = (s: string) => process.stdout.write(`${s}\n`);
  say(`pushing to the cache ${cacheRef}`);
  const c = await pushCache(lock, result, ctx, cacheRef, { ...(opts.insecure ? { insecure: true } : {}), say });
  say(`cache: ${c.pushed} entries pushed (${c.blobs} blobs uploaded), ${c.present} already there`);
}
