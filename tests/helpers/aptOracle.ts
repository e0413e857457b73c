/**
 * apt as an oracle: a private apt state (empty dpkg status, own lists and cache, one sources line) so that
 * `apt-get install -s` prints the closure apt would install, whatever the host has installed.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Creates the state under `dir`, runs `apt-get update`, and returns the `-o` options that select it. */
export function privateApt(dir: string, sourcesLine: string): string[] {
  for (const d of ['lists/partial', 'cache/archives/partial']) mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(join(dir, 'status'), '');
  writeFileSync(join(dir, 'sources.list'), `${sourcesLine}\n`);
  const opts = [
    `Dir::State::status=${dir}/status`, `Dir::State::Lists=${dir}/lists`, `Dir::Cache=${dir}/cache`,
    `Dir::Etc::SourceList=${dir}/sources.list`, 'Dir::Etc::SourceParts=/dev/null', 'APT::Architecture=amd64',
    'APT::Architectures::=amd64', 'APT::Install-Recommends=0', 'Debug::NoLocking=1',
  ].flatMap((o) => ['-o', o]);
  execFileSync('apt-get', [...opts, 'update', '-qq'], { stdio: 'ignore' });
  return opts;
}

/**
 * The names apt's own cache marks `Essential: yes`: the set every Debian system has and no package declares a
 * dependency on, which strata adds to every environment (unless `[resolve] essential = false`). Sorted.
 */
export function aptEssential(opts: string[]): string[] {
  const out = execFileSync('apt-cache', [...opts, 'dumpavail'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const names = new Set<string>();
  for (const stanza of out.split('\n\n')) {
    if (/^Essential: yes$/m.test(stanza)) names.add(/^Package: (\S+)$/m.exec(stanza)![1]!);
  }
  return [...names].sort();
}

/** `name version` of every package `apt-get install -s roots` would install, sorted. */
export function aptPlan(opts: string[], roots: string[]): string[] {
  const out = execFileSync('apt-get', [...opts, 'install', '-s', ...roots], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.startsWith('Inst ')).map((l) => {
    const [, name, ver] = /^Inst (\S+) \((\S+)/.exec(l)!;
    return `${name} ${ver}`;
  }).sort();
}

/**
 * `[gpu] driver = "host"` for apt: the options of `opts` with a dpkg status in which every package of the NVIDIA
 * driver's source (what strata takes from the host) is installed, as on the host, at the version the archive
 * offers and with its Provides (its own dependencies left out: the host has them). apt then installs none of them
 * and counts them as meeting a dependency, as strata does.
 */
export function aptWithHostDriver(opts: string[], dir: string): string[] {
  const out = execFileSync('apt-cache', [...opts, 'dumpavail'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const stanzas: string[] = [];
  for (const stanza of out.split('\n\n')) {
    const name = /^Package: (\S+)$/m.exec(stanza)?.[1];
    const source = /^Source: (\S+)/m.exec(stanza)?.[1] ?? name;
    if (!name || !source || !/^nvidia-graphics-drivers/.test(source)) continue;
    const keep = stanza.split('\n').filter((l) => /^(Package|Version|Architecture|Multi-Arch|Provides): /.test(l));
    stanzas.push([keep[0], 'Status: install ok installed', ...keep.slice(1)].join('\n'));
  }
  const status = join(dir, 'status-host-driver');
  writeFileSync(status, `${stanzas.join('\n\n')}\n`);
  return [...opts, '-o', `Dir::State::status=${status}`];
}
