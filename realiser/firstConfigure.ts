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
import { join, posix } from 'node:path';
import { Accounts, dayOf, parseSysusers, shadowconfigOn, sysusers, type SysusersItem } from './accounts.ts';
import type { LayerEntry } from './layertar.ts';
import { applyTmpfiles, parseTmpfiles, type TmpfilesLine, type TreeNode } from './tmpfiles.ts';
import { baseEntries, dir, file, mergedUsrPath, scriptCalls, symlink } from './tree.ts';

/** One unpacked package as this module reads it: what it ships, and where its regular files lie. */
export interface ShippedPackage {
  name: string;
  /** Shipped paths (`usr/share/x`, no leading `/`), as in the .deb. */
  paths: Set<string>;
  /** Reads a regular file the package ships, by its shipped path. */
  read(path: string): Buffer;
  /** The control archive's members: maintainer scripts (`postinst`), `templates`, ... */
  control?: Record<string, string>;
  /** The packages of the environment this one depends on (the lock's resolved names): they are configured first. */
  depends?: string[];
  /** What a shipped path is: type, mode, owner and link target. */
  entry?(path: string): ShippedEntry | undefined;
}

export interface ShippedEntry {
  type: 'file' | 'dir' | 'symlink' | 'hardlink';
  mode: number;
  uid: number;
  gid: number;
  linkname?: string;
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

/**
 * The order dpkg configures the packages in when it configures all of them after unpacking all of them (as a first
 * install of an environment does): a package after the packages it depends on. Packages that depend on each other
 * (a cycle) are configured together, after what any of them depends on, in name order; ties by name. The ids of
 * the accounts the scripts add follow it.
 */
export function configureOrder(pkgs: Map<string, ShippedPackage>): string[] {
  const names = [...pkgs.keys()].sort(bytewise);
  const deps = new Map(names.map((n) => [n, (pkgs.get(n)!.depends ?? []).filter((d) => d !== n && pkgs.has(d))]));
  // Tarjan's strongly connected components: each cycle becomes one node of an acyclic graph.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const comp = new Map<string, number>();
  const stack: string[] = [];
  const members: string[][] = [];
  let counter = 0;
  const visit = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    for (const w of deps.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (!comp.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const c: string[] = [];
      for (;;) {
        const w = stack.pop()!;
        comp.set(w, members.length);
        c.push(w);
        if (w === v) break;
      }
      members.push(c.sort(bytewise));
    }
  };
  for (const n of names) if (!index.has(n)) visit(n);
  const compDeps = members.map((c, i) => new Set(c.flatMap((n) => deps.get(n)!.map((d) => comp.get(d)!)).filter((j) => j !== i)));
  const done = new Set<number>();
  const order: string[] = [];
  while (done.size < members.length) {
    // The ready component whose first name sorts first.
    let next = -1;
    for (let i = 0; i < members.length; i++) {
      if (done.has(i) || ![...compDeps[i]!].every((j) => done.has(j))) continue;
      if (next < 0 || bytewise(members[i]![0]!, members[next]![0]!) < 0) next = i;
    }
    done.add(next);
    order.push(...members[next]!);
  }
  return order;
}

const bytewise = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** `mtime`: the layers' time; the day the account tools date /etc/shadow's entries with. */
export function firstConfigureEntries(pkgs: Map<string, ShippedPackage>, arch: string, mtime = 0): LayerEntry[] {
  const out: LayerEntry[] = [];
  const ships = (pkg: string, path: string) => pkgs.get(pkg)?.paths.has(path) === true;
  const anyShips = (path: string) => [...pkgs.values()].some((p) => p.paths.has(path));
  const anyShipsUnder = (prefix: string) => [...pkgs.values()].some((p) => [...p.paths].some((x) => x.startsWith(prefix)));

  let groupText: string | undefined;
  let accounts: Accounts | undefined;
  const bp = pkgs.get('base-passwd');
  if (bp && ships('base-passwd', 'usr/share/base-passwd/passwd.master') && ships('base-passwd', 'usr/share/base-passwd/group.master')) {
    groupText = bp.read('usr/share/base-passwd/group.master').toString('utf8');
    // Written below, once the scripts' accounts are in.
    accounts = new Accounts(bp.read('usr/share/base-passwd/passwd.master').toString('utf8'), groupText);
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
  out.push(...fontconfigLinks(pkgs));
  // unixodbc-common touches /etc/odbcinst.ini; pkgconf-bin makes /usr/lib/pkgconfig.
  if (!anyShips('etc/odbcinst.ini') && /touch \/etc\/odbcinst\.ini/.test(pkgs.get('unixodbc-common')?.control?.postinst ?? '')) out.push(file('etc/odbcinst.ini', ''));
  if (/install -d .*\/usr\/lib\/pkgconfig/.test(pkgs.get('pkgconf-bin')?.control?.postinst ?? '') && !anyShipsUnder('usr/lib/pkgconfig/')) out.push(dir('usr/lib/pkgconfig'));
  out.push(...scriptEffects(pkgs, arch, mtime, accounts, out));
  if (accounts) for (const f of accounts.files()) out.push(file(f.path, f.text, f.mode, f.gid));
  // One entry per path: what was made last (a script's change to a file made above).
  const byPath = new Map<string, LayerEntry>();
  for (const e of out) {
    byPath.delete(e.path);
    byPath.set(e.path, e);
  }
  return [...byPath.values()];
}

/**
 * fontconfig-config's first configure: its config script's answers (the links its package ships decide the
 * subpixel and bitmap ones, else hinting "Native", style "hintslight", subpixel "Automatic", bitmaps off), turned
 * into the /etc/fonts/conf.d links its postinst makes; and /usr/local/share/fonts.
 */
function fontconfigLinks(pkgs: Map<string, ShippedPackage>): LayerEntry[] {
  const p = pkgs.get('fontconfig-config');
  if (!p || !/db_get fontconfig\/hinting_style/.test(p.control?.postinst ?? '')) return [];
  const avail = '/usr/share/fontconfig/conf.avail';
  const linked = (n: string) => p.paths.has(`etc/fonts/conf.d/${n}`) && p.entry?.(`etc/fonts/conf.d/${n}`)?.type !== 'file';
  let hintingType = 'Native';
  if (linked('10-unhinted.conf') || linked('10-debconf-unhinted.conf')) hintingType = 'None';
  if (linked('10-autohint.conf') || linked('10-debconf-autohint.conf')) hintingType = 'Autohinter';
  let style = 'hintslight';
  for (const s of ['hintnone', 'hintslight', 'hintmedium', 'hintfull']) if (linked(`10-hinting-${s.slice(4)}.conf`)) style = s;
  let subpixel = 'Automatic';
  if (linked('10-sub-pixel-rgb.conf') || linked('20-debconf-sub-pixel.conf')) subpixel = 'Always';
  if (linked('10-no-sub-pixel.conf') || linked('20-debconf-no-sub-pixel.conf') || linked('10-sub-pixel-none.conf')) subpixel = 'Never';
  const bitmaps = linked('70-yes-bitmaps.conf') || linked('30-debconf-yes-bitmaps.conf') ? 'true' : 'false';
  const names = [
    { Native: undefined, Autohinter: '10-autohint.conf', None: '10-unhinted.conf' }[hintingType],
    `10-hinting-${style.slice(4)}.conf`,
    { Automatic: undefined, Always: '10-sub-pixel-rgb.conf', Never: '10-sub-pixel-none.conf' }[subpixel],
    bitmaps === 'true' ? '70-yes-bitmaps.conf' : '70-no-bitmaps-except-emoji.conf',
  ].filter((n): n is string => n !== undefined);
  return [...names.map((n) => symlink(`etc/fonts/conf.d/${n}`, `${avail}/${n}`)), dir('usr/local/share/fonts')];
}

/** An entry owned by a named account: the tar header carries the names too. */
function owned(e: LayerEntry, accounts: Accounts | undefined): LayerEntry {
  if (!accounts || (e.uid === 0 && e.gid === 0)) return e;
  const uname = accounts.nameOfUid(e.uid);
  const gname = accounts.nameOfGid(e.gid);
  return { ...e, ...(uname ? { uname } : {}), ...(gname ? { gname } : {}) };
}

/**
 * What the postinsts do through the tools that act on declared data, run in configure order: the passwd package's
 * `shadowconfig on`, `systemd-sysusers FILE...` (when the environment has systemd-sysusers), `systemd-tmpfiles
 * --create FILE...` (when it has systemd-tmpfiles; systemd's own postinst first makes /var/log/journal), and
 * `dpkg-statoverride --update --add USER GROUP MODE PATH` (recorded in /var/lib/dpkg/statoverride and applied to the
 * shipped file). `adduser` calls are not made (none of the environments tested makes one).
 */
function scriptEffects(pkgs: Map<string, ShippedPackage>, arch: string, mtime: number, accounts: Accounts | undefined, made: LayerEntry[]): LayerEntry[] {
  const out: LayerEntry[] = [];
  const shipped = (abs: string): { p: ShippedPackage; path: string } | undefined => {
    for (const p of pkgs.values()) for (const path of [abs.slice(1), abs.replace(/^\/usr\//, '')]) if (p.paths.has(path) && `/${mergedUsrPath(path)}` === abs) return { p, path };
    return undefined;
  };
  const tool = (name: string) => shipped(`/usr/bin/${name}`) !== undefined || shipped(`/usr/sbin/${name}`) !== undefined;
  const confFile = (dirName: string, name: string): string | undefined => {
    for (const d of [`/etc/${dirName}`, `/usr/lib/${dirName}`]) {
      const hit = shipped(`${d}/${name}`);
      if (hit) return hit.p.read(hit.path).toString('utf8');
    }
    return undefined;
  };
  const day = dayOf(mtime);
  const hasSysusers = tool('systemd-sysusers');
  const hasTmpfiles = tool('systemd-tmpfiles');
  const overrides: { user: string; group: string; mode: string; path: string }[] = [];
  let tree: Map<string, TreeNode> | undefined;
  const treeOf = () => (tree ??= treeView(pkgs, arch, made));
  for (const name of configureOrder(pkgs)) {
    const p = pkgs.get(name)!;
    const post = p.control?.postinst;
    if (!post) continue;
    if (accounts && /^\s*\[ -z "\$2" \] && shadowconfig on\s*$/m.test(post) && p.paths.has('usr/sbin/shadowconfig')) shadowconfigOn(accounts, day);
    if (accounts && hasSysusers) {
      for (const words of scriptCalls(post, arch, 'systemd-sysusers')) {
        const names = words.slice(1).filter((w) => !w.startsWith('-'));
        if (names.some((w) => w.includes('$') || w.includes('/'))) continue;
        const items: SysusersItem[] = [];
        for (const n of names) items.push(...parseSysusers(confFile('sysusers.d', n) ?? ''));
        sysusers(accounts, items, day);
      }
    }
    if (hasTmpfiles) {
      if (name === 'systemd' && /mkdir -p "\$DPKG_ROOT\/var\/log\/journal"/.test(post)) {
        if (!treeOf().has('/var/log/journal')) {
          out.push(dir('var/log/journal'));
          treeOf().set('/var/log/journal', { type: 'dir', mode: 0o755, uid: 0, gid: 0 });
        }
      }
      for (const words of scriptCalls(post, arch, 'systemd-tmpfiles')) {
        const at = words.indexOf('--create');
        if (at < 0) continue;
        const names = words.slice(at + 1).filter((w) => !w.startsWith('-'));
        if (names.some((w) => w.includes('$') || w.includes('/'))) continue;
        const lines: TmpfilesLine[] = [];
        for (const n of names) lines.push(...parseTmpfiles(confFile('tmpfiles.d', n) ?? ''));
        const t = treeOf();
        out.push(
          ...applyTmpfiles(lines, {
            at: (x) => t.get(x),
            put: (x, node) => t.set(x, node),
            uidOf: (n) => (accounts ? accounts.uidOf(n) : n === 'root' ? 0 : /^\d+$/.test(n) ? Number(n) : undefined),
            gidOf: (n) => (accounts ? accounts.gidOf(n) : n === 'root' ? 0 : /^\d+$/.test(n) ? Number(n) : undefined),
          }),
        );
      }
    }
    for (const words of scriptCalls(post, arch, 'dpkg-statoverride')) {
      const at = words.indexOf('--add');
      if (at < 0 || !words.includes('--update')) continue;
      const [user, group, mode, path] = words.slice(at + 1, at + 5);
      if (!user || !group || !mode || !path || [user, group, mode, path].some((w) => w.includes('$')) || !/^[0-7]{3,4}$/.test(mode)) continue;
      overrides.push({ user, group, mode, path });
    }
  }
  if (overrides.length > 0) {
    const lines: string[] = [];
    for (const o of overrides.sort((a, b) => bytewise(a.path, b.path))) {
      const uid = accounts?.uidOf(o.user) ?? (o.user === 'root' ? 0 : undefined);
      const gid = accounts?.gidOf(o.group) ?? (o.group === 'root' ? 0 : undefined);
      if (uid === undefined || gid === undefined) continue;
      lines.push(`${o.user} ${o.group} ${o.mode} ${o.path}`);
      const hit = shipped(`/${mergedUsrPath(o.path.replace(/^\/+/, ''))}`);
      const e = hit?.p.entry?.(hit.path);
      if (!hit || (e && e.type !== 'file' && e.type !== 'dir')) continue;
      const rel = mergedUsrPath(hit.path);
      const mode = parseInt(o.mode, 8);
      if (e?.type === 'dir') out.push({ path: rel, type: 'dir', mode, uid, gid });
      else {
        const content = hit.p.read(hit.path);
        out.push({ path: rel, type: 'file', mode, uid, gid, size: content.length, content });
      }
      // Its parents as the packages ship them (a parent the layer adds itself would be 0755 root:root).
      for (let d = posix.dirname(rel); d !== '.'; d = posix.dirname(d)) {
        const n = treeOf().get(`/${d}`);
        if (n?.type === 'dir') out.push({ path: d, type: 'dir', mode: n.mode, uid: n.uid, gid: n.gid });
      }
    }
    if (lines.length > 0) out.push(file('var/lib/dpkg/statoverride', `${lines.join('\n')}\n`));
  }
  return out.map((e) => owned(e, accounts));
}

/** The tree the scripts act on, by absolute merged-/usr path: strata's skeleton, the packages' files, what was made so far. */
function treeView(pkgs: Map<string, ShippedPackage>, arch: string, made: LayerEntry[]): Map<string, TreeNode> {
  const t = new Map<string, TreeNode>();
  const parents = (abs: string) => {
    for (let d = posix.dirname(abs); d !== '/' && !t.has(d); d = posix.dirname(d)) t.set(d, { type: 'dir', mode: 0o755, uid: 0, gid: 0 });
  };
  const put = (abs: string, n: TreeNode) => {
    t.set(abs, n);
    parents(abs);
  };
  for (const e of baseEntries(arch, new Set(), false)) put(`/${e.path}`, { type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, ...(e.linkname ? { linkname: e.linkname } : {}) });
  for (const p of pkgs.values()) {
    for (const path of p.paths) {
      const abs = `/${mergedUsrPath(path)}`;
      if (abs === '/') continue;
      const e = p.entry?.(path);
      const read = () => p.read(path);
      put(abs, e ? { type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, ...(e.linkname ? { linkname: e.linkname } : {}), ...(e.type === 'file' ? { read } : {}) } : { type: 'file', mode: 0o644, uid: 0, gid: 0, read });
    }
  }
  for (const e of made) {
    const content = e.content;
    put(`/${e.path}`, { type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, ...(e.linkname ? { linkname: e.linkname } : {}), ...(content ? { read: () => content } : {}) });
  }
  return t;
}

/** A ShippedPackage over an unpacked tree: `root` holds the regular files by shipped path. */
export function shippedPackage(name: string, paths: string[], root: string, extra: { entries?: (ShippedEntry & { path: string })[]; control?: Record<string, string>; depends?: string[] } = {}): ShippedPackage {
  const p: ShippedPackage = { name, paths: new Set(paths), read: (x) => readFileSync(join(root, x)) };
  if (extra.control) p.control = extra.control;
  if (extra.depends) p.depends = extra.depends;
  if (extra.entries) {
    let byPath: Map<string, ShippedEntry> | undefined;
    const entries = extra.entries;
    p.entry = (x) => (byPath ??= new Map(entries.map((e) => [e.path, e]))).get(x);
  }
  return p;
}
