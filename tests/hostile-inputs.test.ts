/**
 * Hostile and broken inputs, end to end: the real CLI against the real signed fixture archive on loopback (or a
 * loopback server that misbehaves on purpose). Each case checks what the user sees: the exit code, one message
 * naming the thing, no stack trace, and nothing left behind.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { StrataError } from '../errors.ts';
import { parseEnvAssignments } from '../manifest/manifest.ts';
import { openStore } from '../store/store.ts';
import { parseLock, serializeLock } from '../lock/lockfile.ts';
import { rehashLock } from '../lock/verify.ts';
import { closeSharedMirror, manifestFor, project, runCli, type CliResult, type Project } from './helpers/project.ts';
import { serveMirror, standardMirror, type FixtureMirror } from './helpers/mirror.ts';

test.after.always(closeSharedMirror);

/** The user-visible shape of every refusal here: an `error:` line, and no stack trace or internal error. */
function assertCleanRefusal(t: { notRegex(s: string, r: RegExp, m?: string): void; regex(s: string, r: RegExp, m?: string): void }, r: CliResult): void {
  t.regex(r.stderr, /^error: /m);
  t.notRegex(r.stderr, /internal error|^\s+at .*[.:]\d+/m, 'no stack trace');
}

/** Temp downloads and scratch dirs left in the store by a failed run (there must be none). */
function leftovers(cache: string): string[] {
  const dir = join(cache, 'tmp');
  return existsSync(dir) ? readdirSync(dir) : [];
}

function blobExists(cache: string, sha256: string): boolean {
  return existsSync(join(cache, 'blobs', 'sha256', sha256));
}

/** A private copy of the standard archive (its own files and server), for tests that change what is served. */
async function ownMirror(t: { teardown(fn: () => Promise<void> | void): void }): Promise<{ mirror: FixtureMirror; url: string; tamper(path: string, b: Buffer | null): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'strata-hostile-mirror-'));
  const mirror = await standardMirror(dir);
  const served = await serveMirror(mirror.root);
  t.teardown(async () => {
    await served.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { mirror, url: served.url, tamper: (p, b) => served.tamper(p, b) };
}

function oneChannel(url: string, keyring: string, suite: string, extra = '', packages = 'busybox-fixture = "*"'): string {
  return `[project]\nname = "fixture"\narch = "amd64"\n\n[channels.main]\nurl = "${url}"\nsuite = "${suite}"\ncomponents = ["main"]\nsigned-by = "${keyring}"\n${extra}\n[packages]\n${packages}\n`;
}

// ---------------------------------------------------------------------------------------------------------------
// Item 2: a substituted suite

test('a mirror serving another suite\'s validly signed Release under dists/<suite>/ is refused, naming both', async (t) => {
  const p = await project();
  const own = await ownMirror(t);
  // dists/current now holds stable's signed InRelease and its indexes: every signature and hash checks out.
  rmSync(join(own.mirror.root, 'dists', 'current'));
  symlinkSync('strata-stable', join(own.mirror.root, 'dists', 'current'));

  p.writeManifest(oneChannel(own.url, own.mirror.keyring, 'current'));
  const r = await p.strata(['lock']);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /error: channel "main": dists\/current\/InRelease is the Release of Suite "stable", Codename "strata-stable", not of "current"/);
  t.regex(r.stderr, /substituted or downgraded suite/);
  assertCleanRefusal(t, r);
  t.false(existsSync(join(p.dir, 'strata.lock')), 'no lock written');

  // trusted = true skips the signature, not the question of which suite this is.
  p.writeManifest(oneChannel(own.url, own.mirror.keyring, 'current', 'trusted = true\n'));
  const trusted = await p.strata(['lock']);
  t.is(trusted.code, 1, trusted.stderr);
  t.regex(trusted.stderr, /is the Release of Suite "stable", Codename "strata-stable", not of "current"/);
  t.false(existsSync(join(p.dir, 'strata.lock')));

  // Asking for what the Release is, by Suite or by Codename, is accepted; the lock keeps what was asked and the
  // Release's Codename, so `suite` differs from `codename` exactly when the Suite matched.
  for (const [suite, codename] of [['stable', 'strata-stable'], ['strata-stable', 'strata-stable']] as const) {
    p.writeManifest(oneChannel(own.url, own.mirror.keyring, suite));
    const ok = await p.strata(['lock']);
    t.is(ok.code, 0, ok.stderr);
    const lock = parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8'));
    t.like(lock.channels[0], { suite, codename });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Item 6: a trickling mirror

interface Dir {
  url: string;
  requests: string[];
  close(): Promise<void>;
}

/**
 * Serves the archive at `root` like a mirror, except that paths for which `trickle` is true get headers announcing
 * the file's true size (a megabyte when there is no file) and then one byte every 100 ms.
 */
async function serveTrickling(root: string, trickle: (path: string) => boolean): Promise<Dir> {
  const base = resolve(root);
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://fixture').pathname);
    requests.push(path);
    void (async () => {
      const file = resolve(base, `.${path}`);
      const st = file.startsWith(base + sep) ? await stat(file).catch(() => undefined) : undefined;
      if (trickle(path)) {
        res.writeHead(200, { 'content-length': st?.isFile() ? st.size : 1 << 20 });
        const timer = setInterval(() => res.write('x'), 100);
        res.on('close', () => clearInterval(timer));
        return;
      }
      if (!st?.isFile()) return void res.writeHead(404, { 'content-length': 0 }).end();
      const body = await readFile(file);
      res.writeHead(200, { 'content-length': body.length }).end(body);
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A short low-speed window for the CLI, so that four attempts take seconds, not minutes. */
const lowSpeed = { STRATA_HTTP_LOW_SPEED_LIMIT: '100', STRATA_HTTP_LOW_SPEED_TIME: '1' };

test('a mirror trickling a byte every 100 ms is cut off by the low-speed limit: lock fails in seconds, retried, with a message', async (t) => {
  const p = await project();
  const srv = await serveTrickling(p.mirror.root, () => true);
  t.teardown(() => srv.close());
  p.writeManifest(oneChannel(srv.url, p.mirror.keyring, 'stable'));
  const started = Date.now();
  // The idle timeout (30 s) never fires on a trickle; without the low-speed check this would run until killed.
  const r = await p.strata(['lock'], { env: lowSpeed, timeoutMs: 60_000 });
  const took = Date.now() - started;
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /error: could not download dists\/stable\/InRelease: .*: slower than 100 bytes\/s \(\d+ bytes in the last 1\.\d s\)/);
  assertCleanRefusal(t, r);
  t.is(srv.requests.filter((x) => x === '/dists/stable/InRelease').length, 4, 'the first attempt and 3 retries');
  t.true(took < 30_000, `took ${took} ms`);
  t.false(existsSync(join(p.dir, 'strata.lock')));
});

test('a .deb trickled by the mirror fails realise after the retries, with nothing left in the store', async (t) => {
  const p = await project();
  const srv = await serveTrickling(p.mirror.root, (path) => path.includes('/busybox-fixture_'));
  t.teardown(() => srv.close());
  p.writeManifest(oneChannel(srv.url, p.mirror.keyring, 'stable'));
  t.is((await p.strata(['lock'])).code, 0);
  const r = await p.strata(['realise', '--locked', '--oci', join(p.dir, 'oci')], { env: lowSpeed, timeoutMs: 60_000 });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /error: could not download busybox-fixture 1\.35\.0-4: .*slower than 100 bytes\/s/);
  assertCleanRefusal(t, r);
  t.deepEqual(leftovers(p.cache), []);
  t.false(blobExists(p.cache, p.mirror.debs.find((d) => d.name === 'busybox-fixture')!.sha256));
  t.false(existsSync(join(p.dir, 'oci')));
});

test('headers trickled a byte at a time are cut off too (the check starts at connect)', async (t) => {
  const server = net.createServer((sock) => {
    sock.write('HTTP/1.1 200 OK\r\nX-Pad: ');
    const timer = setInterval(() => sock.write('a'), 100);
    sock.on('close', () => clearInterval(timer));
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const root = mkdtempSync(join(tmpdir(), 'strata-hostile-store-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const store = await openStore(root, { retries: 0, lowSpeedLimit: 100, lowSpeedTimeMs: 500 });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`;
  const err = await t.throwsAsync(store.fetch({ urls: [url], sha256: 'a'.repeat(64), label: 'x 1.0' }), { instanceOf: StrataError });
  t.is(err.code, 'E_FETCH');
  t.regex(err.message, /could not download x 1\.0: .*slower than 100 bytes\/s/);
  t.deepEqual(readdirSync(join(root, 'tmp')), []);
});

test('a bad low-speed override is a usage error, not a crash', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'busybox-fixture = "*"'));
  const r = await p.strata(['lock'], { env: { STRATA_HTTP_LOW_SPEED_TIME: 'soon' } });
  t.is(r.code, 64, r.stderr);
  t.regex(r.stderr, /error: STRATA_HTTP_LOW_SPEED_TIME="soon" is not a number/);
  assertCleanRefusal(t, r);
});

// ---------------------------------------------------------------------------------------------------------------
// Item 7: bounded reads of the manifest, the keyring, the lockfile

function fifo(path: string): string {
  execFileSync('mkfifo', [path]);
  return path;
}

test('lock -m /dev/zero and a FIFO manifest are refused at once', async (t) => {
  const p = await project();
  const zero = await p.strata(['lock', '-m', '/dev/zero'], { timeoutMs: 20_000 });
  t.is(zero.code, 1, zero.stderr);
  t.regex(zero.stderr, /error: cannot read \/dev\/zero: it is a character device, not a regular file/);
  assertCleanRefusal(t, zero);

  const pipe = fifo(join(p.dir, 'strata.toml'));
  const r = await p.strata(['lock'], { timeoutMs: 20_000 });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`error: cannot read ${pipe.replaceAll('/', '\\/')}: it is a FIFO \\(named pipe\\), not a regular file`));
  assertCleanRefusal(t, r);
  t.false(existsSync(join(p.dir, 'strata.lock')));
});

test('a manifest over the size limit is refused, naming the limit', async (t) => {
  const p = await project();
  const big = join(p.dir, 'big.toml');
  writeFileSync(big, '');
  truncateSync(big, (1 << 20) + 1); // sparse: costs no disk
  const r = await p.strata(['lock', '-m', big], { timeoutMs: 20_000 });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /error: cannot read .*big\.toml: it is 1048577 bytes, over the limit of 1 MiB/);
  assertCleanRefusal(t, r);
});

test('signed-by = "/dev/zero", a FIFO or an oversized keyring is refused at once, naming it', async (t) => {
  const p = await project();
  const sparse = join(p.dir, 'huge.gpg');
  writeFileSync(sparse, '');
  truncateSync(sparse, 64 << 20);
  const cases: [string, RegExp][] = [
    ['/dev/zero', /error: cannot read keyring \/dev\/zero: it is a character device, not a regular file/],
    [fifo(join(p.dir, 'keyring.fifo')), /error: cannot read keyring .*keyring\.fifo: it is a FIFO \(named pipe\), not a regular file/],
    [sparse, /error: cannot read keyring .*huge\.gpg: it is 67108864 bytes, over the limit of 8 MiB/],
  ];
  for (const [keyring, message] of cases) {
    p.writeManifest(oneChannel(p.served.url, keyring, 'stable'));
    const r = await p.strata(['lock'], { timeoutMs: 20_000 });
    t.is(r.code, 1, `${keyring}: ${r.stderr}`);
    t.regex(r.stderr, message);
    assertCleanRefusal(t, r);
    t.false(existsSync(join(p.dir, 'strata.lock')));
  }
});

test('a FIFO or /dev/zero as strata.lock is refused by lock --check and realise, not read forever', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'busybox-fixture = "*"'));
  const lockPath = fifo(join(p.dir, 'strata.lock'));
  for (const args of [['lock', '--check'], ['realise', '--locked']]) {
    const r = await p.strata(args, { timeoutMs: 20_000 });
    t.is(r.code, 3, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, new RegExp(`error: cannot read ${lockPath.replaceAll('/', '\\/')}: it is a FIFO \\(named pipe\\), not a regular file`));
    assertCleanRefusal(t, r);
  }
  rmSync(lockPath);
  symlinkSync('/dev/zero', lockPath);
  const zero = await p.strata(['lock', '--check'], { timeoutMs: 20_000 });
  t.is(zero.code, 3, zero.stderr);
  t.regex(zero.stderr, /strata\.lock: it is a character device, not a regular file/);
});

// ---------------------------------------------------------------------------------------------------------------
// Item 12: messages that name the right cause

test('a hand-edited package hash in strata.lock (closures recomputed to match) is reported as a mismatch with the lock, not blamed on the mirror', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'busybox-fixture = "*"'));
  t.is((await p.strata(['lock'])).code, 0);
  const lockPath = join(p.dir, 'strata.lock');
  const real = p.mirror.debs.find((d) => d.name === 'busybox-fixture')!.sha256;
  const edited = createHash('sha256').update('edited by hand').digest('hex');
  // A careless edit is caught when the lock is read (its closures no longer match); a consistent one reaches the fetch.
  writeFileSync(lockPath, readFileSync(lockPath, 'utf8').replace(real, edited));
  const careless = await p.strata(['realise', '--locked']);
  t.is(careless.code, 3, careless.stderr);
  t.regex(careless.stderr, /error: strata\.lock: package busybox-fixture: recorded closure .*: the lock was edited or damaged/);
  writeFileSync(lockPath, readFileSync(lockPath, 'utf8').replace(edited, real));
  const lock = parseLock(readFileSync(lockPath, 'utf8'));
  writeFileSync(lockPath, serializeLock(rehashLock({ ...lock, packages: lock.packages.map((x) => (x.name === 'busybox-fixture' ? { ...x, sha256: edited } : x)) })));
  const r = await p.strata(['realise', '--locked', '--oci', join(p.dir, 'oci')]);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, new RegExp(`error: busybox-fixture 1\\.35\\.0-4: the bytes from \\S+ do not match the sha256 strata\\.lock records for it: the lock has ${edited}, the mirror sent ${real}`));
  t.regex(r.stderr, /hint: either strata\.lock was edited .*`strata lock`.*or the mirror now serves other bytes/);
  t.notRegex(r.stderr, /signed index does not vouch/);
  assertCleanRefusal(t, r);
  t.deepEqual(leftovers(p.cache), []);
  t.false(blobExists(p.cache, edited));
  t.false(blobExists(p.cache, real));
  t.false(existsSync(join(p.dir, 'oci')));
});

test('a locked version the mirror has dropped (404) says so and suggests re-locking or a snapshot, not "run again"', async (t) => {
  const p = await project();
  const own = await ownMirror(t);
  p.writeManifest(oneChannel(own.url, own.mirror.keyring, 'stable'));
  t.is((await p.strata(['lock'])).code, 0);
  rmSync(own.mirror.debPath('busybox-fixture', '1.35.0-4'));
  const r = await p.strata(['realise', '--locked', '--oci', join(p.dir, 'oci')]);
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /error: could not download busybox-fixture 1\.35\.0-4: the mirror no longer has it \(.*busybox-fixture_1\.35\.0-4_amd64\.deb: HTTP 404\)/);
  t.regex(r.stderr, /hint: .*run `strata lock` to lock the versions the mirror has now, or point the channel's url at a snapshot archive/);
  t.notRegex(r.stderr, /run the command again/);
  assertCleanRefusal(t, r);
  t.deepEqual(leftovers(p.cache), []);
  t.false(existsSync(join(p.dir, 'oci')));
});

test('a truncated or altered InRelease is reported as damaged, never with a hint to set trusted = true', async (t) => {
  const p = await project();
  const own = await ownMirror(t);
  const path = 'dists/stable/InRelease';
  const real = readFileSync(join(own.mirror.root, path));
  p.writeManifest(oneChannel(own.url, own.mirror.keyring, 'stable'));

  own.tamper(path, real.subarray(0, real.length >> 1));
  const cut = await p.strata(['lock']);
  t.is(cut.code, 1, cut.stderr);
  t.regex(cut.stderr, /error: channel "main": the InRelease of suite "stable" is damaged: it is not a complete OpenPGP file/);
  t.regex(cut.stderr, /hint: the mirror served an incomplete or corrupt file/);
  t.notRegex(cut.stderr, /trusted/);
  assertCleanRefusal(t, cut);

  own.tamper(path, Buffer.from(real.toString('utf8').replace(/^Date: .*$/m, 'Date: Sun, 01 Jun 2025 12:00:00 UTC')));
  const altered = await p.strata(['lock']);
  t.is(altered.code, 1, altered.stderr);
  t.regex(altered.stderr, /error: channel "main": the InRelease of suite "stable" does not match its signature/);
  t.notRegex(altered.stderr, /trusted/);
  assertCleanRefusal(t, altered);

  // A well-formed file signed by a key the keyring lacks is the one case where the keyring, and trusted, are the question.
  own.tamper(path, null);
  p.writeManifest(oneChannel(own.url, own.mirror.otherKeyring, 'stable'));
  const other = await p.strata(['lock']);
  t.is(other.code, 1, other.stderr);
  t.regex(other.stderr, /is not signed by a key in .*other\.gpg/);

  // The same for a suite served as Release + Release.gpg, with the signature cut short.
  p.writeManifest(oneChannel(own.url, own.mirror.keyring, 'stable'));
  rmSync(join(own.mirror.root, 'dists', 'strata-stable', 'InRelease'));
  const gpg = readFileSync(join(own.mirror.root, 'dists/stable/Release.gpg'));
  own.tamper('dists/stable/Release.gpg', gpg.subarray(0, gpg.length >> 1));
  const detached = await p.strata(['lock']);
  t.is(detached.code, 1, detached.stderr);
  t.regex(detached.stderr, /error: channel "main": the Release of suite "stable" is damaged: its Release\.gpg is not a complete OpenPGP file/);
  t.notRegex(detached.stderr, /trusted/);
  assertCleanRefusal(t, detached);
  t.false(existsSync(join(p.dir, 'strata.lock')));
});

test('run -e refuses what the manifest\'s [env] refuses, naming the entry, before any work', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'busybox-fixture = "*"'));
  t.is((await p.strata(['lock'])).code, 0);
  // --frozen with nothing realised: a valid -e gets as far as "not realised yet" (exit 1), a bad one stops before.
  const base = ['run', '--frozen', '--backend', 'sandbox'];
  const good = await p.strata([...base, '-e', 'A_B=1 2', '--', 'true']);
  t.is(good.code, 1, good.stderr);
  t.regex(good.stderr, /not realised yet/);
  for (const [entry, message] of [
    ['A B=1', /error: --env "A B=1": "A B" is not a valid environment variable name/],
    ['1A=x', /error: --env "1A=x": "1A" is not a valid environment variable name/],
    ['=x', /error: --env "=x": "" is not a valid environment variable name/],
    ['NOVALUE', /error: --env takes KEY=VALUE, not "NOVALUE"/],
  ] as const) {
    const r = await p.strata([...base, '-e', entry, '--', 'true']);
    t.is(r.code, 64, `${entry}: ${r.stderr}`);
    t.regex(r.stderr, message);
    assertCleanRefusal(t, r);
  }
});

test('parseEnvAssignments keeps values whole and refuses NUL', (t) => {
  t.deepEqual(parseEnvAssignments(['A=1', '_x=a=b', 'EMPTY=']), { A: '1', _x: 'a=b', EMPTY: '' });
  const err = t.throws(() => parseEnvAssignments(['A=x\0y']), { instanceOf: StrataError });
  t.is(err.code, 'E_USAGE');
  t.regex(err.message, /NUL/);
});

test('empty or NUL entrypoint and cmd in [image] are refused with strata.toml:LINE:COL', async (t) => {
  const p = await project();
  const body = (image: string) => manifestFor(p, 'busybox-fixture = "*"', `\n[image]\n${image}\n`);
  const lineOf = (text: string, needle: string) => text.split('\n').findIndex((l) => l.startsWith(needle)) + 1;
  const cases: [string, string, RegExp][] = [
    ['entrypoint = []', 'entrypoint', /image\.entrypoint is empty/],
    ['entrypoint = [""]', 'entrypoint', /image\.entrypoint starts with an empty string: the program to run has no name/],
    ['entrypoint = ""', 'entrypoint', /image\.entrypoint starts with an empty string/],
    ['entrypoint = ["python3\\u0000-i"]', 'entrypoint', /image\.entrypoint\[0\] contains a NUL character/],
    ['cmd = []', 'cmd', /image\.cmd is empty/],
    ['cmd = ["", "-i"]', 'cmd', /image\.cmd starts with an empty string/],
    ['entrypoint = ["sh"]\ncmd = ["-c", "a\\u0000b"]', 'cmd', /image\.cmd\[1\] contains a NUL character/],
  ];
  for (const [image, key, message] of cases) {
    const text = body(image);
    p.writeManifest(text);
    const r = await p.strata(['lock']);
    t.is(r.code, 1, `${image}: ${r.stderr}`);
    t.regex(r.stderr, new RegExp(`error: ${join(p.dir, 'strata.toml').replaceAll('/', '\\/')}:${lineOf(text, `${key} =`)}:1: ${message.source}`), image);
    assertCleanRefusal(t, r);
    t.false(existsSync(join(p.dir, 'strata.lock')));
  }
  // An empty argument after the program is an argument like any other.
  p.writeManifest(body('entrypoint = ["sh", "-c"]\ncmd = [""]'));
  const ok = await p.strata(['lock']);
  t.is(ok.code, 0, ok.stderr);
  t.deepEqual(parseLock(readFileSync(join(p.dir, 'strata.lock'), 'utf8')).image.cmd, ['']);
});

test('a NUL in an [env] value is refused with strata.toml:LINE:COL', async (t) => {
  const p: Project = await project();
  const text = manifestFor(p, 'busybox-fixture = "*"', '\n[env]\nGREETING = "a\\u0000b"\n');
  p.writeManifest(text);
  const r = await p.strata(['lock']);
  t.is(r.code, 1, r.stderr);
  const line = text.split('\n').findIndex((l) => l.startsWith('GREETING')) + 1;
  t.regex(r.stderr, new RegExp(`strata\\.toml:${line}:1: env\\.GREETING contains a NUL character`));
  assertCleanRefusal(t, r);
});

test('a store another user made, used by an ordinary user, is one message naming the path and the user, not an internal error', async (t) => {
  const p = await project();
  p.writeManifest(manifestFor(p, 'busybox-fixture = "*"'));
  t.is((await p.strata(['lock'])).code, 0);
  // The store (made by root above) and the project readable by all, writable by root alone, as a volume a
  // container's root filled; `nobody` then runs strata over it.
  execFileSync('chmod', ['-R', 'go+rX,go-w', p.dir]);
  const r = await runCli(['realise', '--locked'], { cwd: p.dir, env: { STRATA_CACHE_DIR: p.cache, HOME: '/nonexistent' }, user: 'nobody' });
  t.is(r.code, 1, r.stderr);
  assertCleanRefusal(t, r);
  t.regex(r.stderr, new RegExp(`^error: ${p.cache.replace(/[.]/g, '\\.')}/\\S+ is not (writable|accessible) to uid 65534 \\(\\w+: EACCES\\)$`, 'm'));
  t.regex(r.stderr, /^hint: the store \(STRATA_CACHE_DIR\) and the project directory must belong to the user strata runs as/m);
});
