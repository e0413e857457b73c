/**
 * The real Debian archive for integration tests: its URL comes from STRATA_DEBIAN_MIRROR or the host's apt
 * sources (never from code). `reachableDebianMirror()` answers undefined, with a reason, when it cannot be used.
 */
import { channelUrls, defaultKeyring } from '../../channels/mirror.ts';
import { httpGet } from '../../store/store.ts';

export async function reachableDebianMirror(suite = 'trixie'): Promise<{ url: string; keyring: string } | { skip: string }> {
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
