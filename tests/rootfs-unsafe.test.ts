/**
 * The root filesystem of an image that strata did not build (a pulled one) is unpacked by run/rootfs.ts's Tree,
 * which must never write outside the tree: a member below a symlink, or below a file, is refused naming the layer
 * and the member, and nothing is left in the store's rootfs cache.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tarOf } from './helpers/tinyImage.ts';
import { openStore } from '../store/store.ts';
import { unpackRootfs } from '../run/rootfs.ts';
import { StrataError } from '../errors.ts';
import type { Reporter } from '../report/reporter.ts';

const quiet = { progress: () => ({ tick() {}, done() {} }), info() {}, warn() {} } as unknown as Reporter;

for (const [what, below, message] of [
  ['a symlink', { name: 'etc', type: 'symlink', linkname: '/tmp' }, /refusing to unpack layer \S+layer\.tar: member 'etc\/passwd' would be written through the symlink 'etc'/],
  ['a file', { name: 'etc', type: 'file' }, /refusing to unpack layer \S+layer\.tar: member 'etc\/passwd' would be written below the non-directory 'etc'/],
] as const) {
  test(`a member below ${what} is refused, and the store keeps no half-made tree`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-rootfs-unsafe-'));
    const outside = mkdtempSync(join(tmpdir(), 'strata-outside-'));
    const store = await openStore(join(dir, 'store'));
    const layer = join(dir, 'layer.tar');
    const header = { ...below, ...(below.type === 'symlink' ? { linkname: outside } : {}), mode: 0o755 };
    const bytes = await tarOf([{ header, ...(header.type === 'file' ? { body: Buffer.alloc(0) } : {}) }, { header: { name: 'etc/passwd', type: 'file', mode: 0o644 }, body: Buffer.from('root::0:0::/:/bin/sh\n') }]);
    writeFileSync(layer, bytes);
    const diffId = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const cache = store.cache('rootfs');
    const e = await t.throwsAsync(unpackRootfs(cache, `sha256:${'1'.repeat(64)}`, [{ path: layer, size: bytes.length, diffId }], quiet));
    t.true(e instanceof StrataError);
    t.regex(e!.message, message);
    t.deepEqual(readdirSync(outside), [], 'nothing was written through the symlink');
    t.false(existsSync(cache.path('1'.repeat(64))));
  });
}
