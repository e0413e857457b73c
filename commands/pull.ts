/** `strata pull REF`: fetch an image from a registry into the store, every blob verified; print its digest and the lock closure it realises. */
import { StrataError } from '../errors.ts';
import { openCtx } from '../engine/ctx.ts';
import { pullToStore } from '../engine/images.ts';

export interface PullCommandOptions {
  insecure?: boolean;
  jobs?: string;
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
}
