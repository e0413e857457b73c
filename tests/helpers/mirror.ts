/**
 * A real, signed Debian-format archive built on the fly for tests, and served on loopback.
 *
 * `buildMirror` writes, under one root directory:
 * - `pool/<component>/<letter>/<source>/<name>_<version without epoch>_<arch>.deb`, built by `dpkg-deb
 *   --build --root-owner-group` with SOURCE_DATE_EPOCH and every mtime fixed, so the same input gives
 *   the same bytes. `<letter>` is the source's first letter, or its first four for `lib*` sources. A
 *   package with the same name, version, arch and component in several suites is one pool file.
 * - `dists/<codename>/<component>/binary-<arch>/Packages{.xz,.gz}` with dak's field order (MD5sum and
 *   SHA256 included) and a per-directory `Release`; `Architecture: all` packages are listed in every
 *   arch's index and also in `binary-all`, with `No-Support-for-Architecture-all: Packages` in the
 *   Release, as Debian does. Entries are sorted by name, arch, version.
 * - `dists/<codename>/Release` (Date fixed), `InRelease` (clearsigned) and `Release.gpg` (armored,
 *   detached), signed with real gpg. As in Debian, the Release lists the hash of the uncompressed
 *   `Packages` even when only compressed files are written (`indexes` without `plain`).
 * - `dists/<suite>` as a symlink to `dists/<codename>`, so either name works in a sources line.
 * - `keys/archive.gpg` (binary keyring with the signing key), `keys/archive.asc`, `keys/other.gpg`.
 *
 * Packages, Release and the .debs are byte-for-byte reproducible; the signatures are not (the key is
 * generated per process).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, lutimes, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize, resolve } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { fixtureKeys, signRelease, withSigning } from './fixtureKeys.ts';
import type { FixtureKeys } from './fixtureKeys.ts';
import { assertStaticBusybox, standardSuites } from './standardSuites.ts';

export { serveMirror } from './serveMirror.ts';
export type { ServedMirror } from './serveMirror.ts';
export { standardSuites } from './standardSuites.ts';

const run = promisify(execFile);

/** One entry of a package's data.tar. */
export interface FixtureFile {
  /** Relative path inside the package, e.g. `usr/bin/hello`. */
  path: string;
  content?: string | Buffer;
  /** Copy the content from this host file at build time (e.g. `/bin/busybox`). */
  from?: string;
  /** Default 0o644. */
  mode?: number;
  /** Make the entry a symlink with this target instead of a file. */
  symlink?: string;
}

export interface FixturePackage {
  name: string;
  version: string;
  /** Default `amd64`; `all` allowed. */
  arch?: string;
  /** Source field: `src` or `src (1.2-1)`; default the package's own name and version. */
  source?: string;
  section?: string;
  priority?: string;
  essential?: boolean;
  multiArch?: 'same' | 'foreign' | 'allowed';
  depends?: string;
  preDepends?: string;
  recommends?: string;
  provides?: string;
  conflicts?: string;
  breaks?: string;
  /** First line is the synopsis, further lines the long description. */
  description?: string;
  /** data.tar contents; default one file `usr/share/doc/<name>/README`. */
  files?: FixtureFile[];
  /** postinst script text; `#!/bin/sh\nset -e\n` is prepended when it has no `#!` line. */
  postinst?: string;
  /** data.tar member compression; default xz. */
  compression?: 'xz' | 'zstd' | 'gzip' | 'none';
}

export interface FixtureSuite {
  suite: string;
  codename: string;
  components: Record<string, FixturePackage[]>;
  /** Release `Date`; default `Sat, 01 Jun 2024 12:00:00 UTC`. */
  date?: string;
  /** Release `Valid-Until`; none by default. */
  validUntil?: string;
}

/** One .deb in the pool. */
export interface BuiltDeb {
  name: string;
  version: string;
  arch: string;
  component: string;
  /** Path relative to the archive root, as in the `Filename` field. */
  filename: string;
  /** Absolute path. */
  path: string;
  size: number;
  sha256: string;
}

export interface FixtureMirror {
  /** Directory holding `dists/` and `pool/`. */
  root: string;
  /** Binary OpenPGP keyring with the signing public key (what a channel's signed-by points at). */
  keyring: string;
  /** The same key, armored. */
  armoredKey: string;
  /** A keyring with a different key, to test bad-signature refusal. */
  otherKeyring: string;
  /** Every .deb in the pool, sorted by filename. */
  debs: BuiltDeb[];
  /** Absolute path of a built .deb; `arch` may be left out when only one arch has that version. */
  debPath(name: string, version: string, arch?: string): string;
}

export interface BuildOptions {
  /** Architectures with indexes (besides `all`); default `['amd64']`. */
  arches?: string[];
  /** Index files to write; default `['xz', 'gz']`. */
  indexes?: ('xz' | 'gz' | 'plain')[];
  /** Write only `Release` + `Release.gpg`. */
  noInRelease?: boolean;
}

const SOURCE_DATE_EPOCH = 1717243200; // 2024-06-01T12:00:00Z
const DEFAULT_DATE = 'Sat, 01 Jun 2024 12:00:00 UTC';
const MAINTAINER = 'Strata Fixtures <fixtures@strata.invalid>';
const ORIGIN = 'Strata Fixtures';

interface PoolEntry {
  pkg: FixturePackage;
  arch: string;
  component: string;
  filename: string;
  /** JSON of the definition, to catch one pool file defined two ways. */
  signature: string;
  installedSize?: number;
  deb?: BuiltDeb;
  md5?: string;
}

export async function buildMirror(dir: string, suites: FixtureSuite[], opts: BuildOptions = {}): Promise<FixtureMirror> {
  const root = resolve(dir);
  const arches = opts.arches ?? ['amd64'];
  const indexes = opts.indexes ?? ['xz', 'gz'];
  await mkdir(root, { recursive: true });

  const pool = new Map<string, PoolEntry>();
  const listing: { suite: FixtureSuite; component: string; entry: PoolEntry }[] = [];
  for (const suite of suites) {
    for (const [component, pkgs] of Object.entries(suite.components)) {
      for (const pkg of pkgs) {
        const arch = pkg.arch ?? 'amd64';
        if (arch !== 'all' && !arches.includes(arch)) {
          throw new Error(`fixture ${pkg.name} ${pkg.version}: arch ${arch} is not one of the mirror's arches (${arches.join(', ')})`);
        }
        const filename = poolFilename(component, pkg, arch);
        const signature = JSON.stringify(pkg, (_k, v: unknown) => (Buffer.isBuffer(v) ? createHash('sha256').update(v).digest('hex') : v));
        let entry = pool.get(filename);
        if (!entry) {
          entry = { pkg, arch, component, filename, signature };
          pool.set(filename, entry);
        } else if (entry.signature !== signature) {
          throw new Error(`fixture ${filename} is defined twice with different contents`);
        }
        listing.push({ suite, component, entry });
      }
    }
  }

  const work = await mkdtemp(join(tmpdir(), 'strata-debs-'));
  try {
    await mapLimit([...pool.values()], 4, (e) => buildDeb(root, work, e));
  } finally {
    await rm(work, { recursive: true, force: true });
  }

  const keys = await fixtureKeys();
  await withSigning(keys, async () => {
    for (const suite of suites) {
      await writeSuite(root, suite, arches, indexes, listing.filter((l) => l.suite === suite), keys, opts.noInRelease ?? false);
    }
  });

  await writeKeys(root, keys);

  const debs = [...pool.values()].map((e) => e.deb!).sort((a, b) => cmp(a.filename, b.filename));
  return mirrorAt(root, debs, keys.archive.armoredPublicKey);
}

export interface FlatOptions {
  /** Release `Date`; default `Sat, 01 Jun 2024 12:00:00 UTC`. */
  date?: string;
  /** Write only `Release` + `Release.gpg`. */
  noInRelease?: boolean;
}

/**
 * A flat repository (apt's sources.list(5) "flat repository format", as NVIDIA's CUDA and Intel's oneAPI
 * repositories publish them): no `dists/`, no components. In `dir` itself: the .debs, `Packages`,
 * `Packages.gz`, `Packages.xz` (every architecture in one index, `Filename: ./<name>_<version>_<arch>.deb`,
 * relative to the repository's URL), and a `Release` with no Suite or Codename (Origin, Label, Architectures,
 * Date, the hashes) signed as `InRelease` and `Release.gpg` with the same key as `buildMirror`'s archives.
 * `keys/` as in `buildMirror`.
 */
export async function buildFlatRepository(dir: string, packages: FixturePackage[], opts: FlatOptions = {}): Promise<FixtureMirror> {
  const root = resolve(dir);
  await mkdir(root, { recursive: true });
  const entries: PoolEntry[] = packages.map((pkg) => {
    const arch = pkg.arch ?? 'amd64';
    const version = pkg.version.replace(/^\d+:/, '');
    return { pkg, arch, component: '', filename: `./${pkg.name}_${version}_${arch}.deb`, signature: '' };
  });
  const work = await mkdtemp(join(tmpdir(), 'strata-debs-'));
  try {
    await mapLimit(entries, 4, (e) => buildDeb(root, work, e));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  entries.sort((a, b) => cmp(a.pkg.name, b.pkg.name) || cmp(a.arch, b.arch) || cmp(a.pkg.version, b.pkg.version));
  const text = Buffer.from(entries.map(packagesStanza).join('\n'));
  const files: IndexFile[] = [
    { path: 'Packages', bytes: text },
    { path: 'Packages.gz', bytes: gzipSync(text, { level: 9 }) },
    { path: 'Packages.xz', bytes: await xz(text) },
  ];
  for (const f of files) await writeFile(join(root, f.path), f.bytes);
  const width = Math.max(...files.map((f) => String(f.bytes.length).length), 1);
  const list = (algo: 'md5' | 'sha256') =>
    files.map((f) => `\n ${createHash(algo).update(f.bytes).digest('hex')} ${String(f.bytes.length).padStart(width)} ${f.path}`).join('');
  const arches = [...new Set(entries.map((e) => e.arch))].sort(cmp);
  const release = stanza([
    ['Origin', ORIGIN],
    ['Label', `${ORIGIN} flat`],
    ['Architectures', arches.join(' ')],
    ['Date', opts.date ?? DEFAULT_DATE],
    ['MD5Sum', list('md5')],
    ['SHA256', list('sha256')],
  ]);
  const releasePath = join(root, 'Release');
  await writeFile(releasePath, release);
  const keys = await fixtureKeys();
  await withSigning(keys, () => signRelease(keys, releasePath, { ...(opts.noInRelease ? {} : { inRelease: join(root, 'InRelease') }), releaseGpg: join(root, 'Release.gpg') }));
  await writeKeys(root, keys);
  return mirrorAt(root, entries.map((e) => e.deb!).sort((a, b) => cmp(a.filename, b.filename)), keys.archive.armoredPublicKey);
}

function mirrorAt(root: string, debs: BuiltDeb[], armoredKey: string): FixtureMirror {
  return {
    root,
    keyring: join(root, 'keys/archive.gpg'),
    armoredKey,
    otherKeyring: join(root, 'keys/other.gpg'),
    debs,
    debPath(name, version, arch) {
      const found = debs.filter((d) => d.name === name && d.version === version && (arch === undefined || d.arch === arch));
      if (found.length !== 1) {
        throw new Error(`fixture mirror has ${found.length} .debs for ${name} ${version}${arch ? ` ${arch}` : ''}`);
      }
      return found[0]!.path;
    },
  };
}

let standardBuild: Promise<FixtureMirror> | undefined;

/** The fixture's public keys beside the archive, where tests find them (`keys/archive.gpg`, `.asc`, `other.gpg`). */
async function writeKeys(root: string, keys: Awaited<ReturnType<typeof fixtureKeys>>): Promise<void> {
  await mkdir(join(root, 'keys'), { recursive: true });
  await writeFile(join(root, 'keys/archive.gpg'), keys.archive.publicKey);
  await writeFile(join(root, 'keys/archive.asc'), keys.archive.armoredPublicKey);
  await writeFile(join(root, 'keys/other.gpg'), keys.other.publicKey);
}

/**
 * The standard scenario (see standardSuites.ts) in `dir`. It is built once per process in a private
 * directory and copied, so each caller may modify its copy.
 */
export async function standardMirror(dir: string): Promise<FixtureMirror> {
  standardBuild ??= (async () => {
    assertStaticBusybox();
    const cache = await mkdtemp(join(tmpdir(), 'strata-standard-mirror-'));
    process.once('exit', () => rmSync(cache, { recursive: true, force: true }));
    return buildMirror(cache, standardSuites);
  })();
  const built = await standardBuild;
  const root = resolve(dir);
  await cp(built.root, root, { recursive: true, verbatimSymlinks: true });
  const debs = built.debs.map((d) => ({ ...d, path: join(root, d.filename) }));
  return mirrorAt(root, debs, built.armoredKey);
}

/** The pool path Debian's archive software gives a binary package. */
function poolFilename(component: string, pkg: FixturePackage, arch: string): string {
  const { name: source } = parseSource(pkg);
  const letter = source.startsWith('lib') ? source.slice(0, 4) : source.slice(0, 1);
  const version = pkg.version.replace(/^\d+:/, '');
  return `pool/${component}/${letter}/${source}/${pkg.name}_${version}_${arch}.deb`;
}

function parseSource(pkg: FixturePackage): { name: string; version?: string } {
  if (!pkg.source) return { name: pkg.name };
  const m = /^(\S+)(?:\s+\((\S+)\))?$/.exec(pkg.source.trim());
  if (!m) throw new Error(`fixture ${pkg.name}: bad source ${pkg.source}`);
  return m[2] ? { name: m[1]!, version: m[2] } : { name: m[1]! };
}

/** The Source field as dak writes it: absent when it is the package itself at the same version. */
function sourceField(pkg: FixturePackage): string | undefined {
  const s = parseSource(pkg);
  if (s.version && s.version !== pkg.version) return `${s.name} (${s.version})`;
  return s.name === pkg.name ? undefined : s.name;
}

function descriptionField(pkg: FixturePackage): string {
  const text = pkg.description ?? `${pkg.name} (strata test fixture)\nA package of strata's fixture archive.`;
  const [synopsis, ...rest] = text.split('\n');
  return [synopsis, ...rest.map((l) => (l.trim() === '' ? ' .' : ` ${l}`))].join('\n');
}

type Fields = [string, string | number | undefined][];

function stanza(fields: Fields): string {
  return fields
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => (String(v).startsWith('\n') ? `${k}:${v}\n` : `${k}: ${v}\n`))
    .join('');
}

function relationFields(pkg: FixturePackage): Fields {
  return [
    ['Provides', pkg.provides],
    ['Depends', pkg.depends],
    ['Pre-Depends', pkg.preDepends],
    ['Recommends', pkg.recommends],
    ['Conflicts', pkg.conflicts],
    ['Breaks', pkg.breaks],
  ];
}

function controlText(e: PoolEntry): string {
  const p = e.pkg;
  return stanza([
    ['Package', p.name],
    ['Source', sourceField(p)],
    ['Version', p.version],
    ['Architecture', e.arch],
    ['Maintainer', MAINTAINER],
    ['Installed-Size', e.installedSize],
    ['Multi-Arch', p.multiArch],
    ['Essential', p.essential ? 'yes' : undefined],
    ...relationFields(p),
    ['Section', p.section ?? 'misc'],
    ['Priority', p.priority ?? 'optional'],
    ['Description', descriptionField(p)],
  ]);
}

/** A `Packages` stanza in dak's field order. */
function packagesStanza(e: PoolEntry): string {
  const p = e.pkg;
  const d = e.deb!;
  return stanza([
    ['Package', p.name],
    ['Source', sourceField(p)],
    ['Version', p.version],
    ['Installed-Size', e.installedSize],
    ['Maintainer', MAINTAINER],
    ['Architecture', e.arch],
    ['Multi-Arch', p.multiArch],
    ...relationFields(p),
    ['Description', descriptionField(p)],
    ['Essential', p.essential ? 'yes' : undefined],
    ['Section', p.section ?? 'misc'],
    ['Priority', p.priority ?? 'optional'],
    ['Filename', e.filename],
    ['Size', d.size],
    ['MD5sum', e.md5],
    ['SHA256', d.sha256],
  ]);
}

function safeRelative(pkgName: string, path: string): string {
  const n = normalize(path).replace(/\/+$/, '');
  if (n.startsWith('/') || n === '.' || n === '..' || n.startsWith('../') || n.startsWith('DEBIAN')) {
    throw new Error(`fixture ${pkgName}: bad file path ${path}`);
  }
  return n;
}

async function buildDeb(root: string, work: string, e: PoolEntry): Promise<void> {
  const p = e.pkg;
  const stage = join(work, e.filename.replaceAll('/', '_'));
  const files = p.files ?? [{ path: `usr/share/doc/${p.name}/README`, content: `${p.name} ${p.version}\n` }];
  const dirs = new Set<string>();
  const addDirs = (rel: string) => {
    for (let d = dirname(rel); d !== '.'; d = dirname(d)) dirs.add(d);
  };
  let kib = 0;
  for (const f of files) {
    const rel = safeRelative(p.name, f.path);
    addDirs(rel);
    const target = join(stage, rel);
    await mkdir(dirname(target), { recursive: true });
    if (f.symlink !== undefined) {
      await symlink(f.symlink, target);
      kib += 1;
      continue;
    }
    let content: string | Buffer;
    if (f.from !== undefined) {
      content = await readFile(f.from).catch((err: NodeJS.ErrnoException) => {
        throw new Error(`fixture ${p.name}: cannot read ${f.from} (${err.code})`);
      });
    } else {
      content = f.content ?? '';
    }
    await writeFile(target, content);
    await chmod(target, f.mode ?? 0o644);
    kib += Math.max(1, Math.ceil(Buffer.byteLength(content) / 1024));
  }
  e.installedSize = kib + dirs.size;

  const control = join(stage, 'DEBIAN');
  await mkdir(control, { recursive: true });
  await writeFile(join(control, 'control'), controlText(e));
  if (p.postinst !== undefined) {
    const script = p.postinst.startsWith('#!') ? p.postinst : `#!/bin/sh\nset -e\n${p.postinst}`;
    await writeFile(join(control, 'postinst'), script.endsWith('\n') ? script : `${script}\n`);
    await chmod(join(control, 'postinst'), 0o755);
  }
  await fixTree(stage);

  const out = join(root, e.filename);
  await mkdir(dirname(out), { recursive: true });
  try {
    await run('dpkg-deb', ['--root-owner-group', `-Z${p.compression ?? 'xz'}`, '--build', stage, out], {
      env: { ...process.env, SOURCE_DATE_EPOCH: String(SOURCE_DATE_EPOCH) },
    });
  } catch (err) {
    const x = err as Error & { stderr?: string };
    throw new Error(`dpkg-deb --build of ${e.filename} failed: ${x.stderr ?? x.message}`);
  }
  const bytes = await readFile(out);
  e.md5 = createHash('md5').update(bytes).digest('hex');
  e.deb = {
    name: p.name,
    version: p.version,
    arch: e.arch,
    component: e.component,
    filename: e.filename,
    path: out,
    size: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
  };
}

/** Directories 0755 whatever the umask, every mtime SOURCE_DATE_EPOCH (children before parents). */
async function fixTree(path: string): Promise<void> {
  const st = await lstat(path);
  if (st.isDirectory()) {
    await chmod(path, 0o755);
    for (const name of await readdir(path)) await fixTree(join(path, name));
    await utimes(path, SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH);
  } else {
    await lutimes(path, SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH);
  }
}

interface IndexFile {
  path: string;
  bytes: Buffer;
  /** Listed in Release but not written (Debian's uncompressed Packages). */
  listedOnly?: boolean;
}

async function writeSuite(
  root: string,
  suite: FixtureSuite,
  arches: string[],
  indexes: ('xz' | 'gz' | 'plain')[],
  listing: { component: string; entry: PoolEntry }[],
  keys: FixtureKeys,
  noInRelease: boolean,
): Promise<void> {
  const dist = join(root, 'dists', suite.codename);
  const components = Object.keys(suite.components);
  const indexArches = [...new Set(['all', ...arches])].sort(cmp);
  const files: IndexFile[] = [];
  for (const component of components) {
    for (const arch of indexArches) {
      const entries = listing
        .filter((l) => l.component === component && (l.entry.arch === arch || (l.entry.arch === 'all' && arch !== 'all')))
        .map((l) => l.entry)
        .sort((a, b) => cmp(a.pkg.name, b.pkg.name) || cmp(a.arch, b.arch) || cmp(a.pkg.version, b.pkg.version));
      const text = Buffer.from(entries.map(packagesStanza).join('\n'));
      const base = `${component}/binary-${arch}`;
      files.push({ path: `${base}/Packages`, bytes: text, listedOnly: !indexes.includes('plain') });
      if (indexes.includes('gz')) files.push({ path: `${base}/Packages.gz`, bytes: gzipSync(text, { level: 9 }) });
      if (indexes.includes('xz')) files.push({ path: `${base}/Packages.xz`, bytes: await xz(text) });
      files.push({
        path: `${base}/Release`,
        bytes: Buffer.from(
          stanza([
            ['Archive', suite.suite],
            ['Origin', ORIGIN],
            ['Label', ORIGIN],
            ['Acquire-By-Hash', 'no'],
            ['Component', component],
            ['Architecture', arch],
          ]),
        ),
      });
    }
  }
  files.sort((a, b) => cmp(a.path, b.path));
  for (const f of files) {
    if (f.listedOnly) continue;
    await mkdir(dirname(join(dist, f.path)), { recursive: true });
    await writeFile(join(dist, f.path), f.bytes);
  }

  const width = Math.max(...files.map((f) => String(f.bytes.length).length), 1);
  const list = (algo: 'md5' | 'sha256') =>
    files.map((f) => `\n ${createHash(algo).update(f.bytes).digest('hex')} ${String(f.bytes.length).padStart(width)} ${f.path}`).join('');
  const release = stanza([
    ['Origin', ORIGIN],
    ['Label', ORIGIN],
    ['Suite', suite.suite],
    ['Codename', suite.codename],
    ['Date', suite.date ?? DEFAULT_DATE],
    ...(suite.validUntil ? [['Valid-Until', suite.validUntil] as [string, string]] : []),
    ['Acquire-By-Hash', 'no'],
    ['No-Support-for-Architecture-all', 'Packages'],
    ['Architectures', indexArches.join(' ')],
    ['Components', components.join(' ')],
    ['Description', `strata test archive (${suite.suite})`],
    ['MD5Sum', list('md5')],
    ['SHA256', list('sha256')],
  ]);
  const releasePath = join(dist, 'Release');
  await writeFile(releasePath, release);
  await signRelease(keys, releasePath, {
    ...(noInRelease ? {} : { inRelease: join(dist, 'InRelease') }),
    releaseGpg: join(dist, 'Release.gpg'),
  });
  if (suite.suite !== suite.codename) {
    await rm(join(root, 'dists', suite.suite), { force: true });
    await symlink(suite.codename, join(root, 'dists', suite.suite));
  }
}

async function xz(input: Buffer): Promise<Buffer> {
  return new Promise((ok, fail) => {
    const child = execFile('xz', ['-T1', '-6', '-c'], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 }, (err, stdout) =>
      err ? fail(err) : ok(stdout),
    );
    child.stdin!.end(input);
  });
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
