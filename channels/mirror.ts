/**
 * Where a channel's bytes come from: the manifest's URLs, else `STRATA_DEBIAN_MIRROR`, else the host's apt
 * sources. Mirror hosts are configuration, never code.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { StrataError } from '../errors.ts';
import { parseParagraphs, field, type Paragraph } from '../debian/deb822.ts';
import type { ChannelSpec } from '../model.ts';

export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

/** Parses one-line `deb URI suite comp...` entries (with optional `[options]`). */
export function parseSourcesList(text: string): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line.startsWith('deb ') && !line.startsWith('deb\t')) continue;
    const rest = line.slice(3).trim().replace(/^\[[^\]]*\]\s*/, '');
    const [uri, suite, ...components] = rest.split(/\s+/);
    if (uri && suite) out.push({ uri, suites: [suite], components });
  }
  return out;
}

/** Parses deb822 `.sources` files. */
export function parseDeb822Sources(text: string): AptSource[] {
  const out: AptSource[] = [];
  const words = (p: Paragraph, name: string) => (field(p, name) ?? '').split(/\s+/).filter(Boolean);
  for (const para of parseParagraphs(text)) {
    if (field(para, 'Enabled')?.toLowerCase() === 'no') continue;
    if (!words(para, 'Types').includes('deb')) continue;
    const suites = words(para, 'Suites');
    const components = words(para, 'Components');
    for (const uri of words(para, 'URIs')) out.push({ uri, suites, components });
  }
  return out;
}

/** The host's apt sources, deb822 first, then one-line. `root` lets tests point at a fake /etc. */
export function hostAptSources(root = '/'): AptSource[] {
  const dir = join(root, 'etc/apt/sources.list.d');
  const out: AptSource[] = [];
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).sort()) {
      const text = readFileSync(join(dir, f), 'utf8');
      if (f.endsWith('.sources')) out.push(...parseDeb822Sources(text));
      else if (f.endsWith('.list')) out.push(...parseSourcesList(text));
    }
  }
  const main = join(root, 'etc/apt/sources.list');
  if (existsSync(main)) out.push(...parseSourcesList(readFileSync(main, 'utf8')));
  return out;
}

/** Picks the host's Debian archive mirror: the first `deb` source that is not a security or updates-only suite. */
export function hostDebianMirror(root = '/'): string | undefined {
  const sources = hostAptSources(root).filter((s) => /^(https?|file):\/\//.test(s.uri));
  const archive = sources.find((s) => s.suites.some((x) => !/-security$|\/updates$/.test(x)));
  return archive?.uri.replace(/\/+$/, '');
}

/** The URLs to try for a channel, in order. */
export function channelUrls(channel: Pick<ChannelSpec, 'name' | 'urls'>, env: NodeJS.ProcessEnv = process.env, hostRoot = '/'): string[] {
  if (channel.urls.length > 0) return channel.urls;
  const fromEnv = env.STRATA_DEBIAN_MIRROR?.split(/[\s,]+/).filter(Boolean);
  if (fromEnv && fromEnv.length > 0) return fromEnv.map((u) => u.replace(/\/+$/, ''));
  const host = hostDebianMirror(hostRoot);
  if (host) return [host];
  throw new StrataError(
    'E_MIRROR',
    `channel "${channel.name}" has no url, STRATA_DEBIAN_MIRROR is not set, and the host has no apt sources to take a Debian mirror from`,
    `set url = "http://<your Debian mirror>/debian" in [channels.${channel.name}], or export STRATA_DEBIAN_MIRROR=http://<your Debian mirror>/debian`,
  );
}

/** The default keyring for Debian channels: the host's Debian archive keyring, if present. */
export function defaultKeyring(root = '/'): string | undefined {
  for (const f of ['usr/share/keyrings/debian-archive-keyring.pgp', 'usr/share/keyrings/debian-archive-keyring.gpg']) {
    const p = join(root, f);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** A snapshot archive's timestamp form, `YYYYMMDDTHHMMSSZ`. */
export const SNAPSHOT_TIMESTAMP = /^\d{8}T\d{6}Z$/;

/** `when` as a snapshot timestamp. */
export function snapshotTimestamp(when: Date): string {
  return when.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

/**
 * The snapshot time at which a channel locked from a live mirror still had its files: half a day after its Release's
 * Date. A snapshot service imports the archive a few times a day, so the import that holds that Release comes within
 * hours of its Date; the files of a suite leave it only at a later point release.
 */
export function snapshotTimeOfRelease(date: string): string | undefined {
  const t = Date.parse(date);
  return Number.isNaN(t) ? undefined : snapshotTimestamp(new Date(t + 12 * 3600 * 1000));
}

/** The snapshot bases for a channel: its `snapshot-url`s, else STRATA_DEBIAN_SNAPSHOT (space- or comma-separated), else none. */
export function snapshotBases(urls: string[], env: NodeJS.ProcessEnv = process.env): string[] {
  if (urls.length > 0) return urls;
  return (env.STRATA_DEBIAN_SNAPSHOT?.split(/[\s,]+/).filter(Boolean) ?? []).map((u) => u.replace(/\/+$/, ''));
}

/** The archive root at one point in time, as Debian's snapshot service and apt's snapshot support lay it out. */
export function snapshotUrl(base: string, archive: string, timestamp: string): string {
  return `${base}/archive/${archive}/${timestamp}`;
}


/**
 * A flat repository (apt's "flat repository format"): the suite is a directory ending in `/` (`"/"` or `"./"`: the
 * URL itself; `"sub/"`: a directory below it), holding `InRelease` (or `Release` + `Release.gpg`) and `Packages`
 * directly, with no `dists/` and no components. Package `Filename`s are relative to the URL.
 */
export function isFlat(suite: string): boolean {
  return suite.endsWith('/');
}

/** Where a channel's Release and indexes live below its URL: `dists/<suite>/`, or a flat repository's directory. */
export function releaseDir(suite: string): string {
  if (!isFlat(suite)) return `dists/${suite}/`;
  const dir = suite.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
  return dir === '' ? '' : `${dir}/`;
}
