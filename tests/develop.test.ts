/** Daily-use pieces of `run` and `init` through the real CLI: -e per flag, ${PROJECT}/${HOME} in [env], --share-tmp. */
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { project, manifestFor, runCli, closeSharedMirror } from './helpers/project.ts';
import { loadManifest } from '../manifest/manifest.ts';
import { hostAptSources } from '../channels/mirror.ts';

test.after.always(closeSharedMirror);

test('run: -e takes one KEY=VALUE per flag and never swallows the command; [env] may use ${PROJECT} and ${HOME}; --share-tmp', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'busybox-fixture = "*"', '\n[env]\nDATA = "${PROJECT}/data"\nCONF = "${HOME}/.conf"\nPLAIN = "x"\n'));
  const home = mkdtempSync(join(tmpdir(), 'strata-home-'));
  const env = { HOME: home };
  const r = await p.strata(['run', '--backend', 'sandbox', '-e', 'A=1', '-e', 'B=2', '--', 'sh', '-c', 'echo "$A$B $DATA $CONF $PLAIN"'], { env });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `12 ${p.dir}/data ${home}/.conf x\n`);
  const bare = await p.strata(['run', '--backend', 'sandbox', '-e', 'FOO=1', 'sh', '-c', 'echo "hi $FOO"'], { env });
  t.is(bare.code, 0, bare.stderr);
  t.is(bare.stdout, 'hi 1\n');
  const marker = join(tmpdir(), `strata-share-${process.pid}`);
  writeFileSync(marker, 'from the host\n');
  try {
    const priv = await p.strata(['run', '--backend', 'sandbox', '--', 'sh', '-c', `cat ${marker} 2>/dev/null || echo private`], { env });
    t.is(priv.stdout, 'private\n');
    const shared = await p.strata(['run', '--backend', 'sandbox', '--share-tmp', '--', 'sh', '-c', `cat ${marker}; echo "$DATA"`], { env });
    t.is(shared.code, 0, shared.stderr);
    t.is(shared.stdout, `from the host\n${p.dir}/data\n`);
  } finally {
    rmSync(marker, { force: true });
  }
});

test('init writes a starter strata.toml that strata reads, takes the host suite, and never overwrites', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'My Project-'));
  const r = await runCli(['init', '--suite', 'trixie', 'python3', 'git'], { cwd: dir });
  t.is(r.code, 0, r.stderr);
  const m = loadManifest(join(dir, 'strata.toml'));
  t.is(m.channels[0]!.suite, 'trixie');
  t.deepEqual(m.packages.map((x) => x.name).sort(), ['git', 'python3']);
  t.regex(m.name, /^my-project-/);
  const again = await runCli(['init'], { cwd: dir });
  t.is(again.code, 64);
  t.regex(again.stderr, /already exists/);
  const bad = await runCli(['init', '--suite', 'Trixie Bad'], { cwd: mkdtempSync(join(tmpdir(), 'strata-init-')) });
  t.is(bad.code, 64);
  const host = hostAptSources().flatMap((s) => s.suites).find((s) => !/-security$|-updates$|\/updates$|-backports$/.test(s));
  const other = mkdtempSync(join(tmpdir(), 'strata-init-'));
  const auto = await runCli(['init'], { cwd: other });
  if (host) {
    t.is(auto.code, 0, auto.stderr);
    t.regex(readFileSync(join(other, 'strata.toml'), 'utf8'), new RegExp(`^suite = "${host.replace(/[.+/]/g, '\\$&')}"$`, 'm'));
  } else {
    t.is(auto.code, 64);
    t.false(existsSync(join(other, 'strata.toml')));
  }
});
