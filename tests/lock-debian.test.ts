/**
 * `strata lock` against the real Debian archive, with apt as the oracle: for a stable-only manifest, strata's
 * closure must be exactly what `apt-get install -s` (no Recommends, empty dpkg status) would install.
 */
import test from 'ava';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadManifest } from '../manifest/manifest.ts';
import { lockManifest } from '../engine/lockManifest.ts';
import { openStore } from '../store/store.ts';
import { quietReporter } from '../report/reporter.ts';
import { reachableDebianMirror } from './helpers/debianMirror.ts';
import { privateApt, aptPlan, aptEssential } from './helpers/aptOracle.ts';

const ROOTS = ['git', 'python3', 'python3-numpy', 'python3-scipy', 'libhdf5-dev'];

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
  const first = await lockManifest(manifest, { store: await openStore(storeRoot), reporter: quietReporter() });
  const bytes = readFileSync(join(dir, 'strata.lock'), 'utf8');
  const mine = first.lock.packages.map((p) => `${p.name} ${p.version}`).sort();
  const aptOpts = privateApt(join(dir, 'apt'), `deb [signed-by=${m.keyring}] ${m.url} trixie main`);
  // apt installs the Essential set only when told to (mmdebstrap names it); strata includes it by default.
  const essential = aptEssential(aptOpts);
  t.true(essential.includes('dash') && essential.includes('coreutils'), essential.join(' '));
  const apt = aptPlan(aptOpts, [...ROOTS, ...essential]);
  t.true(mine.length > 50, `${mine.length} packages`);
  t.deepEqual(mine, apt);
  t.deepEqual(first.lock.packages.filter((p) => p.root).map((p) => p.name).sort(), [...ROOTS].sort());
  // Warm and offline: the same bytes, without downloading any index.
  const again = await lockManifest(manifest, { store: await openStore(storeRoot), reporter: quietReporter() }, { offline: true });
  t.false(again.written);
  t.is(readFileSync(join(dir, 'strata.lock'), 'utf8'), bytes);
});
