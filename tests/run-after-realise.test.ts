/**
 * The first `strata run` after `strata realise` of the same lock: `--frozen` takes the realised environment (it
 * was refused before, "run `strata realise` first"), and the sandbox's root filesystem is hard links to the files
 * the store already holds (the unpacked packages), not a third copy of their bytes. A command that writes into the
 * image fails and leaves the store's files as they were.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { standardMirror, serveMirror, type ServedMirror } from './helpers/mirror.ts';
import { runManifest, strata } from './helpers/runEnv.ts';

let work: string;
let served: ServedMirror;
let keyring: string;

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'strata-after-realise-'));
  chmodSync(work, 0o755);
  const m = await standardMirror(join(work, 'mirror'));
  keyring = m.keyring;
  served = await serveMirror(m.root);
});

test.after.always(async () => {
  await served?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Every regular file under `dir`: path -> [inode, size]. */
function files(dir: string, out = new Map<string, [number, number]>()): Map<string, [number, number]> {
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, d.name);
    if (d.isDirectory()) files(p, out);
    else if (d.isFile()) {
      const st = lstatSync(p);
      out.set(p, [st.ino, st.size]);
    }
  }
  return out;
}

const hashAll = (m: Map<string, [number, number]>) => [...m.keys()].sort().map((p) => `${p} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`);

test('after realise, run --frozen enters at once, in a tree of links to the stored packages that a writing command cannot change', async (t) => {
  const dir = join(work, 'p');
  mkdirSync(dir);
  writeFileSync(join(dir, 'strata.toml'), runManifest(served.url, keyring));
  const cache = join(work, 'cache');
  const env = { PATH: process.env.PATH, STRATA_CACHE_DIR: cache, HOME: join(work, 'nohome') };

  t.is((await strata(['lock'], { cwd: dir, env })).code, 0);
  const frozenFirst = await strata(['run', '--frozen', '--backend', 'sandbox', '--', 'true'], { cwd: dir, env });
  t.not(frozenFirst.code, 0, 'nothing realised yet: --frozen refuses');
  t.regex(frozenFirst.stderr, /strata realise/);

  const realised = await strata(['realise', '--locked', '--oci', join(work, 'oci')], { cwd: dir, env });
  t.is(realised.code, 0, realised.stderr);
  const treesAfterRealise = readdirSync(join(cache, 'rootfs')).filter((n) => /^[0-9a-f]{64}$/.test(n));
  t.is(treesAfterRealise.length, 1, 'realise made the root filesystem: the first run has none to make');

  const run = await strata(['run', '--frozen', '--backend', 'sandbox', '--', 'sh', '-c', 'echo inside; echo pwned > /usr/bin/pwned'], { cwd: dir, env });
  t.not(run.code, 0, 'the image is read-only to the command');
  t.is(run.stdout, 'inside\n');
  t.notRegex(run.stderr, /preparing|fetching|unpacking|realis/, run.stderr);

  const roots = readdirSync(join(cache, 'rootfs')).filter((n) => /^[0-9a-f]{64}$/.test(n));
  t.deepEqual(roots, treesAfterRealise, 'the run entered the tree realise made');
  const tree = files(join(cache, 'rootfs', roots[0]!));
  const unpacked = files(join(cache, 'unpacked'));
  const stored = new Set([...unpacked.values()].map(([ino]) => ino));
  let bytes = 0;
  let linked = 0;
  for (const [ino, size] of tree.values()) {
    bytes += size;
    if (stored.has(ino)) linked += size;
  }
  t.true(bytes > 0);
  t.true(linked / bytes > 0.9, `${linked} of ${bytes} bytes of the rootfs are links to the unpacked packages`);

  // What the command could reach, through the links, is as it was; a second run sees the original image.
  const before = hashAll(unpacked);
  const again = await strata(['run', '--frozen', '--backend', 'sandbox', '--', 'sh', '-c', 'ls /usr/bin/pwned 2>/dev/null; echo ok'], { cwd: dir, env });
  t.is(again.code, 0, again.stderr);
  t.is(again.stdout, 'ok\n');
  t.deepEqual(hashAll(files(join(cache, 'unpacked'))), before);
  t.is(execFileSync('find', [join(cache, 'rootfs'), '-name', 'pwned'], { encoding: 'utf8' }), '');
});
