/**
 * The generated layer against the real Debian archive (skipped with a message when no mirror is reachable): trixie
 * ca-certificates, python3 and python3-numpy (with the Essential set). After a realise, in `strata run`: TLS finds
 * the CA bundle and OpenSSL the hash links, `ldconfig -p` reads /etc/ld.so.cache, and Python imports json and
 * numpy from the bytecode in the image (not recompiling: faster than with the bytecode hidden). A warm realise runs
 * no tool; a realise into a second, empty cache gives the same image digest. After a bump of one module package
 * only that package's bytecode part is made again, and the image is the one a realise from nothing gives.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { parseLock, serializeLock } from '../lock/lockfile.ts';
import { rehashLock } from '../lock/verify.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/project.ts';
import { debianMirrorOrSkip } from './helpers/debianMirror.ts';

const digestOf = (stdout: string) => /^image (sha256:[0-9a-f]{64})$/m.exec(stdout)?.[1];

test('trixie ca-certificates + python3-numpy: CA bundle and hash links, ld.so.cache, bytecode; one digest from two caches', async (t) => {
  const m = await debianMirrorOrSkip(t);
  if (!m) return;
  const dir = mkdtempSync(join(tmpdir(), 'strata-generated-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'strata.toml'), `[project]\nname = "generated-e2e"\narch = "amd64"\n\n[channels.stable]\nurl = "${m.url}"\nsuite = "trixie"\ncomponents = ["main"]\n\n[packages]\nca-certificates = "*"\npython3 = "*"\npython3-numpy = "*"\npython3-six = "*"\n`);
  const cacheA = { STRATA_CACHE_DIR: process.env.STRATA_TEST_DEBIAN_CACHE ?? join(dir, 'cache-a') };
  const cacheB = { STRATA_CACHE_DIR: join(dir, 'cache-b') };
  const strata = (args: string[], env: NodeJS.ProcessEnv) => runCli(args, { cwd: dir, env, timeoutMs: 540_000 });
  const lock = await strata(['lock'], cacheA);
  t.is(lock.code, 0, lock.stderr);

  let started = Date.now();
  const first = await strata(['realise', '--locked'], cacheA);
  t.is(first.code, 0, first.stderr);
  t.log(`realise (cache A): ${((Date.now() - started) / 1000).toFixed(1)} s; ${/^made .*$/m.exec(first.stderr)?.[0] ?? 'generated layer from the cache'}`);
  const digest = digestOf(first.stdout);
  t.truthy(digest, first.stdout);

  const warm = await strata(['realise', '--locked'], cacheA);
  t.is(warm.code, 0, warm.stderr);
  t.is(digestOf(warm.stdout), digest);
  t.notRegex(warm.stderr, /maintainer scripts would have/, 'a warm realise runs no tool');

  started = Date.now();
  const other = await strata(['realise', '--locked'], cacheB);
  t.is(other.code, 0, other.stderr);
  t.log(`realise (empty cache B): ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.regex(other.stderr, /^made ca-certificates, ld\.so\.cache in /m, 'cache B ran the tools itself');
  t.regex(other.stderr, /^made python-bytecode of \d+ packages \(.*python3-numpy.*\) in /m);
  t.is(digestOf(other.stdout), digest, 'two caches, one image digest');

  const run = (script: string) => strata(['run', '--backend', 'sandbox', '--locked', '--', 'sh', '-c', script], cacheA);

  const tls = await run(
    [
      `python3 -c 'import ssl; c = ssl.create_default_context(); print(len(c.get_ca_certs()) > 0)'`,
      'openssl verify -CApath /etc/ssl/certs /usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt',
      'readlink /etc/ssl/certs/ISRG_Root_X1.pem',
      'grep -c "BEGIN CERTIFICATE" /etc/ssl/certs/ca-certificates.crt',
      'ls /usr/share/ca-certificates/mozilla | wc -l',
    ].join('; '),
  );
  t.is(tls.code, 0, tls.stderr);
  const [ok, verify, link, inBundle, shipped] = tls.stdout.trim().split('\n');
  t.is(ok, 'True');
  t.is(verify, '/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt: OK', 'OpenSSL finds the root by its subject-hash link');
  t.is(link, '/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt');
  t.true(Number(shipped) > 100);
  t.is(inBundle, shipped, 'every shipped certificate is in the bundle');

  const ld = await run('ldconfig -p > /tmp/ld; head -1 /tmp/ld; for l in libc.so.6 libssl.so.3 libblas.so.3; do grep -c "^\\s$l (libc6,x86-64) => /\\(usr/\\)\\?lib/x86_64-linux-gnu/$l$" /tmp/ld || true; done');
  t.is(ld.code, 0, ld.stderr);
  const [count, ...found] = ld.stdout.trim().split('\n');
  t.regex(count!, /^\d+ libs found in cache `\/etc\/ld\.so\.cache'$/);
  t.true(Number(/^\d+/.exec(count!)![0]) > 20, count);
  t.deepEqual(found, ['1', '1', '1'], 'libc, libssl (openssl) and libblas (numpy, through its alternative) are in the cache');

  // python -v says where each module's code came from: the image's __pycache__, read-only.
  const pyc = await run(`python3 -v -c 'import json, numpy' 2>&1 | grep -E "^# code object from .*/(json|numpy)/__pycache__/__init__\\.cpython-3[0-9]+\\.pyc'?$" | sed -e 's|^# code object from ||' -e "s|'||g"`);
  t.is(pyc.code, 0, pyc.stderr);
  t.regex(pyc.stdout, /^\/usr\/lib\/python3\.\d+\/json\/__pycache__\/__init__\.cpython-3\d+\.pyc$/m);
  t.regex(pyc.stdout, /^\/usr\/lib\/python3\/dist-packages\/numpy\/__pycache__\/__init__\.cpython-3\d+\.pyc$/m);

  // Start time with the image's bytecode, and with it hidden (a pycache prefix in /tmp: every module compiled again).
  const timing = await run(
    [
      "t() { s=$(date +%s%N); python3 -c 'import numpy' || exit 1; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }",
      'a=$(t); b=$(t)',
      'export PYTHONPYCACHEPREFIX=$(mktemp -d)',
      'c=$(t); rm -rf "$PYTHONPYCACHEPREFIX"; export PYTHONPYCACHEPREFIX=$(mktemp -d); d=$(t)',
      'echo $a $b $c $d',
    ].join('\n'),
  );
  t.is(timing.code, 0, timing.stderr);
  const [a, b, c, d] = timing.stdout.trim().split(' ').map(Number);
  const withPyc = Math.min(a!, b!);
  const without = Math.min(c!, d!);
  t.log(`python3 -c 'import numpy': ${withPyc} ms with the image's bytecode, ${without} ms compiling from source`);
  t.true(withPyc < without, `${withPyc} ms with bytecode, ${without} ms without`);

  // A bump: python3-six rebuilt with one more module. Only its bytecode part is made again (no other tool runs),
  // and the image equals the one realised from nothing (an empty cache C) for the bumped lock.
  const lockPath = join(dir, 'strata.lock');
  const locked = parseLock(readFileSync(lockPath, 'utf8'));
  const six = locked.packages.find((p) => p.name === 'python3-six')!;
  const storeA = cacheA.STRATA_CACHE_DIR;
  const work = join(dir, 'bump');
  mkdirSync(work);
  execFileSync('dpkg-deb', ['-R', join(storeA, 'blobs', 'sha256', six.sha256), join(work, 'x')]);
  writeFileSync(join(work, 'x/usr/lib/python3/dist-packages/strata_bumped.py'), 'BUMPED = True\n');
  execFileSync('dpkg-deb', ['--root-owner-group', '-b', join(work, 'x'), join(work, 'bumped.deb')], { stdio: 'ignore' });
  const bytes = readFileSync(join(work, 'bumped.deb'));
  const sha = createHash('sha256').update(bytes).digest('hex');
  const cacheC = { STRATA_CACHE_DIR: join(dir, 'cache-c') };
  for (const c of [storeA, cacheC.STRATA_CACHE_DIR]) {
    mkdirSync(join(c, 'blobs', 'sha256'), { recursive: true });
    copyFileSync(join(work, 'bumped.deb'), join(c, 'blobs', 'sha256', sha));
  }
  writeFileSync(lockPath, serializeLock(rehashLock({ ...locked, packages: locked.packages.map((p) => (p === six ? { ...p, sha256: sha, size: bytes.length } : p)) })));
  started = Date.now();
  const bumped = await strata(['realise', '--locked'], cacheA);
  t.is(bumped.code, 0, bumped.stderr);
  t.log(`realise after the bump (cache A): ${((Date.now() - started) / 1000).toFixed(1)} s; ${bumped.stderr.split('\n').filter((l) => /^made /.test(l)).join('; ')}`);
  t.regex(bumped.stderr, /^made python-bytecode of one package \(python3-six\) in /m, "the bumped package's bytecode part is made again");
  t.notRegex(bumped.stderr, /^made ca-certificates/m, 'the tools that read none of its files do not run');
  t.is(bumped.stderr.match(/^made /gm)?.length, 1, bumped.stderr);
  t.not(digestOf(bumped.stdout), digest);
  const fromNothing = await strata(['realise', '--locked'], cacheC);
  t.is(fromNothing.code, 0, fromNothing.stderr);
  t.regex(fromNothing.stderr, /^made python-bytecode of \d+ packages /m, 'cache C made every part');
  t.is(digestOf(fromNothing.stdout), digestOf(bumped.stdout), 'the parts made after the bump give the image made from nothing');
  // run --frozen runs no tool: with the parts gone from the store (and the root filesystem realise made, which
  // links their files), the first run is refused with one clear error.
  for (const ns of ['generated', 'rootfs']) rmSync(join(cacheC.STRATA_CACHE_DIR, ns), { recursive: true, force: true });
  const frozen = await strata(['run', '--backend', 'sandbox', '--frozen', '--', 'true'], cacheC);
  t.not(frozen.code, 0, frozen.stderr);
  t.regex(frozen.stderr, /the store lacks what ca-certificates, ld\.so\.cache, python-bytecode make for this environment and --frozen forbids running them/);
  // strata verify re-hashes the stored parts: a damaged one is named and dropped, and the next realise makes it again.
  const genA = join(storeA, 'generated');
  const parts = readdirSync(genA).filter((k) => /^[0-9a-f]{64}$/.test(k) && (JSON.parse(readFileSync(join(genA, k, 'meta.json'), 'utf8')) as { steps: string[] }).steps.join(',') === 'ca-certificates,ld.so.cache');
  t.true(parts.length > 0);
  for (const k of parts) {
    chmodSync(join(genA, k, 'out/etc/ld.so.cache'), 0o644);
    appendFileSync(join(genA, k, 'out/etc/ld.so.cache'), 'x');
  }
  const verified = await strata(['verify'], cacheA);
  for (const k of parts) t.regex(verified.stdout, new RegExp(`damaged: generated files ${k}: etc/ld\\.so\\.cache has other content than recorded; dropped`), verified.stdout);
  t.regex(verified.stdout, /^ {2}generated +\d+ parts, \d+ files re-hashed$/m);
  t.regex(verified.stdout, /^damaged: root filesystem .*\/etc\/ld\.so\.cache is a file of the damaged generated files /m, 'the run tree that links it goes too');
  const healed = await strata(['realise', '--locked'], cacheA);
  t.is(healed.code, 0, healed.stderr);
  t.regex(healed.stderr, /^made ca-certificates, ld\.so\.cache in /m);
  t.is(digestOf(healed.stdout), digestOf(bumped.stdout));
  const moduleRun = await strata(['run', '--backend', 'sandbox', '--locked', '--', 'python3', '-v', '-c', 'import strata_bumped'], cacheA);
  t.is(moduleRun.code, 0, moduleRun.stderr);
  t.regex(moduleRun.stderr, /code object from .*dist-packages\/__pycache__\/strata_bumped\.cpython-3\d+\.pyc/);
});

test('trixie fontconfig, shared-mime-info, icon themes, systemd and dbus: the trigger caches, accounts and overrides; one digest from two caches', async (t) => {
  const m = await debianMirrorOrSkip(t);
  if (!m) return;
  const dir = mkdtempSync(join(tmpdir(), 'strata-generated-caches-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const roots = ['fontconfig', 'fonts-dejavu-core', 'shared-mime-info', 'adwaita-icon-theme', 'libgdk-pixbuf-2.0-0', 'systemd', 'dbus'];
  writeFileSync(join(dir, 'strata.toml'), `[project]\nname = "generated-caches"\narch = "amd64"\n\n[channels.stable]\nurl = "${m.url}"\nsuite = "trixie"\ncomponents = ["main"]\n\n[packages]\n${roots.map((r) => `"${r}" = "*"`).join('\n')}\n`);
  const cacheA = { STRATA_CACHE_DIR: process.env.STRATA_TEST_DEBIAN_CACHE ?? join(dir, 'cache-a') };
  const cacheB = { STRATA_CACHE_DIR: join(dir, 'cache-b') };
  const strata = (args: string[], env: NodeJS.ProcessEnv) => runCli(args, { cwd: dir, env, timeoutMs: 540_000 });
  const lock = await strata(['lock'], cacheA);
  t.is(lock.code, 0, lock.stderr);
  const first = await strata(['realise', '--locked'], cacheA);
  t.is(first.code, 0, first.stderr);
  const other = await strata(['realise', '--locked'], cacheB);
  t.is(other.code, 0, other.stderr);
  t.regex(other.stderr, /^made .*mime-database, icon-caches, fontconfig-cache, systemd-catalog in /m, 'cache B ran the tools itself');
  t.is(digestOf(other.stdout), digestOf(first.stdout), 'two caches, one image digest');

  const run = await strata(
    [
      'run', '--backend', 'sandbox', '--locked', '--', 'sh', '-c',
      [
        'getent passwd messagebus | cut -d: -f1,6,7',
        'stat -c "%a %U:%G" /usr/lib/dbus-1.0/dbus-daemon-launch-helper',
        'cat /var/lib/dpkg/statoverride',
        'grep -c "^\\"/usr/lib/x86_64-linux-gnu/gdk-pixbuf-2.0/2.10.0/loaders/libpixbufloader-" /usr/lib/x86_64-linux-gnu/gdk-pixbuf-2.0/2.10.0/loaders.cache',
        'test -s /usr/share/mime/mime.cache && grep -q ":text/plain:\\*\\.txt$" /usr/share/mime/globs2 && echo mime',
        'test -s /usr/share/icons/Adwaita/icon-theme.cache && echo icons',
        'test -s /var/lib/systemd/catalog/database && echo catalog',
        // fontconfig takes the image's cache as valid: the directories' times are the ones it recorded.
        'fc-cache -s -v 2>&1 | grep -c "skipping, existing cache is valid"',
        'fc-list : family | grep -c DejaVu',
      ].join('; '),
    ],
    cacheA,
  );
  t.is(run.code, 0, run.stderr);
  const [user, helper, override, loaders, mime, icons, catalog, valid, dejavu] = run.stdout.trim().split('\n');
  t.is(user, 'messagebus:/nonexistent:/usr/sbin/nologin');
  t.is(helper, '4754 root:messagebus');
  t.is(override, 'root messagebus 4754 /usr/lib/dbus-1.0/dbus-daemon-launch-helper');
  t.true(Number(loaders) > 0, loaders);
  t.deepEqual([mime, icons, catalog], ['mime', 'icons', 'catalog']);
  t.true(Number(valid) > 0, `fc-cache found no valid cache: ${valid}`);
  t.true(Number(dejavu) > 0, dejavu);
});
