/**
 * `strata lock` against the real Debian archive, with apt as the oracle: for a stable-only manifest, strata's
 * closure must be exactly what `apt-get install -s` (no Recommends, empty dpkg status) would install.
 */
import test from 'ava';
import { mkdtempSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { loadManifest } from '../manifest/manifest.ts';
import { lockManifest } from '../commands/lock.ts';
import { quietReporter } from '../report/reporter.ts';
import { reachableDebianMirror } from './helpers/debianMirror.ts';

const ROOTS = ['git', 'python3', 'python3-numpy', 'python3-scipy', 'libhdf5-dev'];

function aptPlan(mirror: string, keyring: string, dir: string, roots: string[]): string[] {
  for (const d of ['lists/partial', 'cache/archives/partial']) mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(join(dir, 'status'), '');
  writeFileSync(join(dir, 'sources.list'), `deb [signed-by=${keyring}] ${mirror} trixie main\n`);
  const opts = [
    `Dir::State::status=${dir}/status`, `Dir::State::Lists=${dir}/lists`, `Dir::Cache=${dir}/cache`,
    `Dir::Etc::SourceList=${dir}/sources.list`, 'Dir::Etc::SourceParts=/dev/null', 'APT::Architecture=amd64',
    'APT::Architectures::=amd64', 'APT::Install-Recommends=0', 'Debug::NoLocking=1',
  ].flatMap((o) => ['-o', o]);
  execFileSync('apt-get', [...opts, 'update', '-qq'], { stdio: 'ignore' });
  const out = execFileSync('apt-get', [...opts, 'install', '-s', ...roots], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.startsWith('Inst ')).map((l) => {
    const [, name, ver] = /^Inst (\S+) \((\S+)/.exec(l)!;
    return `${name} ${ver}`;
  }).sort();
}

test('a trixie lock equals apt\'s own plan, and locking twice gives the same bytes', async (t) => {
  const m = await reachableDebianMirror();
  if ('skip' in m) {
    t.log(`skipped: ${m.skip}`);
    t.pass();
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'strata-debian-'));
  const manifestPath = join(dir, 'strata.toml');
  writeFileSync(manifestPath, `[project]\nname = "oracle"\narch = "amd64"\n\n[channels.stable]\nurl = "${m.url}"\nsuite = "trixie"\ncomponents = ["main"]\n\n[packages]\n${ROOTS.map((r) => `${r} = "*"`).join('\n')}\n`);
  const storeRoot = join(dir, 'cache');
  const manifest = loadManifest(manifestPath);
  const first = await lockManifest(manifest, quietReporter(), { storeRoot });
  const bytes = readFileSync(join(dir, 'strata.lock'), 'utf8');
  const mine = first.lock.packages.map((p) => `${p.name} ${p.version}`).sort();
  const apt = aptPlan(m.url, m.keyring, join(dir, 'apt'), ROOTS);
  t.true(mine.length > 50, `${mine.length} packages`);
  t.deepEqual(mine, apt);
  t.deepEqual(first.lock.packages.filter((p) => p.root).map((p) => p.name).sort(), [...ROOTS].sort());
  // Warm and offline: the same bytes, without downloading any index.
  const again = await lockManifest(manifest, quietReporter(), { storeRoot, offline: true });
  t.false(again.written);
  t.is(readFileSync(join(dir, 'strata.lock'), 'utf8'), bytes);
});
