/**
 * What the first `dpkg --configure` of Debian's Essential packages leaves behind, made without running their
 * scripts. Each postinst here follows the DPKG_ROOT protocol and, on a first install (`configure` with no old
 * version), only copies files the package itself ships and makes fixed directories and links, so the result is a
 * function of the packages' contents; strata makes the same entries from them. Each effect applies only when the
 * package ships the files its script reads (a package of the same name that does not is left alone). Measured
 * against mmdebstrap's apt-and-dpkg install of the same lock (tests/oracle-debian.test.ts).
 *
 * - base-passwd: /etc/passwd and /etc/group from its `*.master` files; empty /etc/subuid and /etc/subgid.
 * - base-files: /root/.profile, /root/.bashrc, /etc/profile, /etc/motd, /usr/share/info/dir from
 *   /usr/share/base-files; /mnt /srv /opt /etc/opt /var/opt /media, /var/mail (root:mail 2775), /run/lock (1777),
 *   /var/spool/mail -> ../mail, /var/run -> /run and /var/lock -> /run/lock, the /usr/local tree with
 *   /usr/local/man -> share/man, /var/log/{wtmp,btmp,lastlog} (root:utmp), /etc/dpkg/origins/default -> debian.
 * - debianutils: /etc/shells and /var/lib/shells.state, as update-shells makes them from
 *   /usr/share/debianutils/shells and every package's shells.d fragment (each shell also under its merged-/usr
 *   path).
 * - tzdata: /etc/localtime -> /usr/share/zoneinfo/Etc/UTC, debconf's default answer.
 * - libc-bin: /etc/nsswitch.conf; readline-common: /etc/inputrc; netbase: /etc/networks; python3:
 *   /etc/python3/debian_config; libpam-modules: /etc/security/opasswd (0600) and an empty /etc/environment;
 *   python3.X-minimal: /var/lib/python/python3.X_installed and /usr/local/lib/python3.X/dist-packages;
 *   ca-certificates: /usr/local/share/ca-certificates; dpkg: /var/lib/dpkg/arch-native.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LayerEntry } from './layertar.ts';
import { dir, file, symlink } from './tree.ts';

/** One unpacked package as this module reads it: what it ships, and where its regular files lie. */
export interface ShippedPackage {
  name: string;
  /** Shipped paths (`usr/share/x`, no leading `/`), as in the .deb. */
  paths: Set<string>;
  /** Reads a regular file the package ships, by its shipped path. */
  read(path: string): Buffer;
}


/** The merged-/usr spelling of an absolute path's directory, as dpkg-realpath resolves it in a merged tree. */
function mergedDir(d: string): string {
  return /^\/(bin|sbin|lib|lib32|lib64|libx32|libo32)(\/|$)/.test(d) ? `/usr${d}` : d;
}

/** A group's id from a group file's text, or the fallback. */
function groupId(groupText: string | undefined, name: string, fallback: number): number {
  const line = groupText?.split('\n').find((l) => l.startsWith(`${name}:`));
  const gid = line ? Number(line.split(':')[2]) : NaN;
  return Number.isInteger(gid) ? gid : fallback;
}

/** The lines of a shells file that name a shell (update-shells: the text before any `#`, empty lines skipped). */
const shellLines = (text: string) => text.split('\n').map((l) => l.split('#')[0]!).filter((l) => l !== '');

export function firstConfigureEntries(pkgs: Map<string, ShippedPackage>, arch: string): LayerEntry[] {
  const out: LayerEntry[] = [];
  const ships = (pkg: string, path: string) => pkgs.get(pkg)?.paths.has(path) === true;
  const anyShips = (path: string) => [...pkgs.values()].some((p) => p.paths.has(path));
  const anyShipsUnder = (prefix: string) => [...pkgs.values()].some((p) => [...p.paths].some((x) => x.startsWith(prefix)));

  let groupText: string | undefined;
  const bp = pkgs.get('base-passwd');
  if (bp && ships('base-passwd', 'usr/share/base-passwd/passwd.master') && ships('base-passwd', 'usr/share/base-passwd/group.master')) {
    groupText = bp.read('usr/share/base-passwd/group.master').toString('utf8');
    out.push(file('etc/passwd', bp.read('usr/share/base-passwd/passwd.master')));
    out.push(file('etc/group', groupText));
    out.push(file('etc/subuid', ''), file('etc/subgid', ''));
  }

  const bf = pkgs.get('base-files');
  const share = 'usr/share/base-files';
  if (bf && ships('base-files', `${share}/dot.profile`)) {
    if (anyShips('etc/dpkg/origins/debian')) out.push(symlink('etc/dpkg/origins/default', 'debian'));
    for (const [from, to] of [['dot.profile', 'root/.profile'], ['dot.bashrc', 'root/.bashrc'], ['profile', 'etc/profile'], ['motd', 'etc/motd']] as const) {
      if (ships('base-files', `${share}/${from}`)) out.push(file(to, bf.read(`${share}/${from}`)));
    }
    for (const d of ['mnt', 'srv', 'opt', 'etc/opt', 'var/opt', 'media']) out.push(dir(d));
    out.push(dir('var/mail', 0o2775, groupId(groupText, 'mail', 8)));
    out.push(symlink('var/spool/mail', '../mail'));
    out.push(dir('run/lock', 0o1777));
    out.push(symlink('var/run', '/run'), symlink('var/lock', '/run/lock'));
    for (const d of ['usr/local', 'usr/local/share', 'usr/local/share/man', 'usr/local/bin', 'usr/local/games', 'usr/local/lib', 'usr/local/libexec', 'usr/local/include', 'usr/local/sbin', 'usr/local/src', 'usr/local/etc']) {
      out.push(dir(d));
    }
    out.push(symlink('usr/local/man', 'share/man'));
    out.push(dir('root', 0o700)); // the parent of .profile and .bashrc, as base-files ships it
    const utmp = groupId(groupText, 'utmp', 43);
    out.push(file('var/log/wtmp', '', 0o664, utmp), file('var/log/btmp', '', 0o660, utmp), file('var/log/lastlog', '', 0o664, utmp));
    if (anyShipsUnder('usr/share/info/') && !anyShips('usr/share/info/dir') && ships('base-files', `${share}/info.dir`)) {
      out.push(file('usr/share/info/dir', bf.read(`${share}/info.dir`)));
    }
  }

  const du = pkgs.get('debianutils');
  const template = 'usr/share/debianutils/shells';
  if (du && ships('debianutils', template)) {
    const templateText = du.read(template).toString('utf8');
    // The packaged shells: the template's, then each shells.d fragment in C order, each also at its merged path.
    const fragments = [...pkgs.values()]
      .flatMap((p) => [...p.paths].filter((x) => /^usr\/share\/debianutils\/shells\.d\/[^/]+$/.test(x)).map((x) => ({ path: x, p })))
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const packaged: string[] = [];
    const add = (s: string) => {
      if (!packaged.includes(s)) packaged.push(s);
    };
    for (const text of [templateText, ...fragments.map((f) => f.p.read(f.path).toString('utf8'))]) {
      for (const shell of shellLines(text)) {
        add(shell);
        const slash = shell.lastIndexOf('/');
        add(`${mergedDir(shell.slice(0, slash) || '/')}/${shell.slice(slash + 1)}`.replace(/^\/\//, '/'));
      }
    }
    // /etc/shells: the template's lines (comments kept), then every packaged shell not already there.
    const lines: string[] = [];
    const seen = new Set<string>();
    for (const line of templateText.replace(/\n$/, '').split('\n')) {
      const shell = line.split('#')[0]!;
      if (shell === '' || !seen.has(shell)) {
        lines.push(line);
        seen.add(shell);
      }
    }
    for (const s of packaged) if (!seen.has(s)) lines.push(s);
    out.push(file('etc/shells', `${lines.join('\n')}\n`));
    out.push(file('var/lib/shells.state', `${packaged.join('\n')}\n`));
  }

  if (pkgs.has('tzdata') && ships('tzdata', 'usr/share/zoneinfo/Etc/UTC')) out.push(symlink('etc/localtime', '/usr/share/zoneinfo/Etc/UTC'));

  // Files other Essential or common packages copy from their own defaults on a first configure.
  for (const [pkg, from, to] of [
    ['libc-bin', 'usr/share/libc-bin/nsswitch.conf', 'etc/nsswitch.conf'],
    ['readline-common', 'usr/share/readline/inputrc', 'etc/inputrc'],
  ] as const) {
    if (ships(pkg, from)) out.push(file(to, pkgs.get(pkg)!.read(from)));
  }
  // netbase and python3 write theirs from a here-document; libpam-modules touches two files.
  if (ships('netbase', 'etc/protocols')) out.push(file('etc/networks', 'default\t\t0.0.0.0\nloopback\t127.0.0.0\nlink-local\t169.254.0.0\n\n'));
  if (pkgs.has('python3') && ships('python3-minimal', 'usr/share/python3/debian_defaults')) {
    out.push(dir('etc/python3'), file('etc/python3/debian_config', '[DEFAULT]\n# how to byte-compile (comma separated: standard, optimize)\nbyte-compile = standard\n'));
  }
  if (ships('ca-certificates', 'usr/sbin/update-ca-certificates')) out.push(dir('usr/local/share/ca-certificates'));
  if (ships('dpkg', 'usr/bin/dpkg')) out.push(file('var/lib/dpkg/arch-native', `${arch}\n`));
  // python3.X-minimal: its preinst remembers the new runtime; its postinst makes the local site directory.
  for (const [name, p] of pkgs) {
    const m = /^python(3\.\d+)-minimal$/.exec(name);
    if (!m || !p.paths.has(`usr/bin/python${m[1]}`)) continue;
    out.push(dir('var/lib/python'), file(`var/lib/python/python${m[1]}_installed`, ''));
    out.push(dir(`usr/local/lib/python${m[1]}`), dir(`usr/local/lib/python${m[1]}/dist-packages`));
  }
  if (ships('libpam-modules', 'etc/security/limits.conf')) out.push(file('etc/security/opasswd', '', 0o600), file('etc/environment', ''));
  return out;
}

/** A ShippedPackage over an unpacked tree: `root` holds the regular files by shipped path. */
export function shippedPackage(name: string, paths: string[], root: string): ShippedPackage {
  return { name, paths: new Set(paths), read: (p) => readFileSync(join(root, p)) };
}
