/**
 * Pinned bytes: a fixed manifest against the fixture archive must give exactly these lockfile bytes and these
 * image digests, today and after every refactor. The manifest names no URL (the mirror comes from
 * STRATA_DEBIAN_MIRROR) and a keyring path relative to the project, so its text, and therefore the lock, does not
 * depend on the port or the temp directory. The fixture's .debs and Release are byte-reproducible (see
 * tests/helpers/mirror.ts); only the signatures differ between processes, and no output records them. The
 * manifest leaves out busybox-fixture, whose bytes are the host's /bin/busybox.
 *
 * A change to these values is a change of strata's output for every user: make it only on purpose, and say so.
 */
import test from 'ava';
import { copyFileSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { project, closeSharedMirror } from './helpers/project.ts';

test.after.always(closeSharedMirror);

const PINNED = {
  lockSha256: '374b8e628a5ed2a7f1e3f160df9d0231b5ce709f524bb88c53c352717ed6c227',
  plainImage: 'sha256:ed865f04d9af525952bcd36283223a1b2afe7ca79ef512587153c801d5bc7fd4',
  gzipImage: 'sha256:6d33389e775779ff984321b8cce4799ab39f267a85d210c9e4cf1ab04bb8038c',
  gzipArchiveSha256: '65a2d8f6d1b676d603b611156c1edbc63e9f330571e384dd362ef06052dfd06a',
};

const MANIFEST = `[project]
name = "pinned"
arch = "amd64"

[channels.stable]
suite = "stable"
components = ["main", "contrib"]
signed-by = "archive.gpg"

[channels.current]
suite = "current"
components = ["main", "contrib"]
signed-by = "archive.gpg"

[packages]
zlib1g = "*"
libblas3 = "*"
libopenblas0 = "*"
base-files = "*"
pkg-zstd = "*"
libfoo1 = { channel = "current" }

[env]
OMP_NUM_THREADS = "2"

[image]
entrypoint = ["/bin/sh"]
`;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const digestOf = (stdout: string) => /^image (sha256:[0-9a-f]{64})$/m.exec(stdout)?.[1];

test('a fixed manifest gives pinned lockfile bytes and pinned image digests', async (t) => {
  const p = await project();
  copyFileSync(p.mirror.keyring, join(p.dir, 'archive.gpg'));
  p.writeManifest(MANIFEST);
  const env = { STRATA_DEBIAN_MIRROR: p.served.url, SOURCE_DATE_EPOCH: '' };
  const lock = await p.strata(['lock'], { env });
  t.is(lock.code, 0, lock.stderr);
  const got: Record<string, string | undefined> = { lockSha256: sha256(readFileSync(join(p.dir, 'strata.lock'))) };

  const plain = await p.strata(['realise', '--locked', '--oci', join(p.dir, 'oci')], { env });
  t.is(plain.code, 0, plain.stderr);
  got.plainImage = digestOf(plain.stdout);

  const gz = await p.strata(['realise', '--locked', '--gzip', '--docker-archive', join(p.dir, 'image.tar')], { env });
  t.is(gz.code, 0, gz.stderr);
  got.gzipImage = digestOf(gz.stdout);
  got.gzipArchiveSha256 = sha256(readFileSync(join(p.dir, 'image.tar')));

  t.deepEqual(got, PINNED, readFileSync(join(p.dir, 'strata.lock'), 'utf8'));
});
