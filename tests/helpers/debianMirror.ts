/**
 * The real Debian archive for integration tests: its URL comes from STRATA_DEBIAN_MIRROR or the host's apt
 * sources (never from code). `reachableDebianMirror()` answers with a reason instead when it cannot be used, and
 * `debianMirrorOrSkip` turns that reason into a passing test that says why it was skipped.
 */
import type { ExecutionContext } from 'ava';
import { channelUrls, defaultKeyring } from '../../channels/mirror.ts';
import { httpGet } from '../../store/store.ts';

export interface DebianMirror {
  url: string;
  keyring: string;
}

export async function reachableDebianMirror(suite = 'trixie'): Promise<DebianMirror | { skip: string }> {
  let urls: string[];
  try {
    urls = channelUrls({ name: 'debian', urls: [] });
  } catch {
    return { skip: 'no Debian mirror configured (set STRATA_DEBIAN_MIRROR)' };
  }
  const keyring = defaultKeyring();
  if (!keyring) return { skip: 'no Debian archive keyring on this host (install debian-archive-keyring)' };
  try {
    const r = await httpGet(urls, `dists/${suite}/InRelease`, { retries: 0, timeoutMs: 5000 });
    if (!r.ok) return { skip: `the Debian mirror has no ${suite} (HTTP ${r.status})` };
  } catch (e) {
    return { skip: `the Debian mirror is unreachable: ${(e as Error).message.split('\n')[0]}` };
  }
  return { url: urls[0]!, keyring };
}

/**
 * The mirror, when it serves every one of `suites`; otherwise the test logs why it is skipped and passes, and this
 * gives undefined (the test then returns).
 */
export async function debianMirrorOrSkip(t: ExecutionContext, suites: string[] = ['trixie']): Promise<DebianMirror | undefined> {
  let mirror: DebianMirror | undefined;
  for (const suite of suites) {
    const m = await reachableDebianMirror(suite);
    if ('skip' in m) {
      t.log(`skipped: ${m.skip}`);
      t.pass();
      return undefined;
    }
    mirror = m;
  }
  return mirror;
}

/**
 * Whether a long check kept out of the default run is asked for (`variable`=1, as scripts/long-checks.sh sets it);
 * otherwise the test logs how to run `what` and passes, and this gives false (the test then returns).
 */
export function longCheckOrSkip(t: ExecutionContext, variable: string, what: string): boolean {
  if (process.env[variable] === '1') return true;
  t.log(`skipped: ${what} runs with ${variable}=1 (scripts/long-checks.sh)`);
  t.pass();
  return false;
}
