/**
 * `strata freeze`'s judgement of a venv, with real git repositories: a venv laid out as pip leaves it
 * (`lib/python3.X/site-packages/*.dist-info`, `direct_url.json` per PEP 610), read by engine/freeze.ts. An index
 * install is a requirement; an editable install from a clean checkout whose commit its remote has is a git recipe;
 * a dirty checkout, one without a remote, a commit the remote lacks and an install from a file are not freezable,
 * each with its reason.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { readVenv } from '../engine/freeze.ts';

const git = (cwd: string, ...args: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@t.invalid', '-c', 'init.defaultBranch=main', ...args], { cwd, encoding: 'utf8' }).trim();

function repo(dir: string, remote?: string): string {
  mkdirSync(dir, { recursive: true });
  git(dir, 'init', '-q');
  writeFileSync(join(dir, 'pyproject.toml'), '[project]\nname = "x"\n');
  git(dir, 'add', '.');
  git(dir, 'commit', '-qm', 'one');
  if (remote) {
    git(dir, 'remote', 'add', 'origin', remote);
    git(dir, 'push', '-q', 'origin', `HEAD:refs/heads/${dir.split('/').pop()}`);
  }
  return git(dir, 'rev-parse', 'HEAD');
}

function dist(site: string, name: string, version: string, direct?: object): void {
  const d = join(site, `${name.replace(/-/g, '_')}-${version}.dist-info`);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'METADATA'), `Metadata-Version: 2.1\nName: ${name}\nVersion: ${version}\n\nA description.\nName: not-this\n`);
  if (direct) writeFileSync(join(d, 'direct_url.json'), JSON.stringify(direct));
}

test('freeze reads a venv: index installs, clean git checkouts, and what cannot be frozen with the reason', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-freeze-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const remote = join(dir, 'remote.git');
  mkdirSync(remote);
  git(remote, 'init', '-q', '--bare');
  const clean = repo(join(dir, 'clean'), remote);
  repo(join(dir, 'dirty'), remote);
  writeFileSync(join(dir, 'dirty/pyproject.toml'), 'changed\n');
  repo(join(dir, 'lonely'));
  repo(join(dir, 'ahead'), remote);
  writeFileSync(join(dir, 'ahead/more'), 'x\n');
  git(join(dir, 'ahead'), 'add', '.');
  git(join(dir, 'ahead'), 'commit', '-qm', 'not pushed');
  const site = join(dir, 'venv/lib/python3.13/site-packages');
  dist(site, 'Numpy_Thing', '2.1.0');
  dist(site, 'pip', '25.1');
  dist(site, 'clean-lib', '0.3', { url: pathToFileURL(join(dir, 'clean')).href, dir_info: { editable: true } });
  dist(site, 'dirty-lib', '1.0', { url: pathToFileURL(join(dir, 'dirty')).href, dir_info: { editable: true } });
  dist(site, 'lonely-lib', '1.0', { url: pathToFileURL(join(dir, 'lonely')).href, dir_info: {} });
  dist(site, 'ahead-lib', '1.0', { url: pathToFileURL(join(dir, 'ahead')).href, dir_info: { editable: true } });
  dist(site, 'from-git', '0.9', { url: 'https://git.invalid/from-git', vcs_info: { vcs: 'git', commit_id: 'e'.repeat(40) } });
  dist(site, 'from-file', '1.0', { url: 'file:///tmp/from_file-1.0-py3-none-any.whl', archive_info: {} });
  const items = await readVenv(join(dir, 'venv'));
  const by = new Map(items.map((i) => [i.name, i]));
  t.false(by.has('pip'), 'pip itself is left out');
  t.deepEqual(by.get('numpy-thing'), { kind: 'index', name: 'numpy-thing', version: '2.1.0' });
  t.deepEqual(by.get('clean-lib'), { kind: 'git', name: 'clean-lib', version: '0.3', git: remote, rev: clean });
  t.deepEqual(by.get('from-git'), { kind: 'git', name: 'from-git', version: '0.9', git: 'https://git.invalid/from-git', rev: 'e'.repeat(40) });
  const reason = (n: string) => (by.get(n) as { reason?: string } | undefined)?.reason ?? '';
  t.regex(reason('dirty-lib'), /^an editable install of .*\/dirty: the git checkout .* has uncommitted changes/);
  t.regex(reason('lonely-lib'), /^installed from the directory .*\/lonely: the git checkout .* has no remote a colleague could fetch from$/);
  t.regex(reason('ahead-lib'), /^an editable install of .*\/ahead: commit [0-9a-f]{12} of .* is not reachable at its remote .*remote\.git \(push it\)/);
  t.regex(reason('from-file'), /^installed from the file file:\/\/\/tmp\/from_file-1\.0-py3-none-any\.whl, not from an index or a git checkout/);
});
