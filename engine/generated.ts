/**
 * What the maintainer scripts would have made, made deterministically by the environment's own tools, in layers
 * of their own above the packages.
 *
 * strata runs no maintainer scripts. The files they make that matter at once to anything that runs in the
 * environment are made here by the environment's own tools, run in strata's sandbox as a build step (uid 0 of a
 * user namespace of its own, the tree read-only, no network, a fixed environment) over a tree of hard links to the
 * unpacked packages, with their output written into a scratch directory bound at /strata-out:
 *
 * - ca-certificates: /etc/ca-certificates.conf as its postinst writes it on a first install (every certificate
 *   under /usr/share/ca-certificates enabled, sorted bytewise), then `update-ca-certificates --hooksdir ""` as the
 *   postinst runs it, pointed at the scratch copy of /etc/ssl/certs: the bundle ca-certificates.crt, one
 *   NAME.pem -> /usr/share/ca-certificates/... link per certificate, and `openssl rehash`'s HASH.0 links.
 * - libc-bin: /etc/ld.so.cache from the image's /etc/ld.so.conf, by `ldconfig -X -C` (links are not updated: the
 *   packages ship theirs, and the tree is read-only).
 * - the trigger caches (GSettings, GIO, gdk-pixbuf, GTK input methods, MIME, icon themes, fontconfig, the journal
 *   catalog), each by the tool its package's trigger runs.
 * - python3: bytecode for the default Python's standard library (/usr/lib/python3.X),
 *   /usr/lib/python3/dist-packages and /usr/share/python3 (python3's own postinst compiles that), as
 *   `compileall --invalidation-mode unchecked-hash` makes it (the .pyc holds the source's hash and is never checked
 *   against an mtime, so its bytes do not depend on time), less py3compile's bcep exclusions; PYTHONHASHSEED=0.
 *
 * The output is made and stored in parts, each under a key naming exactly what it reads (`generated/<key>`), so
 * that a bump makes only the parts of what changed:
 *
 * - the steps other than bytecode, one part, over a tree of the packages those tools read: every package with a
 *   shared object or a file under the paths the steps read (certificates, ld.so.conf, schemas, MIME, icons, fonts,
 *   the catalog), the Essential set and what the steps' own packages depend on, with the skeleton and the
 *   installed state's links; keyed by those packages' sha256s, the links, the script and the mtime;
 * - the bytecode, one part per package that ships modules in those directories, keyed by its sha256, the files it
 *   compiles, the interpreter's packages, the bcep lines that name its files and the compile script. The parts the
 *   store lacks are compiled together, one `python3 -S -B` process per core, over a tree of the interpreter, the
 *   bcep files and those packages alone. The bytecode goes into up to BYTECODE_LAYERS layers of its own, each
 *   package in the one its name hashes to, so a bump changes one of them (and none when its bytecode is the same).
 *
 * An environment without any of the steps' packages gets no layer (and no change to its image). A warm realise
 * runs no tool.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { StrataError } from '../errors.ts';
import { layerKey, type LayerJob } from '../realiser/layers.ts';
import type { LayerEntry } from '../realiser/layertar.ts';
import type { GeneratedHook, GeneratedInput, UnpackedView } from '../realiser/realise.ts';
import { mergedUsrPath, MULTIARCH } from '../realiser/tree.ts';
import { outputDigest, walkOutput, type OutputEntry } from '../recipes/build.ts';
import { inodePool, linkedTree, removeTree } from '../run/rootfs.ts';
import type { Ctx } from './ctx.ts';
import type { Lockfile } from '../model.ts';

/** Bump when what a step is given or how its output is read changes: it invalidates stored outputs. */
const GENERATED_FORMAT = 'strata-generated-v3';
const OUT = '/strata-out';
const PYC_PREFIX = `${OUT}/pycache`;
/** The bytecode's layers at most: each package's in the one its name hashes to. */
export const BYTECODE_LAYERS = 16;

/**
 * What compileall -q --invalidation-mode unchecked-hash does for each of the given files (the same py_compile call,
 * so the same bytes), less the files py3compile leaves out (the packages' /usr/share/python3/bcep exclusions, for
 * the running Python's version). argv[1] names a file of the sources' absolute paths, NUL-separated; the work is
 * shared among STRATA_PYC_JOBS processes (forked). A source that does not compile is named on stderr and skipped
 * (compileall's exit status 1). Run as `python3 -S -B`: no site, and no bytecode of its own imports written.
 */
export const PYC_SCRIPT = `import importlib.util, os, py_compile, re, sys
mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
# py3compile's exclusions: /usr/share/python3/bcep/PACKAGE, lines TYPE|VERSIONS|DIR|PATTERN (dh_python3 -X).
excl = []
bcep = '/usr/share/python3/bcep'
def version(v):
    return tuple(int(x) for x in v.split('.')) if v else None
for fn in sorted(os.listdir(bcep)) if os.path.isdir(bcep) else []:
    if fn.startswith('.'):
        continue
    with open(os.path.join(bcep, fn), encoding='utf-8') as h:
        for line in h:
            if line.startswith('#'):
                continue
            parts = line.rstrip('\\n').split('|', 3)
            if len(parts) < 3:
                continue
            kind, vrange, dname = parts[:3]
            pattern = parts[3] if len(parts) > 3 else '.*'
            if kind != 'file':
                dname = dname.rstrip('/') + '/'
            try:
                lo, hi = (None, None) if vrange in ('', '-') else (version(vrange), version(vrange)) if '-' not in vrange else tuple(version(x) for x in vrange.split('-', 1))
                lo, hi = lo or (0, 0), hi or (99, 99)
                rx = re.compile(pattern) if kind == 're' else None
            except (ValueError, re.error):
                continue
            me = sys.version_info[:2]
            if me == lo if lo == hi else lo <= me < hi:
                excl.append((kind, dname, rx))
def excluded(path):
    for kind, dname, rx in excl:
        if not path.startswith(dname):
            continue
        if kind == 'dir' or (kind == 'file' and path == dname) or (kind == 're' and (rx.match(path) or rx.match(path[len(dname):]))):
            return True
    return False
with open(sys.argv[1], 'rb') as h:
    srcs = [os.fsdecode(p) for p in h.read().split(b'\\0') if p]
jobs = max(1, int(os.environ.get('STRATA_PYC_JOBS', '1')))
kids = []
share = srcs[0::jobs]
for i in range(1, jobs):
    pid = os.fork()
    if pid == 0:
        share, kids = srcs[i::jobs], None
        break
    kids.append(pid)
for src in share:
    if excluded(src):
        continue
    try:
        py_compile.compile(src, cfile=importlib.util.cache_from_source(src), doraise=True, invalidation_mode=mode)
    except (py_compile.PyCompileError, OSError, ValueError) as e:
        print(e, file=sys.stderr)
sys.stderr.flush()
if kids is None:
    os._exit(0)
failed = 0
for pid in kids:
    failed |= os.waitpid(pid, 0)[1]
sys.exit(1 if failed else 0)
`;

export type GeneratedStep =
  | 'ca-certificates'
  | 'ld.so.cache'
  | 'python-bytecode'
  | 'glib-schemas'
  | 'gio-modules'
  | 'gdk-pixbuf-loaders'
  | 'gtk3-immodules'
  | 'mime-database'
  | 'icon-caches'
  | 'fontconfig-cache'
  | 'systemd-catalog';

/** Each step, in the order they run, and the package (by name) whose postinst or trigger runs its tool. */
const STEP_PACKAGES: [GeneratedStep, RegExp][] = [
  ['ca-certificates', /^ca-certificates$/],
  ['ld.so.cache', /^libc-bin$/],
  ['python-bytecode', /^python3$/],
  ['glib-schemas', /^libglib2\.0-0(t64)?$/],
  ['gio-modules', /^libglib2\.0-0(t64)?$/],
  ['gdk-pixbuf-loaders', /^libgdk-pixbuf-2\.0-0$/],
  ['gtk3-immodules', /^libgtk-3-0(t64)?$/],
  ['mime-database', /^shared-mime-info$/],
  ['icon-caches', /^gtk-update-icon-cache$/],
  ['fontconfig-cache', /^fontconfig$/],
  ['systemd-catalog', /^systemd$/],
];

/** Which steps an environment needs: by the packages it has. */
export function generatedSteps(lock: Lockfile): GeneratedStep[] {
  const names = lock.packages.map((p) => p.name);
  return STEP_PACKAGES.filter(([, re]) => names.some((n) => re.test(n))).map(([step]) => step);
}

/** The header ca-certificates' postinst writes above the list of certificates. */
const CA_CONF_HEADER = `# This file lists certificates that you wish to use or to ignore to be
# installed in /etc/ssl/certs.
# update-ca-certificates(8) will update /etc/ssl/certs by reading this file.
#
# This is autogenerated by dpkg-reconfigure ca-certificates.
# Certificates should be installed under /usr/share/ca-certificates
# and files with extension '.crt' is recognized as available certs.
#
# line begins with # is comment.
# line begins with ! is certificate filename to be deselected.
#
`;

/** The shell script of the steps: each one's output goes under /strata-out; a failing step fails the whole. */
export function generatedScript(steps: GeneratedStep[]): string {
  const s = ['set -eu', 'cd /'];
  if (steps.includes('ca-certificates')) {
    s.push(
      'echo "strata-generated: ca-certificates"',
      `mkdir -p ${OUT}/etc/ssl/certs`,
      // The postinst's first-install list: every .crt under /usr/share/ca-certificates, enabled, sorted (C locale).
      `{ printf '%s' "$CA_CONF_HEADER"; cd /usr/share/ca-certificates && find . -type f -name '*.crt' | sed -e 's|^\\./||' | LC_ALL=C sort; } > ${OUT}/etc/ca-certificates.conf`,
      'cd /',
      `update-ca-certificates --hooksdir "" --certsconf ${OUT}/etc/ca-certificates.conf --etccertsdir ${OUT}/etc/ssl/certs`,
    );
  }
  if (steps.includes('ld.so.cache')) {
    s.push('echo "strata-generated: ld.so.cache"', `mkdir -p ${OUT}/etc ${OUT}/scratch/ldconfig`, `ldconfig -X -C ${OUT}/etc/ld.so.cache`);
  }
  // The steps below run what the packages' postinsts and triggers run on a first install, over the whole tree (every
  // package is unpacked before any is configured). A tool that writes next to its input in a read-only tree is
  // given a scratch directory of links to that input instead; the file it writes does not depend on where it is.
  // `|| ...` where the postinst has `|| true`: a failure there leaves the file out, as it does on Debian.
  const T = '/usr/lib/$STRATA_MULTIARCH';
  if (steps.includes('glib-schemas')) {
    s.push(
      'echo "strata-generated: glib schemas"',
      `if [ -x ${T}/glib-2.0/glib-compile-schemas ] && [ -d /usr/share/glib-2.0/schemas ]; then`,
      `  mkdir -p ${OUT}/usr/share/glib-2.0/schemas`,
      `  ${T}/glib-2.0/glib-compile-schemas --targetdir=${OUT}/usr/share/glib-2.0/schemas /usr/share/glib-2.0/schemas || echo "glib-compile-schemas failed"`,
      'fi',
    );
  }
  if (steps.includes('gio-modules')) {
    s.push(
      'echo "strata-generated: gio modules"',
      `if [ -x ${T}/glib-2.0/gio-querymodules ] && [ -d ${T}/gio/modules ]; then`,
      `  mkdir -p ${OUT}/scratch/gio-modules`,
      `  for m in ${T}/gio/modules/*; do if [ -e "$m" ] && [ "\${m##*/}" != giomodule.cache ]; then ln -s "$m" ${OUT}/scratch/gio-modules/; fi; done`,
      `  ${T}/glib-2.0/gio-querymodules ${OUT}/scratch/gio-modules || echo "gio-querymodules failed"`,
      `  if [ -f ${OUT}/scratch/gio-modules/giomodule.cache ]; then mkdir -p ${OUT}${T}/gio/modules && mv ${OUT}/scratch/gio-modules/giomodule.cache ${OUT}${T}/gio/modules/; fi`,
      'fi',
    );
  }
  if (steps.includes('gdk-pixbuf-loaders')) {
    s.push(
      'echo "strata-generated: gdk-pixbuf loaders"',
      `if [ -x ${T}/gdk-pixbuf-2.0/gdk-pixbuf-query-loaders ] && { [ -d ${T}/gdk-pixbuf-2.0/2.10.0/loaders ] || [ -d /usr/lib/gdk-pixbuf-2.0/2.10.0/loaders ]; }; then`,
      `  mkdir -p ${OUT}${T}/gdk-pixbuf-2.0/2.10.0`,
      `  ${T}/gdk-pixbuf-2.0/gdk-pixbuf-query-loaders $(find ${T}/gdk-pixbuf-2.0/2.10.0/loaders /usr/lib/gdk-pixbuf-2.0/2.10.0/loaders -name '*.so' 2>/dev/null | LC_ALL=C sort) > ${OUT}${T}/gdk-pixbuf-2.0/2.10.0/loaders.cache || echo "gdk-pixbuf-query-loaders failed"`,
      'fi',
    );
  }
  if (steps.includes('gtk3-immodules')) {
    s.push(
      'echo "strata-generated: gtk3 input method modules"',
      `for q in ${T}/libgtk-3-0t64/gtk-query-immodules-3.0 ${T}/libgtk-3-0/gtk-query-immodules-3.0; do`,
      `  if [ -x "$q" ] && [ -d ${T}/gtk-3.0/3.0.0/immodules ]; then`,
      `    mkdir -p ${OUT}${T}/gtk-3.0/3.0.0`,
      // --update-cache writes where GTK_IM_MODULE_FILE says (its default: the path the trigger writes).
      `    GTK_IM_MODULE_FILE=${OUT}${T}/gtk-3.0/3.0.0/immodules.cache "$q" --update-cache || echo "gtk-query-immodules-3.0 failed"`,
      '    break',
      '  fi',
      'done',
    );
  }
  if (steps.includes('mime-database')) {
    s.push(
      'echo "strata-generated: shared MIME database"',
      'if command -v update-mime-database >/dev/null && [ -d /usr/share/mime/packages ]; then',
      `  mkdir -p ${OUT}/scratch/mime ${OUT}/usr/share`,
      `  ln -s /usr/share/mime/packages ${OUT}/scratch/mime/packages`,
      `  update-mime-database ${OUT}/scratch/mime`,
      `  rm ${OUT}/scratch/mime/packages`,
      `  mv ${OUT}/scratch/mime ${OUT}/usr/share/mime`,
      'fi',
    );
  }
  if (steps.includes('icon-caches')) {
    s.push(
      'echo "strata-generated: icon theme caches"',
      'if command -v gtk-update-icon-cache >/dev/null; then',
      '  for d in /usr/share/icons/*; do',
      '    n=${d##*/}',
      '    if [ -d "$d" ] && [ -f "$d/index.theme" ]; then',
      `      mkdir -p "${OUT}/scratch/icons/$n"`,
      `      for e in "$d"/*; do if [ "\${e##*/}" != icon-theme.cache ]; then ln -s "$e" "${OUT}/scratch/icons/$n/"; fi; done`,
      `      gtk-update-icon-cache --force --quiet "${OUT}/scratch/icons/$n" || echo "gtk-update-icon-cache failed for $d"`,
      `      if [ -f "${OUT}/scratch/icons/$n/icon-theme.cache" ]; then mkdir -p "${OUT}/usr/share/icons/$n" && mv "${OUT}/scratch/icons/$n/icon-theme.cache" "${OUT}/usr/share/icons/$n/"; fi`,
      '    fi',
      '  done',
      'fi',
    );
  }
  if (steps.includes('fontconfig-cache')) {
    s.push(
      'echo "strata-generated: fontconfig cache"',
      'if command -v fc-cache >/dev/null; then',
      `  mkdir -p ${OUT}/var/cache/fontconfig ${OUT}/scratch`,
      // The system's configuration, with the cache directory first: fc-cache writes into the first writable one.
      `  printf '%s\\n' '<?xml version="1.0"?>' '<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">' '<fontconfig>' '<cachedir>${OUT}/var/cache/fontconfig</cachedir>' '<include>/etc/fonts/fonts.conf</include>' '</fontconfig>' > ${OUT}/scratch/fonts.conf`,
      `  FONTCONFIG_FILE=${OUT}/scratch/fonts.conf fc-cache -s -f -v`,
      'fi',
    );
  }
  if (steps.includes('systemd-catalog')) {
    s.push(
      'echo "strata-generated: systemd journal catalog"',
      'if command -v journalctl >/dev/null && [ -d /usr/lib/systemd/catalog ]; then',
      `  mkdir -p ${OUT}/scratch/journal/usr/lib/systemd`,
      `  cp -RL /usr/lib/systemd/catalog ${OUT}/scratch/journal/usr/lib/systemd/`,
      `  journalctl --root=${OUT}/scratch/journal --update-catalog || echo "journalctl --update-catalog failed"`,
      `  if [ -f ${OUT}/scratch/journal/var/lib/systemd/catalog/database ]; then mkdir -p ${OUT}/var/lib/systemd/catalog && mv ${OUT}/scratch/journal/var/lib/systemd/catalog/database ${OUT}/var/lib/systemd/catalog/; fi`,
      'fi',
    );
  }
  s.push(`rm -rf ${OUT}/scratch`);
  return s.join('\n');
}

/**
 * Where a file under /strata-out goes in the image: pycache/<dir>/<name>.pyc to <dir>/__pycache__/<name>.pyc,
 * anything else as it is; undefined for what is not kept (the prefix's directories).
 */
export function imagePath(rel: string): string | undefined {
  if (rel === 'pycache' || rel.startsWith('pycache/')) {
    const p = rel.slice('pycache/'.length);
    if (!p.endsWith('.pyc')) return undefined;
    return posix.join(posix.dirname(p), '__pycache__', posix.basename(p));
  }
  return rel;
}

/** The layer entries of a generated tree: its files and symlinks (directories come as 0755 root:root parents). */
export function generatedEntries(dir: string, entries: OutputEntry[]): LayerEntry[] {
  const out: LayerEntry[] = [];
  for (const e of entries) {
    if (e.type === 'dir') continue;
    const path = imagePath(e.path);
    if (path === undefined) continue;
    if (e.type === 'file') out.push({ path, type: 'file', mode: e.mode & 0o111 ? 0o755 : 0o644, uid: 0, gid: 0, size: e.size!, source: join(dir, e.path), sha256: e.sha256! });
    else if (e.type === 'symlink') out.push({ path, type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: e.linkname! });
    else throw new Error(`generated tree: unexpected hardlink ${e.path}`);
  }
  return out;
}

/** What the store records beside a generated part. */
interface GeneratedMeta {
  steps: GeneratedStep[];
  digest: string;
  entries: OutputEntry[];
  seconds: number;
}

/**
 * What the steps other than bytecode read, on merged /usr: a package with any such file is in the tree their tools
 * run over (and in their part's key). Shared objects are ldconfig's and the GIO, gdk-pixbuf and GTK modules; the
 * tools' own libraries are among them.
 */
const BASE_READS = /(^|\/)[^/]*\.so(\.[^/]*)?$|^usr\/(local\/)?share\/ca-certificates\/|^etc\/(ssl|ca-certificates|fonts)(\/|$)|^usr\/lib\/ssl\/|^etc\/ld\.so\.conf|^usr\/share\/(glib-2\.0\/schemas|mime|icons|fonts|fontconfig|X11\/fonts|texmf\/fonts|texlive)\/|^usr\/lib\/systemd\/catalog\/|^usr\/lib\/[^/]+\/(gio|gdk-pixbuf-2\.0|gtk-3\.0|glib-2\.0)\//;

/** The interpreter whose bytes a .pyc depends on: python3, python3.X, their -minimal and the standard library packages. */
const INTERPRETER = /^(lib)?python3(\.\d+)?(-minimal|-stdlib)?$/;

const sortPairs = (xs: [string, string][]) => xs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

/** `names` and everything they depend on within the lock. */
function closure(lock: Lockfile, names: Iterable<string>): Set<string> {
  const by = new Map(lock.packages.map((p) => [p.name, p]));
  const out = new Set<string>();
  const todo = [...names];
  while (todo.length > 0) {
    const n = todo.pop()!;
    if (out.has(n) || !by.has(n)) continue;
    out.add(n);
    todo.push(...(by.get(n)!.depends ?? []));
  }
  return out;
}

/** The Python version the environment's python3 runs (`3.13`), from the python3 link; undefined when it has none. */
export function pythonVersion(unpacked: ReadonlyMap<string, UnpackedView>): string | undefined {
  for (const u of unpacked.values()) {
    for (const e of u.entries) {
      if (e.type === 'symlink' && mergedUsrPath(e.path) === 'usr/bin/python3') {
        const v = /^(?:\/usr\/bin\/)?python(3\.\d+)$/.exec(e.linkname ?? '')?.[1];
        if (v) return v;
      }
    }
  }
  return undefined;
}

/** The bucket (0 to BYTECODE_LAYERS - 1) of a package's bytecode: stable across bumps of any package. */
export function bytecodeBucket(name: string): number {
  return createHash('sha256').update(name).digest()[0]! % BYTECODE_LAYERS;
}

/** One part of the generated output: its key, the packages whose files its tools need, and how it is made. */
interface Part {
  key: string;
  label: string;
  kind: 'base' | 'bytecode';
  /** The bytecode part's package. */
  pkg?: string;
  /** The bytecode part's sources, absolute paths. */
  sources?: string[];
  /** Packages (beyond the sources' own) the tools' tree needs. */
  needs: Set<string>;
}

interface Plan {
  baseSteps: GeneratedStep[];
  parts: Part[];
  /** The bytecode tree's packages besides the parts' own: the interpreter, its dependencies, bcep. */
  pyTools: Set<string>;
}

/** The parts of an environment's generated output, with their keys: pure over the unpacked packages. */
export function generatedParts(lock: Lockfile, input: Pick<GeneratedInput, 'unpacked' | 'base'> & { topEntries: LayerEntry[] }, mtime: number, readFile: (path: string) => string): Plan {
  const steps = generatedSteps(lock);
  const baseSteps = steps.filter((s) => s !== 'python-bytecode');
  const { unpacked } = input;
  const sha = new Map(lock.packages.map((p) => [p.name, p.sha256]));
  const parts: Part[] = [];
  const ma = MULTIARCH[lock.project.arch] ?? `${lock.project.arch}-linux-gnu`;
  if (baseSteps.length > 0) {
    const stepPkgs = lock.packages.filter((p) => STEP_PACKAGES.some(([s, re]) => s !== 'python-bytecode' && re.test(p.name))).map((p) => p.name);
    const needs = closure(lock, [...stepPkgs, ...lock.packages.filter((p) => /^Essential:\s*yes\s*$/im.test(unpacked.get(p.name)?.control ?? '')).map((p) => p.name)]);
    for (const [name, u] of unpacked) if (!needs.has(name) && u.entries.some((e) => BASE_READS.test(mergedUsrPath(e.path)))) needs.add(name);
    const links = input.topEntries.filter((e) => e.type === 'symlink' || BASE_READS.test(e.path)).map((e) => [e.path, e.type, e.linkname ?? '', e.content ? createHash('sha256').update(e.content).digest('hex') : (e.sha256 ?? '')]);
    const key = layerKey(GENERATED_FORMAT, mtime, ['base', lock.project.arch, ma, generatedScript(baseSteps), CA_CONF_HEADER, input.base.key, links, sortPairs([...needs].map((n) => [n, sha.get(n)!]))]);
    parts.push({ key, label: baseSteps.join(', '), kind: 'base', needs });
  }
  const pyTools = new Set<string>();
  const v = steps.includes('python-bytecode') ? pythonVersion(unpacked) : undefined;
  if (v) {
    const dirs = [`usr/lib/python${v}/`, 'usr/lib/python3/dist-packages/', 'usr/share/python3/'];
    const interpreter = sortPairs(lock.packages.filter((p) => INTERPRETER.test(p.name)).map((p) => [p.name, p.sha256]));
    for (const n of closure(lock, ['python3', ...interpreter.map(([n]) => n), 'dash'])) pyTools.add(n);
    // bcep: every package's lines, each given to the parts whose files it names.
    const bcep: { pkg: string; file: string; line: string; dname: string; kind: string }[] = [];
    for (const [name, u] of unpacked) {
      for (const e of u.entries) {
        const path = mergedUsrPath(e.path);
        if (e.type !== 'file' || !path.startsWith('usr/share/python3/bcep/')) continue;
        pyTools.add(name);
        for (const line of readFile(join(u.root, e.path)).split('\n')) {
          const f = line.split('|', 4);
          if (line.startsWith('#') || f.length < 3) continue;
          bcep.push({ pkg: name, file: posix.basename(path), line, kind: f[0]!, dname: f[0] === 'file' ? f[2]! : `${f[2]!.replace(/\/+$/, '')}/` });
        }
      }
    }
    // Each source path to the package whose file the image has there (the later layer wins, as in the tree).
    const owner = new Map<string, string>();
    const kinds = new Map<string, string>();
    for (const p of lock.packages) {
      const u = unpacked.get(p.name);
      if (!u) continue;
      for (const e of u.entries) {
        if (e.type === 'dir') continue;
        const path = mergedUsrPath(e.path);
        if (!path.endsWith('.py') || !dirs.some((d) => path.startsWith(d))) continue;
        owner.set(path, p.name);
        kinds.set(path, e.type === 'symlink' ? `symlink:${e.linkname}` : e.type);
      }
    }
    const sourcesOf = new Map<string, string[]>();
    for (const [path, name] of owner) {
      if (!sourcesOf.has(name)) sourcesOf.set(name, []);
      sourcesOf.get(name)!.push(`/${path}`);
    }
    let allPaths: Map<string, string> | undefined;
    const ownerOfAny = (path: string) => {
      if (!allPaths) {
        allPaths = new Map();
        for (const p of lock.packages) for (const e of unpacked.get(p.name)?.entries ?? []) if (e.type !== 'dir') allPaths.set(mergedUsrPath(e.path), p.name);
      }
      return allPaths.get(path);
    };
    for (const [name, sources] of [...sourcesOf].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      sources.sort();
      const needs = new Set<string>();
      // A source that is a link to another package's file: that package is read too.
      for (const s of sources) {
        const k = kinds.get(s.slice(1))!;
        if (!k.startsWith('symlink:')) continue;
        const target = k.slice('symlink:'.length);
        const abs = mergedUsrPath(posix.normalize(target.startsWith('/') ? target : posix.join(posix.dirname(s), target)).replace(/^\/+/, ''));
        const o = ownerOfAny(abs);
        if (o && o !== name) needs.add(o);
      }
      const lines = bcep.filter((b) => sources.some((s) => (b.kind === 'file' ? s === b.dname : s.startsWith(b.dname)))).map((b) => [b.pkg, b.file, b.line]);
      const key = layerKey(GENERATED_FORMAT, 0, ['bytecode', lock.project.arch, v, PYC_SCRIPT, interpreter, [name, sha.get(name)], sources.map((s) => [s, kinds.get(s.slice(1))]), sortPairs([...needs].map((n) => [n, sha.get(n)!])), lines]);
      parts.push({ key, label: `python-bytecode of ${name}`, kind: 'bytecode', pkg: name, sources, needs });
    }
  }
  return { baseSteps, parts, pyTools };
}

export interface GeneratedOptions {
  mtime: number;
  /** Run no tool: output the store lacks is an error (`run --frozen`). */
  frozen?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Asked for a part before it is made (a cache registry): true when it put it in the store. */
  substitute?: (key: string, label: string) => Promise<boolean>;
  /** Told the keys of the parts the layers are made of (what a cache push uploads). */
  keys?: (keys: string[]) => void;
}

/**
 * The generated layers of a lock's environment as a realise hook, running the steps whose output the store lacks;
 * undefined when the environment needs none.
 */
export function generatedHook(lock: Lockfile, ctx: Ctx, o: GeneratedOptions): GeneratedHook | undefined {
  const steps = generatedSteps(lock);
  if (steps.length === 0) return undefined;
  const maxLayers = (steps.some((s) => s !== 'python-bytecode') ? 1 : 0) + (steps.includes('python-bytecode') ? BYTECODE_LAYERS : 0);
  return { maxLayers, jobs: (input) => generatedJobs(lock, ctx, o, input) };
}

async function generatedJobs(lock: Lockfile, ctx: Ctx, o: GeneratedOptions, input: GeneratedInput): Promise<LayerJob[]> {
  const { store, reporter } = ctx;
  const cache = store.cache('generated');
  const { readFileSync } = await import('node:fs');
  const topEntries = await input.top.entries();
  const plan = generatedParts(lock, { unpacked: input.unpacked, base: input.base, topEntries }, o.mtime, (p) => readFileSync(p, 'utf8'));
  o.keys?.(plan.parts.map((p) => p.key));
  const readMeta = (key: string) =>
    readFile(join(cache.path(key), 'meta.json'), 'utf8')
      .then((t) => JSON.parse(t) as GeneratedMeta)
      .catch(() => undefined);
  const metas = new Map<string, GeneratedMeta>();
  const missing: Part[] = [];
  for (const part of plan.parts) {
    let meta = await readMeta(part.key);
    if (!meta && (await o.substitute?.(part.key, `the generated files (${part.label})`))) meta = await readMeta(part.key);
    if (meta) metas.set(part.key, meta);
    else missing.push(part);
  }
  if (missing.length > 0 && o.frozen) {
    const what = [...new Set(missing.map((p) => (p.kind === 'base' ? plan.baseSteps.join(', ') : 'python-bytecode')))].join(', ');
    throw new StrataError('E_RUN', `the store lacks what ${what} make for this environment and --frozen forbids running them`, 'run `strata realise` first, or drop --frozen');
  }
  const base = missing.find((p) => p.kind === 'base');
  if (base) metas.set(base.key, await makeBase(lock, ctx, o, input, topEntries, plan.baseSteps, base));
  const pyc = missing.filter((p) => p.kind === 'bytecode');
  if (pyc.length > 0) for (const [k, m] of await makeBytecode(lock, ctx, o, input, plan.pyTools, pyc)) metas.set(k, m);

  const jobs: LayerJob[] = [];
  const basePart = plan.parts.find((p) => p.kind === 'base');
  if (basePart) {
    const dir = join(cache.path(basePart.key), 'out');
    const m = metas.get(basePart.key)!;
    jobs.push({
      label: `strata generated: ${plan.baseSteps.join(', ')}`,
      key: layerKey('generated', o.mtime, [basePart.key, m.digest]),
      entries: () => generatedEntries(dir, m.entries),
      comment: `made by the environment's own tools: ${plan.baseSteps.join(', ')}`,
    });
  }
  const buckets = new Map<number, Part[]>();
  for (const p of plan.parts) {
    if (p.kind !== 'bytecode' || metas.get(p.key)!.entries.every((e) => e.type === 'dir')) continue;
    const b = bytecodeBucket(p.pkg!);
    if (!buckets.has(b)) buckets.set(b, []);
    buckets.get(b)!.push(p);
  }
  for (const b of [...buckets.keys()].sort((x, y) => x - y)) {
    const ps = buckets.get(b)!;
    jobs.push({
      label: `strata generated: python bytecode, part ${b + 1} of ${BYTECODE_LAYERS}`,
      // By content: a package whose bytecode is the same after a bump leaves the layer as it was.
      key: layerKey('generated-bytecode', o.mtime, ps.map((p) => [p.pkg, metas.get(p.key)!.digest])),
      entries: () => ps.flatMap((p) => generatedEntries(join(cache.path(p.key), 'out'), metas.get(p.key)!.entries)),
      comment: `made by the environment's own python3: bytecode of ${ps.map((p) => p.pkg).join(' ')}`,
    });
  }
  return jobs;
}

const TOOL_ENV = (lock: Lockfile, mtime: number) => ({ PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/tmp', LC_ALL: 'C.UTF-8', TZ: 'UTC', SOURCE_DATE_EPOCH: String(mtime), PYTHONHASHSEED: '0', CA_CONF_HEADER, STRATA_MULTIARCH: MULTIARCH[lock.project.arch] ?? `${lock.project.arch}-linux-gnu` });

/**
 * Runs `argv` in the sandbox over a scratch tree of the skeleton, the packages `names` and `extra` entries, with
 * `out` bound writable at /strata-out; the log's text, or an error naming `what` with its last lines.
 */
async function runTools(ctx: Ctx, o: GeneratedOptions, input: GeneratedInput, names: Set<string>, extra: LayerEntry[], scratch: string, out: string, argv: string[], env: Record<string, string>, what: string): Promise<string> {
  const root = join(scratch, 'root');
  await mkdir(root);
  const t = linkedTree(root, await inodePool(ctx.store.cache('rootfs')));
  await t.add(await input.base.entries(), o.mtime);
  await t.add(input.entriesOf(names), o.mtime);
  if (extra.length > 0) await t.add(extra, o.mtime);
  await t.finish();
  if (argv[0] === '/bin/sh' && !(await import('node:fs')).lstatSync(join(root, 'usr/bin/sh'), { throwIfNoEntry: false })) {
    throw new StrataError('E_BUILD', `the environment has no /bin/sh to run ${what} with`, 'leave [resolve] essential at its default');
  }
  const logFile = join(scratch, 'generated.log');
  await writeFile(logFile, '');
  const [{ chooseMethod }, { runSandbox }] = await Promise.all([import('../run/sandbox/choose.ts'), import('../run/sandbox/supervise.ts')]);
  const rootfs = ctx.store.cache('rootfs');
  const code = await runSandbox(
    { rootfs: root, argv, env, cwd: '/', binds: [{ source: out, target: OUT, writable: true }], network: false, build: true },
    chooseMethod(o.env),
    { stage: await rootfs.ensureDir('.stage'), skeletons: ctx.store.cache('skeletons') },
    { stdio: 'files', stdout: logFile, stderr: logFile, forwardSignals: true, signalGroup: true },
  );
  const log = await readFile(logFile, 'utf8').catch(() => '');
  if (code !== 0) {
    throw new StrataError('E_BUILD', `making ${what} for the environment failed with exit code ${code}; the last lines of its log:\n${log.replace(/\n$/, '').split('\n').slice(-20).map((l) => `  | ${l}`).join('\n')}`);
  }
  return log;
}

/** Stores a part's output directory `out` under its key; its meta. */
async function storePart(ctx: Ctx, key: string, out: string, log: string, steps: GeneratedStep[], seconds: number): Promise<GeneratedMeta> {
  const entries = await walkOutput(out, 'generated files');
  const meta: GeneratedMeta = { steps, digest: outputDigest(entries), entries, seconds };
  await ctx.store.cache('generated').dir(key, async (tmp) => {
    await rename(out, join(tmp, 'out'));
    await writeFile(join(tmp, 'generated.log'), log);
    await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta));
  });
  return meta;
}

async function makeBase(lock: Lockfile, ctx: Ctx, o: GeneratedOptions, input: GeneratedInput, topEntries: LayerEntry[], steps: GeneratedStep[], part: Part): Promise<GeneratedMeta> {
  const started = Date.now();
  const scratch = await ctx.store.tmpDir();
  try {
    const out = join(scratch, 'out');
    await mkdir(out);
    ctx.reporter.info(`making what the maintainer scripts would have: ${steps.join(', ')} (in the sandbox, no network)`);
    const log = await runTools(ctx, o, input, part.needs, topEntries, scratch, out, ['/bin/sh', '-c', generatedScript(steps)], TOOL_ENV(lock, o.mtime), steps.join(', '));
    const seconds = Math.round((Date.now() - started) / 100) / 10;
    const meta = await storePart(ctx, part.key, out, log, steps, seconds);
    ctx.reporter.info(`made ${steps.join(', ')} in ${seconds} s: ${meta.entries.filter((e) => e.type !== 'dir').length} files and links`);
    return meta;
  } finally {
    await removeTree(scratch);
  }
}

async function makeBytecode(lock: Lockfile, ctx: Ctx, o: GeneratedOptions, input: GeneratedInput, pyTools: Set<string>, parts: Part[]): Promise<Map<string, GeneratedMeta>> {
  const started = Date.now();
  const scratch = await ctx.store.tmpDir();
  try {
    const out = join(scratch, 'out');
    await mkdir(out);
    const names = new Set(pyTools);
    for (const p of parts) {
      names.add(p.pkg!);
      for (const n of p.needs) names.add(n);
    }
    const sources = parts.flatMap((p) => p.sources!);
    const ownerOf = new Map(parts.flatMap((p) => p.sources!.map((s) => [s, p] as const)));
    await writeFile(join(out, 'sources'), `${sources.join('\0')}\0`);
    const label = parts.length === 1 ? parts[0]!.pkg! : `${parts.length} packages`;
    ctx.reporter.info(`making what the maintainer scripts would have: python-bytecode of ${label} (in the sandbox, no network)`);
    const jobs = String(Math.max(1, Math.min(16, availableParallelism())));
    const log = await runTools(ctx, o, input, names, [], scratch, out, ['/usr/bin/python3', '-S', '-B', '-c', PYC_SCRIPT, `${OUT}/sources`], { ...TOOL_ENV(lock, o.mtime), PYTHONPYCACHEPREFIX: PYC_PREFIX, STRATA_PYC_JOBS: jobs }, 'python-bytecode');
    // Each compiled file to its source's part.
    const partOut = new Map(parts.map((p, i) => [p.key, join(scratch, `part-${i}`)] as const));
    for (const d of partOut.values()) await mkdir(d);
    const compiled = await walkOutput(join(out, 'pycache'), 'generated bytecode').catch(() => [] as OutputEntry[]);
    for (const e of compiled) {
      if (e.type !== 'file') continue;
      const src = `/${posix.join(posix.dirname(e.path), `${posix.basename(e.path).replace(/\.[^.]+\.pyc$/, '')}.py`)}`;
      const part = ownerOf.get(src);
      if (!part) throw new Error(`the bytecode step wrote ${e.path}, for no source it was given`);
      const to = join(partOut.get(part.key)!, 'pycache', e.path);
      await mkdir(posix.dirname(to), { recursive: true });
      await rename(join(out, 'pycache', e.path), to);
    }
    const seconds = Math.round((Date.now() - started) / 100) / 10;
    const metas = new Map<string, GeneratedMeta>();
    let files = 0;
    for (const p of parts) {
      const m = await storePart(ctx, p.key, partOut.get(p.key)!, log, ['python-bytecode'], seconds);
      files += m.entries.filter((e) => e.type === 'file').length;
      metas.set(p.key, m);
    }
    const shown = parts.map((p) => p.pkg!);
    ctx.reporter.info(`made python-bytecode of ${parts.length === 1 ? 'one package' : `${parts.length} packages`} (${shown.slice(0, 8).join(', ')}${shown.length > 8 ? `, and ${shown.length - 8} more` : ''}) in ${seconds} s: ${files} files`);
    return metas;
  } finally {
    await removeTree(scratch);
  }
}
