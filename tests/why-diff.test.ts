/** `strata why` and `strata diff` through the real CLI, on locks of the signed fixture archive. */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { project, manifestFor, closeSharedMirror } from './helpers/project.ts';

test.after.always(closeSharedMirror);

test('why names each edge by the relation it satisfies, from the requested packages or the Essential set', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'fixture-tool = "*"\ndownloader = "*"'));
  t.is((await p.strata(['lock'])).code, 0);
  const r = await p.strata(['why', 'python3']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^required through the requested packages:\n {2}fixture-tool -> python3 \(Depends: python3:any\)$/m);
  const alt = await p.strata(['why', 'wget-lite']);
  t.regex(alt.stdout, /downloader -> wget-lite \(Depends: curl-ng \| wget-lite\)/);
  const root = await p.strata(['why', 'fixture-tool']);
  t.regex(root.stdout, /^fixture-tool is requested in strata\.toml$/m);
  const ess = await p.strata(['why', 'base-files']);
  t.is(ess.code, 0, ess.stderr);
  t.regex(ess.stdout, /^base-files is in the Essential set/m);
  const json = JSON.parse((await p.strata(['why', 'python3', '--json'])).stdout);
  t.deepEqual(json.paths, [[{ from: 'fixture-tool', to: 'python3', via: 'Depends: python3:any' }]]);
  // without the channels' cached indexes the path is still shown, and says why the relations are missing
  const cold = await p.strata(['why', 'python3'], { env: { STRATA_CACHE_DIR: join(p.dir, 'empty-cache') } });
  t.is(cold.code, 0, cold.stderr);
  t.regex(cold.stdout, /fixture-tool -> python3$/m);
  t.regex(cold.stdout, /relations not shown/);
  const missing = await p.strata(['why', 'no-such-package']);
  t.is(missing.code, 4);
  t.regex(missing.stderr, /error: no-such-package is not in strata\.lock/);
});

test('diff compares git HEAD\'s strata.lock with the working one, or two lock files; --json', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'zlib1g = "*"'));
  t.is((await p.strata(['lock'])).code, 0);
  const git = (...a: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@strata.invalid', ...a], { cwd: p.dir, stdio: 'pipe' });
  git('init', '-q');
  git('add', 'strata.toml', 'strata.lock');
  git('commit', '-qm', 'first lock');
  copyFileSync(join(p.dir, 'strata.lock'), join(p.dir, 'old.lock'));
  const same = await p.strata(['diff']);
  t.is(same.code, 0, same.stderr);
  t.regex(same.stdout, /^HEAD:strata\.lock -> strata\.lock\nno change/);
  p.writeManifest(manifestFor(p, 'zlib1g = { channel = "current" }\nwget-lite = "*"'));
  t.is((await p.strata(['lock'])).code, 0);
  const r = await p.strata(['diff']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^ {2}\+ wget-lite 1\.21\.3-1 \(stable\)$/m);
  t.regex(r.stdout, /^ {2}~ zlib1g 1:1\.2\.13\.dfsg-1\+b1 \(stable\) -> 1:1\.3\.dfsg\+really1\.3\.1-1\+b1 \(current\)$/m);
  const files = await p.strata(['diff', 'old.lock', 'strata.lock', '--json']);
  t.is(files.code, 0, files.stderr);
  const j = JSON.parse(files.stdout);
  t.deepEqual(j.added.map((x: { name: string }) => x.name), ['wget-lite']);
  t.is(j.changed.find((c: { name: string }) => c.name === 'zlib1g').to.channel, 'current');
  const bad = await p.strata(['diff', 'no-such-rev']);
  t.is(bad.code, 64);
  t.regex(bad.stderr, /cannot read strata\.lock at git revision "no-such-rev"/);
});
