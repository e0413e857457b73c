/**
 * Real Debian indexes on this host, for differential tests: the dpkg status file and the binary
 * `Packages` indexes apt keeps under /var/lib/apt/lists (present after `apt-get update`, stored
 * compressed or not). Decompression uses the host's own tools, not the code under test.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const DPKG_STATUS = '/var/lib/dpkg/status';
const LISTS = '/var/lib/apt/lists';

export interface IndexFile {
  path: string;
  text: string;
}

const DECOMPRESSORS: [suffix: string, cmd: string, args: string[]][] = [
  ['.lz4', 'lz4', ['-dc']],
  ['.xz', 'xz', ['-dc']],
  ['.gz', 'gzip', ['-dc']],
  ['.zst', 'zstd', ['-dc']],
  ['.bz2', 'bzip2', ['-dc']],
];

/** Paths of the binary Packages indexes under /var/lib/apt/lists, sorted; [] when there are none. */
export function aptPackagesIndexPaths(): string[] {
  if (!existsSync(LISTS)) return [];
  return readdirSync(LISTS)
    .filter((f) => /_Packages(\.(lz4|xz|gz|zst|bz2))?$/.test(f))
    .sort()
    .map((f) => join(LISTS, f));
}

/** The text of one index, decompressed with the matching command-line tool. */
export function readIndex(path: string): string {
  for (const [suffix, cmd, args] of DECOMPRESSORS) {
    if (path.endsWith(suffix)) return execFileSync(cmd, [...args, path], { encoding: 'utf8', maxBuffer: 1 << 30 });
  }
  return readFileSync(path, 'utf8');
}

/** Every binary Packages index apt has on this host, decompressed. */
export function aptPackagesIndexes(): IndexFile[] {
  return aptPackagesIndexPaths().map((path) => ({ path, text: readIndex(path) }));
}

/** The dpkg status file's text, or '' when there is none. */
export function dpkgStatusText(): string {
  return existsSync(DPKG_STATUS) ? readFileSync(DPKG_STATUS, 'utf8') : '';
}

/**
 * Field values of `name` in a deb822 text, read by a plain line scan (independent of the parser under
 * test): first-line values of the field, in file order.
 */
export function scanFieldValues(text: string, name: string): string[] {
  const prefix = `${name}:`;
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith(prefix)) out.push(line.slice(prefix.length).trim());
  }
  return out;
}
