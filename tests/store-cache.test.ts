/**
 * The store's derived-data caches: one temp-name scheme (unique per writer) and one fsync-and-rename policy, so
 * concurrent writers of the same entry never collide, and a damaged entry reads as missing.
 */
import test from 'ava';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../store/store.ts';
import { project, closeSharedMirror } from './helpers/project.ts';

test.after.always(closeSharedMirror);

test('channels with the same URL and suite lock concurrently without colliding on their shared release pointer', async (t) => {
  const p = await project();
  const channel = (name: string, component: string) =>
    `[channels.${name}]\nurl = "${p.served.url}"\nsuite = "stable"\ncomponents = ["${component}"]\nsigned-by = "${p.mirror.keyring}"\n`;
  const names = Array.from({ length: 12 }, (_, i) => `c${i}`);
  p.writeManifest(`[project]\nname = "same"\narch = "amd64"\n\n${names.map((n, i) => channel(n, i % 2 ? 'contrib' : 'main')).join('\n')}\n[packages]\nzlib1g = "*"\n`);
  for (let round = 0; round < 3; round++) {
    const r = await p.strata(['lock'], { env: { STRATA_CACHE_DIR: join(p.dir, `cache${round}`) } });
    t.is(r.code, 0, r.stderr);
  }
});

test('concurrent writes of one cache entry all succeed and leave no temp files; a damaged entry reads as missing', async (t) => {
  const store = await openStore(mkdtempSync(join(tmpdir(), 'strata-cache-')));
  const cache = store.cache('run');
  await Promise.all(Array.from({ length: 64 }, (_, i) => cache.writeJson('k', { i })));
  const got = await cache.readJson<{ i: number }>('k');
  t.true(got !== undefined && got.i >= 0 && got.i < 64);
  t.deepEqual(readdirSync(join(store.root, 'run')), ['k.json']);
  writeFileSync(join(store.root, 'run', 'k.json'), '{"i": 1');
  t.is(await cache.readJson('k'), undefined);
  const dir = await cache.dir('tree', async (tmp) => writeFileSync(join(tmp, 'f'), 'x'));
  t.deepEqual(readdirSync(dir), ['f']);
  t.is(await cache.dir('tree', async () => t.fail('filled twice')), dir);
});
