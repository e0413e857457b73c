/**
 * The sandbox's root filesystem made from layers' entries (run/rootfs.ts `linkRootfs`) is the tree the layers' tars
 * make (`unpackRootfs`, the tar path, is the oracle): replacements across layers, a directory replaced by a file, a
 * parent a layer lacks, hardlinks whose target a later layer replaces, modes, owners and times. Files strata
 * writes itself and symlinks are shared inodes from the store's pool: a second tree links them, `gc`'s pruning
 * keeps what a tree links and removes the rest, and `strata verify` finds a damaged one and the trees that link it.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { chmodSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../store/store.ts';
import { checkRootfs, inodePool, linkRootfs, POOL_DIR, prunePool, unpackRootfs, type RootfsEntry } from '../run/rootfs.ts';
import { writeLayerTar, type LayerEntry } from '../realiser/layertar.ts';
import { verifyStore } from '../engine/verifyStore.ts';
import type { Reporter } from '../report/reporter.ts';
import type { DerivedCache } from '../store/store.ts';

const quiet = { progress: () => ({ tick() {}, done() {} }), info() {}, warn() {} } as unknown as Reporter;
const MTIME = 1_700_000_000;
const asRoot = process.getuid?.() === 0;

function layersOf(src: string): LayerEntry[][] {
  const bin = join(src, 'x');
  writeFileSync(bin, '#!/bin/sh\necho x\n');
  chmodSync(bin, 0o755);
  const f = (path: string, content: string, mode = 0o644, uid = 0, gid = 0): LayerEntry => ({ path, type: 'file', mode, uid, gid, content: Buffer.from(content), size: Buffer.byteLength(content) });
  const d = (path: string, mode = 0o755, uid = 0, gid = 0): LayerEntry => ({ path, type: 'dir', mode, uid, gid });
  const l = (path: string, linkname: string): LayerEntry => ({ path, type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname });
  const h = (path: string, linkname: string): LayerEntry => ({ path, type: 'hardlink', mode: 0o644, uid: 0, gid: 0, linkname });
  return [
    [
      d('etc'),
      f('etc/a', 'first\n'),
      l('etc/l', 'a'),
      d('var'),
      d('var/mail', 0o2775, 0, 8),
      f('var/mail/keep', '', 0o660, 8, 8),
      d('usr'),
      d('usr/bin'),
      { path: 'usr/bin/x', type: 'file', mode: 0o755, uid: 0, gid: 0, source: bin, size: lstatSync(bin).size },
      h('usr/bin/y', 'usr/bin/x'),
      d('opt'),
      d('opt/d'),
      f('opt/d/f', 'below\n'),
      f('etc/ro', 'read only\n', 0o444),
      d('srv', 0o700, 1000, 1000),
      f('srv/own', 'owned\n', 0o600, 1000, 1000),
    ],
    [
      // A directory replaced by a file; a file replaced; a parent (var/mail) this layer lacks, so 0755 root:root as its tar has it.
      f('opt/d', 'now a file\n'),
      f('etc/a', 'second\n'),
      l('etc/a2', '../usr/bin/x'),
      f('var/mail/new', 'x\n'),
      h('etc/h', 'etc/a'),
    ],
    [
      // The hardlink's target replaced: the link keeps the file it had.
      f('etc/a', 'third\n'),
      l('etc/l', 'a2'),
    ],
  ];
}

async function tarsOf(dir: string, layers: LayerEntry[][]): Promise<{ path: string; size: number; diffId: string }[]> {
  const out = [];
  for (const [i, entries] of layers.entries()) {
    const path = join(dir, `layer${i}.tar`);
    const r = await writeLayerTar(entries, path, { mtime: MTIME });
    out.push({ path, size: r.size, diffId: r.diffId });
  }
  return out;
}

/** Every path of a tree with what a command sees of it. */
function describe(root: string, untimed = new Set<string>()): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(join(root, p));
      const owner = asRoot ? ` ${st.uid}:${st.gid}` : '';
      const time = st.isSymbolicLink() || untimed.has(p) ? '' : ` ${Math.floor(st.mtimeMs / 1000)}`;
      if (st.isDirectory()) {
        out.set(p, `dir ${(st.mode & 0o7777).toString(8)}${owner}${time}`);
        walk(p);
      } else if (st.isSymbolicLink()) out.set(p, `symlink ${readlinkSync(join(root, p))}${owner}`);
      else out.set(p, `file ${(st.mode & 0o7777).toString(8)}${owner}${time} ${createHash('sha256').update(readFileSync(join(root, p))).digest('hex').slice(0, 16)}`);
    }
  };
  walk('');
  return out;
}

function entriesOf(layers: LayerEntry[][], tars: { size: number; diffId: string }[]) {
  return layers.map((entries, i) => ({ diffId: tars[i]!.diffId, size: tars[i]!.size, entries: () => entries as RootfsEntry[] }));
}

/** A store in a temp dir, the layers, their tars; removed after `f`. */
async function withLayers(f: (o: { dir: string; store: Awaited<ReturnType<typeof openStore>>; cache: DerivedCache; layers: LayerEntry[][]; tars: { path: string; size: number; diffId: string }[] }) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'strata-linked-'));
  try {
    const store = await openStore(join(dir, 'store'));
    const layers = layersOf(dir);
    await f({ dir, store, cache: store.cache('rootfs'), layers, tars: await tarsOf(dir, layers) });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the linked tree is the tree the layer tars make: replacements, a directory turned file, missing parents, hardlinks, modes, owners, times', (t) =>
  withLayers(async ({ dir, cache, layers, tars }) => {
    const linked = await linkRootfs(cache, `sha256:${'1'.repeat(64)}`, entriesOf(layers, tars), MTIME);
    const unpacked = await unpackRootfs(cache, `sha256:${'2'.repeat(64)}`, tars, quiet);
    t.deepEqual(await checkRootfs(linked, tars.map((l) => l.path)), []);
    // A stored file linked in keeps the store's time (the inode is the store's); a tar's member has the layer's.
    const stored = new Set(['usr/bin/x', 'usr/bin/y']);
    t.deepEqual([...describe(linked, stored)], [...describe(unpacked, stored)]);
    t.is(readFileSync(join(linked, 'etc/h'), 'utf8'), 'second\n', 'the hardlink kept the file its target had');
    t.is(readFileSync(join(linked, 'opt/d'), 'utf8'), 'now a file\n');
    t.is(lstatSync(join(linked, 'usr/bin/y')).ino, lstatSync(join(linked, 'usr/bin/x')).ino);
    t.is(lstatSync(join(linked, 'usr/bin/x')).ino, lstatSync(join(dir, 'x')).ino, 'a stored file is linked, not copied');
  }));

test('files strata writes and symlinks are shared inodes: a second tree links them, pruning keeps what a tree links, verify finds a damaged one', (t) =>
  withLayers(async ({ store, cache, layers, tars }) => {
    const one = await linkRootfs(cache, `sha256:${'1'.repeat(64)}`, entriesOf(layers, tars), MTIME);
    const pool = await inodePool(cache);
    const pooled = readdirSync(pool).length;
    t.true(pooled >= 8, `${pooled} shared inodes`);
    const two = await linkRootfs(cache, `sha256:${'3'.repeat(64)}`, entriesOf(layers, tars), MTIME);
    t.is(readdirSync(pool).length, pooled, 'the second tree made no new inode');
    for (const p of ['etc/a', 'etc/l', 'etc/ro', 'var/mail/keep', 'srv/own', 'etc/h']) t.is(lstatSync(join(two, p)).ino, lstatSync(join(one, p)).ino, `/${p} is one inode in both trees`);
    t.deepEqual([...describe(two)], [...describe(one)]);

    t.deepEqual(await prunePool(cache, false), { count: 0, bytes: 0 }, 'every shared inode is linked by a tree');
    // Damage one: verify names it and the trees that link it, and drops them.
    writeFileSync(join(two, 'etc/ro'), 'changed\n', { flag: 'r+' });
    const report = await verifyStore(store, { dryRun: false });
    t.is(report.pool.checked, pooled);
    const what = report.damaged.map((d) => `${d.what}: ${d.reason}`).join('\n');
    t.regex(what, /shared inode f444-[^:]+: has other content than its name says/);
    t.regex(what, /root filesystem 111111111111…: \/etc\/ro is a file of the damaged shared inode/);
    t.regex(what, /root filesystem 333333333333…: \/etc\/ro is a file of the damaged shared inode/);
    t.is(readdirSync(pool).length, pooled - 1);
    // With no tree left, pruning removes every shared inode.
    const left = await prunePool(cache, true);
    t.is(left.count, pooled - 1);
    await prunePool(cache, false);
    t.deepEqual(readdirSync(pool), []);
  }));
