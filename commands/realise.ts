/** `strata realise`: build the locked environment as an OCI image; write it as a layout or an archive, or load it. */
import { loadManifest } from '../manifest/manifest.ts';
import { realise, defaultTag, type RealisedImage } from '../realiser/realise.ts';
import { writeOciLayout, writeDockerArchive } from '../realiser/oci/layout.ts';
import { loadImage, dockerFromEnv } from '../realiser/docker.ts';
import { StrataError } from '../errors.ts';
import { formatBytes } from '../report/reporter.ts';
import { openCtx } from '../engine/ctx.ts';
import { ensureLock } from '../engine/ensureLock.ts';

export interface RealiseCommandOptions {
  manifest: string;
  oci?: string;
  dockerArchive?: string;
  load?: boolean;
  tag?: string;
  gzip?: boolean;
  locked?: boolean;
  jobs?: string;
}

export async function realiseCommand(opts: RealiseCommandOptions): Promise<RealisedImage> {
  const manifest = loadManifest(opts.manifest);
  const ctx = await openCtx();
  const { store, reporter } = ctx;
  const lock = await ensureLock(manifest, ctx, opts.locked ? 'locked' : 'relock');
  const jobs = Number(opts.jobs ?? 8);
  if (!Number.isInteger(jobs) || jobs < 1) throw new StrataError('E_USAGE', `--jobs must be a positive integer, not "${opts.jobs}"`);
  const started = Date.now();
  const result = await realise(lock, { store, reporter, jobs, gzip: opts.gzip ?? false });
  const tag = opts.tag ?? defaultTag(lock);
  const img = result.image;
  const out = (s: string) => process.stdout.write(`${s}\n`);
  out(`image ${img.manifestDigest}`);
  out(`  ${lock.packages.length} packages in ${result.layerCount} layers (${result.builtLayers} built, ${result.layerCount - result.builtLayers} cached), ${formatBytes(result.image.layers.reduce((n, l) => n + l.size, 0))}, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (opts.oci) {
    await writeOciLayout(opts.oci, { ...img, refName: tag.split(':').pop()! });
    out(`wrote OCI layout ${opts.oci} (ref ${tag.split(':').pop()})`);
  }
  if (opts.dockerArchive) {
    await writeDockerArchive(opts.dockerArchive, img, tag);
    out(`wrote ${opts.dockerArchive} (docker load -i, or oci-archive: for OCI tools) as ${tag}`);
  }
  if (opts.load) {
    // Docker's local load wants uncompressed layers: nothing gains from compression over a local socket.
    const r = await loadImage(result.plain, tag, { docker: dockerFromEnv(), reporter });
    out(`loaded ${tag} into Docker (${r.imageId.slice(0, 19)}; ${r.sentLayers} layers sent, ${r.skippedLayers} already there)`);
  }
  if (!opts.oci && !opts.dockerArchive && !opts.load) out('(nothing written: add --oci DIR, --docker-archive FILE or --load)');
  return result;
}
