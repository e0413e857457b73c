/**
 * The pure part of the generated layer (engine/generated.ts): which steps an environment gets, where a compiled
 * file lands in the image, and what its store key depends on.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatedEntries, generatedKey, generatedScript, PYC_SCRIPT, generatedSteps, imagePath } from '../engine/generated.ts';
import type { Lockfile, LockedPackage } from '../model.ts';

const pkg = (name: string, sha = 'a'): LockedPackage => ({ name, version: '1', arch: 'amd64', channel: 'stable', filename: `pool/${name}.deb`, size: 1, sha256: sha.repeat(64).slice(0, 64) }) as LockedPackage;
const lockOf = (packages: LockedPackage[]): Lockfile =>
  ({ version: 1, manifestSha256: '0'.repeat(64), project: { name: 't', arch: 'amd64' }, closure: 'x', channels: [], image: { env: {}, alternatives: {} }, packages, hostProvided: [] }) as unknown as Lockfile;

test('only an environment with ca-certificates, libc-bin or python3 gets steps, each for its own package', (t) => {
  t.deepEqual(generatedSteps(lockOf([pkg('zlib1g'), pkg('libblas3'), pkg('base-files')])), []);
  t.deepEqual(generatedSteps(lockOf([pkg('libc-bin')])), ['ld.so.cache']);
  t.deepEqual(generatedSteps(lockOf([pkg('python3'), pkg('ca-certificates'), pkg('libc-bin')])), ['ca-certificates', 'ld.so.cache', 'python-bytecode']);
  t.notRegex(generatedScript(['ld.so.cache']), /update-ca-certificates|STRATA_PYC/);
  t.regex(generatedScript(['python-bytecode']), /python3 -c "\$STRATA_PYC"/);
  t.regex(PYC_SCRIPT, /PycInvalidationMode\.UNCHECKED_HASH/);
});

test("the trigger caches: each step for the package whose postinst or trigger runs its tool, in the image's own paths", (t) => {
  const steps = generatedSteps(lockOf(['libglib2.0-0t64', 'libgdk-pixbuf-2.0-0', 'libgtk-3-0t64', 'shared-mime-info', 'gtk-update-icon-cache', 'fontconfig', 'systemd', 'libfontconfig1'].map((n) => pkg(n))));
  t.deepEqual(steps, ['glib-schemas', 'gio-modules', 'gdk-pixbuf-loaders', 'gtk3-immodules', 'mime-database', 'icon-caches', 'fontconfig-cache', 'systemd-catalog']);
  t.deepEqual(generatedSteps(lockOf([pkg('libglib2.0-0')])), ['glib-schemas', 'gio-modules'], 'the name before the t64 transition too');
  const script = generatedScript(steps);
  t.regex(script, /glib-compile-schemas --targetdir=\/strata-out\/usr\/share\/glib-2\.0\/schemas \/usr\/share\/glib-2\.0\/schemas/);
  t.regex(script, /GTK_IM_MODULE_FILE=\/strata-out\/usr\/lib\/\$STRATA_MULTIARCH\/gtk-3\.0\/3\.0\.0\/immodules\.cache/);
  t.regex(script, /<cachedir>\/strata-out\/var\/cache\/fontconfig<\/cachedir>/);
  t.regex(script, /journalctl --root=\/strata-out\/scratch\/journal --update-catalog/);
  t.notRegex(generatedScript(['ca-certificates', 'ld.so.cache', 'python-bytecode']), /glib|mime|icon|fc-cache|journalctl/, 'an environment without those packages runs the script it ran before');
  t.is(spawnSync('sh', ['-n', '-c', script]).status, 0, 'the script parses');
});

test("a compiled module goes to its source's __pycache__; the prefix's directories are not kept", (t) => {
  t.is(imagePath('pycache/usr/lib/python3.13/json/decoder.cpython-313.pyc'), 'usr/lib/python3.13/json/__pycache__/decoder.cpython-313.pyc');
  t.is(imagePath('pycache/usr/lib/python3.13/json'), undefined);
  t.is(imagePath('pycache'), undefined);
  t.is(imagePath('etc/ssl/certs/ca-certificates.crt'), 'etc/ssl/certs/ca-certificates.crt');
  const entries = generatedEntries('/out', [
    { path: 'etc', type: 'dir', mode: 0o700 },
    { path: 'etc/ld.so.cache', type: 'file', mode: 0o600, size: 3, sha256: 'b'.repeat(64) },
    { path: 'etc/ssl/certs/ISRG_Root_X1.pem', type: 'symlink', mode: 0o777, linkname: '/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt' },
  ]);
  t.deepEqual(
    entries.map((e) => [e.path, e.type, e.mode.toString(8), e.linkname ?? e.source]),
    [
      ['etc/ld.so.cache', 'file', '644', '/out/etc/ld.so.cache'],
      ['etc/ssl/certs/ISRG_Root_X1.pem', 'symlink', '777', '/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt'],
    ],
    'modes are fixed, whatever the scratch directory had',
  );
});

test('the store key names the package set by hash, the steps and the mtime, not the order of the packages', (t) => {
  const steps = generatedSteps(lockOf([pkg('python3')]));
  const k = generatedKey(lockOf([pkg('python3'), pkg('libc6')]), steps, 100);
  t.is(generatedKey(lockOf([pkg('libc6'), pkg('python3')]), steps, 100), k);
  t.not(generatedKey(lockOf([pkg('python3'), pkg('libc6', 'c')]), steps, 100), k, 'another .deb of any package');
  t.not(generatedKey(lockOf([pkg('python3'), pkg('libc6')]), steps, 101), k, 'another mtime');
  t.not(generatedKey(lockOf([pkg('python3'), pkg('libc6')]), ['python-bytecode', 'ld.so.cache'], 100), k, 'other steps');
});

test('the bytecode step gives compileall --invalidation-mode unchecked-hash bytes, keeps a seeded .pyc whose source is unchanged, drops one whose source is gone', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-pyc-'));
  mkdirSync(join(dir, 'src/pkg'), { recursive: true });
  writeFileSync(join(dir, 'src/pkg/a.py'), 'x = 1\n');
  writeFileSync(join(dir, 'src/pkg/b.py'), 'def f():\n    return 2\n');
  const run = (prefix: string, args: string[]) => spawnSync('python3', args, { cwd: dir, env: { ...process.env, PYTHONPYCACHEPREFIX: join(dir, prefix) }, encoding: 'utf8' });
  const files = (prefix: string) => {
    const out: Record<string, string> = {};
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else out[p.slice(join(dir, prefix).length)] = createHash('sha256').update(readFileSync(p)).digest('hex');
      }
    };
    walk(join(dir, prefix));
    return out;
  };
  t.is(run('ours', ['-c', PYC_SCRIPT, join(dir, 'src')]).status, 0);
  t.is(run('theirs', ['-m', 'compileall', '-q', '--invalidation-mode', 'unchecked-hash', join(dir, 'src')]).status, 0);
  t.deepEqual(files('ours'), files('theirs'));
  t.is(Object.keys(files('ours')).length, 2);
  // a seeded .pyc of an unchanged source is kept as it is (not rewritten); a changed source is compiled again
  const b = Object.keys(files('ours')).find((p) => p.includes('/b.'))!;
  const bPath = join(dir, 'ours', b);
  utimesSync(bPath, 1_000_000, 1_000_000);
  writeFileSync(join(dir, 'src/pkg/a.py'), 'x = 2\n');
  rmSync(join(dir, 'src/pkg/a.py'));
  t.is(run('ours', ['-c', PYC_SCRIPT, join(dir, 'src')]).status, 0);
  t.is(statSync(bPath).mtimeMs, 1_000_000_000);
  t.deepEqual(Object.keys(files('ours')), [b]);
});
