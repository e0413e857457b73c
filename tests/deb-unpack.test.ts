/**
 * unpackDeb against real .debs built by dpkg-deb, with `dpkg-deb --fsys-tarfile | tar -tv` and
 * `dpkg-deb -x` as oracles; and against crafted unsafe or broken .debs that must be refused without
 * anything being written outside the destination.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync, lchownSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StrataError } from '../errors.ts';
import { readDebControl, unpackDeb } from '../realiser/deb.ts';
import type { UnpackedDeb, UnpackedEntry } from '../realiser/deb.ts';
import { evilDebBytes, writeEvilDeb } from './helpers/evildeb.ts';
import type { EvilDebSpec } from './helpers/evildeb.ts';

const work = mkdtempSync(join(tmpdir(), 'strata-deb-'));
const CONTROL = 'Package: fixture\nVersion: 1.2-3\nArchitecture: all\nMaintainer: Test <t@example.invalid>\nDescription: fixture package\n';
const POSTINST = '#!/bin/sh\nset -e\necho configured\n';
const LONG_DIR = `usr/share/fixture/${'d'.repeat(70)}/${'e'.repeat(40)}`;
const LONG_NAME = `${'n'.repeat(120)}.txt`;
const UTF8_NAME = 'read me ünïcødé ✓.txt';

/** The package tree dpkg-deb builds from: every kind of member unpackDeb must describe. */
function buildTree(root: string): void {
  const w = (rel: string, content: string | Buffer, mode = 0o644) => {
    const p = join(root, rel);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, content);
    chmodSync(p, mode);
  };
  w('DEBIAN/control', CONTROL);
  w('DEBIAN/postinst', POSTINST, 0o755);
  w('DEBIAN/conffiles', '/etc/fixture.conf\n');
  w('DEBIAN/triggers', 'activate-noawait ldconfig\n');
  w('DEBIAN/md5sums', 'd41d8cd98f00b204e9800998ecf8427e  usr/share/fixture/empty\n');
  w('etc/fixture.conf', 'key = value\n');
  w('usr/bin/tool', '#!/bin/sh\necho tool\n', 0o4755);
  linkSync(join(root, 'usr/bin/tool'), join(root, 'usr/bin/tool-hardlink'));
  w('usr/bin/setgid-tool', 'x', 0o2711);
  symlinkSync('tool', join(root, 'usr/bin/relative-link'));
  mkdirSync(join(root, 'usr/lib'), { recursive: true });
  symlinkSync('/usr/bin/tool', join(root, 'usr/lib/absolute-link'));
  symlinkSync('../../bin/../bin/tool', join(root, 'usr/lib/dotted-link'));
  w('usr/share/fixture/empty', '');
  w('usr/share/fixture/big.bin', randomBytes(3 * 1024 * 1024 + 17));
  w(`${LONG_DIR}/file.txt`, 'long path\n');
  w(`usr/share/fixture/${LONG_NAME}`, 'long name\n');
  w(`usr/share/doc/fixture/${UTF8_NAME}`, 'unicode\n');
  mkdirSync(join(root, 'var/lib/fixture/empty-dir'), { recursive: true });
  mkdirSync(join(root, 'var/tmp-sticky'), { recursive: true });
  chmodSync(join(root, 'var/tmp-sticky'), 0o1777);
}

const tree = join(work, 'tree');
buildTree(tree);
const debs: Record<string, string> = {};
for (const z of ['xz', 'zstd', 'gzip', 'none']) {
  debs[z] = join(work, `fixture-${z}.deb`);
  execFileSync('dpkg-deb', ['--build', '--root-owner-group', `-Z${z}`, tree, debs[z]!], { stdio: 'ignore' });
}
// Without --root-owner-group ownership comes from the tree: one symlink and one file owned by someone else.
const ownedTree = join(work, 'owned-tree');
buildTree(ownedTree);
lchownSync(join(ownedTree, 'usr/bin/relative-link'), 65534, 65534);
lchownSync(join(ownedTree, 'etc/fixture.conf'), 4242, 65534);
debs.owned = join(work, 'fixture-owned.deb');
execFileSync('dpkg-deb', ['--build', '-Zxz', ownedTree, debs.owned], { stdio: 'ignore' });

test.after.always(() => {
  execFileSync('rm', ['-rf', work]);
});

// ---- the tar -tv oracle ----------------------------------------------------------------------------

/** Decodes a string written with GNU tar's `--quoting-style=c` (octal escapes are bytes of UTF-8). */
function unquoteC(s: string): string {
  const bytes: number[] = [];
  const simple: Record<string, number> = { n: 10, t: 9, r: 13, f: 12, v: 11, b: 8, a: 7, '\\': 92, '"': 34, '?': 63 };
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== '\\') {
      bytes.push(...Buffer.from(c, 'utf8'));
      continue;
    }
    const n = s[++i]!;
    if (/[0-7]/.test(n)) {
      const oct = s.slice(i, i + 3).match(/^[0-7]{1,3}/)![0];
      bytes.push(parseInt(oct, 8));
      i += oct.length - 1;
    } else bytes.push(simple[n]!);
  }
  return Buffer.from(bytes).toString('utf8');
}

function normalize(p: string): string {
  return p.replace(/^\.\//, '').replace(/\/$/, '');
}

interface Listed {
  path: string;
  perms: string;
  owner: string;
  ids: string;
  size: number;
  link?: string;
}

function tarListing(deb: string): Listed[] {
  const list = (numeric: boolean) =>
    execFileSync('sh', ['-c', `dpkg-deb --fsys-tarfile "$1" | tar -tv --quoting-style=c ${numeric ? '--numeric-owner' : ''}`, 'sh', deb], {
      env: { ...process.env, LC_ALL: 'C.UTF-8', TZ: 'UTC' },
      maxBuffer: 1 << 26,
    })
      .toString('utf8')
      .split('\n')
      .filter((l) => l !== '');
  const named = list(false);
  const numeric = list(true);
  const re = /^(\S{10}) (\S+)\s+(\d+) \S+ \S+ "((?:[^"\\]|\\.)*)"(?: (?:->|link to) "((?:[^"\\]|\\.)*)")?$/;
  const out: Listed[] = [];
  named.forEach((line, i) => {
    const m = re.exec(line);
    const n = re.exec(numeric[i]!);
    if (!m || !n) throw new Error(`cannot parse tar listing line: ${line}`);
    const path = normalize(unquoteC(m[4]!));
    if (path === '') return;
    const rec: Listed = { path, perms: m[1]!, owner: m[2]!, ids: n[2]!, size: Number(m[3]) };
    if (m[5] !== undefined) rec.link = m[1]!.startsWith('h') ? normalize(unquoteC(m[5])) : unquoteC(m[5]);
    out.push(rec);
  });
  return out;
}

function perms(e: UnpackedEntry): string {
  const t = { file: '-', dir: 'd', symlink: 'l', hardlink: 'h' }[e.type];
  const m = e.mode;
  const triad = (shift: number, special: boolean, ch: string) => {
    const r = m & (4 << shift) ? 'r' : '-';
    const w = m & (2 << shift) ? 'w' : '-';
    const xb = (m & (1 << shift)) !== 0;
    const x = special ? (xb ? ch : ch.toUpperCase()) : xb ? 'x' : '-';
    return r + w + x;
  };
  return t + triad(6, (m & 0o4000) !== 0, 's') + triad(3, (m & 0o2000) !== 0, 's') + triad(0, (m & 0o1000) !== 0, 't');
}

function asListed(e: UnpackedEntry): Listed {
  // tar -tv shows the number where a name is empty.
  const rec: Listed = { path: e.path, perms: perms(e), owner: `${e.uname || e.uid}/${e.gname || e.gid}`, ids: `${e.uid}/${e.gid}`, size: e.size };
  if (e.linkname !== undefined) rec.link = e.linkname;
  return rec;
}

function sha256File(p: string): string {
  return createHash('sha256').update(readFileSync(p)).digest('hex');
}

/** Every path under `dir` with what lstat says it is. */
function walk(dir: string, rel = ''): Map<string, 'file' | 'dir' | 'other'> {
  const out = new Map<string, 'file' | 'dir' | 'other'>();
  for (const name of readdirSync(join(dir, rel))) {
    const r = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, r));
    if (st.isDirectory()) {
      out.set(r, 'dir');
      for (const [k, v] of walk(dir, r)) out.set(k, v);
    } else out.set(r, st.isFile() ? 'file' : 'other');
  }
  return out;
}

async function checkAgainstDpkg(t: ExecutionContext, deb: string): Promise<UnpackedDeb> {
  const dest = mkdtempSync(join(work, 'dest-'));
  const got = await unpackDeb(deb, dest, { packageName: 'fixture' });
  t.deepEqual(got.entries.map(asListed), tarListing(deb));

  const ref = mkdtempSync(join(work, 'ref-'));
  execFileSync('dpkg-deb', ['-x', deb, ref]);
  const onDisk = walk(dest);
  for (const e of got.entries) {
    if (e.type === 'file') {
      t.is(onDisk.get(e.path), 'file', e.path);
      t.is(e.sha256, sha256File(join(ref, e.path)), e.path);
      t.true(readFileSync(join(dest, e.path)).equals(readFileSync(join(ref, e.path))), e.path);
      t.is(lstatSync(join(dest, e.path)).mode & 0o7777, e.mode & 0o111 ? 0o755 : 0o644, e.path);
    } else if (e.type === 'dir') {
      t.is(onDisk.get(e.path), 'dir', e.path);
    } else {
      t.false(onDisk.has(e.path), `${e.type} ${e.path} must not be materialised`);
    }
  }
  const files = new Set(got.entries.filter((e) => e.type === 'file').map((e) => e.path));
  for (const [p, kind] of onDisk) {
    t.not(kind, 'other', p);
    if (kind === 'file') t.true(files.has(p), `unexpected file ${p}`);
  }
  t.is(got.dropped, 0);
  return got;
}

for (const z of ['xz', 'zstd', 'gzip', 'none']) {
  test(`dpkg-deb -Z${z}: entries match tar -tv and contents match dpkg-deb -x`, async (t) => {
    const got = await checkAgainstDpkg(t, debs[z]!);
    t.is(got.control, CONTROL);
    t.deepEqual(got.scripts, { postinst: POSTINST });
    t.deepEqual(got.conffiles, ['/etc/fixture.conf']);
    t.is(got.md5sums, 'd41d8cd98f00b204e9800998ecf8427e  usr/share/fixture/empty\n');
    t.deepEqual(got.controlFiles, { triggers: 'activate-noawait ldconfig\n' });
    const byPath = new Map(got.entries.map((e) => [e.path, e]));
    t.like(byPath.get('usr/bin/tool'), { type: 'file', mode: 0o4755, uid: 0, gid: 0, uname: 'root', gname: 'root' });
    t.like(byPath.get('usr/bin/setgid-tool'), { type: 'file', mode: 0o2711 });
    t.like(byPath.get('var/tmp-sticky'), { type: 'dir', mode: 0o1777 });
    t.like(byPath.get('usr/lib/absolute-link'), { type: 'symlink', linkname: '/usr/bin/tool' });
    t.like(byPath.get('usr/bin/relative-link'), { type: 'symlink', linkname: 'tool' });
    const links = got.entries.filter((e) => e.type === 'hardlink');
    t.is(links.length, 1);
    t.true(['usr/bin/tool', 'usr/bin/tool-hardlink'].includes(links[0]!.linkname!));
    t.like(byPath.get(`${LONG_DIR}/file.txt`), { type: 'file', size: 10 });
    t.true(`${LONG_DIR}/file.txt`.length > 100);
    t.like(byPath.get(`usr/share/fixture/${LONG_NAME}`), { type: 'file', size: 10 });
    t.like(byPath.get(`usr/share/doc/fixture/${UTF8_NAME}`), { type: 'file', size: 8 });
    t.like(byPath.get('usr/share/fixture/big.bin'), { size: 3 * 1024 * 1024 + 17 });
    t.like(byPath.get('usr/share/fixture/empty'), { size: 0, sha256: createHash('sha256').digest('hex') });
  });
}

test('ownership other than root is reported by name and number', async (t) => {
  const got = await checkAgainstDpkg(t, debs.owned!);
  const byPath = new Map(got.entries.map((e) => [e.path, e]));
  t.like(byPath.get('usr/bin/relative-link'), { uid: 65534, gid: 65534, uname: 'nobody', gname: 'nogroup' });
  t.like(byPath.get('etc/fixture.conf'), { uid: 4242, gid: 65534, gname: 'nogroup' });
});

test('readDebControl reads the control file alone', async (t) => {
  for (const z of ['xz', 'zstd', 'gzip', 'none']) t.is(await readDebControl(debs[z]!), CONTROL);
});

// ---- unsafe and broken debs -------------------------------------------------------------------------

interface Arena {
  root: string;
  dest: string;
  sentinel: string;
  deb: string;
}

function arena(): Arena {
  const root = mkdtempSync(join(work, 'evil-'));
  const sentinel = join(root, 'sentinel');
  mkdirSync(sentinel);
  return { root, dest: join(root, 'dest'), sentinel, deb: join(root, 'x.deb') };
}

/** The .deb must be refused with E_DEB naming the package, and nothing may appear outside dest. */
async function refuses(t: ExecutionContext, a: Arena, pattern: RegExp): Promise<void> {
  const err = await t.throwsAsync(unpackDeb(a.deb, a.dest, { packageName: 'evilpkg' }), { instanceOf: StrataError });
  t.is((err as StrataError).code, 'E_DEB');
  t.regex(err!.message, /package evilpkg/);
  t.regex(err!.message, pattern);
  t.deepEqual(readdirSync(a.sentinel), []);
  t.deepEqual(readdirSync(a.root).sort(), existsSync(a.dest) ? ['dest', 'sentinel', 'x.deb'] : ['sentinel', 'x.deb']);
}

async function evil(t: ExecutionContext, spec: EvilDebSpec, pattern: RegExp): Promise<Arena> {
  const a = arena();
  await writeEvilDeb(a.deb, spec);
  await refuses(t, a, pattern);
  return a;
}

test('a ../ member is refused', async (t) => {
  await evil(t, { data: [{ name: './usr/', type: 'directory' }, { name: '../sentinel/pwned', content: 'x' }] }, /'\.\.' component/);
  await evil(t, { data: [{ name: './usr/../../sentinel/pwned', content: 'x' }] }, /'\.\.' component/);
});

test('an absolute member is refused', async (t) => {
  const a = arena();
  await writeEvilDeb(a.deb, { data: [{ name: `${a.sentinel}/pwned`, content: 'x' }] });
  await refuses(t, a, /absolute member path/);
  const b = arena();
  await writeEvilDeb(b.deb, { data: [{ name: `.//${b.sentinel.slice(1)}/pwned`, content: 'x' }], compression: 'gz' });
  await refuses(t, b, /absolute member path/);
});

test('a member written through a symlink is refused', async (t) => {
  const a = arena();
  await writeEvilDeb(a.deb, {
    data: [
      { name: './usr/', type: 'directory' },
      { name: './usr/lib', type: 'symlink', linkname: a.sentinel },
      { name: './usr/lib/passwd', content: 'root::0:0::/:/bin/sh\n' },
    ],
  });
  await refuses(t, a, /through symlink 'usr\/lib'/);
  const b = arena();
  await writeEvilDeb(b.deb, {
    data: [
      { name: './etc', type: 'symlink', linkname: '/etc' },
      { name: './etc/deep/', type: 'directory' },
    ],
  });
  await refuses(t, b, /through symlink 'etc'/);
});

test('a member inside a regular file, a duplicate, and a hardlink to nowhere are refused', async (t) => {
  await evil(t, { data: [{ name: './a', content: 'x' }, { name: './a/b', content: 'y' }] }, /not a directory/);
  await evil(t, { data: [{ name: './a', content: 'x' }, { name: './a', content: 'y' }] }, /duplicate member/);
  await evil(t, { data: [{ name: './h', type: 'link', linkname: './missing' }] }, /hardlink/);
  await evil(t, { data: [{ name: './h', type: 'link', linkname: '../sentinel/x' }] }, /'\.\.' component/);
});

test('device nodes and fifos are dropped, not refused', async (t) => {
  const a = arena();
  await writeEvilDeb(a.deb, {
    data: [
      { name: './', type: 'directory' },
      { name: './dev/', type: 'directory' },
      { name: './dev/null', type: 'character-device' },
      { name: './dev/sda', type: 'block-device' },
      { name: './dev/pipe', type: 'fifo' },
      { name: './dev/ok', content: 'fine' },
    ],
  });
  const got = await unpackDeb(a.deb, a.dest, { packageName: 'evilpkg' });
  t.is(got.dropped, 3);
  t.deepEqual(
    got.entries.map((e) => e.path),
    ['dev', 'dev/ok'],
  );
  t.deepEqual(readdirSync(join(a.dest, 'dev')), ['ok']);
});

test('a truncated .deb is refused', async (t) => {
  const a = arena();
  const whole = readFileSync(debs.xz!);
  writeFileSync(a.deb, whole.subarray(0, whole.length - 1000));
  await refuses(t, a, /truncated archive/);
  const b = arena();
  writeFileSync(b.deb, whole.subarray(0, 70));
  await refuses(t, b, /truncated archive/);
});

test('a truncated data member is refused', async (t) => {
  const big = randomBytes(5000);
  // Uncompressed: the tar ends inside a file's content (ar sizes stay consistent).
  await evil(t, { compression: 'none', data: [{ name: './f', content: big }], mangleData: (d) => d.subarray(0, 2048) }, /truncated|Unexpected end/);
  // xz: the compressed stream itself is cut.
  await evil(t, { compression: 'xz', data: [{ name: './f', content: big }], mangleData: (d) => d.subarray(0, d.length - 40) }, /xz/);
});

test('a corrupted xz stream is refused', async (t) => {
  const a = await evil(
    t,
    {
      compression: 'xz',
      data: [{ name: './f', content: randomBytes(200_000) }],
      mangleData: (d) => {
        const c = Buffer.from(d);
        for (let i = 1000; i < 1100; i++) c[i] = c[i]! ^ 0xff;
        return c;
      },
    },
    /corrupt xz stream/,
  );
  t.false(existsSync(join(a.root, 'sentinel', 'f')));
});

test('a corrupted gzip or zstd stream is refused', async (t) => {
  const flip = (d: Buffer) => {
    const c = Buffer.from(d);
    for (let i = 200; i < 260; i++) c[i] = c[i]! ^ 0x55;
    return c;
  };
  await evil(t, { compression: 'gz', data: [{ name: './f', content: randomBytes(100_000) }], mangleData: flip }, /corrupt/);
  await evil(t, { compression: 'zst', data: [{ name: './f', content: randomBytes(100_000) }], mangleData: flip }, /corrupt/);
});

test('a tar header checksum error is refused', async (t) => {
  await evil(
    t,
    {
      compression: 'none',
      data: [{ name: './a', content: 'x' }, { name: './b', content: 'y' }],
      mangleData: (d) => {
        const c = Buffer.from(d);
        c[1024] = 'z'.charCodeAt(0); // second header's name, checksum left stale
        return c;
      },
    },
    /corrupt tar/,
  );
});

test('bad ar magic and a wrong debian-binary are refused', async (t) => {
  const a = arena();
  const good = await evilDebBytes({ data: [{ name: './f', content: 'x' }] });
  const bad = Buffer.from(good);
  bad.write('!<arck>\n', 0, 'latin1');
  writeFileSync(a.deb, bad);
  await refuses(t, a, /bad ar magic/);
  await evil(t, { data: [{ name: './f', content: 'x' }], debianBinary: '3.0\n' }, /debian-binary.*unsupported format version '3\.0'/);
});

test('errors name the file when no package name is given', async (t) => {
  const a = arena();
  writeFileSync(a.deb, 'not a deb at all');
  const err = await t.throwsAsync(readDebControl(a.deb), { instanceOf: StrataError });
  t.regex(err!.message, /package x\.deb: not a \.deb/);
});
