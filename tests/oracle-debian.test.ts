/**
 * The differential oracle for "installed" (issue: an environment is an installed Debian system). For a manifest on
 * the real archive (skipped with a message when no mirror is reachable), strata locks and realises it as an OCI
 * layout, umoci unpacks that (an independent unpacker), and mmdebstrap installs the lock's exact `name=version`
 * list the way Debian does: apt and dpkg, every maintainer script run. The two trees are compared path by path:
 * presence, type, mode, owner, symlink target and the bytes of every regular file, apart from a short list of
 * volatile paths. Every remaining difference must be in EXPLAINED (and in the README); a new one fails the test.
 *
 * Slow (two installs of each environment): runs with STRATA_TEST_ORACLE=1 (scripts/long-checks.sh).
 * STRATA_TEST_ORACLE_ENVS=a,b picks environments; STRATA_TEST_ORACLE_OUT=DIR keeps both trees and the list of
 * differences there; STRATA_TEST_ORACLE_REUSE=DIR compares strata's tree anew with the Debian tree (and lock) an
 * earlier run kept in DIR.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './helpers/project.ts';
import { debianMirrorOrSkip, longCheckOrSkip } from './helpers/debianMirror.ts';
import { debianInstall, HOST_STUB } from './helpers/debianInstall.ts';
import { diffTrees, type TreeDifference } from './helpers/treeDiff.ts';
import { parseLock } from '../lock/lockfile.ts';

/**
 * Not compared, with why: what only exists because of how each tree was made, not what was installed.
 * - apt's own state and caches, and mmdebstrap's apt configuration: strata's trees are not managed by apt;
 * - logs, and dpkg's journal files (`*-old`, `available`, locks, triggers state): dpkg's bookkeeping of the run;
 * - debconf's database: the answers the maintainer scripts gave (strata asks no questions);
 * - machine-id, hostname, resolv.conf, hosts: per-machine files the runtime or first boot provides;
 * - the ldconfig auxiliary cache: a timing cache of ldconfig itself;
 * - the account tools' backup copies (`/etc/passwd-` and the like) and their lock file `/etc/.pwd.lock`: left by the
 *   run of each tool, the previous state of a file the install changed;
 * - /etc/fstab: written by the bootstrapper ("UNCONFIGURED FSTAB", as debootstrap does), by no package;
 * - dev, proc, sys, run, tmp contents: runtime mounts.
 */
const IGNORE = new RegExp(
  '^(' +
    [
      'var/lib/apt(/|$)', 'var/cache/apt(/|$)', 'etc/apt(/|$)', 'var/log(/|$)',
      'var/lib/dpkg/(available|[a-z]+-old|lock|lock-frontend|triggers|cmethopt|arch)(/|$)', 'var/lib/dpkg/status-old',
      'var/cache/debconf(/|$)', 'etc/machine-id$', 'var/lib/dbus/machine-id$', 'etc/hostname$', 'etc/resolv\\.conf$', 'etc/hosts$',
      'var/cache/ldconfig/aux-cache$', 'etc/(passwd|group|shadow|gshadow)-$', 'etc/\\.pwd\\.lock$', 'etc/fstab$', 'dev/.', 'proc/.', 'sys/.', 'run/.', 'tmp/.',
    ].join('|') +
    ')',
);
/** Compared by presence and type alone: bytecode embeds the invalidation mode and, for Debian's, source mtimes. */
const PRESENCE_ONLY = /(^|\/)__pycache__\/[^/]+\.pyc$/;

/**
 * Compared with a field that records when, or over which tree, the file was made set aside:
 * - /etc/shadow's `lastchg` (the third field): the day the account was made, SOURCE_DATE_EPOCH's day in strata's;
 * - a fontconfig cache's directory checksum (bytes 48-51) and its nanoseconds (56-63): the font directory's mtime,
 *   the layers' fixed time in strata's tree and the time dpkg made the directory in Debian's;
 * - the status paragraph of the stand-in for the host's GPU driver (below), which strata's database has no need of.
 */
const NORMALISE = {
  paths: /^(etc\/shadow|var\/cache\/fontconfig\/[0-9a-f]+-[a-z0-9]+\.cache-\d+|var\/lib\/dpkg\/status)$/,
  bytes(path: string, content: Buffer): Buffer {
    if (path === 'etc/shadow') return Buffer.from(content.toString('utf8').replace(/^([^:\n]*:[^:\n]*:)[^:\n]*/gm, '$1'));
    if (path === 'var/lib/dpkg/status') return Buffer.from(content.toString('utf8').replace(new RegExp(`^Package: ${HOST_STUB}\n[^]*?\n\n`, 'm'), ''));
    const b = Buffer.from(content);
    if (b.length >= 64) b.fill(0, 48, 52).fill(0, 56, 64);
    return b;
  },
};

/** Differences that remain, each explained (the README's list). Matched against `path kind`. */
const EXPLAINED: { pattern: RegExp; why: string }[] = [
  { pattern: /^(etc\/pam\.d\/common-[a-z-]+|var\/lib\/pam\/[a-z-]+) only-b$/, why: "pam-auth-update (libpam-runtime's postinst) is not run: the PAM stacks serve login and su, which an environment does not use" },
  { pattern: /^etc\/shadow only-a$/, why: 'strata ships /etc/shadow with root and nobody locked; Debian makes one only with the passwd package (shadowconfig), dated the day it ran' },
  { pattern: /^(etc\/systemd\/(system|user)\/[^/]+\.wants|var\/lib\/systemd\/deb-systemd(-user)?-helper-enabled)(\/.*)? only-b$/, why: 'units enabled by deb-systemd-helper (system and user ones): an environment runs no init' },
  { pattern: /^etc\/rc[0-6S]\.d(\/.*)? only-b$/, why: 'System V init links made by update-rc.d: an environment runs no init' },
  { pattern: /^etc\/.*\.dpkg-old only-b$/, why: "dpkg's copy of a conffile another package gave up during the install (binutils-common's /etc/gprofng.rc, taken over by binutils): a tree made in one step has no earlier owner" },
  { pattern: /^var\/lib\/dpkg\/diversions content$/, why: "the DEP17 protective diversions libc6's and others' preinst add for the /usr-merge transition: they guard dpkg's unpack order, and strata unpacks into a merged tree directly" },
  { pattern: new RegExp(`^var/lib/dpkg/info/${HOST_STUB}\\.[a-z0-9]+ only-b$`), why: "the stand-in for the host's GPU driver that the Debian install takes (strata's environment leaves the driver to the host)" },
  { pattern: /^etc\/ld\.so\.conf\.d\/000-strata-host-gpu-driver\.conf only-a$/, why: '[gpu] driver = "host": the loader looks for the driver where strata run binds it' },
];

const ENVIRONMENTS: { name: string; packages: string[]; components?: string[]; gpuHost?: boolean }[] = [
  { name: 'web-tls', packages: ['ca-certificates', 'curl', 'python3-requests', 'openssl'] },
  { name: 'toolchain', packages: ['gcc', 'g++', 'make', 'cmake', 'pkgconf'] },
  { name: 'desktop', packages: ['python3-matplotlib', 'python3-gi', 'gir1.2-gtk-3.0', 'fonts-dejavu-core'] },
  // The seed's stack (bench/run.ts): CUDA, MAGMA, MKL and Python, about 400 packages and 2.5 GB of .debs.
  {
    name: 'story',
    packages: ['git', 'libhdf5-dev', 'intel-mkl', 'libmagma-dev', 'nvidia-cuda-toolkit', 'python3-numpy', 'python3-scipy', 'python3-sklearn', 'python3-gdal', 'python3-pip', 'python3-wheel', 'python3-pycuda'],
    components: ['main', 'contrib', 'non-free'],
    gpuHost: true,
  },
];
const only = process.env.STRATA_TEST_ORACLE_ENVS?.split(',');

for (const env of ENVIRONMENTS.filter((e) => !only || only.includes(e.name))) {
  test(`installed parity with apt and dpkg: ${env.name} (${env.packages.join(' ')})`, async (t) => {
    if (!longCheckOrSkip(t, 'STRATA_TEST_ORACLE', 'the oracle')) return;
    t.timeout(40 * 60_000);
    const m = await debianMirrorOrSkip(t);
    if (!m) return;
    const dir = mkdtempSync(join(process.env.STRATA_TEST_ORACLE_OUT ?? tmpdir(), `strata-oracle-${env.name}-`));
    // STRATA_TEST_ORACLE_OUT=DIR keeps both trees there, to look at the differences.
    if (!process.env.STRATA_TEST_ORACLE_OUT) t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const components = env.components ?? ['main'];
    writeFileSync(
      join(dir, 'strata.toml'),
      `[project]\nname = "oracle-${env.name}"\narch = "amd64"\n\n[channels.stable]\nurl = "${m.url}"\nsuite = "trixie"\ncomponents = [${components.map((c) => `"${c}"`).join(', ')}]\n\n[packages]\n${env.packages.map((p) => `"${p}" = "*"`).join('\n')}\n${env.gpuHost ? '\n[gpu]\ndriver = "host"\n' : ''}`,
    );
    const cache = { STRATA_CACHE_DIR: process.env.STRATA_TEST_DEBIAN_CACHE ?? join(dir, 'cache') };
    const strata = (args: string[]) => runCli(args, { cwd: dir, env: cache, timeoutMs: 1_800_000 });
    // STRATA_TEST_ORACLE_REUSE=DIR (one environment): the lock and the Debian tree an earlier run kept in DIR
    // (STRATA_TEST_ORACLE_OUT), compared with strata's tree made anew: a change to strata checked in minutes.
    const reuse = process.env.STRATA_TEST_ORACLE_REUSE;
    if (reuse) {
      // The lock with the manifest it was made from (bench/run.ts's BENCH_KEEP_TREES=1 keeps the lock alone).
      if (existsSync(join(reuse, 'strata.toml'))) writeFileSync(join(dir, 'strata.toml'), readFileSync(join(reuse, 'strata.toml')));
      writeFileSync(join(dir, 'strata.lock'), readFileSync(join(reuse, 'strata.lock')));
    } else {
      const lock = await strata(['lock']);
      t.is(lock.code, 0, lock.stderr);
    }
    const realise = await strata(['realise', '--locked', '--oci', join(dir, 'oci')]);
    t.is(realise.code, 0, realise.stderr);
    const ref = JSON.parse(readFileSync(join(dir, 'oci/index.json'), 'utf8')).manifests[0].annotations['org.opencontainers.image.ref.name'];
    execFileSync('umoci', ['raw', 'unpack', '--image', `${join(dir, 'oci')}:${ref}`, join(dir, 'strata-root')], { stdio: 'pipe' });
    rmSync(join(dir, 'oci'), { recursive: true, force: true }); // unpacked: its gigabytes are not needed again

    const locked = parseLock(readFileSync(join(dir, 'strata.lock'), 'utf8'));
    const debianRoot = reuse ? join(reuse, 'debian-root') : join(dir, 'debian-root');
    if (!reuse) debianInstall(locked, debianRoot, m.url, components);
    const diffs = await diffTrees(join(dir, 'strata-root'), debianRoot, { ignore: IGNORE, presenceOnly: PRESENCE_ONLY, normalise: NORMALISE });
    const unexplained: TreeDifference[] = diffs.filter((d) => !EXPLAINED.some((e) => e.pattern.test(`${d.path} ${d.kind}`)));
    t.log(`${locked.packages.length} packages; ${diffs.length} differences, ${unexplained.length} unexplained`);
    for (const d of unexplained.slice(0, 400)) t.log(`${d.kind.padEnd(7)} ${d.path}  (${d.detail})`);
    const report = process.env.STRATA_TEST_ORACLE_OUT;
    if (report) writeFileSync(join(report, `oracle-${env.name}.txt`), diffs.map((d) => `${d.kind}\t${d.path}\t${d.detail}`).join('\n') + '\n');
    t.deepEqual(unexplained, [], 'every difference from the apt-installed tree is explained');
  });
}

