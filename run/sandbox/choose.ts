/** Which sandbox method this host can use: bubblewrap when installed, else util-linux unshare + chroot. */
import { accessSync, constants as fsConstants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { StrataError } from '../../errors.ts';

/** `unshare-compat`: the unshare path with one command per mount (what `unshare` falls back to by itself). */
export type SandboxMethod = 'bwrap' | 'unshare' | 'unshare-compat';

/** Which program runs on PATH, or undefined. */
export function which(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const d of (env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (d === '') continue;
    const p = join(d, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** bubblewrap when installed, else unshare; `STRATA_SANDBOX=bwrap|unshare` forces one. */
export function chooseMethod(env: NodeJS.ProcessEnv = process.env): SandboxMethod {
  const forced = env.STRATA_SANDBOX;
  if (forced === 'bwrap' || forced === 'unshare' || forced === 'unshare-compat') {
    if (which(forced === 'bwrap' ? 'bwrap' : 'unshare', env) === undefined) {
      throw new StrataError('E_RUN', `STRATA_SANDBOX=${forced} but ${forced} is not installed`, forced === 'bwrap' ? 'install bubblewrap' : 'install util-linux');
    }
    return forced;
  }
  if (forced !== undefined && forced !== '') throw new StrataError('E_USAGE', `STRATA_SANDBOX must be bwrap, unshare or unshare-compat, not "${forced}"`);
  if (which('bwrap', env)) return 'bwrap';
  if (which('unshare', env) && which('chroot', { PATH: `${env.PATH ?? ''}:/usr/sbin:/sbin` })) return 'unshare';
  throw new StrataError('E_RUN', 'the sandbox backend needs bubblewrap or util-linux unshare, and neither is installed', 'install bubblewrap (Debian package bubblewrap), or use --backend docker');
}
