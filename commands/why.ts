/** `strata why PKG`: why a package is in the environment, as dependency paths read from strata.lock. */
import { loadManifest } from '../manifest/manifest.ts';
import { lockPathFor, readLock } from '../lock/lockfile.ts';
import { StrataError } from '../errors.ts';
import { openCtx } from '../engine/ctx.ts';
import { shown } from '../engine/ensureLock.ts';
import { why } from '../engine/why.ts';

export interface WhyOptions {
  manifest: string;
  json?: boolean;
}

export async function whyCommand(target: string, opts: WhyOptions): Promise<void> {
  const manifest = loadManifest(opts.manifest);
  const path = lockPathFor(manifest.path);
  const lock = await readLock(path);
  if (!lock) throw new StrataError('E_LOCK', `there is no ${shown(path)}`, 'run `strata lock` first');
  const answer = await why(manifest, lock, target, await openCtx());
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
    return;
  }
  const out: string[] = [];
  if (answer.requested) out.push(`${target} is requested in strata.toml`);
  if (answer.from === 'essential' && answer.paths.some((p) => p.length === 0)) {
    out.push(`${target} is in the Essential set: every Debian system has it, so strata adds it unless [resolve] essential = false`);
  }
  const chains = answer.paths.filter((p) => p.length > 0);
  if (chains.length > 0) {
    const whose = answer.from === 'essential' ? 'the Essential set (every Debian system has it; strata adds it unless [resolve] essential = false)' : 'the requested packages';
    out.push(`${answer.requested ? 'also required' : 'required'} through ${whose}:`);
    for (const chain of chains) out.push(`  ${chain[0]!.from}${chain.map((e) => ` -> ${e.to}${e.via ? ` (${e.via})` : ''}`).join('')}`);
  } else if (!answer.requested && answer.from !== 'essential') {
    out.push(`${target} is in the lock, but no requested or Essential package leads to it`);
  }
  if (!answer.relations && chains.length > 0) out.push('(relations not shown: the channels\' indexes are not cached on this machine; `strata lock` caches them)');
  process.stdout.write(`${out.join('\n')}\n`);
}
