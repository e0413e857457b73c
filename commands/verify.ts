/** `strata verify`: re-check the whole store and drop what is damaged, so that it is fetched or made again when next needed. */
import { StrataError } from '../errors.ts';
import { formatBytes } from '../report/reporter.ts';
import { openCtx } from '../engine/ctx.ts';
import { verifyStore, type VerifyReport } from '../engine/verifyStore.ts';

export interface VerifyCommandOptions {
  dryRun?: boolean;
}

export async function verifyCommand(opts: VerifyCommandOptions): Promise<VerifyReport> {
  const { store, reporter } = await openCtx();
  const dryRun = Boolean(opts.dryRun);
  const started = Date.now();
  const report = await verifyStore(store, { dryRun, reporter });
  const out = (s: string) => process.stdout.write(`${s}\n`);
  const r = report;
  out(`store ${store.root}`);
  out(`  blobs      ${r.blobs.checked} re-hashed (${formatBytes(r.blobs.bytes)})`);
  out(`  layers     ${r.layers.checked} records checked against their blobs`);
  out(`  unpacked   ${r.unpacked.checked} packages, ${r.unpacked.files} files re-hashed`);
  out(`  rootfs     ${r.rootfs.checked} compared with their layers, ${r.rootfs.linked} through the unpacked files they link${r.rootfs.unchecked ? `, ${r.rootfs.unchecked} not checkable (no record of their layers)` : ''}`);
  if (r.pool.checked > 0) out(`  shared     ${r.pool.checked} inodes the root filesystems share (files strata writes, symlinks) re-hashed`);
  if (r.generated.checked > 0) out(`  generated  ${r.generated.checked} parts, ${r.generated.files} files re-hashed`);
  out(`  records    ${r.records.checked} other cache records read`);
  for (const d of r.damaged) out(`damaged: ${d.what}: ${d.reason}${dryRun ? '' : '; dropped'}`);
  out(`${r.damaged.length} damaged ${r.damaged.length === 1 ? 'entry' : 'entries'} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  if (r.damaged.length > 0) {
    throw new StrataError(
      'E_HASH',
      dryRun
        ? `the store has ${r.damaged.length} damaged ${r.damaged.length === 1 ? 'entry' : 'entries'} (--dry-run: left in place)`
        : `the store had ${r.damaged.length} damaged ${r.damaged.length === 1 ? 'entry' : 'entries'}, now dropped: each is fetched or made again when next needed`,
      dryRun ? 'run `strata verify` without --dry-run to drop them' : 'if damage keeps appearing, check the disk (and the memory) of this machine',
    );
  }
  return report;
}
