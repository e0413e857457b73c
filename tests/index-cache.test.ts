/**
 * The parsed indexes the store keeps (channels/indexCache.ts): what a lock reads back is what was parsed, name by
 * name, and the universe over them answers as over the same candidates in memory; an entry cut short is parsed
 * again, and one damaged in place is found by `strata verify` and dropped.
 */
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkIndexCache, readIndexCache, writeIndexCache } from '../channels/indexCache.ts';
import { Universe } from '../resolver/universe.ts';
import { solve } from '../resolver/solve.ts';
import { StrataError } from '../errors.ts';
import { memoryIndex } from './helpers/universe.ts';
import { closeSharedMirror, manifestFor, project } from './helpers/project.ts';
import type { Candidate } from '../model.ts';

test.after.always(closeSharedMirror);

function pkg(name: string, version: string, fields: Partial<Candidate> = {}): Candidate {
  return {
    name, version, arch: 'amd64', channel: 'stable', channelRank: 0, source: name, sourceVersion: version, essential: false,
    depends: '', preDepends: '', recommends: '', provides: '', conflicts: '', breaks: '',
    filename: `pool/main/${name}_${version}_amd64.deb`, size: 1, sha256: `${name}${version}`.padEnd(64, '0').slice(0, 64), ...fields,
  };
}

// Index order, duplicates and `all` included; every optional field present somewhere, absent elsewhere.
const CANDIDATES = [
  pkg('zsh', '5.9-8', { depends: 'libc6 (>= 2.36), libcap2', section: 'shells', priority: 'optional', installedSize: 2500, description: 'shell with lots of features — “zsh”', maintainer: 'A <a@example.org>', homepage: 'https://zsh.example', multiArch: 'foreign' }),
  pkg('libc6', '2.41-6', { essential: false, provides: 'libc6-abi (= 2.41), libc-dev-bin', source: 'glibc', sourceVersion: '2.41-6' }),
  pkg('dash', '0.5.12-12', { essential: true, provides: 'sh' }),
  pkg('libc6', '2.36-9', { provides: 'libc6-abi (= 2.36)', source: 'glibc', sourceVersion: '2.36-9' }),
  pkg('libcap2', '1:2.75-10', { arch: 'all', preDepends: 'libc6', source: 'libcap2' }),
  pkg('libcap2', '1:2.75-10', { source: 'libcap2' }),
  pkg('busybox', '1.37', { provides: 'sh, libc-dev-bin (= 1)', conflicts: 'dash (<< 0.5)' }),
];

async function written(candidates: Candidate[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'strata-index-cache-'));
  await writeIndexCache(dir, candidates);
  return dir;
}

test('an entry reads back each name\'s candidates, in index order, and its tables', async (t) => {
  const dir = await written(CANDIDATES);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const index = (await readIndexCache(dir, 'current', 1))!;
  t.deepEqual(index.names(), ['busybox', 'dash', 'libc6', 'libcap2', 'zsh']);
  for (const name of index.names()) {
    t.deepEqual(index.candidates(name), CANDIDATES.filter((c) => c.name === name).map((c) => ({ ...c, channel: 'current', channelRank: 1 })));
  }
  t.deepEqual(index.candidates('no-such-package'), []);
  t.deepEqual(index.providerNames('sh'), ['busybox', 'dash']);
  t.deepEqual(index.providerNames('libc6-abi'), ['libc6']);
  t.deepEqual(index.providerNames('zsh'), []);
  t.deepEqual(index.essentialNames(), ['dash']);
  t.deepEqual(index.namesFromSources('lib'), ['libcap2']);
  t.deepEqual(index.namesFromSources('glibc'), ['libc6']);
  t.deepEqual(index.namesFromSources('z'), ['zsh']);
  t.deepEqual(index.namesFromSources('zz'), []);
});

test('a universe over cached entries answers and solves as over the same candidates in memory', async (t) => {
  const current = CANDIDATES.map((c) => ({ ...c, channel: 'current', channelRank: 1, version: c.name === 'libc6' ? '2.42-1' : c.version }));
  const [a, b] = [await written(CANDIDATES), await written(current)];
  t.teardown(() => [a, b].forEach((d) => rmSync(d, { recursive: true, force: true })));
  const cached = new Universe([(await readIndexCache(a, 'stable', 0))!, (await readIndexCache(b, 'current', 1))!], 'amd64');
  const memory = new Universe([memoryIndex(CANDIDATES), memoryIndex(current)], 'amd64');
  const strip = (u: Universe) => ({
    names: u.names(),
    candidates: u.names().map((n) => u.candidates(n)),
    providers: ['sh', 'libc6-abi', 'libc-dev-bin'].map((v) => u.providers(v)),
    essential: u.essential(),
    fromSources: u.fromSources('glibc'),
  });
  t.deepEqual(strip(cached), strip(memory));
  const request = { roots: [{ name: 'zsh' }, { name: 'sh' }], channels: ['stable', 'current'], hostDriver: false, withRecommends: false, withEssential: true };
  t.deepEqual(solve({ ...request, universe: cached }), solve({ ...request, universe: memory }));
});

test('an entry cut short, not of this format or with damaged tables reads as missing; damaged candidates fail the check and the read', async (t) => {
  const dir = await written(CANDIDATES);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.is(await checkIndexCache(dir), undefined);
  const blob = readFileSync(join(dir, 'candidates'));
  truncateSync(join(dir, 'candidates'), blob.length - 1);
  t.is(await readIndexCache(dir, 'stable', 0), undefined);
  t.regex((await checkIndexCache(dir))!, /cut short/);
  writeFileSync(join(dir, 'candidates'), blob);
  const tables = readFileSync(join(dir, 'tables'));
  writeFileSync(join(dir, 'tables'), tables.subarray(0, tables.length / 2));
  t.is(await readIndexCache(dir, 'stable', 0), undefined);
  const flipped = Buffer.from(tables);
  flipped[flipped.length - 1] = flipped[flipped.length - 1]! ^ 1;
  writeFileSync(join(dir, 'tables'), flipped);
  t.is(await readIndexCache(dir, 'stable', 0), undefined);
  t.regex((await checkIndexCache(dir))!, /tables do not match their crc32/);
  writeFileSync(join(dir, 'tables'), tables);
  // The same size, one byte changed: only the crc32 tells, and decoding that name.
  const damaged = Buffer.from(blob);
  damaged[0] = '{'.charCodeAt(0);
  writeFileSync(join(dir, 'candidates'), damaged);
  t.regex((await checkIndexCache(dir))!, /crc32/);
  const index = (await readIndexCache(dir, 'stable', 0))!;
  const err = t.throws(() => index.candidates('busybox'), { instanceOf: StrataError });
  t.is(err.code, 'E_HASH');
  t.regex(err.message, /the store's parsed index of channel "stable" is damaged \(the entry of busybox/);
});

test('a lock over a parsed index cut short parses the index again; strata verify drops one damaged in place', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'busybox-fixture = "*"\nzlib1g = "*"'));
  t.is((await p.strata(['lock'])).code, 0);
  const lock = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
  const indexes = join(p.cache, 'indexes');
  const entries = readdirSync(indexes).filter((e) => e.endsWith('-v2'));
  t.true(entries.length > 0);
  for (const e of entries) truncateSync(join(indexes, e, 'candidates'), 10);
  const again = await p.strata(['lock', '--offline']);
  t.is(again.code, 0, again.stderr);
  t.is(readFileSync(join(p.dir, 'strata.lock'), 'utf8'), lock);
  for (const e of entries) t.is(await checkIndexCache(join(indexes, e)), undefined);

  const blob = join(indexes, entries[0]!, 'candidates');
  const bytes = readFileSync(blob);
  bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1;
  writeFileSync(blob, bytes);
  const verify = await p.strata(['verify']);
  t.is(verify.code, 1);
  t.regex(verify.stdout, new RegExp(`damaged: parsed index ${entries[0]}: its candidates do not match their crc32; dropped`));
  const relock = await p.strata(['lock', '--offline']);
  t.is(relock.code, 0, relock.stderr);
  t.is(readFileSync(join(p.dir, 'strata.lock'), 'utf8'), lock);
});
