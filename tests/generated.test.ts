/**
 * The pure part of the generated layer (engine/generated.ts): which steps an environment gets, where a compiled
 * file lands in the image, and what its store key depends on.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BYTECODE_LAYERS, bytecodeBucket, generatedEntries, generatedParts, generatedScript, PYC_SCRIPT, generatedSteps, imagePath } from '../engine/generated.ts';
import type { UnpackedView } from '../realiser/realise.ts';
import type { LayerEntry } from '../realiser/layertar.ts';
import type { Lockfile, LockedPackage } from '../model.ts';

const pkg = (name: string, sha = 'a'): LockedPackage => ({ name, version: '1', arch: 'amd64', channel: 'stable', filename: `pool/${name}.deb`, size: 1, sha256: sha.repeat(64).slice(0, 64) }) as LockedPackage;
const lockOf = (packages: LockedPackage[]): Lockfile =>
  ({ version: 1, manifestSha256: '0'.repeat(64), project: { name: 't', arch: 'amd64' }, closure: 'x', channels: [], image: { env: {}, alternatives: {} }, packages, hostProvided: [] }) as unknown as Lockfile;

test('only an environment with ca-certificates, libc-bin or python3 gets steps, each for its own package', (t) => {
  t.deepEqual(generatedSteps(lockOf([pkg('zlib1g'), pkg('libblas3'), pkg('base-files')])), []);
  t.deepEqual(generatedSteps(lockOf([pkg('libc-bin')])), ['ld.so.cache']);
  t.deepEqual(generatedSteps(lockOf([pkg('python3'), pkg('ca-certificates'), pkg('libc-bin')])), ['ca-certificates', 'ld.so.cache', 'python-bytecode']);
  t.notRegex(generatedScript(['ld.so.cache']), /update-ca-certificates|STRATA_PYC/);
  t.notRegex(generatedScript(['ca-certificates', 'ld.so.cache', 'python-bytecode']), /python3/, 'the bytecode is compiled apart, per package');
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

const file = (path: string): UnpackedView['entries'][number] => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, sha256: 'c'.repeat(64) }) as UnpackedView['entries'][number];
const view = (...entries: UnpackedView['entries']): UnpackedView => ({ root: '/nowhere', entries, control: '' });
/** An environment with python3 3.13, its standard library, a library, two modules' packages and a doc-only one. */
function env(shas: Record<string, string> = {}) {
  const names = ['python3', 'python3-minimal', 'python3.13-minimal', 'libpython3.13-stdlib', 'libc-bin', 'libc6', 'libssl3t64', 'python3-six', 'python3-wheel', 'base-files'];
  const lock = lockOf(names.map((n) => ({ ...pkg(n, shas[n] ?? 'a'), depends: n === 'python3' ? ['python3-minimal', 'libpython3.13-stdlib'] : n === 'python3-minimal' ? ['python3.13-minimal'] : n === 'python3.13-minimal' ? ['libc6'] : [] }) as LockedPackage));
  const unpacked = new Map<string, UnpackedView>([
    ['python3', view(file('usr/share/doc/python3/copyright'))],
    ['python3-minimal', view({ path: 'usr/bin/python3', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: 'python3.13' } as UnpackedView['entries'][number])],
    ['python3.13-minimal', view(file('usr/bin/python3.13'))],
    ['libpython3.13-stdlib', view(file('usr/lib/python3.13/json/__init__.py'), file('usr/lib/python3.13/lib-dynload/_json.cpython-313-x86_64-linux-gnu.so'))],
    ['libc-bin', view(file('sbin/ldconfig'), file('etc/ld.so.conf'))],
    ['libc6', view(file('lib/x86_64-linux-gnu/libc.so.6'))],
    ['libssl3t64', view(file('usr/lib/x86_64-linux-gnu/libssl.so.3'))],
    ['python3-six', view(file('usr/lib/python3/dist-packages/six.py'))],
    ['python3-wheel', view(file('usr/lib/python3/dist-packages/wheel/__init__.py'), file('usr/share/doc/python3-wheel/copyright'))],
    ['base-files', view(file('etc/os-release'))],
  ]);
  const top: LayerEntry[] = [{ path: 'etc/alternatives/libblas.so.3', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: '/usr/lib/x' }];
  return generatedParts(lock, { unpacked, base: { key: 'base', label: '', comment: '', entries: () => [] }, topEntries: top }, 100, () => '');
}

test('the generated output is in parts, each keyed by what it reads: a bump of a module package changes its own part alone', (t) => {
  const before = env();
  t.deepEqual(before.baseSteps, ['ld.so.cache']);
  t.deepEqual(before.parts.map((p) => p.label), ['ld.so.cache', 'python-bytecode of libpython3.13-stdlib', 'python-bytecode of python3-six', 'python-bytecode of python3-wheel']);
  const keys = (p: ReturnType<typeof env>) => p.parts.map((x) => x.key);
  const changed = (other: ReturnType<typeof env>) => before.parts.filter((p, i) => p.key !== other.parts[i]!.key).map((p) => p.label);
  t.deepEqual(keys(env()), keys(before), 'the same environment, the same keys');
  t.deepEqual(changed(env({ 'python3-wheel': 'b' })), ['python-bytecode of python3-wheel'], 'a module package bumped: its bytecode part only (the tools read none of its files)');
  t.deepEqual(changed(env({ 'base-files': 'b' })), [], 'a package nothing reads: no part');
  t.deepEqual(changed(env({ libssl3t64: 'b' })), ['ld.so.cache'], 'a library: the part of the tools that read libraries');
  t.deepEqual(changed(env({ 'python3.13-minimal': 'b' })), ['python-bytecode of libpython3.13-stdlib', 'python-bytecode of python3-six', 'python-bytecode of python3-wheel'], 'the interpreter: every bytecode part');
  t.deepEqual(before.parts.find((p) => p.label.endsWith('python3-wheel'))!.sources, ['/usr/lib/python3/dist-packages/wheel/__init__.py']);
  t.true(bytecodeBucket('python3-wheel') >= 0 && bytecodeBucket('python3-wheel') < BYTECODE_LAYERS);
});

test('the bytecode step gives compileall --invalidation-mode unchecked-hash bytes, from a list of files, over several processes', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-pyc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'src/pkg'), { recursive: true });
  writeFileSync(join(dir, 'src/pkg/a.py'), 'x = 1\n');
  writeFileSync(join(dir, 'src/pkg/b.py'), 'def f():\n    return 2\n');
  writeFileSync(join(dir, 'src/pkg/c.py'), 'import os\n');
  writeFileSync(join(dir, 'list'), ['a', 'b', 'c'].map((n) => join(dir, `src/pkg/${n}.py`)).join('\0') + '\0');
  const run = (prefix: string, args: string[]) => spawnSync('python3', args, { cwd: dir, env: { ...process.env, PYTHONPYCACHEPREFIX: join(dir, prefix), STRATA_PYC_JOBS: '2' }, encoding: 'utf8' });
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
  const ours = run('ours', ['-S', '-B', '-c', PYC_SCRIPT, join(dir, 'list')]);
  t.is(ours.status, 0, ours.stderr);
  t.is(run('theirs', ['-m', 'compileall', '-q', '--invalidation-mode', 'unchecked-hash', join(dir, 'src')]).status, 0);
  t.deepEqual(files('ours'), files('theirs'));
  t.is(Object.keys(files('ours')).length, 3);
});
