import test from 'ava';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { serializeLock, parseLock, diffLocks } from '../lock/lockfile.ts';
import { closureHashes, environmentClosure } from '../lock/closure.ts';
import { StrataError } from '../errors.ts';
import type { Lockfile, LockedPackage } from '../model.ts';

const golden = fileURLToPath(new URL('./golden/strata.lock', import.meta.url));

function p(name: string, depends: string[], extra: Partial<LockedPackage> = {}): LockedPackage {
  return {
    name,
    version: '1.0-1',
    arch: 'amd64',
    channel: 'stable',
    source: name,
    filename: `pool/main/${name[0]}/${name}/${name}_1.0-1_amd64.deb`,
    size: 1234,
    sha256: Buffer.from(name).toString('hex').padEnd(64, 'a').slice(0, 64),
    root: false,
    depends,
    closure: '',
    ...extra,
  };
}

function sample(order: 'forward' | 'reverse' = 'forward'): Lockfile {
  const pkgs = [p('zlib1g', ['libc6']), p('libc6', ['libgcc-s1']), p('libgcc-s1', ['libc6']), p('app', ['zlib1g', 'libc6'], { root: true, channel: 'current' })];
  const closures = closureHashes(pkgs);
  for (const x of pkgs) x.closure = closures.get(x.name)!;
  const host = [{ name: 'libcuda1', requires: '>= 550' }];
  return {
    version: 1,
    manifestSha256: 'f'.repeat(64),
    project: { name: 'demo', arch: 'amd64' },
    closure: environmentClosure('amd64', closures.values(), host),
    channels: [
      { name: 'stable', suite: 'trixie', codename: 'trixie', components: ['main', 'contrib'], date: 'Sat, 08 Nov 2025 10:00:00 UTC', releaseSha256: 'a'.repeat(64), urls: [] },
      { name: 'current', suite: 'forky', codename: 'forky', components: ['main'], date: 'Sun, 09 Nov 2025 10:00:00 UTC', releaseSha256: 'b'.repeat(64), urls: ['http://127.0.0.1:1/debian'] },
    ],
    image: { env: { OMP_NUM_THREADS: '4', A_QUOTE: 'say "hi"\n' }, alternatives: { 'libblas.so.3-x86_64-linux-gnu': '/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3' }, gpuDriver: 'host', cmd: ['python3'] },
    packages: order === 'forward' ? pkgs : [...pkgs].reverse(),
    hostProvided: host,
  };
}

test('the lockfile serializer matches the golden file byte for byte', (t) => {
  const text = serializeLock(sample());
  if (process.env.STRATA_UPDATE_GOLDEN || !existsSync(golden)) writeFileSync(golden, text);
  t.is(text, readFileSync(golden, 'utf8'));
});

test('serialization is independent of input order and round-trips', (t) => {
  const a = serializeLock(sample('forward'));
  const b = serializeLock(sample('reverse'));
  t.is(a, b);
  t.true(a.endsWith('\n'));
  t.is(serializeLock(parseLock(a)), a);
});

test('closure hashes change upward only, and cycles are hashed as a unit', (t) => {
  const base = [p('a', ['b']), p('b', ['c']), p('c', []), p('x', ['y']), p('y', ['x']), p('top', ['x'])];
  const h1 = closureHashes(base);
  const bumped = base.map((n) => (n.name === 'c' ? { ...n, sha256: '0'.repeat(64) } : n));
  const h2 = closureHashes(bumped);
  t.not(h1.get('a'), h2.get('a'));
  t.not(h1.get('b'), h2.get('b'));
  t.is(h1.get('x'), h2.get('x'));
  const cyc = base.map((n) => (n.name === 'y' ? { ...n, sha256: '1'.repeat(64) } : n));
  const h3 = closureHashes(cyc);
  t.not(h1.get('x'), h3.get('x'));
  t.not(h1.get('top'), h3.get('top'));
  t.is(h1.get('a'), h3.get('a'));
  t.not(h1.get('x'), h1.get('y'));
});

test('a malformed or dangling lock is refused with E_LOCK', (t) => {
  const text = serializeLock(sample());
  const e1 = t.throws(() => parseLock(text.replace('version = 1', 'version = 9')), { instanceOf: StrataError });
  t.is(e1.code, 'E_LOCK');
  t.regex(e1.message, /version 9 is not supported/);
  const e2 = t.throws(() => parseLock(text.replace('"zlib1g",\n]', '"nothere",\n]')), { instanceOf: StrataError });
  t.regex(e2.message, /depends on nothere/);
  const e3 = t.throws(() => parseLock('version = [1'), { instanceOf: StrataError });
  t.regex(e3.message, /not valid TOML/);
});

test('lock diffs name added, removed and changed packages', (t) => {
  const a = sample();
  const b = sample();
  b.packages = b.packages.filter((x) => x.name !== 'zlib1g').map((x) => (x.name === 'libc6' ? { ...x, version: '2.0', sha256: 'c'.repeat(64) } : x));
  b.packages.push(p('newpkg', []));
  const d = diffLocks(a, b);
  t.deepEqual(d.added.map((x) => x.name), ['newpkg']);
  t.deepEqual(d.removed.map((x) => x.name), ['zlib1g']);
  t.deepEqual(d.changed.map((x) => x.to.name), ['libc6']);
});
