/** `strata realise`: build the locked environment as an OCI image; write it as a layout or an archive, or load it. */
import { relative } from 'node:path';
import { loadManifest } from '../manifest/manifest.ts';
import { openStore } from '../store/store.ts';
import { readLock } from '../lock/lockfile.ts';
import { realise, defaultTag, type RealisedImage } from '../realiser/realise.ts';
import { writeOciLayout, writeDockerArchive } from '../realiser/oci/layout.ts';
import { loadImage, dockerFromEnv } from '../realiser/docker.ts';
import { StrataError } from '../errors.ts';
import { terminalReporter, formatBytes, type Reporter } from '../report/reporter.ts';
import { lockManifest, lockPathFor, staleReason } from './lock.ts';
import type { Lockfile, Manifest } from '../model.ts';

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

/** The lock to realise: the current one, or a fresh one when it is missing or stale (unless `locked`). */
export async function currentLock(manifest: Manifest, reporter: Reporter, locked: boolean): Promise<Lockfile> {
  const path = lockPathFor(manifest.path);
  const lock = await readLock(path);
  const reason = staleReason(manifest, lock);
  if (reason === undefined) return lock!;
  if (locked) {
    throw new StrataError('E_LOCK', `${relative(process.cwd(), path) || path} is stale: ${reason}`, 'run `strata lock` (or drop --locked to let this command lock first)');
  }
  reporter.info(`${reason}: locking first`);
  return (await lockManifest(manifest, reporter)).lock;
}

export async function realiseCommand(opts: RealiseCommandOptions): Promise<RealisedImage> {
  const reporter = terminalReporter();
  const manifest = loadManifest(opts.manifest);
  const lock = await currentLock(manifest, reporter, opts.locked ?? false);
  const jobs = Number(opts.jobs ?? 8);
  if (!Number.isInteger(jobs) || jobs < 1) throw new StrataError('E_USAGE', `--jobs must be a positive integer, not "${opts.jobs}"`);
  const started = Date.now();
  const store = await openStore();
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
    const plain = opts.gzip ? (await realise(lock, { store, reporter, jobs, gzip: false })).image : img;
    const r = await loadImage(plain, tag, { docker: dockerFromEnv(), reporter });
    out(`loaded ${tag} into Docker (${r.imageId.slice(0, 19)}; ${r.sentLayers} layers sent, ${r.skippedLayers} already there)`);
  }
  if (!opts.oci && !opts.dockerArchive && !opts.load) out('(nothing written: add --oci DIR, --docker-archive FILE or --load)');
  return result;
}
