/** `strata realise`: build the locked environment as an OCI image; write it as a layout or an archive, or load it. */
import { loadManifest } from '../manifest/manifest.ts';
import { resolve } from 'node:path';
import { lockPathFor } from '../lock/lockfile.ts';
import { defaultTag, type RealisedImage } from '../realiser/realise.ts';
import { ociLayoutSink, dockerArchiveSink, dockerLoadSink, type ImageSink } from '../realiser/oci/sinks.ts';
import { parseReference } from '../realiser/oci/reference.ts';
import { StrataError } from '../errors.ts';
import { formatBytes } from '../report/reporter.ts';
import { openProjectCtx } from '../engine/projectCtx.ts';
import { ensureLock } from '../engine/ensureLock.ts';
import { makeRootfs, realiseLock } from '../engine/ensureEnvironment.ts';

export interface RealiseCommandOptions {
  manifest: string;
  oci?: string;
  dockerArchive?: string;
  load?: boolean;
  tag?: string;
  gzip?: boolean;
  locked?: boolean;
  jobs?: string;
  pushCache?: boolean;
  insecure?: boolean;
}

export async function realiseCommand(opts: RealiseCommandOptions): Promise<RealisedImage> {
  const manifest = loadManifest(opts.manifest);
  const jobs = Number(opts.jobs ?? 8);
  if (!Number.isInteger(jobs) || jobs < 1) throw new StrataError('E_USAGE', `--jobs must be a positive integer, not "${opts.jobs}"`);
  const given = opts.tag !== undefined ? parseReference(opts.tag) : undefined;
  if (given?.digest) throw new StrataError('E_USAGE', `--tag ${opts.tag} has a digest; give name:tag`);
  const client = opts.insecure ? { insecure: true } : {};
  const ctx = await openProjectCtx(manifest, client);
  const cacheRef = ctx.cacheRef;
  const { reporter } = ctx;
  const sinks: ImageSink[] = [];
  if (opts.oci) sinks.push(ociLayoutSink(opts.oci));
  if (opts.dockerArchive) sinks.push(dockerArchiveSink(opts.dockerArchive));
  if (opts.load) {
    const { dockerFromEnv } = await import('../docker/engine.ts');
    sinks.push(dockerLoadSink(dockerFromEnv(), reporter));
  }
  // A destination that cannot take the image fails now, not after the build.
  for (const sink of sinks) await sink.check();
  const lock = await ensureLock(manifest, ctx, opts.locked ? 'locked' : 'relock');
  const { pushCache } = await import('../engine/substitute.ts');
  if (opts.pushCache && !cacheRef) throw new StrataError('E_USAGE', '--push-cache needs a cache registry', 'set [cache] registry = "host[:port]/repository" in strata.toml, or STRATA_CACHE_REGISTRY');
  const started = Date.now();
  // The cache holds gzip layers: pushing to it realises them too (the outputs still get the encoding asked for).
  const realised = await realiseLock(lock, ctx, { jobs, gzip: (opts.gzip ?? false) || opts.pushCache === true });
  const result = opts.pushCache && !opts.gzip ? { ...realised, image: realised.plain } : realised;
  // The sandbox's root filesystem (hard links to the stored files), so that the first `strata run` enters at once.
  await makeRootfs(realised, ctx);
  if (opts.pushCache) {
    const say = (s: string) => process.stdout.write(`${s}\n`);
    say(`pushing to the cache ${cacheRef}`);
    const c = await pushCache(lock, realised, ctx, cacheRef!, { ...client, say });
    say(`cache: ${c.pushed} entries pushed (${c.blobs} blobs uploaded), ${c.present} already there`);
  }
  const { recordRoot } = await import('../engine/gc.ts');
  await recordRoot(ctx.store, { lockPath: resolve(lockPathFor(manifest.path)), closure: lock.closure });
  const ref = given ?? parseReference(defaultTag(lock));
  const out = (s: string) => process.stdout.write(`${s}\n`);
  out(`image ${result.image.manifestDigest}`);
  const recipes = (lock.recipes ?? []).length;
  out(`  ${lock.packages.length} packages${recipes > 0 ? ` and ${recipes} recipe${recipes === 1 ? '' : 's'}` : ''} in ${result.layerCount} layers (${result.builtLayers} built, ${result.layerCount - result.builtLayers} cached), ${formatBytes(result.image.layers.reduce((n, l) => n + l.size, 0))}, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  for (const sink of sinks) out(await sink.write(result, ref));
  if (sinks.length === 0) out('(nothing written: add --oci DIR, --docker-archive FILE or --load)');
  return result;
}
