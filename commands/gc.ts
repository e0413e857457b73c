/** `strata gc` and `strata cache info`: collect what no live environment needs; show the store's size by kind. */
import { StrataError } from '../errors.ts';
import { formatBytes, terminalReporter } from '../report/reporter.ts';
import { openStore } from '../store/store.ts';
import { gcStore, KINDS, storeSizes, type GcReport, type SizeReport } from '../engine/gc.ts';

export interface GcCommandOptions {
  dryRun?: boolean;
  keepDays?: string;
}

const out = (s: string) => process.stdout.write(`${s}\n`);

function printSizes(root: string, r: SizeReport): void {
  out(`store ${root}: ${formatBytes(r.total)}`);
  for (const k of KINDS) out(`  ${k.padEnd(15)} ${String(r.byKind[k].entries).padStart(6)} entries  ${formatBytes(r.byKind[k].bytes)}`);
}

export async function gcCommand(opts: GcCommandOptions): Promise<GcReport> {
  const keepDays = Number(opts.keepDays ?? 30);
  if (!Number.isFinite(keepDays) || keepDays < 0) throw new StrataError('E_USAGE', `--keep-days must be a number of days, 0 or more, not "${opts.keepDays}"`);
  const dryRun = Boolean(opts.dryRun);
  const store = await openStore(undefined, { unregistered: true });
  const r = await gcStore(store, { dryRun, keepDays, reporter: terminalReporter() });
  if (dryRun) {
    printSizes(store.root, r.before);
    for (const x of r.removed) out(`would remove ${x.name} (${x.kind}, ${x.bytes} bytes)`);
    out(`would free ${formatBytes(r.freed)} (${r.freed} bytes) in ${r.removed.length} entries; ${r.liveRoots} live roots kept`);
  } else {
    out(`freed ${formatBytes(r.freed)} (${r.freed} bytes) in ${r.removed.length} entries; ${r.liveRoots} live roots kept, ${r.droppedRoots} dropped`);
  }
  return r;
}

export async function cacheInfoCommand(): Promise<SizeReport> {
  const store = await openStore(undefined, { unregistered: true });
  const r = await storeSizes(store);
  printSizes(store.root, r);
  return r;
}
