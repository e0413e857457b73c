/** Image references read as Docker reads them, and `--tag` through the real CLI. */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseReference } from '../realiser/oci/reference.ts';
import { isStrataError } from '../errors.ts';
import { project, manifestFor, closeSharedMirror } from './helpers/project.ts';

test.after.always(closeSharedMirror);

test('a registry port is not a tag; tags, digests and paths are split as Docker splits them', (t) => {
  t.like(parseReference('localhost:5000/x'), { registry: 'localhost:5000', path: 'x', repository: 'localhost:5000/x', tag: 'latest' });
  t.like(parseReference('localhost:5000/team/x:v1'), { registry: 'localhost:5000', path: 'team/x', tag: 'v1' });
  t.like(parseReference('gp-lidar:0123abcd'), { path: 'gp-lidar', repository: 'gp-lidar', tag: '0123abcd' });
  t.is(parseReference('gp-lidar:0123abcd').registry, undefined);
  t.like(parseReference('registry.example:443/a/b@sha256:' + 'a'.repeat(64)), { registry: 'registry.example:443', path: 'a/b', tag: 'latest', digest: 'sha256:' + 'a'.repeat(64) });
  t.is(parseReference('team/x').registry, undefined);
  for (const bad of ['UPPER:1', 'x:-bad', 'x@sha256:12', '', 'a//b', 'x:']) {
    const e = t.throws(() => parseReference(bad));
    t.true(isStrataError(e), bad);
  }
});

test('--tag localhost:5000/x names the layout ref "latest" and the archive localhost:5000/x:latest', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'zlib1g = "*"'));
  const r = await p.strata(['realise', '--tag', 'localhost:5000/x', '--oci', join(p.dir, 'oci'), '--docker-archive', join(p.dir, 'x.tar')]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /wrote OCI layout .* \(ref latest\)/);
  t.regex(r.stdout, / as localhost:5000\/x:latest$/m);
  const index = JSON.parse(readFileSync(join(p.dir, 'oci', 'index.json'), 'utf8'));
  t.is(index.manifests[0].annotations['org.opencontainers.image.ref.name'], 'latest');
  const bad = await p.strata(['realise', '--tag', 'Bad:Tag!']);
  t.is(bad.code, 64);
  t.regex(bad.stderr, /error: "Bad:Tag!" is not an image reference/);
});
