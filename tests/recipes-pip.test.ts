/**
 * `kind = "pip"` recipes and `strata freeze` against the real Debian archive (python3 and pip from trixie; skipped
 * with a message when no mirror is reachable) and a PEP 503 simple index served on loopback with wheels zipped by
 * hand. One environment, several checks: the lock pins every file (a dependency included) by sha256; the package
 * imports under `strata run` from /usr/local/lib/python3.X/dist-packages and dpkg knows its owner; two realises with
 * different caches give the same image; bytes the index changed after the lock are refused naming the file and both
 * hashes; `lock --check` sees a changed requirements list; a requirement the index lacks fails the lock with pip's
 * reason. Then freeze: a venv made in the environment, a package pip-installed into it, `strata freeze`, `strata
 * lock`, and a copy of the project with only strata.toml and strata.lock and a fresh cache imports it.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/project.ts';
import { debianMirrorOrSkip } from './helpers/debianMirror.ts';
import { makeWheel, serveIndex } from './helpers/pipIndex.ts';
import { VENV_DIR } from '../engine/freeze.ts';

// A token of this run in the wheel: its bytes are new to every store, even one shared between runs (STRATA_TEST_DEBIAN_CACHE).
const HELLO = { name: 'strata-hello', version: '1.0', requires: ['strata-dep (>=1.0)'], files: { 'strata_hello/__init__.py': 'from strata_dep import word\n\ndef hello():\n    return "hello from a pip recipe, " + word()\n', 'strata_hello/_run.py': `RUN = "${randomBytes(8).toString('hex')}"\n` } };
const DEP = { name: 'strata-dep', version: '1.0', files: { 'strata_dep/__init__.py': 'def word():\n    return "with its dependency"\n' } };

/** The digest of the layer of recipe `name` in an OCI layout (found by its history comment, `NAME=VERSION input ...`). */
function recipeLayer(layout: string, name: string): string {
  const blob = (d: string) => JSON.parse(readFileSync(join(layout, 'blobs', ...d.split(':')), 'utf8'));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const manifest = blob(index.manifests[0].digest);
  const config = blob(manifest.config.digest);
  const history = (config.history as { comment?: string; empty_layer?: boolean }[]).filter((h) => !h.empty_layer);
  const at = history.findIndex((h) => h.comment?.startsWith(`${name}=`));
  if (at < 0) throw new Error(`no layer of recipe ${name} in ${layout}`);
  return manifest.layers[at].digest as string;
}

const manifest = (mirror: string, index: string, requirements: string[]) =>
  [
    '[project]',
    'name = "pip-recipe"',
    'arch = "amd64"',
    '',
    '[channels.stable]',
    `url = "${mirror}"`,
    'suite = "trixie"',
    '',
    '# the environment: python3 and pip (for the venv freeze reads)',
    '[packages]',
    'python3 = "*"',
    'python3-pip = "*"',
    '',
    '[recipes.hello]',
    'kind = "pip"',
    'version = "1.0"',
    `index = "${index}"`,
    `requirements = [${requirements.map((r) => JSON.stringify(r)).join(', ')}]`,
    '',
  ].join('\n');

test('a pip recipe from a loopback simple index: locked by hash, imported under strata run, reproducible, verified; then strata freeze', async (t) => {
  const m = await debianMirrorOrSkip(t);
  if (!m) return;
  const dir = mkdtempSync(join(tmpdir(), 'strata-pip-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const root = join(dir, 'index');
  const helloWheel = makeWheel(root, HELLO);
  makeWheel(root, DEP);
  const index = await serveIndex(root);
  try {
    const project = join(dir, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'strata.toml'), manifest(m.url, index.url, ['strata-hello == 1.0']));
    const cacheA = process.env.STRATA_TEST_DEBIAN_CACHE ?? join(dir, 'cache-a');
    const strata = (args: string[], cache = cacheA, cwd = project, env: NodeJS.ProcessEnv = {}) => runCli(args, { cwd, env: { STRATA_CACHE_DIR: cache, ...env }, timeoutMs: 1_800_000 });

    // The lock: every file the requirements need, the dependency included, each with its URL and sha256.
    const lock = await strata(['lock']);
    t.is(lock.code, 0, lock.stderr);
    const text = readFileSync(join(project, 'strata.lock'), 'utf8');
    const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
    t.regex(text, new RegExp(`\\[\\[recipe\\.wheel\\]\\]\\nname = "strata-dep"\\nversion = "1\\.0"\\nfilename = "strata_dep-1\\.0-py3-none-any\\.whl"\\nurl = "${index.url.replace('/simple', '')}/files/strata_dep-1\\.0-py3-none-any\\.whl"\\nsha256 = "${sha(join(root, 'files/strata_dep-1.0-py3-none-any.whl'))}"`));
    t.regex(text, new RegExp(`name = "strata-hello"\\nversion = "1\\.0"\\nfilename = "strata_hello-1\\.0-py3-none-any\\.whl"\\n.*\\nsha256 = "${sha(helloWheel)}"`));
    t.regex(text, /^kind = "pip"\nindex = ".*"\nrequirements = \[\n  "strata-hello == 1\.0",\n\]$/m);
    t.is((await strata(['lock', '--check'])).code, 0);
    const requestsAtLock = index.requests.length;

    // The index serves other bytes for a locked file: the build (the store holds no copy yet) refuses them, naming
    // the file and both hashes.
    const good = readFileSync(helloWheel);
    const lockedSha = sha(helloWheel);
    makeWheel(root, { ...HELLO, files: { 'strata_hello/__init__.py': 'def hello():\n    return "changed after the lock"\n' } });
    const changedSha = sha(helloWheel);
    t.not(changedSha, lockedSha);
    const refused = await strata(['build', 'hello', '--locked']);
    t.is(refused.code, 1, refused.stderr);
    t.regex(refused.stderr, new RegExp(`^error: recipe hello: file strata_hello-1\\.0-py3-none-any\\.whl: .*expected ${lockedSha}, received ${changedSha}$`, 'm'));
    t.log(refused.stderr.split('\n').find((l) => l.startsWith('error:')));
    writeFileSync(helloWheel, good);

    // Realise and run: the package imports from Debian's /usr/local dist-packages; dpkg knows who owns it.
    const realise = await strata(['realise', '--locked', '--oci', join(dir, 'oci-a')]);
    t.is(realise.code, 0, realise.stderr);
    t.regex(realise.stderr, /built recipe hello 1\.0/);
    t.false(index.requests.slice(requestsAtLock).some((p) => p.startsWith('/simple')), 'realise asks the index for nothing but the locked files');
    const run = await strata(['run', '--backend', 'sandbox', '--locked', '--', 'python3', '-c', 'import strata_hello; print(strata_hello.hello()); print(strata_hello.__file__)']);
    t.is(run.code, 0, run.stderr);
    t.regex(run.stdout, /^hello from a pip recipe, with its dependency\n\/usr\/local\/lib\/python3\.\d+\/dist-packages\/strata_hello\/__init__\.py\n$/);
    const owner = await strata(['run', '--backend', 'sandbox', '--locked', '--', 'sh', '-c', 'dpkg -S "$(python3 -c "import strata_dep; print(strata_dep.__file__)")"; python3 -c "import json; print(json.load(open(\'/usr/share/doc/strata-recipe-hello/provenance.json\'))[\'kind\'])"']);
    t.is(owner.code, 0, owner.stderr);
    t.regex(owner.stdout, /^strata-recipe-hello: \/usr\/local\/lib\/python3\.\d+\/dist-packages\/strata_dep\/__init__\.py\npip\n$/);

    // A changed requirements list makes the lock stale; a requirement the index lacks fails the lock with pip's reason.
    writeFileSync(join(project, 'strata.toml'), manifest(m.url, index.url, ['strata-hello == 1.0', 'strata-missing == 2.0']));
    const stale = await strata(['lock', '--check']);
    t.is(stale.code, 3, stale.stderr);
    const missing = await strata(['lock']);
    t.is(missing.code, 4, missing.stderr);
    t.regex(missing.stderr, /^error: recipe hello: pip cannot resolve its requirements against http:\/\/127\.0\.0\.1:\d+\/simple \(exit 1\):\n(  .*\n)*  ERROR: No matching distribution found for strata-missing==2\.0$/m);
    t.log(missing.stderr.split('\n').filter((l) => /^(error|  ERROR)/.test(l)).join(' | '));
    writeFileSync(join(project, 'strata.toml'), manifest(m.url, index.url, ['strata-hello == 1.0']));
    t.is(readFileSync(join(project, 'strata.lock'), 'utf8'), text, 'a failed lock leaves the lock as it was');

    // freeze: a venv in the environment, a package pip-installed into it from the index, frozen into strata.toml.
    makeWheel(root, { name: 'strata-extra', version: '2.0', files: { 'strata_extra.py': 'WHAT = "frozen from the venv"\n' } });
    const venv = await strata(['run', '--backend', 'sandbox', '--locked', '--', 'sh', '-c', `python3 -m venv --without-pip --system-site-packages ${VENV_DIR} && ${VENV_DIR}/bin/python -m pip install --quiet --disable-pip-version-check --isolated --index-url ${index.url} strata-extra==2.0`]);
    t.is(venv.code, 0, venv.stderr);
    const userToml = readFileSync(join(project, 'strata.toml'), 'utf8');
    const freeze = await strata(['freeze'], cacheA, project, { STRATA_PIP_INDEX: index.url });
    t.is(freeze.code, 0, freeze.stderr);
    t.log(freeze.stdout.trim());
    const frozen = readFileSync(join(project, 'strata.toml'), 'utf8');
    t.true(frozen.startsWith(userToml), 'the user\'s file is kept as it was, comments included');
    t.regex(frozen.slice(userToml.length), /\[recipes\.venv\]\nkind = "pip"\nversion = "[^"]+"\nrequirements = \[\n  "strata-extra == 2\.0",\n\]/);
    const refreeze = await strata(['freeze'], cacheA, project, { STRATA_PIP_INDEX: index.url });
    t.is(refreeze.code, 0, refreeze.stderr);
    t.is(readFileSync(join(project, 'strata.toml'), 'utf8'), frozen, 'a second freeze replaces its own table, nothing else');
    const relock = await strata(['lock'], cacheA, project, { STRATA_PIP_INDEX: index.url });
    t.is(relock.code, 0, relock.stderr);

    // A colleague with only the two files and a fresh cache gets the frozen package, without the venv.
    const colleague = join(dir, 'colleague');
    mkdirSync(colleague);
    for (const f of ['strata.toml', 'strata.lock']) copyFileSync(join(project, f), join(colleague, f));
    const cacheC = join(dir, 'cache-c');
    const theirRealise = await strata(['realise', '--locked', '--oci', join(dir, 'oci-c')], cacheC, colleague);
    t.is(theirRealise.code, 0, theirRealise.stderr);
    t.regex(theirRealise.stderr, /built recipe hello 1\.0/);
    // Two realises with different caches (and stores, and temporary directories) give the same layer for the recipe.
    const ours = recipeLayer(join(dir, 'oci-a'), 'hello');
    t.is(recipeLayer(join(dir, 'oci-c'), 'hello'), ours);
    t.log(`recipe hello's layer in both images: ${ours}`);
    const theirs = await strata(['run', '--backend', 'sandbox', '--locked', '--', 'python3', '-c', 'import strata_extra, strata_hello; print(strata_extra.WHAT, strata_extra.__file__)'], cacheC, colleague);
    t.is(theirs.code, 0, theirs.stderr);
    t.regex(theirs.stdout, /^frozen from the venv \/usr\/local\/lib\/python3\.\d+\/dist-packages\/strata_extra\.py\n$/);
  } finally {
    await index.close();
  }
});
