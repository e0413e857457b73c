/**
 * `strata realise` end to end: the real CLI, the signed fixture archive, and tools no one here wrote as checkers
 * (skopeo, umoci, the image-spec JSON schemas, dpkg-query, a real dockerd).
 */
import test from 'ava';
import { readFileSync, readdirSync, lstatSync, readlinkSync, statSync, existsSync, mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { project, manifestFor, STRATA, type Project } from './helpers/project.ts';
import { closeSharedMirror } from './helpers/project.ts';
import { serveMirror } from './helpers/mirror.ts';
import { loadOciSchemas } from './helpers/ociSchema.ts';
import { startDockerd } from './helpers/dockerd.ts';
import { evilDebBytes } from './helpers/evildeb.ts';
import { parseLock, serializeLock } from '../lock/lockfile.ts';
import { rehashLock } from '../lock/verify.ts';

test.after.always(closeSharedMirror);

const PACKAGES = [
  'busybox-fixture = "*"',
  'zlib1g = "*"',
  'libblas3 = "*"',
  'libopenblas0 = "*"',
  'base-files = "*"',
  'pkg-zstd = "*"',
  'pkg-gzip = "*"',
  'pkg-none = "*"',
].join('\n');

async function locked(extra = ''): Promise<Project> {
  const p = await project();
  p.writeManifest(manifestFor(p, PACKAGES, extra));
  const r = await p.strata(['lock']);
  if (r.code !== 0) throw new Error(r.stderr);
  return p;
}

function digestOf(stdout: string): string {
  return /^image (sha256:[0-9a-f]{64})$/m.exec(stdout)![1]!;
}

/** Reads a file of an unpacked image, following its symlinks inside the image, never on the host. */
function readIn(rootfs: string, path: string): string {
  for (let i = 0; i < 16; i++) {
    const st = lstatSync(join(rootfs, path));
    if (!st.isSymbolicLink()) return readFileSync(join(rootfs, path), 'utf8');
    const target = readlinkSync(join(rootfs, path));
    path = target.startsWith('/') ? target : join(path, '..', target);
  }
  throw new Error(`symlink loop at ${path}`);
}

function umociUnpack(layout: string, ref: string): string {
  const bundle = join(mkdtempSync(join(tmpdir(), 'strata-bundle-')), 'b');
  execFileSync('umoci', ['unpack', '--image', `${layout}:${ref}`, bundle], { stdio: 'pipe' });
  return join(bundle, 'rootfs');
}

test('an OCI layout that skopeo, umoci and the image-spec schemas accept, whose tree works', async (t) => {
  const p = await locked();
  const layout = join(p.dir, 'oci');
  const r = await p.strata(['realise', '--locked', '--oci', layout]);
  t.is(r.code, 0, r.stderr);
  const lock = parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8'));
  const ref = lock.closure.slice(7, 19);
  const inspect = JSON.parse(execFileSync('skopeo', ['--insecure-policy', 'inspect', `oci:${layout}:${ref}`], { encoding: 'utf8' }));
  t.is(inspect.Digest, digestOf(r.stdout));
  t.is(inspect.Labels['dev.strata.closure'], lock.closure);
  t.true(inspect.Layers.length >= 3 && inspect.Layers.length <= 100);

  const schemas = await loadOciSchemas();
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  t.deepEqual(schemas.validate('index', index), []);
  const manifest = JSON.parse(readFileSync(join(layout, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
  t.deepEqual(schemas.validate('manifest', manifest), []);
  const config = JSON.parse(readFileSync(join(layout, 'blobs/sha256', manifest.config.digest.slice(7)), 'utf8'));
  t.deepEqual(schemas.validate('config', config), []);
  t.is(config.history.length, manifest.layers.length);
  t.true(config.config.Env.includes('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'));

  const rootfs = umociUnpack(layout, ref);
  // merged /usr: old-style paths land under /usr, the top-level names are links
  for (const l of ['bin', 'sbin', 'lib', 'lib64']) t.is(readlinkSync(join(rootfs, l)), `usr/${l}`);
  t.true(statSync(join(rootfs, 'usr/bin/busybox')).isFile());
  t.is(readlinkSync(join(rootfs, 'usr/lib/x86_64-linux-gnu/libz.so.1')), 'libz.so.1.2.13');
  // update-alternatives as dpkg would: the highest priority wins, through /etc/alternatives
  t.is(readlinkSync(join(rootfs, 'usr/lib/x86_64-linux-gnu/libblas.so.3')), '/etc/alternatives/libblas.so.3-x86_64-linux-gnu');
  t.is(readIn(rootfs, '/usr/lib/x86_64-linux-gnu/libblas.so.3'), 'OpenBLAS 0.3.21+ds-4\n');
  t.regex(readFileSync(join(rootfs, 'var/lib/dpkg/alternatives/libblas.so.3-x86_64-linux-gnu'), 'utf8'), /^auto\n\/usr\/lib\/x86_64-linux-gnu\/libblas\.so\.3\n/);
  // files of every compression
  for (const n of ['pkg-zstd', 'pkg-gzip', 'pkg-none']) t.is(readFileSync(join(rootfs, `usr/share/${n}/hello.txt`), 'utf8'), `hello from ${n}\n`);
  // what a real program needs
  t.regex(readFileSync(join(rootfs, 'etc/passwd'), 'utf8'), /^root:x:0:0:/);
  t.is(lstatSync(join(rootfs, 'tmp')).mode & 0o7777, 0o1777);
  // dpkg's own tools read the database: the oracle lists exactly the locked packages
  const listed = execFileSync('dpkg-query', [`--admindir=${join(rootfs, 'var/lib/dpkg')}`, '-W', '-f=${Package} ${Version} ${Status}\n'], { encoding: 'utf8' });
  t.deepEqual(listed.trim().split('\n').sort(), lock.packages.map((x) => `${x.name} ${x.version} install ok installed`).sort());
  const files = execFileSync('dpkg-query', [`--admindir=${join(rootfs, 'var/lib/dpkg')}`, '-L', 'busybox-fixture'], { encoding: 'utf8' });
  t.regex(files, /^\/bin\/busybox$/m);
  // and the static busybox runs through the merged-/usr links
  if (process.getuid?.() === 0) {
    t.is(execFileSync('chroot', [rootfs, '/bin/sh', '-c', 'echo hi from $(id -un)'], { encoding: 'utf8' }), 'hi from root\n');
  }
});

test('[alternatives] in the manifest overrides the choice; an unknown path is refused with the choices', async (t) => {
  const p = await locked('\n[alternatives]\n"libblas.so.3-x86_64-linux-gnu" = "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"\n');
  const layout = join(p.dir, 'oci');
  const r = await p.strata(['realise', '--locked', '--oci', layout]);
  t.is(r.code, 0, r.stderr);
  const ref = parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8')).closure.slice(7, 19);
  const rootfs = umociUnpack(layout, ref);
  t.is(readIn(rootfs, '/usr/lib/x86_64-linux-gnu/libblas.so.3'), 'reference BLAS 3.11.0-2\n');
  t.regex(readFileSync(join(rootfs, 'var/lib/dpkg/alternatives/libblas.so.3-x86_64-linux-gnu'), 'utf8'), /^manual\n/);

  p.writeManifest(manifestFor(p, PACKAGES, '\n[alternatives]\n"libblas.so.3-x86_64-linux-gnu" = "/opt/mkl/libmkl_rt.so"\n'));
  const bad = await p.strata(['realise']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /error: strata\.toml: \[alternatives\] .*not a registered alternative for libblas\.so\.3-x86_64-linux-gnu/);
  t.regex(bad.stderr, /registered: \/usr\/lib\/x86_64-linux-gnu\/openblas-pthread\/libblas\.so\.3 \(priority 100, from libopenblas0\)/);
});

test('two realisations with different caches and TMPDIRs give the same image, byte for byte', async (t) => {
  const p = await locked();
  const tmpA = mkdtempSync(join(tmpdir(), 'strata-tmpA-'));
  const tmpB = mkdtempSync(join(tmpdir(), 'strata-tmpB-'));
  const a = await p.strata(['realise', '--locked', '--gzip', '--docker-archive', join(p.dir, 'a.tar')], { env: { STRATA_CACHE_DIR: join(p.dir, 'cacheA'), TMPDIR: tmpA } });
  const b = await p.strata(['realise', '--locked', '--gzip', '--docker-archive', join(p.dir, 'b.tar')], { env: { STRATA_CACHE_DIR: join(p.dir, 'cacheB'), TMPDIR: tmpB } });
  t.is(a.code, 0, a.stderr);
  t.is(b.code, 0, b.stderr);
  t.is(digestOf(a.stdout), digestOf(b.stdout));
  const h = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
  t.is(h(join(p.dir, 'a.tar')), h(join(p.dir, 'b.tar')));
  // a warm second run builds nothing
  const warm = await p.strata(['realise', '--locked', '--gzip'], { env: { STRATA_CACHE_DIR: join(p.dir, 'cacheA') } });
  t.regex(warm.stdout, /\(0 built, \d+ cached\)/);
  t.is(digestOf(warm.stdout), digestOf(a.stdout));
  // the archive is an OCI archive too
  t.notThrows(() => execFileSync('skopeo', ['--insecure-policy', 'inspect', `oci-archive:${join(p.dir, 'a.tar')}`], { stdio: 'pipe' }));
});

test('--load into a real dockerd, then run commands in the image; a second load sends nothing', async (t) => {
  const p = await locked();
  const d = await startDockerd();
  try {
    const r = await p.strata(['realise', '--locked', '--load', '--tag', 'fixture:test'], { env: { DOCKER_HOST: d.host } });
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /loaded fixture:test into Docker/);
    const out = execFileSync('docker', ['-H', d.host, 'run', '--rm', '--network', 'none', 'fixture:test', '/bin/sh', '-c', 'echo hi; cat /usr/lib/x86_64-linux-gnu/libblas.so.3; id -u'], { encoding: 'utf8' });
    t.is(out, 'hi\nOpenBLAS 0.3.21+ds-4\n0\n');
    const again = await p.strata(['realise', '--locked', '--load', '--tag', 'fixture:again'], { env: { DOCKER_HOST: d.host } });
    t.regex(again.stdout, /0 layers sent/);
  } finally {
    await d.stop();
  }
  const none = await p.strata(['realise', '--locked', '--load'], { env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' } });
  t.is(none.code, 1);
  t.regex(none.stderr, /error: cannot reach the Docker engine at unix:\/\/\/nonexistent\/docker\.sock/);
});

test('a stale lock is refused under --locked', async (t) => {
  const p = await locked();
  p.writeManifest(manifestFor(p, `${PACKAGES}\nmailer = "*"`));
  const r = await p.strata(['realise', '--locked']);
  t.is(r.code, 3);
  t.regex(r.stderr, /strata\.lock is stale: strata\.toml changed/);
});

test('a .deb whose bytes do not match the lock is refused, and nothing bad enters the store', async (t) => {
  const p = await locked();
  const own = await serveMirror(p.mirror.root);
  try {
    p.writeManifest(manifestFor({ ...p, served: own }, PACKAGES));
    t.is((await p.strata(['lock'])).code, 0);
    const deb = p.mirror.debs.find((x) => x.name === 'pkg-gzip')!;
    const real = readFileSync(deb.path);
    const forged = Buffer.from(real);
    forged[forged.length - 10]! ^= 0xff;
    own.tamper(deb.filename, forged);
    const r = await p.strata(['realise', '--locked']);
    t.is(r.code, 1);
    t.regex(r.stderr, /error: .*pkg-gzip 1\.0-1.*/);
    t.regex(r.stderr, new RegExp(deb.sha256));
    const blobs = readdirSync(join(p.cache, 'blobs/sha256'));
    for (const b of blobs) t.is(createHash('sha256').update(readFileSync(join(p.cache, 'blobs/sha256', b))).digest('hex'), b);
    own.tamper(deb.filename, real.subarray(0, real.length - 100)); // truncated
    const short = await p.strata(['realise', '--locked']);
    t.is(short.code, 1);
    t.regex(short.stderr, /pkg-gzip/);
    own.tamper(deb.filename, null);
    const ok = await p.strata(['realise', '--locked']);
    t.is(ok.code, 0, ok.stderr);
  } finally {
    await own.close();
  }
});

test('a package with a ../ member fails the realise with a message naming it', async (t) => {
  const p = await locked();
  const own = await serveMirror(p.mirror.root);
  try {
    p.writeManifest(manifestFor({ ...p, served: own }, PACKAGES));
    t.is((await p.strata(['lock'])).code, 0);
    const deb = p.mirror.debs.find((x) => x.name === 'pkg-none')!;
    const evil = await evilDebBytes({ packageName: 'pkg-none', data: [{ name: './usr/', type: 'directory' }, { name: './usr/../../escaped', content: 'x' }] });
    own.tamper(deb.filename, evil);
    // A lock that vouches for the evil bytes, closures and all (as a lock made from a compromised archive would).
    const lockPath = join(p.dir, 'strata.lock');
    const lock = parseLock(readFileSync(lockPath, 'utf8'));
    const sha = createHash('sha256').update(evil).digest('hex');
    writeFileSync(lockPath, serializeLock(rehashLock({ ...lock, packages: lock.packages.map((x) => (x.name === 'pkg-none' ? { ...x, sha256: sha, size: evil.length } : x)) })));
    const r = await p.strata(['realise', '--locked']);
    t.is(r.code, 1);
    t.regex(r.stderr, /pkg-none/);
    t.regex(r.stderr, /\.\./);
    t.false(existsSync(join(p.cache, 'escaped')));
    t.false(existsSync(join(p.cache, 'unpacked', 'escaped')));
  } finally {
    await own.close();
  }
});

test('a realise killed midway leaves the store consistent and the next run succeeds', async (t) => {
  const p = await locked();
  const clean = await p.strata(['realise', '--locked'], { env: { STRATA_CACHE_DIR: join(p.dir, 'clean') } });
  t.is(clean.code, 0, clean.stderr);
  for (const delay of [150, 400, 800]) {
    const child = spawn(STRATA, ['realise', '--locked'], { cwd: p.dir, env: { ...process.env, STRATA_CACHE_DIR: p.cache }, stdio: 'ignore' });
    await new Promise((res) => setTimeout(res, delay));
    child.kill('SIGKILL');
    await new Promise((res) => child.on('close', res));
  }
  const blobs = join(p.cache, 'blobs/sha256');
  if (existsSync(blobs)) {
    for (const b of readdirSync(blobs)) t.is(createHash('sha256').update(readFileSync(join(blobs, b))).digest('hex'), b);
  }
  const r = await p.strata(['realise', '--locked']);
  t.is(r.code, 0, r.stderr);
  t.is(digestOf(r.stdout), digestOf(clean.stdout));
});

test('a full disk ends in one clear message, and the store works once there is room', async (t) => {
  if (process.getuid?.() !== 0) {
    t.log('skipped: mounting a small tmpfs needs root');
    t.pass();
    return;
  }
  const p = await locked();
  const small = join(p.dir, 'small');
  mkdirSync(small);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1500k', 'tmpfs', small]);
  } catch {
    t.log('skipped: cannot mount tmpfs here');
    t.pass();
    return;
  }
  try {
    const r = await p.strata(['realise', '--locked'], { env: { STRATA_CACHE_DIR: small } });
    t.is(r.code, 1);
    t.regex(r.stderr, /error: .*(no space left|full)/i);
    t.notRegex(r.stderr, /internal error/);
    execFileSync('mount', ['-o', 'remount,size=64m', small]);
    const ok = await p.strata(['realise', '--locked'], { env: { STRATA_CACHE_DIR: small } });
    t.is(ok.code, 0, ok.stderr);
  } finally {
    execFileSync('umount', [small]);
  }
});

test('a full disk at any point of lock and realise ends in E_DISK (exit 1), never an internal error', async (t) => {
  if (process.getuid?.() !== 0) {
    t.log('skipped: mounting a small tmpfs needs root');
    t.pass();
    return;
  }
  const p = await locked();
  // Each size runs out at another writer: index cache, channel pointer, .deb download, unpacked tree and its
  // meta.json, layer tar, layer record, rootfs.
  for (const size of ['40k', '600k', '2000k', '3000k', '4000k', '5000k', '7000k']) {
    const small = join(p.dir, `small-${size}`);
    mkdirSync(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', small]);
    try {
      const env = { STRATA_CACHE_DIR: small };
      for (const args of [['lock'], ['realise'], ['run', '--backend', 'sandbox', '--', 'sh', '-c', 'exit 0']]) {
        const r = await p.strata(args, { env });
        t.notRegex(r.stderr, /internal error/, `${size} ${args[0]}: ${r.stderr}`);
        if (r.code !== 0) {
          t.is(r.code, 1, `${size} ${args[0]}: ${r.stderr}`);
          t.regex(r.stderr, /error: no space left on the device holding the store/, `${size} ${args[0]}`);
          t.log(`${size}: ${args[0]}: ${/while writing (.*)/.exec(r.stderr)?.[1]}`);
          break;
        }
      }
    } finally {
      execFileSync('umount', [small]);
    }
  }
});

