/**
 * The pure part of the generated layer (engine/generated.ts): which steps an environment gets, where a compiled
 * file lands in the image, and what its store key depends on.
 */
import test from 'ava';
import { generatedEntries, generatedKey, generatedScript, generatedSteps, imagePath } from '../engine/generated.ts';
import type { Lockfile, LockedPackage } from '../model.ts';

const pkg = (name: string, sha = 'a'): LockedPackage => ({ name, version: '1', arch: 'amd64', channel: 'stable', filename: `pool/${name}.deb`, size: 1, sha256: sha.repeat(64).slice(0, 64) }) as LockedPackage;
const lockOf = (packages: LockedPackage[]): Lockfile =>
  ({ version: 1, manifestSha256: '0'.repeat(64), project: { name: 't', arch: 'amd64' }, closure: 'x', channels: [], image: { env: {}, alternatives: {} }, packages, hostProvided: [] }) as unknown as Lockfile;

test('only an environment with ca-certificates, libc-bin or python3 gets steps, each for its own package', (t) => {
  t.deepEqual(generatedSteps(lockOf([pkg('zlib1g'), pkg('libblas3'), pkg('base-files')])), []);
  t.deepEqual(generatedSteps(lockOf([pkg('libc-bin')])), ['ld.so.cache']);
  t.deepEqual(generatedSteps(lockOf([pkg('python3'), pkg('ca-certificates'), pkg('libc-bin')])), ['ca-certificates', 'ld.so.cache', 'python-bytecode']);
  t.notRegex(generatedScript(['ld.so.cache']), /update-ca-certificates|compileall/);
  t.regex(generatedScript(['python-bytecode']), /--invalidation-mode unchecked-hash/);
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
