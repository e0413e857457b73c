/**
 * The parts of pip recipes and freeze that need no Debian archive: a real pip's installation report (the host's
 * pip against a loopback simple index) read into locked wheels, the refusal of an sdist and of a file without a
 * hash, the default index, and freeze's edit of strata.toml (the user's text kept, its own block replaced).
 */
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultPipIndex, pipRequirementsText, wheelsFromReport } from '../recipes/pip.ts';
import { BEGIN_MARK, END_MARK, frozenRecipes, withFrozenBlock } from '../engine/freeze.ts';
import { makeWheel, serveIndex } from './helpers/pipIndex.ts';

const hostPip = (() => {
  try {
    execFileSync('python3', ['-m', 'pip', '--version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
})();

test("a real pip's installation report gives every file with its URL and sha256, dependencies included", async (t) => {
  if (!hostPip) {
    t.log('skipped: no pip on this host');
    t.pass();
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'strata-pip-report-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const a = makeWheel(dir, { name: 'strata-a', version: '1.2', requires: ['strata-b'], files: { 'strata_a.py': 'A = 1\n' } });
  const b = makeWheel(dir, { name: 'Strata_B', version: '0.1', files: { 'strata_b.py': 'B = 1\n' } });
  const index = await serveIndex(dir);
  try {
    // Asynchronously: the index is served from this process.
    const { stdout: report } = await promisify(execFile)('python3', ['-m', 'pip', 'install', '--isolated', '--dry-run', '--ignore-installed', '--only-binary', ':all:', '--quiet', '--report', '-', '--index-url', index.url, 'strata-a == 1.2'], { encoding: 'utf8', env: { PATH: process.env.PATH!, HOME: dir } });
    const wheels = wheelsFromReport(report, 'recipe x');
    const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
    const base = index.url.replace(/\/simple$/, '');
    t.deepEqual(wheels, [
      { name: 'strata-a', version: '1.2', filename: 'strata_a-1.2-py3-none-any.whl', url: `${base}/files/strata_a-1.2-py3-none-any.whl`, sha256: sha(a) },
      { name: 'strata-b', version: '0.1', filename: 'Strata_B-0.1-py3-none-any.whl', url: `${base}/files/Strata_B-0.1-py3-none-any.whl`, sha256: sha(b) },
    ]);
    t.is(pipRequirementsText(wheels), `strata-a==1.2 --hash=sha256:${sha(a)}\nstrata-b==0.1 --hash=sha256:${sha(b)}\n`);
  } finally {
    await index.close();
  }
});

test('an sdist is refused naming the package; a file without a sha256 too', (t) => {
  const item = (url: string, hashes: Record<string, string> = { sha256: 'a'.repeat(64) }) => JSON.stringify({ install: [{ metadata: { name: 'Foo', version: '2.0' }, download_info: { url, archive_info: { hashes } } }] });
  t.throws(() => wheelsFromReport(item('https://x.invalid/foo-2.0.tar.gz'), 'recipe r'), { message: /^recipe r: Foo 2\.0 resolves to foo-2\.0\.tar\.gz, a source distribution; pip recipes install wheels only$/ });
  t.throws(() => wheelsFromReport(item('https://x.invalid/foo-2.0-py3-none-any.whl', {}), 'recipe r'), { message: /the index gives no sha256 for foo-2\.0-py3-none-any\.whl \(Foo 2\.0\)/ });
});

test('the default index: STRATA_PIP_INDEX, then PIP_INDEX_URL, then the index-url of pip config list; else none', (t) => {
  const config = "global.cert='/etc/ssl/certs/ca-certificates.crt'\nglobal.index-url='http://global.invalid/simple'\ninstall.index-url='http://install.invalid/simple'\n";
  t.is(defaultPipIndex({ STRATA_PIP_INDEX: 'http://s.invalid/simple', PIP_INDEX_URL: 'http://p.invalid/simple' }, config), 'http://s.invalid/simple');
  t.is(defaultPipIndex({ PIP_INDEX_URL: 'http://p.invalid/simple' }, config), 'http://p.invalid/simple');
  t.is(defaultPipIndex({}, config), 'http://install.invalid/simple');
  t.is(defaultPipIndex({}, "global.extra-index-url='http://e.invalid/simple'\n"), undefined);
  t.is(defaultPipIndex({}, undefined), undefined);
});

test("freeze appends its block to the user's strata.toml, replaces only that block later, and writes git checkouts as git recipes", (t) => {
  const user = '# my project\n[project]\nname = "x"   # keep me\n\n[packages]\npython3 = "*"\n';
  const first = withFrozenBlock(user, frozenRecipes([{ kind: 'index', name: 'numpy', version: '2.1.0' }]));
  t.is(first, `${user}\n${BEGIN_MARK}\n[recipes.venv]\nkind = "pip"\nversion = "1"\nrequirements = [\n  "numpy == 2.1.0",\n]\n${END_MARK}\n`);
  const later = `${first}\n# added by hand after freeze\n[env]\nA = "1"\n`;
  const second = withFrozenBlock(later, frozenRecipes([
    { kind: 'index', name: 'numpy', version: '2.2.0' },
    { kind: 'git', name: 'mylib', version: '0.3', git: 'https://git.invalid/mylib', rev: 'f'.repeat(40) },
    { kind: 'not-freezable', name: 'local', version: '1', reason: 'x' },
  ]));
  t.true(second.startsWith(`${user}\n${BEGIN_MARK}\n`));
  t.true(second.endsWith(`${END_MARK}\n\n# added by hand after freeze\n[env]\nA = "1"\n`));
  t.regex(second, /requirements = \[\n {2}"numpy == 2\.2\.0",\n\]\ndepends = \["recipe:venv-mylib"\]\n\n\[recipes\.venv-mylib\]\nversion = "0\.3"\nsource = \{ git = "https:\/\/git\.invalid\/mylib", rev = "f{40}" \}\n/);
  t.notRegex(second, /local/);
});
