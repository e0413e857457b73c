/**
 * The fixture archive is a real Debian archive: gpgv verifies its signatures, apt-get reads it over HTTP
 * and plans installs from it, dpkg-deb reads its packages, and its indexes vouch for its pool.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile, readlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { buildMirror, serveMirror, standardMirror } from './helpers/mirror.ts';
import type { FixtureMirror, FixtureSuite } from './helpers/mirror.ts';

const exec = promisify(execFile);

async function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(cmd, args, { ...opts, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function paragraphs(text: string): Map<string, string>[] {
  return text
    .split(/\n\n+/)
    .filter((p) => p.trim() !== '')
    .map((p) => {
      const m = new Map<string, string>();
      let last = '';
      for (const line of p.split('\n')) {
        if (line.startsWith(' ')) m.set(last, `${m.get(last)}\n${line.slice(1)}`);
        else {
          const i = line.indexOf(':');
          last = line.slice(0, i);
          m.set(last, line.slice(i + 1).trim());
        }
      }
      return m;
    });
}

const scratch = await mkdtemp(join(tmpdir(), 'strata-mirror-test-'));
test.after.always(() => rm(scratch, { recursive: true, force: true }));

let standard: Promise<FixtureMirror> | undefined;
const mirror = () => (standard ??= standardMirror(join(scratch, 'standard')));

test('gpgv verifies InRelease and Release.gpg with the keyring, and refuses the other key', async (t) => {
  const m = await mirror();
  for (const codename of ['strata-stable', 'strata-current']) {
    const dist = join(m.root, 'dists', codename);
    const good = await sh('gpgv', ['--keyring', m.keyring, join(dist, 'InRelease')]);
    t.is(good.code, 0, good.stderr);
    const detached = await sh('gpgv', ['--keyring', m.keyring, join(dist, 'Release.gpg'), join(dist, 'Release')]);
    t.is(detached.code, 0, detached.stderr);
    const bad = await sh('gpgv', ['--keyring', m.otherKeyring, join(dist, 'InRelease')]);
    t.not(bad.code, 0);
    t.regex(bad.stderr, /No public key|Can't check signature/);
  }
  t.true(m.armoredKey.startsWith('-----BEGIN PGP PUBLIC KEY BLOCK-----'));
  // The armored key is the same key as the binary keyring.
  const dearmored = await new Promise<Buffer>((ok, fail) => {
    const child = execFile('gpg', ['--dearmor'], { encoding: 'buffer' }, (err, out) => (err ? fail(err) : ok(out)));
    child.stdin!.end(m.armoredKey);
  });
  t.deepEqual(dearmored, await readFile(m.keyring));
});

test('apt-get updates from the served archive (verifying the signature) and plans installs', async (t) => {
  const m = await mirror();
  const served = await serveMirror(m.root);
  t.teardown(() => served.close());
  const dir = join(scratch, 'apt');
  for (const d of ['lists/partial', 'cache/archives/partial', 'etc']) await mkdir(join(dir, d), { recursive: true });
  await writeFile(join(dir, 'status'), '');
  const apt = async (sources: string, args: string[]) => {
    await writeFile(join(dir, 'etc/sources.list'), sources);
    return sh('apt-get', [
      '-o', `Dir::State::status=${join(dir, 'status')}`,
      '-o', `Dir::State::Lists=${join(dir, 'lists')}`,
      '-o', `Dir::State::extended_states=${join(dir, 'extended_states')}`,
      '-o', `Dir::Cache=${join(dir, 'cache')}`,
      '-o', `Dir::Etc::SourceList=${join(dir, 'etc/sources.list')}`,
      '-o', 'Dir::Etc::SourceParts=/dev/null',
      '-o', 'Dir::Etc::Parts=/dev/null',
      '-o', 'Dir::Etc::Preferences=/dev/null',
      '-o', 'Dir::Etc::PreferencesParts=/dev/null',
      '-o', 'Dir::Etc::Trusted=/dev/null',
      '-o', 'Dir::Etc::TrustedParts=/dev/null',
      '-o', 'APT::Architecture=amd64',
      '-o', 'APT::Architectures=amd64',
      '-o', 'APT::Sandbox::User=root',
      '-o', 'Acquire::Languages=none',
      '-o', 'Debug::NoLocking=1',
      ...args,
    ]);
  };
  const stableSources = `deb [signed-by=${m.keyring}] ${served.url} strata-stable main contrib\n`;

  const update = await apt(stableSources, ['update']);
  t.is(update.code, 0, update.stdout + update.stderr);
  t.notRegex(update.stdout + update.stderr, /^(W|E):/m);
  t.true(served.requests.includes('/dists/strata-stable/InRelease'));
  t.true(served.requests.includes('/dists/strata-stable/main/binary-amd64/Packages.xz'));

  const plan = await apt(stableSources, ['install', '-s', 'busybox-fixture']);
  t.is(plan.code, 0, plan.stderr);
  t.regex(plan.stdout, /^Inst busybox-fixture \(1\.35\.0-4 /m);

  // The scenario's stories are installable as apt sees them.
  const inst = (out: string) => [...out.matchAll(/^Inst (\S+) \((\S+)/gm)].map((x) => `${x[1]} ${x[2]}`).sort();
  const stories: [string[], RegExp[]][] = [
    [['mailer'], [/^mailer 1\.0-1$/, /^(exim-lite|posty) /]],
    [['downloader'], [/^wget-lite 1\.21\.3-1$/]],
    [['imageviewer'], [/^libjpeg-turbo 1:2\.1\.5-2$/]],
    [['cuda-user'], [/^libcuda1 550\.54\.14-1$/, /^libcudart12 12\.4\.127-1$/, /^nvidia-kernel-support 550\.54\.14-1$/]],
    [['cyc-user'], [/^cyc-a 1\.0-1$/, /^cyc-b 1\.0-1$/]],
    [['fixture-tool'], [/^python3 3\.11\.2-1$/, /^fixture-data 1\.0-1$/]],
    [['python3-scipy'], [/^python3-numpy 1:1\.24\.2-1$/, /^(libblas3|libopenblas0) /]],
    [['libc6-dev', 'zlib1g', 'toolkit-plugin', 'pkg-zstd', 'pkg-gzip', 'pkg-none', 'base-files'], [/^libc6 2\.36-9$/]],
  ];
  for (const [pkgs, wants] of stories) {
    const r = await apt(stableSources, ['install', '-s', ...pkgs]);
    t.is(r.code, 0, `${pkgs.join(' ')}: ${r.stdout}${r.stderr}`);
    const got = inst(r.stdout);
    for (const w of wants) t.true(got.some((g) => w.test(g)), `${pkgs.join(' ')}: ${w} not in ${got.join(', ')}`);
  }
  const both = await apt(stableSources, ['install', '-s', 'vi-lite', 'vi-heavy']);
  t.not(both.code, 0, 'vi-lite and vi-heavy conflict');
  const mtas = await apt(stableSources, ['install', '-s', 'exim-lite', 'posty']);
  t.not(mtas.code, 0, 'two MTAs conflict through mail-transport-agent');

  // current, through the suite-name symlink.
  const currentSources = `deb [signed-by=${m.keyring}] ${served.url} current main contrib\n`;
  t.is((await apt(currentSources, ['update'])).code, 0);
  const foo = await apt(currentSources, ['install', '-s', 'libfoo-dev']);
  t.is(foo.code, 0, foo.stderr);
  t.true(inst(foo.stdout).includes('libc6 2.41-6'));
  t.true(inst(foo.stdout).includes('libc6-dev 2.41-6'));
  const broken = await apt(currentSources, ['install', '-s', 'toolkit=2.0-1', 'toolkit-plugin=1.0-1']);
  t.not(broken.code, 0, 'toolkit-plugin 1.0-1 is not in current');

  // Both suites, stable preferred: the held-broken-packages story and the Breaks story, as apt sees them.
  const bothSources = stableSources + `deb [signed-by=${m.keyring}] ${served.url} strata-current main contrib\n`;
  t.is((await apt(bothSources, ['update'])).code, 0);
  const held = await apt(bothSources, ['-t', 'strata-stable', 'install', '-s', 'libfoo-dev/strata-current', 'libc6-dev']);
  t.not(held.code, 0);
  t.regex(held.stdout + held.stderr, /libc6-dev : Depends: libc6 \(= 2\.36-9\) but 2\.41-6 is to be installed/);
  const fixed = await apt(bothSources, ['-t', 'strata-stable', 'install', '-s', 'libfoo-dev/strata-current', 'libc6-dev/strata-current']);
  t.is(fixed.code, 0, fixed.stdout + fixed.stderr);
  t.deepEqual(inst(fixed.stdout), ['libc6 2.41-6', 'libc6-dev 2.41-6', 'libfoo-dev 1.2-1', 'libfoo1 1.2-1']);
  const breaks = await apt(bothSources, ['-t', 'strata-stable', 'install', '-s', 'toolkit/strata-current', 'toolkit-plugin']);
  t.regex(breaks.stdout + breaks.stderr, /toolkit : Breaks: toolkit-plugin \(< 2\.0\) but 1\.0-1 is to be installed/);

  // A keyring with the wrong key makes apt refuse the suite (with no previously verified lists to fall back on).
  await rm(join(dir, 'lists'), { recursive: true });
  await mkdir(join(dir, 'lists/partial'), { recursive: true });
  const wrong = await apt(`deb [signed-by=${m.otherKeyring}] ${served.url} strata-stable main\n`, ['update']);
  t.not(wrong.code, 0);
  t.regex(wrong.stdout + wrong.stderr, /NO_PUBKEY/);
});

test('Packages indexes and Release vouch for every file; dpkg-deb reads every .deb', async (t) => {
  const m = await mirror();
  const seen = new Set<string>();
  for (const codename of ['strata-stable', 'strata-current']) {
    const dist = join(m.root, 'dists', codename);
    const release = paragraphs(await readFile(join(dist, 'Release'), 'utf8'))[0]!;
    t.is(release.get('Acquire-By-Hash'), 'no');
    t.is(release.get('Components'), 'main contrib');
    t.is(release.get('Architectures'), 'all amd64');
    const listed = release
      .get('SHA256')!
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/) as [string, string, string]);
    for (const [hash, size, path] of listed) {
      const file = join(dist, path);
      const bytes = await readFile(file).catch(() => undefined);
      if (bytes === undefined) {
        // Debian lists the uncompressed index without serving it: its hash is the .xz's content.
        t.regex(path, /\/Packages$/);
        const inflated = (await sh('xz', ['-dc', `${file}.xz`])).stdout;
        t.is(sha256(Buffer.from(inflated)), hash, path);
        t.is(Buffer.byteLength(inflated), Number(size), path);
        continue;
      }
      t.is(sha256(bytes), hash, path);
      t.is(bytes.length, Number(size), path);
    }

    for (const component of ['main', 'contrib']) {
      const base = join(dist, component, 'binary-amd64', 'Packages');
      const text = (await sh('xz', ['-dc', `${base}.xz`])).stdout;
      t.is(gunzipSync(await readFile(`${base}.gz`)).toString('utf8'), text);
      const allText = (await sh('xz', ['-dc', join(dist, component, 'binary-all', 'Packages.xz')])).stdout;
      const stanzas = paragraphs(text);
      t.true(stanzas.length > 0);
      for (const allPkg of paragraphs(allText)) {
        t.true(stanzas.some((s) => s.get('Package') === allPkg.get('Package')), `${allPkg.get('Package')} listed in binary-amd64`);
      }
      for (const s of stanzas) {
        const filename = s.get('Filename')!;
        t.regex(filename, new RegExp(`^pool/${component}/`));
        const deb = join(m.root, filename);
        const bytes = await readFile(deb);
        t.is(bytes.length, Number(s.get('Size')), filename);
        t.is(sha256(bytes), s.get('SHA256')!, filename);
        t.is(createHash('md5').update(bytes).digest('hex'), s.get('MD5sum')!, filename);
        if (seen.has(filename)) continue;
        seen.add(filename);
        const fields = await sh('dpkg-deb', ['--field', deb, 'Package', 'Version', 'Architecture', 'Installed-Size']);
        t.is(fields.code, 0, fields.stderr);
        const f = paragraphs(fields.stdout)[0]!;
        t.is(f.get('Package'), s.get('Package'));
        t.is(f.get('Version'), s.get('Version'));
        t.is(f.get('Architecture'), s.get('Architecture'));
        t.is(f.get('Installed-Size'), s.get('Installed-Size'));
        t.is(m.debPath(s.get('Package')!, s.get('Version')!, s.get('Architecture')), deb);
      }
    }
  }
  t.is(seen.size, m.debs.length, 'every pool file is listed in some index');
  t.is(m.debs.length, (await listFiles(join(m.root, 'pool'))).length);

  const stableMain = (await sh('xz', ['-dc', join(m.root, 'dists/strata-stable/main/binary-amd64/Packages.xz')])).stdout;
  const zlib = paragraphs(stableMain).find((s) => s.get('Package') === 'zlib1g')!;
  t.is(zlib.get('Source'), 'zlib (1:1.2.13.dfsg-1)');
  t.is(zlib.get('Filename'), 'pool/main/z/zlib/zlib1g_1.2.13.dfsg-1+b1_amd64.deb');
  t.is(paragraphs(stableMain).find((s) => s.get('Package') === 'base-files')!.get('Essential'), 'yes');
  t.is(paragraphs(stableMain).find((s) => s.get('Package') === 'libjpeg-turbo')!.get('Provides'), 'libjpeg (= 8)');
  t.is(m.debPath('busybox-fixture', '1.35.0-4'), join(m.root, 'pool/main/b/busybox/busybox-fixture_1.35.0-4_amd64.deb'));
  t.throws(() => m.debPath('busybox-fixture', '9.9'));
});

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(p)));
    else out.push(p);
  }
  return out;
}

test('the runnable packages: busybox runs, paths, alternatives scripts, data.tar compressions', async (t) => {
  const m = await mirror();
  const bb = m.debPath('busybox-fixture', '1.35.0-4');
  const contents = (await sh('dpkg-deb', ['--contents', bb])).stdout;
  t.regex(contents, /^-rwxr-xr-x root\/root +\d+ [\d-]+ [\d:]+ \.\/bin\/busybox$/m);
  t.regex(contents, /\.\/bin\/sh -> busybox$/m);
  for (const a of ['ls', 'cat', 'id', 'echo', 'env', 'touch']) t.regex(contents, new RegExp(`\\./usr/bin/${a} -> \\.\\./\\.\\./bin/busybox$`, 'm'));
  const x = join(scratch, 'bb');
  t.is((await sh('dpkg-deb', ['-x', bb, x])).code, 0);
  t.is((await sh(join(x, 'usr/bin/echo'), ['hello'])).stdout, 'hello\n');

  t.regex((await sh('dpkg-deb', ['--contents', m.debPath('zlib1g', '1:1.2.13.dfsg-1+b1')])).stdout, /\.\/lib\/x86_64-linux-gnu\/libz\.so\.1 -> libz\.so\.1\.2\.13$/m);
  t.regex(
    (await sh('dpkg-deb', ['--contents', m.debPath('libc6', '2.36-9')])).stdout,
    /\.\/lib64\/ld-linux-x86-64\.so\.2 -> \/lib\/x86_64-linux-gnu\/ld-linux-x86-64\.so\.2$/m,
  );

  const postinst = (await sh('dpkg-deb', ['--info', m.debPath('libopenblas0', '0.3.21+ds-4'), 'postinst'])).stdout;
  t.regex(postinst, /^#!\/bin\/sh$/m);
  t.regex(
    postinst,
    /update-alternatives --install \/usr\/lib\/x86_64-linux-gnu\/libblas\.so\.3 libblas\.so\.3-x86_64-linux-gnu \/usr\/lib\/x86_64-linux-gnu\/openblas-pthread\/libblas\.so\.3 100$/m,
  );
  t.regex((await sh('dpkg-deb', ['--contents', m.debPath('libopenblas0', '0.3.21+ds-4')])).stdout, /\.\/usr\/lib\/x86_64-linux-gnu\/openblas-pthread\/libblas\.so\.3$/m);
  t.regex((await sh('dpkg-deb', ['--info', m.debPath('libblas3', '3.11.0-2'), 'postinst'])).stdout, /blas\/libblas\.so\.3 10$/m);

  const members = async (name: string) => (await sh('ar', ['t', m.debPath(name, '1.0-1')])).stdout.trim().split('\n');
  t.deepEqual(await members('pkg-zstd'), ['debian-binary', 'control.tar.zst', 'data.tar.zst']);
  t.deepEqual(await members('pkg-gzip'), ['debian-binary', 'control.tar.gz', 'data.tar.gz']);
  t.deepEqual(await members('pkg-none'), ['debian-binary', 'control.tar', 'data.tar']);
  t.deepEqual(await members('cyc-a'), ['debian-binary', 'control.tar.xz', 'data.tar.xz']);
  const y = join(scratch, 'zstd');
  t.is((await sh('dpkg-deb', ['-x', m.debPath('pkg-zstd', '1.0-1'), y])).code, 0);
  t.is(await readFile(join(y, 'usr/share/pkg-zstd/hello.txt'), 'utf8'), 'hello from pkg-zstd\n');

  // libcudart12 and busybox-fixture are shared by both suites: one pool file each.
  t.is(m.debs.filter((d) => d.name === 'libcudart12').length, 1);
  t.is(m.debs.filter((d) => d.name === 'libcuda1').length, 2);
  t.is(await readlink(join(m.root, 'dists/stable')), 'strata-stable');
});

const tiny: FixtureSuite[] = [
  {
    suite: 'tiny',
    codename: 'tiny',
    components: {
      main: [
        { name: 'hello', version: '1.0-1', arch: 'amd64', files: [{ path: 'usr/bin/hello', content: '#!/bin/sh\necho hi\n', mode: 0o755 }] },
        { name: 'hello', version: '1.0-1', arch: 'arm64' },
        { name: 'hello-data', version: '2:1.0-1', arch: 'all', multiArch: 'foreign', description: 'data\nline one\n\nline three' },
      ],
    },
  },
];

test('buildMirror is reproducible and honours arches, indexes and noInRelease', async (t) => {
  const a = await buildMirror(join(scratch, 'tiny-a'), tiny, { arches: ['amd64', 'arm64'], indexes: ['plain'], noInRelease: true });
  const b = await buildMirror(join(scratch, 'tiny-b'), tiny, { arches: ['amd64', 'arm64'], indexes: ['plain'], noInRelease: true });
  t.deepEqual(
    a.debs.map((d) => [d.filename, d.sha256]),
    b.debs.map((d) => [d.filename, d.sha256]),
  );
  for (const f of ['Release', 'main/binary-amd64/Packages', 'main/binary-arm64/Packages']) {
    t.deepEqual(await readFile(join(a.root, 'dists/tiny', f)), await readFile(join(b.root, 'dists/tiny', f)), f);
  }
  t.false(await exists(join(a.root, 'dists/tiny/InRelease')));
  t.false(await exists(join(a.root, 'dists/tiny/main/binary-amd64/Packages.xz')));
  t.is((await sh('gpgv', ['--keyring', a.keyring, join(a.root, 'dists/tiny/Release.gpg'), join(a.root, 'dists/tiny/Release')])).code, 0);
  t.is(paragraphs(await readFile(join(a.root, 'dists/tiny/Release'), 'utf8'))[0]!.get('Architectures'), 'all amd64 arm64');
  for (const arch of ['amd64', 'arm64']) {
    const s = paragraphs(await readFile(join(a.root, `dists/tiny/main/binary-${arch}/Packages`), 'utf8'));
    t.deepEqual(
      s.map((p) => `${p.get('Package')} ${p.get('Architecture')}`),
      [`hello ${arch}`, 'hello-data all'],
    );
    t.is(s[1]!.get('Description'), 'data\nline one\n.\nline three');
    t.is(s[1]!.get('Filename'), 'pool/main/h/hello-data/hello-data_1.0-1_all.deb');
  }
  t.throws(() => a.debPath('hello', '1.0-1'), { message: /2 \.debs/ });
  t.is(a.debPath('hello', '1.0-1', 'arm64'), join(a.root, 'pool/main/h/hello/hello_1.0-1_arm64.deb'));

  await t.throwsAsync(
    buildMirror(join(scratch, 'bad'), [{ suite: 's', codename: 's', components: { main: [{ name: 'x', version: '1', arch: 'riscv64' }] } }]),
    { message: /riscv64 is not one of the mirror's arches/ },
  );
  await t.throwsAsync(
    buildMirror(join(scratch, 'bad2'), [
      { suite: 'a', codename: 'a', components: { main: [{ name: 'x', version: '1' }] } },
      { suite: 'b', codename: 'b', components: { main: [{ name: 'x', version: '1', depends: 'y' }] } },
    ]),
    { message: /defined twice/ },
  );
});

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

test('standardMirror gives each caller its own copy of one build', async (t) => {
  const m = await mirror();
  const other = await standardMirror(join(scratch, 'standard-2'));
  t.not(other.root, m.root);
  t.deepEqual(
    other.debs.map((d) => d.sha256),
    m.debs.map((d) => d.sha256),
  );
  t.deepEqual(await readFile(other.keyring), await readFile(m.keyring));
  t.is(other.debPath('libc6', '2.41-6'), join(other.root, 'pool/main/g/glibc/libc6_2.41-6_amd64.deb'));
  t.true(await exists(other.debPath('libc6', '2.41-6')));
});

test('serveMirror serves files and symlinks, logs requests, and fails or tampers on demand', async (t) => {
  const m = await mirror();
  const s = await serveMirror(m.root);
  t.teardown(() => s.close());
  const inRelease = await readFile(join(m.root, 'dists/strata-stable/InRelease'));
  const get = async (p: string) => {
    const r = await fetch(`${s.url}${p}`);
    return { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
  };
  t.deepEqual(await get('/dists/strata-stable/InRelease'), { status: 200, body: inRelease });
  t.deepEqual((await get('/dists/stable/InRelease')).body, inRelease);
  t.is((await get('/dists/strata-stable/nope')).status, 404);
  t.is((await get('/dists/strata-stable/')).status, 404);
  t.is((await get('/..%2f..%2f..%2f..%2fetc/passwd')).status, 404);

  s.failNext('dists/strata-stable/InRelease', 2, 503);
  t.is((await get('/dists/strata-stable/InRelease')).status, 503);
  t.is((await get('/dists/strata-stable/InRelease')).status, 503);
  t.is((await get('/dists/strata-stable/InRelease')).status, 200);
  s.failNext('/dists/strata-stable/Release', 1);
  t.is((await get('/dists/strata-stable/Release')).status, 500);

  const deb = '/pool/main/c/cyc-a/cyc-a_1.0-1_amd64.deb';
  s.tamper(deb, Buffer.from('not a deb'));
  t.is((await get(deb)).body.toString(), 'not a deb');
  s.tamper(deb, null);
  t.deepEqual((await get(deb)).body, await readFile(join(m.root, deb)));
  s.tamper('/extra/file', Buffer.from('x'));
  t.is((await get('/extra/file')).status, 200);

  t.deepEqual(s.requests.slice(0, 3), ['/dists/strata-stable/InRelease', '/dists/stable/InRelease', '/dists/strata-stable/nope']);
  t.is(s.requests.filter((r) => r === '/dists/strata-stable/InRelease').length, 4);
  t.true(s.requests.includes('/../../../../etc/passwd'));
});
