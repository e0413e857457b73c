/**
 * What installation would have produced, made without running maintainer scripts: the merged-/usr skeleton, the
 * files a real program needs (/etc/passwd, /tmp), update-alternatives links chosen as dpkg chooses them, and a dpkg
 * database describing the installed packages.
 */
import { StrataError } from '../errors.ts';
import { HOST_GPU } from '../model.ts';
import { BLAS_NAMES, blasInterface, isBlasName, providesBlas, type BlasName } from '../debian/blas.ts';
import type { LayerEntry } from './layertar.ts';

/** Debian's multiarch triplets. */
export const MULTIARCH: Record<string, string> = {
  amd64: 'x86_64-linux-gnu',
  arm64: 'aarch64-linux-gnu',
  armhf: 'arm-linux-gnueabihf',
  armel: 'arm-linux-gnueabi',
  i386: 'i386-linux-gnu',
  ppc64el: 'powerpc64le-linux-gnu',
  s390x: 's390x-linux-gnu',
  riscv64: 'riscv64-linux-gnu',
  loong64: 'loongarch64-linux-gnu',
};

const MERGED = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

/** Maps a path shipped by a package onto the merged-/usr tree: `lib/x` -> `usr/lib/x`, `bin` -> `usr/bin`. */
export function mergedUsrPath(path: string): string {
  const slash = path.indexOf('/');
  const top = slash < 0 ? path : path.slice(0, slash);
  return MERGED.includes(top) ? `usr/${path}` : path;
}

/** The top-level merged-/usr links for an image: always bin, sbin, lib; lib64 on 64-bit arches; others if used. */
export function mergedUsrLinks(arch: string, usedTops: Set<string>): string[] {
  const links = new Set(['bin', 'sbin', 'lib']);
  if (['amd64', 'ppc64el', 's390x', 'loong64', 'riscv64'].includes(arch)) links.add('lib64');
  for (const t of usedTops) if (MERGED.includes(t)) links.add(t);
  return [...links].sort();
}

/** Entries strata makes itself (owned by root; `gid` for a group-owned one such as /var/mail). */
export function dir(path: string, mode = 0o755, gid = 0): LayerEntry {
  return { path, type: 'dir', mode, uid: 0, gid };
}
export function file(path: string, content: string | Buffer, mode = 0o644, gid = 0): LayerEntry {
  const buf = typeof content === 'string' ? Buffer.from(content) : content;
  return { path, type: 'file', mode, uid: 0, gid, size: buf.length, content: buf };
}
export function symlink(path: string, target: string): LayerEntry {
  return { path, type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: target };
}

export const GPU_DRIVER_DIR = HOST_GPU.libDir;

/** The lowest layer: skeleton, users, and the GPU driver mount point. Depends only on arch and settings. */
export function baseEntries(arch: string, usedTops: Set<string>, gpu: boolean): LayerEntry[] {
  const out: LayerEntry[] = [];
  for (const l of mergedUsrLinks(arch, usedTops)) {
    out.push(symlink(l, `usr/${l}`));
    out.push(dir(`usr/${l}`));
  }
  for (const d of ['dev', 'etc', 'home', 'proc', 'run', 'sys', 'usr', 'usr/local', 'usr/local/bin', 'usr/share', 'var', 'var/cache', 'var/lib', 'var/log', 'mnt', 'opt', 'srv']) out.push(dir(d));
  out.push(dir('tmp', 0o1777), dir('var/tmp', 0o1777), dir('root', 0o700));
  out.push(file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n'));
  out.push(file('etc/group', 'root:x:0:\nnogroup:x:65534:\n'));
  out.push(file('etc/shadow', 'root:*:0:0:99999:7:::\nnobody:*:0:0:99999:7:::\n', 0o640));
  out.push(file('etc/hostname', 'strata\n'));
  out.push(file('etc/hosts', '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'));
  out.push(file('etc/nsswitch.conf', 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\nethers: files\nrpc: files\n'));
  if (gpu) {
    out.push(dir('run/opengl-driver'), dir('run/opengl-driver/lib'));
    out.push(dir('etc/ld.so.conf.d'));
    out.push(file('etc/ld.so.conf.d/000-strata-host-gpu-driver.conf', `# The host's NVIDIA driver libraries, bound here by \`strata run\`.\n${GPU_DRIVER_DIR}\n`));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// update-alternatives

export interface Alternative {
  /** The alternative's name, e.g. `libblas.so.3-x86_64-linux-gnu`. */
  name: string;
  /** The master link, e.g. `/usr/lib/x86_64-linux-gnu/libblas.so.3`. */
  link: string;
  path: string;
  priority: number;
  slaves: { link: string; name: string; path: string }[];
  /** The package whose maintainer script registers it. */
  package: string;
}

/** Splits a shell command line into words (quotes and backslashes; no expansion). */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === quote) quote = null;
      else if (ch === '\\' && quote === '"' && i + 1 < line.length) cur += line[++i];
      else cur += ch;
      continue;
    }
    if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (ch === '\\' && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (/\s/.test(ch) || ch === ';' || ch === '|' || ch === '&') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
      if (ch !== ' ' && ch !== '\t') words.push(ch);
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/**
 * A maintainer script with the calls of shell helpers the packages ship (`/usr/share/mysql-common/configure-symlinks
 * install mariadb /etc/mysql/mariadb.cnf`) replaced by the helper's text, its positional parameters set to the
 * call's words: what the helper registers with update-alternatives is then the script's own. `read` gives a
 * shipped file's text by its absolute path; only a `#!/bin/sh` helper that calls update-alternatives is inlined.
 */
export function inlineHelpers(script: string, read: (absPath: string) => string | undefined): string {
  return script
    .split('\n')
    .map((line) => {
      const m = /^(\s*)(\/usr\/(?:share|lib)\/\S+)(\s+.*)?$/.exec(line);
      if (!m) return line;
      const helper = read(m[2]!);
      if (!helper || !helper.startsWith('#!/bin/sh') || !helper.includes('update-alternatives')) return line;
      const args = shellWords(m[3] ?? '').filter((w) => ![';', '|', '&'].includes(w));
      return helper.replace(/"\$(\d)"|\$\{(\d)\}|\$(\d)/g, (_, a, b, c) => {
        const v = args[Number(a ?? b ?? c) - 1] ?? '';
        return a !== undefined ? `"${v}"` : v;
      });
    })
    .join('\n');
}

/**
 * The lines of a maintainer script (continuations joined, trimmed) that are not simple `VAR=value` assignments,
 * each with `expand`, which replaces `$(dpkg-architecture -qDEB_HOST_MULTIARCH)` and the variables assigned so far
 * (and DEB_HOST_MULTIARCH) by their values; an assignment whose value still holds `$`, a quote or a backtick
 * forgets the variable. With `emptyDpkgRoot`, `$DPKG_ROOT` is empty and `${DPKG_ROOT:+...}` gone, as on an
 * ordinary install; with `skipComments`, lines starting with `#` are left out.
 */
function* scriptLines(script: string, arch: string, o: { emptyDpkgRoot?: boolean; skipComments?: boolean } = {}): Generator<{ line: string; expand: (s: string) => string }> {
  const triplet = MULTIARCH[arch] ?? `${arch}-linux-gnu`;
  const vars = new Map<string, string>([['DEB_HOST_MULTIARCH', triplet], ...(o.emptyDpkgRoot ? [['DPKG_ROOT', ''] as [string, string]] : [])]);
  const joined = script.replace(/\\\r?\n/g, ' ');
  const text = o.emptyDpkgRoot ? joined.replace(/\$\{DPKG_ROOT:\+[^}]*\}/g, '') : joined;
  const expand = (s: string) =>
    s
      .replace(/\$\(\s*dpkg-architecture\s+-q\s*DEB_HOST_MULTIARCH\s*\)|`\s*dpkg-architecture\s+-q\s*DEB_HOST_MULTIARCH\s*`/g, triplet)
      .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (m, a, b) => vars.get(a ?? b) ?? m);
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (o.skipComments && line.startsWith('#')) continue;
    const assign = /^([A-Za-z_][A-Za-z0-9_]*)=(\$\([^)]*\)|`[^`]*`|"[^"]*"|'[^']*'|[^\s;]*)\s*;?\s*$/.exec(line);
    if (assign) {
      const value = expand(assign[2]!).replace(/^"(.*)"$|^'(.*)'$/, '$1$2');
      if (!/[$`"']/.test(value)) vars.set(assign[1]!, value);
      else vars.delete(assign[1]!);
      continue;
    }
    yield { line, expand };
  }
}

/**
 * Finds `update-alternatives --install LINK NAME PATH PRIORITY [--slave LINK NAME PATH]...` calls in a maintainer
 * script. Simple `VAR=value` assignments and `$(dpkg-architecture -qDEB_HOST_MULTIARCH)` are expanded; a call that
 * still holds a `$` after that is skipped (it cannot be known without running the script). A call under
 * `if ! update-alternatives --query NAME | grep ... "Value: PATH"` is skipped when the script registered PATH for
 * NAME already (the query finds it then, as with mariadb-common's second registration of my.cnf).
 */
export function parseAlternatives(script: string, pkg: string, arch: string): Alternative[] {
  const out: Alternative[] = [];
  let unlessValue: { name: string; path: string } | undefined;
  for (const { line, expand } of scriptLines(script, arch)) {
    const guard = /^if\s+!\s+update-alternatives\s+--query\s+(\S+)\s*\|\s*grep\b.*"Value:\s*([^"]+)"/.exec(expand(line));
    if (guard) {
      unlessValue = { name: guard[1]!, path: guard[2]!.trim() };
      continue;
    }
    if (line === 'fi') unlessValue = undefined;
    if (!line.includes('update-alternatives') || !line.includes('--install')) continue;
    const words = shellWords(expand(line));
    const at = words.indexOf('--install');
    if (at < 0) continue;
    const [link, name, path, prio] = words.slice(at + 1, at + 5);
    if (!link || !name || !path || !prio || !/^-?\d+$/.test(prio)) continue;
    if ([link, name, path].some((w) => w.includes('$'))) continue;
    if (unlessValue && unlessValue.name === name && unlessValue.path === path && out.some((a) => a.name === name && a.path === path)) continue;
    const alt: Alternative = { name, link, path, priority: Number(prio), slaves: [], package: pkg };
    let i = at + 5;
    let ok = true;
    while (words[i] === '--slave' || words[i] === '--follower') {
      const [sl, sn, sp] = words.slice(i + 1, i + 4);
      if (!sl || !sn || !sp || [sl, sn, sp].some((w) => w.includes('$'))) {
        ok = false;
        break;
      }
      alt.slaves.push({ link: sl, name: sn, path: sp });
      i += 4;
    }
    if (ok) out.push(alt);
  }
  return out;
}

/**
 * The calls of `command` in a maintainer script, as word lists (the command's own word first), with simple
 * `VAR=value` assignments and `$(dpkg-architecture -qDEB_HOST_MULTIARCH)` expanded and `$DPKG_ROOT` empty, as on
 * an ordinary install. A word that still holds a `$` cannot be known without running the script; the caller decides.
 */
export function scriptCalls(script: string, arch: string, command: string): string[][] {
  const out: string[][] = [];
  for (const { line, expand } of scriptLines(script, arch, { emptyDpkgRoot: true, skipComments: true })) {
    if (!line.includes(command)) continue;
    const words = shellWords(expand(line));
    for (let i = 0; i < words.length; i++) {
      if (words[i] !== command && !words[i]!.endsWith(`/${command}`)) continue;
      if (['-v', 'which', 'type', '-x', '-e'].includes(words[i - 1] ?? '')) continue; // a test for the command, not a call
      let j = i + 1;
      while (j < words.length && ![';', '|', '&', ')', 'then', 'fi', '>', '2>'].includes(words[j]!) && !/^[0-9]?>/.test(words[j]!)) j++;
      out.push(words.slice(i, j));
      i = j;
    }
  }
  return out;
}

export interface ChosenAlternative {
  name: string;
  link: string;
  chosen: Alternative;
  all: Alternative[];
  manual: boolean;
}

/**
 * Chooses one alternative per name as dpkg does in auto mode: the highest priority (ties: the first path in byte
 * order, for determinism). `overrides` maps a name or a master link to a path and puts that name in manual mode.
 * Alternatives whose path is not in the image are ignored, as update-alternatives refuses them.
 */
export function chooseAlternatives(all: Alternative[], exists: (absPath: string) => boolean, overrides: Record<string, string>): ChosenAlternative[] {
  const byName = new Map<string, Alternative[]>();
  for (const a of all) {
    if (!exists(a.path)) continue;
    if (!byName.has(a.name)) byName.set(a.name, []);
    const list = byName.get(a.name)!;
    if (!list.some((x) => x.path === a.path)) list.push(a);
  }
  const used = new Set<string>();
  const out: ChosenAlternative[] = [];
  const blasChoice = overrides.blas;
  if (blasChoice !== undefined && !isBlasName(blasChoice)) {
    throw new StrataError('E_MANIFEST', `strata.toml: [alternatives] blas = "${blasChoice}" is not a BLAS strata knows`, `one of: ${BLAS_NAMES.join(', ')}`);
  }
  const blas: BlasName | undefined = blasChoice;
  for (const name of [...byName.keys()].sort()) {
    const list = byName.get(name)!.sort((a, b) => b.priority - a.priority || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const link = list[0]!.link;
    const key = overrides[name] !== undefined ? name : overrides[link] !== undefined ? link : undefined;
    let chosen = list[0]!;
    const iface = blas !== undefined && key === undefined ? blasInterface(name) : undefined;
    if (iface !== undefined) {
      // blas = NAME: the implementation's own registration (its highest priority), in manual mode like an override.
      const mine = list.find((a) => providesBlas(blas!, iface, a.package));
      if (mine) {
        used.add('blas');
        out.push({ name, link, chosen: mine, all: list, manual: true });
        continue;
      }
      if (/\.so\.3(-|$)/.test(name)) {
        throw new StrataError(
          'E_MANIFEST',
          `strata.toml: [alternatives] blas = "${blas}": no package of the environment registers ${blas} for ${name}`,
          `registered: ${list.map((a) => `${a.path} (from ${a.package})`).join(', ')}; the lock may predate the blas line: run \`strata lock\``,
        );
      }
    }
    if (key !== undefined) {
      used.add(key);
      const want = overrides[key]!;
      const found = list.find((a) => a.path === want);
      if (!found) {
        throw new StrataError(
          'E_MANIFEST',
          `strata.toml: [alternatives] "${key}" = "${want}": that path is not a registered alternative for ${name}`,
          `registered: ${list.map((a) => `${a.path} (priority ${a.priority}, from ${a.package})`).join(', ')}`,
        );
      }
      chosen = found;
    }
    out.push({ name, link, chosen, all: list, manual: key !== undefined });
  }
  for (const k of Object.keys(overrides)) {
    if (!used.has(k) && k === 'blas') {
      throw new StrataError('E_MANIFEST', `strata.toml: [alternatives] blas = "${blas}": no package of the environment registers a BLAS or LAPACK alternative`, 'run `strata lock`: the blas line adds its packages to the environment');
    }
    if (!used.has(k)) {
      const known = [...byName.keys()].sort();
      throw new StrataError('E_MANIFEST', `strata.toml: [alternatives] "${k}" names no alternative registered by the environment's packages`, known.length ? `known alternatives: ${known.join(', ')}` : 'no package in the environment registers alternatives');
    }
  }
  return out;
}

/** The links and admin files update-alternatives would leave behind. */
export function alternativesEntries(chosen: ChosenAlternative[]): LayerEntry[] {
  const out: LayerEntry[] = [dir('etc/alternatives'), dir('var/lib/dpkg/alternatives')];
  for (const c of chosen) {
    const rel = (p: string) => p.replace(/^\/+/, '');
    out.push(symlink(mergedUsrPath(rel(c.link)), `/etc/alternatives/${c.name}`));
    out.push(symlink(`etc/alternatives/${c.name}`, c.chosen.path));
    const slaveNames = [...new Map(c.all.flatMap((a) => a.slaves).map((s) => [s.name, s.link])).entries()].sort();
    for (const [sname, slink] of slaveNames) {
      const mine = c.chosen.slaves.find((s) => s.name === sname);
      if (!mine) continue;
      out.push(symlink(mergedUsrPath(rel(slink)), `/etc/alternatives/${sname}`));
      out.push(symlink(`etc/alternatives/${sname}`, mine.path));
    }
    const admin = [c.manual ? 'manual' : 'auto', c.link, ...slaveNames.flatMap(([n, l]) => [n, l]), ''];
    for (const a of c.all) {
      admin.push(a.path, String(a.priority));
      for (const [n] of slaveNames) admin.push(a.slaves.find((s) => s.name === n)?.path ?? '');
    }
    admin.push('');
    out.push(file(`var/lib/dpkg/alternatives/${c.name}`, `${admin.join('\n')}\n`));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// dpkg database

export interface InstalledPackage {
  name: string;
  arch: string;
  multiArch?: string;
  /** The raw `control` file of the .deb. */
  control: string;
  /** Paths as shipped (`/usr/bin/x`), in archive order. */
  paths: string[];
  md5sums?: string;
  conffiles: string[];
  /**
   * The other members of the control archive (maintainer scripts, triggers, shlibs, symbols, templates...), which
   * dpkg keeps as info/<package>.<member>: `dpkg-shlibdeps`, `dpkg-trigger` and a later `apt remove` read them.
   */
  controlMembers?: Record<string, string>;
  /**
   * The status file's `Conffiles`, by path in conffiles order: the md5 (hex) of each conffile's installed bytes, or
   * `newconffile remove-on-upgrade` for one the package asks dpkg to remove.
   */
  conffileMd5?: Record<string, string>;
}

const MAINTAINER_SCRIPTS = new Set(['preinst', 'postinst', 'prerm', 'postrm', 'config']);

/** The fields dpkg writes first, in its order (dpkg's lib/dpkg/parse.c); any other field follows, in control order. */
const STATUS_ORDER = [
  'Package', 'Essential', 'Protected', 'Status', 'Priority', 'Section', 'Installed-Size', 'Origin', 'Maintainer', 'Bugs',
  'Architecture', 'Multi-Arch', 'Source', 'Version', 'Config-Version', 'Replaces', 'Provides', 'Depends', 'Pre-Depends',
  'Recommends', 'Suggests', 'Breaks', 'Conflicts', 'Enhances', 'Conffiles', 'Description', 'Triggers-Pending', 'Triggers-Awaited',
];
const STATUS_RANK = new Map(STATUS_ORDER.map((f, i) => [f.toLowerCase(), i]));

/**
 * The status paragraph as dpkg writes it after installing: the control fields in dpkg's order, with
 * `Status: install ok installed` and, for a package with conffiles, `Conffiles:` naming each with the md5 of the
 * bytes installed (`conffileMd5`, by path).
 */
export function statusParagraph(control: string, conffileMd5: Record<string, string> = {}): string {
  const fields: { name: string; text: string }[] = [];
  for (const line of control.replace(/\n+$/, '').split('\n')) {
    if (/^[ \t]/.test(line) && fields.length > 0) fields[fields.length - 1]!.text += `\n${line}`;
    else if (line.includes(':')) fields.push({ name: line.slice(0, line.indexOf(':')), text: line });
  }
  fields.push({ name: 'Status', text: 'Status: install ok installed' });
  const conffiles = Object.keys(conffileMd5);
  if (conffiles.length > 0) fields.push({ name: 'Conffiles', text: ['Conffiles:', ...conffiles.map((p) => ` ${p} ${conffileMd5[p]}`)].join('\n') });
  const rank = (f: { name: string }) => STATUS_RANK.get(f.name.toLowerCase()) ?? STATUS_ORDER.length;
  // A stable sort: unknown fields keep their control order, after the known ones.
  const ordered = fields.map((f, i) => ({ f, i })).sort((a, b) => rank(a.f) - rank(b.f) || a.i - b.i).map((x) => x.f.text);
  return `${ordered.join('\n')}\n`;
}

export function dpkgEntries(pkgs: InstalledPackage[]): LayerEntry[] {
  const sorted = [...pkgs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: LayerEntry[] = [dir('var/lib/dpkg'), dir('var/lib/dpkg/info'), dir('var/lib/dpkg/updates')];
  out.push(file('var/lib/dpkg/status', sorted.map((p) => `${statusParagraph(p.control, p.conffileMd5)}\n`).join('')));
  out.push(file('var/lib/dpkg/available', ''));
  out.push(file('var/lib/dpkg/diversions', ''));
  out.push(file('var/lib/dpkg/info/format', '1\n'));
  for (const p of sorted) {
    const base = p.multiArch === 'same' ? `${p.name}:${p.arch}` : p.name;
    const listed = ['/.', ...p.paths.map((x) => `/${x}`)];
    out.push(file(`var/lib/dpkg/info/${base}.list`, `${listed.join('\n')}\n`));
    if (p.md5sums) out.push(file(`var/lib/dpkg/info/${base}.md5sums`, p.md5sums));
    if (p.conffiles.length > 0) out.push(file(`var/lib/dpkg/info/${base}.conffiles`, `${p.conffiles.join('\n')}\n`));
    for (const [member, text] of Object.entries(p.controlMembers ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (!/^[a-z][a-z0-9_-]*$/.test(member)) continue;
      out.push(file(`var/lib/dpkg/info/${base}.${member}`, text, MAINTAINER_SCRIPTS.has(member) ? 0o755 : 0o644));
    }
  }
  return out;
}
