/**
 * writeLayerTar: byte-identical output whatever the entry order, time or on-disk timestamps; GNU tar and
 * gzip as oracles for what was written.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { writeLayerTar } from '../realiser/layertar.ts';
import type { LayerEntry } from '../realiser/layertar.ts';

const work = mkdtempSync(join(tmpdir(), 'strata-layertar-'));
test.after.always(() => {
  execFileSync('rm', ['-rf', work]);
});

const MTIME = 1_700_000_000;
const src = join(work, 'src');
mkdirSync(src);
const bigContent = randomBytes(2 * 1024 * 1024 + 123);
writeFileSync(join(src, 'big'), bigContent);
writeFileSync(join(src, 'tool'), '#!/bin/sh\necho tool\n');
writeFileSync(join(src, 'empty'), '');

const LONG_SPLIT = `usr/share/${'a'.repeat(60)}/${'b'.repeat(60)}/file.txt`;
const LONG_COMPONENT = `usr/share/${'c'.repeat(130)}`;
const UTF8 = 'usr/share/doc/ünïcødé file ✓.txt';
const LONG_LINK = `/opt/${'t'.repeat(120)}`;

function fixture(): LayerEntry[] {
  return [
    { path: 'usr/bin/tool', type: 'file', mode: 0o4755, uid: 0, gid: 0, source: join(src, 'tool') },
    // Sorts before its target: the writer must swap roles so the first path carries the content.
    { path: 'usr/bin/a-hardlink', type: 'hardlink', mode: 0o4755, uid: 0, gid: 0, linkname: 'usr/bin/tool' },
    { path: 'usr/bin/z-hardlink', type: 'hardlink', mode: 0o4755, uid: 0, gid: 0, linkname: 'usr/bin/tool' },
    { path: 'usr/bin/rel', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: 'tool' },
    { path: 'usr/lib/abs', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: '/usr/bin/tool' },
    { path: 'usr/lib/far', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: LONG_LINK },
    { path: 'usr/lib', type: 'dir', mode: 0o755, uid: 0, gid: 0 },
    { path: 'usr/share/big.bin', type: 'file', mode: 0o644, uid: 0, gid: 0, source: join(src, 'big'), size: bigContent.length },
    { path: 'usr/share/empty', type: 'file', mode: 0o600, uid: 0, gid: 0, source: join(src, 'empty') },
    { path: LONG_SPLIT, type: 'file', mode: 0o644, uid: 0, gid: 0, content: Buffer.from('split\n') },
    { path: LONG_COMPONENT, type: 'file', mode: 0o644, uid: 0, gid: 0, content: Buffer.from('long\n') },
    { path: UTF8, type: 'file', mode: 0o644, uid: 0, gid: 0, content: Buffer.from('utf8\n') },
    { path: 'etc/passwd', type: 'file', mode: 0o644, uid: 0, gid: 0, content: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') },
    { path: 'home/user', type: 'dir', mode: 0o750, uid: 1000, gid: 1000, uname: 'user', gname: 'users' },
    { path: 'home/user/big-id', type: 'file', mode: 0o640, uid: 3_000_000, gid: 3_000_001, uname: 'ünï', gname: 'g', content: Buffer.from('id\n') },
    { path: 'tmp', type: 'dir', mode: 0o1777, uid: 0, gid: 0 },
    { path: 'usr/bin-x', type: 'file', mode: 0o755, uid: 0, gid: 0, content: Buffer.from('x') },
  ];
}

function shuffled<T>(xs: T[], seed: number): T[] {
  const a = [...xs];
  let s = seed;
  for (let i = a.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('the same entries give the same bytes whatever the order, the time and the files on-disk times', async (t) => {
  const out1 = join(work, 'one.tar');
  const r1 = await writeLayerTar(fixture(), out1, { mtime: MTIME, gzip: `${out1}.gz` });
  await sleep(1100);
  utimesSync(join(src, 'big'), new Date(), new Date(2001, 1, 1));
  const out2 = join(work, 'two.tar');
  const r2 = await writeLayerTar(shuffled(fixture(), 7).reverse(), out2, { mtime: MTIME, gzip: `${out2}.gz` });
  t.true(readFileSync(out1).equals(readFileSync(out2)));
  t.true(readFileSync(`${out1}.gz`).equals(readFileSync(`${out2}.gz`)));
  t.deepEqual(r1, r2);

  const sum = execFileSync('sha256sum', [out1]).toString().split(' ')[0];
  t.is(r1.diffId, `sha256:${sum}`);
  t.is(r1.size, statSync(out1).size);
  t.is(r1.size % 512, 0);
  const gz = readFileSync(`${out1}.gz`);
  t.is(r1.gzip!.digest, `sha256:${sha256(gz)}`);
  t.is(r1.gzip!.size, gz.length);
  execFileSync('gzip', ['-t', `${out1}.gz`]);
  t.true(gunzipSync(gz).equals(readFileSync(out1)));
  // Deterministic gzip header: no flags (so no name), mtime 0, OS byte 3 (Unix).
  t.deepEqual([...gz.subarray(0, 4)], [0x1f, 0x8b, 8, 0]);
  t.deepEqual([...gz.subarray(4, 8)], [0, 0, 0, 0]);
  t.is(gz[9], 3);

  const r3 = await writeLayerTar(fixture(), join(work, 'three.tar'), { mtime: MTIME + 1 });
  t.not(r3.diffId, r1.diffId);
  t.is(r3.gzip, undefined);
});

test('GNU tar lists the entries sorted, parents first, with the fixed mtime, modes and owners', async (t) => {
  const out = join(work, 'list.tar');
  await writeLayerTar(fixture(), out, { mtime: MTIME });
  const lines = execFileSync('tar', ['-tvf', out, '--full-time', '--quoting-style=literal'], { env: { ...process.env, TZ: 'UTC', LC_ALL: 'C.UTF-8' } })
    .toString('utf8')
    .trimEnd()
    .split('\n');
  const numeric = execFileSync('tar', ['-tvf', out, '--numeric-owner', '--quoting-style=literal'], { env: { ...process.env, TZ: 'UTC', LC_ALL: 'C.UTF-8' } })
    .toString('utf8')
    .trimEnd()
    .split('\n');
  const rows = lines.map((l, i) => {
    const m = /^(\S{10}) (\S+)\s+(\d+) (\S+ \S+) (.*)$/.exec(l)!;
    const n = /^\S{10} (\S+)/.exec(numeric[i]!)!;
    const [name, link] = m[5]!.split(/ -> | link to /);
    return { perms: m[1]!, owner: m[2]!, ids: n[1]!, size: Number(m[3]), time: m[4]!, name: name!, link };
  });
  const names = rows.map((r) => r.name);
  t.deepEqual(names, [
    'etc/',
    'etc/passwd',
    'home/',
    'home/user/',
    'home/user/big-id',
    'tmp/',
    'usr/',
    'usr/bin/',
    // Bytewise by path: '-' (0x2d) sorts before '/' (0x2f); parents still precede their children.
    'usr/bin-x',
    'usr/bin/a-hardlink',
    'usr/bin/rel',
    'usr/bin/tool',
    'usr/bin/z-hardlink',
    'usr/lib/',
    'usr/lib/abs',
    'usr/lib/far',
    'usr/share/',
    `usr/share/${'a'.repeat(60)}/`,
    `usr/share/${'a'.repeat(60)}/${'b'.repeat(60)}/`,
    LONG_SPLIT,
    'usr/share/big.bin',
    `usr/share/${'c'.repeat(130)}`,
    'usr/share/doc/',
    UTF8,
    'usr/share/empty',
  ]);
  for (const r of rows) t.is(r.time, '2023-11-14 22:13:20', r.name);
  const by = new Map(rows.map((r) => [r.name, r]));
  t.like(by.get('usr/bin/a-hardlink'), { perms: '-rwsr-xr-x', owner: 'root/root', size: 20 });
  t.like(by.get('usr/bin/tool'), { perms: 'hrwsr-xr-x', link: 'usr/bin/a-hardlink' });
  t.like(by.get('usr/bin/z-hardlink'), { perms: 'hrwsr-xr-x', link: 'usr/bin/a-hardlink' });
  t.like(by.get('usr/bin/rel'), { perms: 'lrwxrwxrwx', link: 'tool' });
  t.like(by.get('usr/lib/far'), { link: LONG_LINK });
  t.like(by.get('tmp/'), { perms: 'drwxrwxrwt' });
  t.like(by.get('usr/share/doc/'), { perms: 'drwxr-xr-x', owner: 'root/root', ids: '0/0' });
  t.like(by.get('home/user/'), { perms: 'drwxr-x---', owner: 'user/users', ids: '1000/1000' });
  t.like(by.get('home/user/big-id'), { perms: '-rw-r-----', owner: 'ünï/g', ids: '3000000/3000001', size: 3 });
  t.like(by.get('usr/share/empty'), { perms: '-rw-------', size: 0 });
  t.like(by.get('usr/share/big.bin'), { size: bigContent.length });
});

test('tar -x of the layer reproduces the files', async (t) => {
  const out = join(work, 'x.tar');
  await writeLayerTar(fixture(), out, { mtime: MTIME });
  const dir = join(work, 'extracted');
  mkdirSync(dir);
  execFileSync('tar', ['-xpf', out, '-C', dir, '--same-owner', '--numeric-owner'], { env: { ...process.env, LC_ALL: 'C.UTF-8' } });
  t.true(readFileSync(join(dir, 'usr/share/big.bin')).equals(bigContent));
  t.is(readFileSync(join(dir, 'usr/bin/tool'), 'utf8'), '#!/bin/sh\necho tool\n');
  t.is(readFileSync(join(dir, LONG_SPLIT), 'utf8'), 'split\n');
  t.is(readFileSync(join(dir, LONG_COMPONENT), 'utf8'), 'long\n');
  t.is(readFileSync(join(dir, UTF8), 'utf8'), 'utf8\n');
  t.is(readlinkSync(join(dir, 'usr/bin/rel')), 'tool');
  t.is(readlinkSync(join(dir, 'usr/lib/abs')), '/usr/bin/tool');
  t.is(readlinkSync(join(dir, 'usr/lib/far')), LONG_LINK);
  const tool = statSync(join(dir, 'usr/bin/tool'));
  t.is(tool.mode & 0o7777, 0o4755);
  t.is(tool.nlink, 3);
  t.is(statSync(join(dir, 'usr/bin/a-hardlink')).ino, tool.ino);
  t.is(statSync(join(dir, 'usr/bin/z-hardlink')).ino, tool.ino);
  t.is(tool.mtimeMs, MTIME * 1000);
  t.is(lstatSync(join(dir, 'usr/share/empty')).mode & 0o7777, 0o600);
  t.is(statSync(join(dir, 'tmp')).mode & 0o7777, 0o1777);
  const big = statSync(join(dir, 'home/user/big-id'));
  t.is(big.uid, 3_000_000);
  t.is(big.gid, 3_000_001);
  t.is(statSync(join(dir, 'home/user')).uid, 1000);
  t.is(statSync(join(dir, 'usr/share/doc')).mode & 0o7777, 0o755);
});

test('the header format is pinned (golden digest)', async (t) => {
  const entries: LayerEntry[] = [
    { path: 'etc/hostname', type: 'file', mode: 0o644, uid: 0, gid: 0, content: Buffer.from('strata\n') },
    { path: 'bin', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: 'usr/bin' },
    { path: `opt/${'p'.repeat(120)}`, type: 'dir', mode: 0o755, uid: 0, gid: 0 },
  ];
  const r = await writeLayerTar(entries, join(work, 'golden.tar'), { mtime: 0, gzip: join(work, 'golden.tar.gz') });
  t.is(r.diffId, 'sha256:300233181ed82da95dfd945c57a1d31b826a64005fbcf38643d6e0e98adb9f63');
  t.is(r.size, 5120);
});

test('caller bugs throw plain errors and leave no partial output', async (t) => {
  const f = (path: string): LayerEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, content: Buffer.from('x') });
  const out = join(work, 'bad.tar');
  const bad = async (entries: LayerEntry[], re: RegExp) => {
    const err = await t.throwsAsync(writeLayerTar(entries, out, { mtime: 0, gzip: `${out}.gz` }));
    t.is(err!.constructor, Error);
    t.regex(err!.message, re);
    t.false(existsSync(out));
    t.false(existsSync(`${out}.gz`));
  };
  await bad([f('a'), f('a')], /duplicate/);
  await bad([f('a'), f('a/b')], /inside 'a'/);
  for (const p of ['/abs', './x', 'x/', 'a//b', 'a/../b', '', 'a/./b']) await bad([f(p)], /malformed/);
  await bad([{ ...f('a'), size: 3 }], /declares 3 bytes/);
  // A source file on disk whose size is not the recorded one is damage in the store, not a caller bug: the realiser
  // catches DamagedSource and unpacks the package again.
  const damaged = await t.throwsAsync(writeLayerTar([{ ...f('a'), content: undefined, size: 3, source: join(src, 'tool') }], out, { mtime: 0, gzip: `${out}.gz` }));
  t.is(damaged!.name, 'DamagedSource');
  t.regex(damaged!.message, /bytes, 3 recorded/);
  t.false(existsSync(out));
  await bad([{ path: 'h', type: 'hardlink', mode: 0o644, uid: 0, gid: 0, linkname: 'd' }, { path: 'd', type: 'dir', mode: 0o755, uid: 0, gid: 0 }], /which is a dir/);
  await bad([f('a')].concat([{ path: 'a', type: 'dir', mode: 0o755, uid: 0, gid: 0 }]), /duplicate/);
  await t.throwsAsync(writeLayerTar([f('a')], out, { mtime: 1.5 }), { message: /mtime/ });
});
