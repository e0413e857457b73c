/** `strata pull REF`: fetch an image from a registry into the store, every blob verified; print its digest and the lock closure it realises. */
import { StrataError } from '../errors.ts';
import { openCtx } from '../engine/ctx.ts';
import { pullToStore } from '../engine/images.ts';

export interface PullCommandOptions {
  insecure?: boolean;
  jobs?: string;
  lock?: string;
}

export async function pullCommand(ref: string, opts: PullCommandOptions): Promise<void> {
  const jobs = Number(opts.jobs ?? 4);
  if (!Number.isInteger(jobs) || jobs < 1) throw new StrataError('E_USAGE', `--jobs must be a positive integer, not "${opts.jobs}"`);
  const ctx = await openCtx();
  const img = await pullToStore(ref, ctx, { jobs, ...(opts.insecure ? { insecure: true } : {}) });
  await (await import('../engine/gc.ts')).recordRoot(ctx.store, { image: ref });
  const out = (s: string) => process.stdout.write(`${s}\n`);
  out(`${img.reference.replace(/[:@][^/]*$/, '')}@${img.manifestDigest}`);
  out(`  ${img.layers.length} layers${img.title ? `, project ${img.title}` : ''}`);
  out(img.closure ? `  realises the lock with closure ${img.closure}` : '  not a strata image (no dev.strata.closure annotation)');
  if (!img.closure) return;
  const [{ parseReference }, { RegistryClient }, { lockOf }, { parseLock }] = await Promise.all([
    import('../realiser/oci/reference.ts'),
    import('../registry/client.ts'),
    import('../registry/referrers.ts'),
    import('../lock/lockfile.ts'),
  ]);
  const client = new RegistryClient(parseReference(ref), 'pull', opts.insecure ? { insecure: true } : {});
  const attached = await lockOf(client, ctx.store, img.manifestDigest);
  if (!attached) {
    out('  no strata.lock is attached to it');
    return;
  }
  const lock = parseLock(attached.text, `the lock attached to ${ref}`);
  if (lock.closure !== img.closure) throw new StrataError('E_LOCK', `the lock attached to ${ref} has closure ${lock.closure}, but the image says it realises ${img.closure}`, 'push the image again');
  const recipes = (lock.recipes ?? []).length;
  out(`  strata.lock attached (${attached.artifact}): project ${lock.project.name}, ${lock.packages.length} packages${recipes > 0 ? `, ${recipes} recipes` : ''}, channels ${lock.channels.map((c) => c.name).join(', ')}`);
  if (opts.lock) {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(opts.lock, attached.text);
    out(`  written to ${opts.lock}`);
  } else out(`  its text: ${attached.path}`);
}
