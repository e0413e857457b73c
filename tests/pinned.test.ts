/**
 * Pinned bytes: a fixed manifest against the fixture archive must give exactly these lockfile bytes and these
 * image digests, today and after every refactor. The manifest names no URL (the mirror comes from
 * STRATA_DEBIAN_MIRROR) and a keyring path relative to the project, so its text, and therefore the lock, does not
 * depend on the port or the temp directory. The fixture's .debs and Release are byte-reproducible (see
 * tests/helpers/mirror.ts); only the signatures differ between processes (the key is made per process), so the
 * lock's `release-sha256` (the hash of the signed InRelease) is set to a fixed value before anything is pinned. The
 * manifest leaves out busybox-fixture, whose bytes are the host's /bin/busybox.
 *
 * A change to these values is a change of strata's output for every user: make it only on purpose, and say so.
 */
import test from 'ava';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { project, closeSharedMirror } from './helpers/project.ts';

test.after.always(closeSharedMirror);

// Changed on purpose once since the engine-seams refactor pinned them: the installed-state layer gained dpkg's
// info/<package>.<member> control files, var/lib/dpkg/diversions, and a status file in dpkg's own field order and
// trailing blank line (installed parity, tests/oracle-debian.test.ts).
// The lock's bytes did not change.
const PINNED = {
  lockSha256: 'e7793c92b6549e2e7603bab6c0e9bc08be0872cec5043e3e98f1f00f4a7e4d16',
  plainImage: 'sha256:af72274091bfa34e0260961d1e75ae31e3f6ffe078e3acd507be40126d7eb5d4',
  gzipImage: 'sha256:0a0c3fcfeb87fe726e009e877d6aa754410265a458afb8a1a1c3597ebc83686a',
  gzipArchiveSha256: '0de2d50d95f2ab0d80333d4567db706c4101468652028708b0dd82e003a5392b',
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
  const lockPath = join(p.dir, 'strata.lock');
  const text = readFileSync(lockPath, 'utf8');
  const masked = text.replace(/^release-sha256 = "[0-9a-f]{64}"$/gm, `release-sha256 = "${'0'.repeat(64)}"`);
  t.is(masked.match(/release-sha256 = "0{64}"/g)?.length, 2);
  writeFileSync(lockPath, masked);
  const got: Record<string, string | undefined> = { lockSha256: sha256(Buffer.from(masked)) };

  const plain = await p.strata(['realise', '--locked', '--oci', join(p.dir, 'oci')], { env });
  t.is(plain.code, 0, plain.stderr);
  got.plainImage = digestOf(plain.stdout);

  const gz = await p.strata(['realise', '--locked', '--gzip', '--docker-archive', join(p.dir, 'image.tar')], { env });
  t.is(gz.code, 0, gz.stderr);
  got.gzipImage = digestOf(gz.stdout);
  got.gzipArchiveSha256 = sha256(readFileSync(join(p.dir, 'image.tar')));

  t.deepEqual(got, PINNED, readFileSync(join(p.dir, 'strata.lock'), 'utf8'));
});
