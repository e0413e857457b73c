/**
 * realise() as a library: layers from elsewhere arrive as layer jobs (how recipe outputs will), and one realise
 * returns the image in both encodings, the same image either way.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { project, manifestFor, closeSharedMirror } from './helpers/project.ts';
import { openStore } from '../store/store.ts';
import { recordingReporter } from '../report/reporter.ts';
import { parseLock } from '../lock/lockfile.ts';
import { realise } from '../realiser/realise.ts';
import { layerKey, type LayerJob } from '../realiser/layers.ts';

test.after.always(closeSharedMirror);

test('an extra layer job lands between the package layers and the installed state, cached by its key; both encodings come from one realise', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'zlib1g = "*"\nbase-files = "*"'));
  const r = await p.strata(['lock']);
  t.is(r.code, 0, r.stderr);
  const lock = parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8'));
  const store = await openStore(join(p.dir, 'lib-cache'));
  const reporter = recordingReporter();
  let calls = 0;
  const job: LayerJob = {
    label: 'recipe hello 1.0',
    key: layerKey('test-recipe', 0, ['hello', '1.0']),
    comment: 'built from source',
    entries: () => {
      calls++;
      return [
        { path: 'opt', type: 'dir', mode: 0o755, uid: 0, gid: 0, uname: 'root', gname: 'root' },
        { path: 'opt/hello.txt', type: 'file', mode: 0o644, uid: 0, gid: 0, uname: 'root', gname: 'root', content: Buffer.from('hello\n'), size: 6 },
      ];
    },
  };
  const first = await realise(lock, { store, reporter, gzip: true, extraJobs: [job] });
  const config = JSON.parse(first.image.config.toString('utf8')) as { history: { created_by: string }[] };
  const labels = config.history.map((h) => h.created_by);
  t.is(labels.at(-2), 'strata realise: recipe hello 1.0');
  t.regex(labels.at(-1)!, /dpkg database/);
  t.is(first.image.layers.length, first.layerCount);
  // the gzip image and the plain image have the same layers (diff IDs) in other encodings
  t.truthy(first.gzip);
  t.true(first.image === first.gzip);
  t.deepEqual(first.plain.layers.map((l) => l.diffId), first.gzip!.layers.map((l) => l.diffId));
  t.true(first.gzip!.layers.every((l) => l.mediaType.endsWith('+gzip')) && first.plain.layers.every((l) => l.mediaType.endsWith('.tar')));
  // a plain-only realise gives exactly the plain image; the job's layer comes from the cache
  const again = await realise(lock, { store, reporter, extraJobs: [job] });
  t.is(again.image.manifestDigest, first.plain.manifestDigest);
  t.is(again.builtLayers, 0);
  t.is(calls, 1);
  // without the job, a different image
  const without = await realise(lock, { store, reporter });
  t.not(without.image.manifestDigest, first.plain.manifestDigest);
  t.is(without.layerCount, first.layerCount - 1);
});
