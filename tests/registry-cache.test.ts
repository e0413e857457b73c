/**
 * A registry as a cache of layers and recipe outputs, against a real registry (Debian's docker-registry on
 * loopback). Machine A realises a lock with a recipe and pushes to the cache; machine B, a fresh store whose Debian
 * mirror is a closed port, realises the same lock from the cache alone: the recipe's build never starts and the
 * image has A's digest. A cache that misses, or that cannot be reached, falls back to building, with one line.
 */
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, rmSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { closeSharedMirror, runCli, sharedMirror, type Shared } from './helpers/project.ts';
import { startDockerd } from './helpers/dockerd.ts';
import { droppingProxy, haveRegistry, layoutDigest, startRegistry, testCa, type Registry } from './helpers/registry.ts';

const run = promisify(execFile);
/** A loopback port nothing listens on. */
const CLOSED = '127.0.0.1:9';

let reg: Registry;
let fx: Shared;
let manifest: string;
/** Machine A's image digest (realise --oci, uncompressed layers). */
let imageA: string;
/** Machine A's strata.lock. */
let lockA: string;

/** The image digest a push prints last (`REPOSITORY@sha256:...`), or a pull first. */
const pushedDigest = (stdout: string) => [...stdout.matchAll(/^\S+@(sha256:[0-9a-f]{64})$/gm)].at(-1)?.[1];
const pulledDigest = (stdout: string) => /^\S+@(sha256:[0-9a-f]{64})$/m.exec(stdout)?.[1];
const imageLine = (stdout: string) => /^image (sha256:[0-9a-f]{64})$/m.exec(stdout)?.[1];

/** A machine: its own project directory (the same strata.toml, and strata.lock once A made it) and store. */
function machine(env: NodeJS.ProcessEnv) {
  const dir = mkdtempSync(join(tmpdir(), 'strata-machine-'));
  writeFileSync(join(dir, 'strata.toml'), manifest);
  const cache = join(dir, '.cache');
  return { dir, cache, strata: (args: string[]) => runCli(args, { cwd: dir, env: { STRATA_CACHE_DIR: cache, DOCKER_CONFIG: join(dir, 'no-docker-config'), ...env }, timeoutMs: 180_000 }) };
}

test.before(async () => {
  if (!haveRegistry()) throw new Error('docker-registry is not installed (Debian package docker-registry; scripts/setup-host.sh installs it)');
  [reg, fx] = await Promise.all([startRegistry(), sharedMirror()]);
  // The recipe's source, a tarball on the fixture mirror, named by mirror:// so that no host is in the lock.
  const name = `stamp-${randomBytes(4).toString('hex')}`;
  const work = mkdtempSync(join(tmpdir(), 'strata-src-'));
  mkdirSync(join(work, name));
  writeFileSync(join(work, name, 'stamp.txt'), `stamp ${name}\n`);
  mkdirSync(join(fx.mirror.root, 'sources'), { recursive: true });
  const file = join(fx.mirror.root, 'sources', `${name}.tar.gz`);
  execFileSync('tar', ['-C', work, '-czf', file, name]);
  const sha = createHash('sha256').update(readFileSync(file)).digest('hex');
  const channel = (n: string, suite: string) => `[channels.${n}]\nsuite = "${suite}"\ncomponents = ["main", "contrib"]\nsigned-by = "${fx.mirror.keyring}"\n`;
  manifest = [
    '[project]\nname = "cached"\narch = "amd64"\n',
    channel('stable', 'stable'),
    channel('current', 'current'),
    '[packages]\nbusybox-fixture = "*"\n',
    '[recipes.stamp]',
    'version = "1.0"',
    `source = { url = "mirror://stable/sources/${name}.tar.gz", sha256 = "${sha}" }`,
    'build-depends = ["busybox-fixture"]',
    'build = ["mkdir -p $PREFIX/share/stamp", "cp stamp.txt $PREFIX/share/stamp/", "mkdir -p $PREFIX/bin", "printf \'#!/bin/sh\\\\necho stamped\\\\n\' > $PREFIX/bin/stamp", "chmod 755 $PREFIX/bin/stamp"]',
    '',
  ].join('\n');
});

test.after.always(async () => {
  await reg?.stop();
  await closeSharedMirror();
});

test.serial('machine A builds the recipe and pushes layers and outputs to the cache; machine B, with no mirror, realises the same image from it without building', async (t) => {
  const cacheRepo = `${reg.host}/team/strata-cache`;
  const a = machine({ STRATA_DEBIAN_MIRROR: fx.served.url, STRATA_CACHE_REGISTRY: cacheRepo });
  const locked = await a.strata(['lock']);
  t.is(locked.code, 0, locked.stderr);
  const ra = await a.strata(['realise', '--push-cache', '--oci', join(a.dir, 'oci')]);
  t.is(ra.code, 0, ra.stderr);
  t.regex(ra.stderr, /^building recipe stamp 1\.0 /m);
  t.regex(ra.stderr, /has no image of this lock; realising it here/);
  imageA = imageLine(ra.stdout) ?? 'no image line';
  lockA = join(a.dir, 'strata.lock');
  t.is(layoutDigest(join(a.dir, 'oci')), imageA);
  const entries = /^cache: (\d+) entries pushed \((\d+) blobs uploaded\), 0 already there$/m.exec(ra.stdout);
  t.truthy(entries, ra.stdout);
  // The registry lists what the cache holds under its tags: one recipe output, the image, a layer per image layer.
  const tags = (JSON.parse((await run('skopeo', ['list-tags', '--tls-verify=false', `docker://${cacheRepo}`])).stdout) as { Tags: string[] }).Tags;
  const layers = tags.filter((x) => /^layer-[0-9a-f]{64}$/.test(x)).length;
  t.is(tags.filter((x) => /^recipe-[0-9a-f]{64}$/.test(x)).length, 1, tags.join(' '));
  t.is(tags.filter((x) => /^image-[0-9a-f]{64}$/.test(x)).length, 1, tags.join(' '));
  t.true(layers >= 3, tags.join(' '));
  t.is(Number(entries![1]), tags.length);
  const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${cacheRepo}:${tags.find((x) => x.startsWith('recipe-'))}`])).stdout) as { artifactType?: string };
  t.is(raw.artifactType, 'application/vnd.dev.strata.cache.v1');

  // A second push finds everything there.
  const again = await a.strata(['push', '--cache']);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, new RegExp(`^cache: 0 entries pushed \\(0 blobs uploaded\\), ${tags.length} already there$`, 'm'));

  // Machine B: a fresh store, the same strata.toml and strata.lock, a Debian mirror nobody answers at.
  const b = machine({ STRATA_DEBIAN_MIRROR: `http://${CLOSED}/debian`, STRATA_CACHE_REGISTRY: cacheRepo });
  copyFileSync(join(a.dir, 'strata.lock'), join(b.dir, 'strata.lock'));
  const rb = await b.strata(['realise', '--locked', '--oci', join(b.dir, 'oci')]);
  t.is(rb.code, 0, rb.stderr);
  t.notRegex(rb.stderr, /building recipe/);
  t.regex(rb.stderr, /^took recipe stamp 1\.0 from the cache \S+ \(not building it\)$/m);
  t.regex(rb.stderr, /took the image of this lock from the cache/);
  t.is(imageLine(rb.stdout), imageA);
  t.is(layoutDigest(join(b.dir, 'oci')), imageA);
  // The build never started: no build log, no build environment, no .deb fetched.
  t.false(existsSync(join(b.cache, 'build-logs')) && readdirSync(join(b.cache, 'build-logs')).length > 0);
  t.false(existsSync(join(b.cache, 'unpacked')) && readdirSync(join(b.cache, 'unpacked')).length > 0);
  // A second realise there needs the cache no more: everything is in B's store.
  const rb2 = await runCli(['realise', '--locked'], { cwd: b.dir, env: { STRATA_CACHE_DIR: b.cache, STRATA_DEBIAN_MIRROR: `http://${CLOSED}/debian`, STRATA_CACHE_REGISTRY: `${CLOSED}/team/strata-cache` }, timeoutMs: 120_000 });
  t.is(rb2.code, 0, rb2.stderr);
  t.is(imageLine(rb2.stdout), imageA);
});

test.serial('run and build on a machine with only the cache: run enters the image taken from the cache, build takes the recipe output from it; neither builds', async (t) => {
  t.truthy(lockA, 'needs the first test');
  const cacheRepo = `${reg.host}/team/strata-cache`;
  const env = { STRATA_DEBIAN_MIRROR: `http://${CLOSED}/debian`, STRATA_CACHE_REGISTRY: cacheRepo };
  const c = machine(env);
  copyFileSync(lockA, join(c.dir, 'strata.lock'));
  const ran = await c.strata(['run', '--locked', '--backend', 'sandbox', '--', 'sh', '-c', 'stamp && cat /usr/local/share/stamp/stamp.txt']);
  t.is(ran.code, 0, ran.stderr);
  t.regex(ran.stdout, /^stamped\nstamp stamp-[0-9a-f]{8}\n$/);
  t.regex(ran.stderr, /took the image of this lock from the cache/);
  t.notRegex(ran.stderr, /building recipe/);
  t.false(existsSync(join(c.cache, 'build-logs')) && readdirSync(join(c.cache, 'build-logs')).length > 0);
  const d = machine(env);
  copyFileSync(lockA, join(d.dir, 'strata.lock'));
  const built = await d.strata(['build', 'stamp', '--locked']);
  t.is(built.code, 0, built.stderr);
  t.regex(built.stderr, /^took recipe stamp 1\.0 from the cache \S+ \(not building it\)$/m);
  t.regex(built.stdout, /already built \(cached\)/);
  t.notRegex(built.stderr, /building recipe/);
});

test.serial('a cache that misses, or that cannot be reached, falls back to building with one line', async (t) => {
  t.truthy(imageA, 'needs the first test');
  for (const [repo, line] of [
    [`${reg.host}/team/empty-cache`, /^.*has no image of this lock; realising it here.*$/gm],
    [`${CLOSED}/team/strata-cache`, /^.*cannot be used \(cannot reach the registry 127\.0\.0\.1:9.*building here without it$/gm],
  ] as const) {
    const m = machine({ STRATA_DEBIAN_MIRROR: fx.served.url, STRATA_CACHE_REGISTRY: repo });
    copyFileSync(lockA, join(m.dir, 'strata.lock'));
    const r = await m.strata(['realise', '--locked', '--oci', join(m.dir, 'oci')]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stderr, /^building recipe stamp 1\.0 /m);
    t.is(r.stderr.match(line)?.length, 1, r.stderr);
    t.is(imageLine(r.stdout), imageA);
  }
});

/** The first IPv4 address of this host that is not loopback: a TLS registry there is reached over HTTPS. */
function hostAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return undefined;
}

test.serial('a lock the cache has no image of still takes the recipe output and the unchanged layers from it, one by one', async (t) => {
  t.truthy(lockA, 'needs the first test');
  const m = machine({ STRATA_DEBIAN_MIRROR: fx.served.url, STRATA_CACHE_REGISTRY: `${reg.host}/team/strata-cache` });
  writeFileSync(join(m.dir, 'strata.toml'), manifest.replace('busybox-fixture = "*"', 'busybox-fixture = "*"\nzlib1g = "*"'));
  const r = await m.strata(['realise']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /has no image of this lock; realising it here/);
  t.regex(r.stderr, /^took recipe stamp 1\.0 from the cache \S+ \(not building it\)$/m);
  t.notRegex(r.stderr, /building recipe/);
  const counts = /in (\d+) layers \((\d+) built, (\d+) cached\)/.exec(r.stdout);
  t.truthy(counts, r.stdout);
  // Built here: the layers of the packages zlib1g brought and the top layer (the dpkg database names them); the
  // base, busybox's layer and the recipe's layer came from the cache (this store had none of them).
  const [total, builtHere, cached] = [Number(counts![1]), Number(counts![2]), Number(counts![3])];
  t.is(builtHere + cached, total);
  t.true(cached >= 3, r.stdout);
  t.true(builtHere >= 2 && builtHere <= 3, r.stdout);
});

test.serial('TLS with a test CA: push, pull and the cache are refused without the CA, naming the certificate problem, and accepted with --ca-file or SSL_CERT_FILE', async (t) => {
  t.truthy(lockA, 'needs the first test');
  const ip = hostAddress();
  if (!ip) {
    t.log('skipped: this host has no non-loopback IPv4 address to serve TLS on (loopback registries are plain HTTP)');
    t.pass();
    return;
  }
  const ca = testCa(ip);
  const tls = await startRegistry({ tls: { cert: ca.cert, key: ca.key, host: ip } });
  try {
    const a = machine({ STRATA_DEBIAN_MIRROR: fx.served.url });
    copyFileSync(lockA, join(a.dir, 'strata.lock'));
    const repo = `${tls.host}/team/tls`;
    const refused = await a.strata(['push', `${repo}:v1`, '--locked']);
    t.is(refused.code, 1, refused.stderr);
    t.regex(refused.stderr, new RegExp(`^error: the registry ${tls.host.replace(/\./g, '\\.')} presented a TLS certificate strata cannot verify: .*(UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT)`, 'm'));
    t.regex(refused.stderr, /^hint: give the CA that signed it with --ca-file FILE/m);
    const pushed = await a.strata(['push', `${repo}:v1`, '--locked', '--ca-file', ca.ca]);
    t.is(pushed.code, 0, pushed.stderr);
    const node = machine({ STRATA_DEBIAN_MIRROR: `http://${CLOSED}/debian`, SSL_CERT_FILE: ca.ca });
    const pulled = await node.strata(['pull', `${repo}:v1`]);
    t.is(pulled.code, 0, pulled.stderr);
    t.is(pulledDigest(pulled.stdout), pushedDigest(pushed.stdout));
    // The cache over TLS: pushed with --ca-file, refused (one line, then a local build) without it.
    const cache = `${tls.host}/team/strata-cache`;
    const withCache = await runCli(['realise', '--locked', '--push-cache', '--ca-file', ca.ca], { cwd: a.dir, env: { STRATA_CACHE_DIR: a.cache, STRATA_DEBIAN_MIRROR: fx.served.url, STRATA_CACHE_REGISTRY: cache }, timeoutMs: 180_000 });
    t.is(withCache.code, 0, withCache.stderr);
    t.regex(withCache.stdout, /^cache: \d+ entries pushed/m);
    const noCa = machine({ STRATA_DEBIAN_MIRROR: `http://${CLOSED}/debian`, STRATA_CACHE_REGISTRY: cache });
    copyFileSync(lockA, join(noCa.dir, 'strata.lock'));
    const refusedCache = await noCa.strata(['realise', '--locked']);
    t.not(refusedCache.code, 0);
    t.regex(refusedCache.stderr, /the cache \S+ cannot be used \(the registry \S+ presented a TLS certificate strata cannot verify/);
    const b = machine({ STRATA_DEBIAN_MIRROR: `http://${CLOSED}/debian`, STRATA_CACHE_REGISTRY: cache, SSL_CERT_FILE: ca.ca });
    copyFileSync(lockA, join(b.dir, 'strata.lock'));
    const fromCache = await b.strata(['realise', '--locked']);
    t.is(fromCache.code, 0, fromCache.stderr);
    t.is(imageLine(fromCache.stdout), imageA);
  } finally {
    await tls.stop();
    rmSync(ca.dir, { recursive: true, force: true });
  }
});

test.serial('an independent client: the private dockerd pulls the pushed image from the registry and runs programs of it (busybox and the recipe\'s own script)', async (t) => {
  t.truthy(lockA, 'needs the first test');
  const a = machine({ STRATA_DEBIAN_MIRROR: fx.served.url });
  copyFileSync(lockA, join(a.dir, 'strata.lock'));
  const ref = `${reg.host}/team/docker:v1`;
  const pushed = await a.strata(['push', ref, '--locked']);
  t.is(pushed.code, 0, pushed.stderr);
  const digest = /^\S+\/team\/docker@(sha256:[0-9a-f]{64})$/m.exec(pushed.stdout)?.[1] ?? 'no digest line';
  t.regex(pushed.stdout, /^strata\.lock attached: \S+@sha256:[0-9a-f]{64}$/m);
  // The lock is an OCI 1.1 artifact whose subject is the image, listed under the spec's fallback tag sha256-<hex>.
  const index = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/team/docker:${digest.replace(':', '-')}`])).stdout) as { mediaType: string; manifests: { artifactType?: string; digest: string }[] };
  t.is(index.mediaType, 'application/vnd.oci.image.index.v1+json');
  t.deepEqual(index.manifests.map((m) => m.artifactType), ['application/vnd.dev.strata.lock.v1']);
  const node = machine({ STRATA_DEBIAN_MIRROR: `http://${CLOSED}/debian` });
  const pulled = await node.strata(['pull', ref, '--lock', join(node.dir, 'attached.lock')]);
  t.is(pulled.code, 0, pulled.stderr);
  t.regex(pulled.stdout, /^ {2}strata\.lock attached \(sha256:[0-9a-f]{64}\): project cached, \d+ packages, 1 recipes, channels stable, current$/m);
  t.is(readFileSync(join(node.dir, 'attached.lock'), 'utf8'), readFileSync(lockA, 'utf8'));
  const engine = await startDockerd();
  const docker = (...args: string[]) => run('docker', args, { env: { PATH: process.env.PATH, DOCKER_HOST: engine.host, DOCKER_CONFIG: join(engine.dir, 'docker-config') }, timeout: 120_000 });
  try {
    // Docker allows plain HTTP to a registry on 127.0.0.0/8 by default (insecure-registries).
    await docker('pull', ref);
    const { stdout: repoDigest } = await docker('image', 'inspect', '--format', '{{index .RepoDigests 0}}', ref);
    t.is(repoDigest.trim(), `${reg.host}/team/docker@${digest}`);
    const { stdout } = await docker('run', '--rm', '--network', 'none', ref, 'sh', '-c', 'echo $((6 * 7)); stamp; cat /usr/local/share/stamp/stamp.txt');
    t.regex(stdout, /^42\nstamped\nstamp stamp-[0-9a-f]{8}\n$/);
  } finally {
    await engine.stop();
  }
});

test.serial('a push after a one-package bump uploads one package layer and the top layer (and the config), counted in the registry\'s access log', async (t) => {
  const logged = await startRegistry({ accessLog: true });
  try {
    const p = machine({ STRATA_DEBIAN_MIRROR: fx.served.url });
    const base = manifest.replace(/\n\[recipes\.stamp\][\s\S]*$/, '\n');
    writeFileSync(join(p.dir, 'strata.toml'), base.replace('busybox-fixture = "*"', 'busybox-fixture = "*"\nzlib1g = "*"'));
    const repo = `${logged.host}/team/bump`;
    // Blob uploads the registry logged, less those of the attached lock (strata.lock's own bytes, one per lock).
    const uploads = (lock?: string) => {
      const all = logged.log().match(/"PUT \/v2\/team\/bump\/blobs\/uploads\/[^" ]*digest=sha256%3A[0-9a-f]{64}/g) ?? [];
      const lockDigest = lock ? createHash('sha256').update(readFileSync(lock)).digest('hex') : '-';
      return all.filter((l) => !l.endsWith(lockDigest)).length;
    };
    const first = await p.strata(['push', `${repo}:v1`]);
    t.is(first.code, 0, first.stderr);
    const before = uploads();
    t.true(before >= 4, logged.log().slice(-2000));
    const lock1 = readFileSync(join(p.dir, 'strata.lock'), 'utf8');
    writeFileSync(join(p.dir, 'strata.toml'), base.replace('busybox-fixture = "*"', 'busybox-fixture = "*"\nzlib1g = { channel = "current" }'));
    const second = await p.strata(['push', `${repo}:v2`]);
    t.is(second.code, 0, second.stderr);
    // One package changed: zlib1g, to the current channel's version.
    const versions = (text: string) => new Map([...text.matchAll(/^name = "([^"]+)"\nversion = "([^"]+)"/gm)].map((m) => [m[1]!, m[2]!]));
    const [v1, v2] = [versions(lock1), versions(readFileSync(join(p.dir, 'strata.lock'), 'utf8'))];
    t.deepEqual([...v2].filter(([n, v]) => v1.get(n) !== v).map(([n]) => n), ['zlib1g']);
    t.is(uploads(join(p.dir, 'strata.lock')) - before, 3, `${second.stdout}\n${logged.log().slice(-3000)}`);
    const lines = second.stdout.split('\n').filter((l) => /: pushed /.test(l));
    t.is(lines.length, 3, second.stdout);
    t.is(lines.filter((l) => /layer \d+\/\d+: pushed/.test(l)).length, 2, second.stdout);
    t.true(lines.some((l) => /the config: pushed/.test(l)), second.stdout);
    // The two layers are the package layer of zlib1g and the top layer (the last one).
    const total = /pushing \S+ \(v2\): (\d+) layers/.exec(second.stdout)?.[1];
    t.true(lines.some((l) => new RegExp(`layer ${total}/${total}: pushed`).test(l)), second.stdout);
  } finally {
    await logged.stop();
  }
});

test.serial('a registry that dies mid-upload: one clear message, exit 1, no image left half-pushed; a rerun completes; a single drop is retried', async (t) => {
  t.truthy(lockA, 'needs the first test');
  const a = machine({ STRATA_DEBIAN_MIRROR: fx.served.url, STRATA_HTTP_LOW_SPEED_TIME: '5' });
  copyFileSync(lockA, join(a.dir, 'strata.lock'));
  const proxy = await droppingProxy(reg.host, Infinity);
  try {
    const repo = `${proxy.host}/team/dies`;
    const failed = await a.strata(['push', `${repo}:v1`, '--locked']);
    t.is(failed.code, 1, failed.stderr);
    const errors = failed.stderr.split('\n').filter((l) => l.startsWith('error: '));
    t.is(errors.length, 1, failed.stderr);
    t.regex(errors[0]!, new RegExp(`^error: cannot reach the registry ${proxy.host.replace(/\./g, '\\.')}: .*(ECONNRESET|socket hang up|EPIPE)`), failed.stderr);
    t.true(proxy.dropped() >= 4, `retried: ${proxy.dropped()} cut uploads`);
    // Nothing half-pushed: the tag does not exist, so nobody can pull an image with a missing blob.
    const node = machine({ STRATA_DEBIAN_MIRROR: `http://${CLOSED}/debian` });
    const none = await node.strata(['pull', `${reg.host}/team/dies:v1`]);
    t.is(none.code, 1);
    t.regex(none.stderr, /has no (repository|tag)/);
    // The rerun through a registry that now drops one upload: the upload starts again and the push completes.
    proxy.setDrops(1);
    const before = proxy.dropped();
    const rerun = await a.strata(['push', `${repo}:v1`, '--locked']);
    t.is(rerun.code, 0, rerun.stderr);
    t.is(proxy.dropped(), before + 1);
    const digest = pushedDigest(rerun.stdout);
    const pulled = await node.strata(['pull', `${reg.host}/team/dies:v1`]);
    t.is(pulled.code, 0, pulled.stderr);
    t.is(pulledDigest(pulled.stdout), digest);
  } finally {
    await proxy.close();
  }
});
