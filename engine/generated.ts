/**
 * What the maintainer scripts would have made, made deterministically by the environment's own tools, in a layer
 * of its own above the packages.
 *
 * strata runs no maintainer scripts. Three of the files they make matter at once to anything that runs in the
 * environment, and each is made here by the environment's own tool, run in strata's sandbox as a build step (uid 0
 * of a user namespace of its own, the package tree read-only, no network, a fixed environment) over the packages'
 * tree, with its output written into a scratch directory bound at /strata-out:
 *
 * - ca-certificates: /etc/ca-certificates.conf as its postinst writes it on a first install (every certificate
 *   under /usr/share/ca-certificates enabled, sorted bytewise), then `update-ca-certificates --hooksdir ""` as the
 *   postinst runs it, pointed at the scratch copy of /etc/ssl/certs: the bundle ca-certificates.crt, one
 *   NAME.pem -> /usr/share/ca-certificates/... link per certificate, and `openssl rehash`'s HASH.0 links.
 * - libc-bin: /etc/ld.so.cache from the image's /etc/ld.so.conf, by `ldconfig -X -C` (links are not updated: the
 *   packages ship theirs, and the tree is read-only).
 * - python3: bytecode for the default Python's standard library (/usr/lib/python3.X),
 *   /usr/lib/python3/dist-packages and /usr/share/python3 (python3's own postinst compiles that), by
 *   `python3 -m compileall --invalidation-mode unchecked-hash` (the .pyc holds the source's hash and is never
 *   checked against an mtime, so its bytes do not depend on time), PYTHONHASHSEED=0, one process in sorted order;
 *   written under a PYTHONPYCACHEPREFIX and moved to each module's __pycache__.
 *
 * The steps run only for an environment that has the package; one without any of the three gets no layer (and
 * no change to its image). The output is stored (`generated/<key>`) under a key naming the package set (every
 * locked package's sha256), the script and the layers' mtime, so a warm realise runs no tool.
 */
import { existsSync, lstatSync } from 'node:fs';
import { link, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { StrataError } from '../errors.ts';
import { layerKey, type LayerJob } from '../realiser/layers.ts';
import type { LayerEntry } from '../realiser/layertar.ts';
import { outputDigest, walkOutput, type OutputEntry } from '../recipes/build.ts';
import { MULTIARCH } from '../realiser/tree.ts';
import { removeTree } from '../run/rootfs.ts';
import type { BuildRoot } from './buildRecipes.ts';
import type { Ctx } from './ctx.ts';
import type { Lockfile } from '../model.ts';

/** Bump when what a step is given or how its output is read changes: it invalidates stored outputs. */
const GENERATED_FORMAT = 'strata-generated-v2';
const OUT = '/strata-out';
const PYC_PREFIX = `${OUT}/pycache`;

/**
 * What compileall -q --invalidation-mode unchecked-hash does over the given directories (the same files, the same
 * py_compile call, so the same bytes), less the files py3compile leaves out (the packages' /usr/share/python3/bcep
 * exclusions, for the running Python's version), and except that a .pyc already under the prefix whose header holds
 * the source's hash is kept rather than compiled again. The prefix is seeded with the previous environment's bytecode, so after a
 * one-package bump only that package's modules are compiled; a .pyc whose source is gone is removed, so the result is
 * what a compile from nothing gives. A source that does not compile is named on stderr and skipped (compileall's
 * exit status 1).
 */
export const PYC_SCRIPT = `import importlib.util, os, py_compile, re, sys
keep = set()
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
for top in sys.argv[1:]:
    for d, dirs, files in os.walk(top):
        dirs.sort()
        for f in sorted(files):
            if not f.endswith('.py'):
                continue
            src = os.path.join(d, f)
            if excluded(src):
                continue
            cfile = importlib.util.cache_from_source(src)
            try:
                with open(src, 'rb') as h:
                    want = importlib.util.source_hash(h.read())
                with open(cfile, 'rb') as h:
                    head = h.read(16)
                if head[:4] == importlib.util.MAGIC_NUMBER and head[4:8] == b'\\x01\\x00\\x00\\x00' and head[8:16] == want:
                    keep.add(cfile)
                    continue
            except OSError:
                pass
            try:
                py_compile.compile(src, cfile=cfile, doraise=True, invalidation_mode=mode)
                keep.add(cfile)
            except (py_compile.PyCompileError, OSError, ValueError) as e:
                print(e, file=sys.stderr)
for d, dirs, files in os.walk(sys.pycache_prefix):
    for f in files:
        p = os.path.join(d, f)
        if p not in keep:
            os.remove(p)
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
  if (steps.includes('python-bytecode')) {
    s.push(
      'echo "strata-generated: python bytecode"',
      'if command -v python3 >/dev/null; then',
      '  v=$(python3 -c \'import sys; print("%d.%d" % sys.version_info[:2])\')',
      '  set --',
      '  for d in /usr/lib/python$v /usr/lib/python3/dist-packages /usr/share/python3; do if [ -d "$d" ]; then set -- "$@" "$d"; fi; done',
      // Exit status 1 is a file that does not compile (a test's deliberately broken source): its name is in the log, the rest is compiled.
      `  if [ $# -gt 0 ]; then PYTHONPYCACHEPREFIX=${PYC_PREFIX} python3 -c "$STRATA_PYC" "$@"; fi`,
      'fi',
    );
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

/** What the store records beside a generated tree. */
interface GeneratedMeta {
  steps: GeneratedStep[];
  digest: string;
  entries: OutputEntry[];
  seconds: number;
}

/** The store key of an environment's generated output: the package set, the steps' script, the layers' mtime. */
export function generatedKey(lock: Lockfile, steps: GeneratedStep[], mtime: number): string {
  return layerKey(GENERATED_FORMAT, mtime, [lock.project.arch, generatedScript(steps), CA_CONF_HEADER, PYC_SCRIPT, lock.packages.map((p) => [p.name, p.sha256]).sort((a, b) => (a[0]! < b[0]! ? -1 : 1))]);
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

/** Copies the tree `from` to `to` (which must not exist) as hard links to its files. */
async function linkCopy(from: string, to: string): Promise<void> {
  await mkdir(to);
  for (const d of await readdir(from, { withFileTypes: true })) {
    const a = join(from, d.name);
    const b = join(to, d.name);
    if (d.isDirectory()) await linkCopy(a, b);
    else if (d.isFile()) await link(a, b);
  }
}

export interface GeneratedOptions {
  /** A tree of the environment without this layer, for the tools (read-only to them). */
  rootfsFor(lock: Lockfile): Promise<BuildRoot>;
  mtime: number;
  /** Run no tool: output the store lacks is an error (`run --frozen`). */
  frozen?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Asked for the output before it is made (a cache registry): true when it put it in the store. */
  substitute?: (key: string, label: string) => Promise<boolean>;
}

/**
 * The generated layer of a lock's environment, running its steps when the store does not hold their output;
 * undefined when the environment needs none.
 */
export async function generatedLayer(lock: Lockfile, ctx: Ctx, o: GeneratedOptions): Promise<LayerJob | undefined> {
  const steps = generatedSteps(lock);
  if (steps.length === 0) return undefined;
  const { store, reporter } = ctx;
  const key = generatedKey(lock, steps, o.mtime);
  const cache = store.cache('generated');
  const readMeta = () =>
    readFile(join(cache.path(key), 'meta.json'), 'utf8')
      .then((t) => JSON.parse(t) as GeneratedMeta)
      .catch(() => undefined);
  let meta = await readMeta();
  if (!meta && (await o.substitute?.(key, 'the generated files'))) meta = await readMeta();
  if (!meta && o.frozen) {
    throw new StrataError('E_RUN', `the store lacks what ${steps.join(', ')} make for this environment and --frozen forbids running them`, 'run `strata realise` first, or drop --frozen');
  }
  if (!meta) {
    const started = Date.now();
    const root = await o.rootfsFor(lock);
    const scratch = await store.tmpDir();
    const logFile = join(scratch, 'generated.log');
    try {
      const out = join(scratch, 'out');
      await mkdir(out);
      if (!lstatSync(join(root.rootfs, 'usr/bin/sh'), { throwIfNoEntry: false })) {
        throw new StrataError('E_BUILD', `the environment has no /bin/sh to run ${steps.join(', ')} with`, 'leave [resolve] essential at its default');
      }
      await writeFile(logFile, '');
      reporter.info(`making what the maintainer scripts would have: ${steps.join(', ')} (in the sandbox, no network)`);
      const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/tmp', LC_ALL: 'C.UTF-8', TZ: 'UTC', SOURCE_DATE_EPOCH: String(o.mtime), PYTHONHASHSEED: '0', CA_CONF_HEADER, STRATA_PYC: PYC_SCRIPT, STRATA_MULTIARCH: MULTIARCH[lock.project.arch] ?? `${lock.project.arch}-linux-gnu` };
      // Seed the bytecode with the last environment's: only modules whose source changed are compiled again.
      const last = await cache.readJson<{ key: string }>('last');
      const seed = last && /^[0-9a-f]{64}$/.test(last.key) ? join(cache.path(last.key), 'out', 'pycache') : undefined;
      // As hard links: the compiler replaces a .pyc by renaming a new file over it, never writing through it.
      if (steps.includes('python-bytecode') && seed && existsSync(seed)) await linkCopy(seed, join(out, 'pycache'));
      const [{ chooseMethod }, { runSandbox }] = await Promise.all([import('../run/sandbox/choose.ts'), import('../run/sandbox/supervise.ts')]);
      const code = await runSandbox(
        { rootfs: root.rootfs, argv: ['/bin/sh', '-c', generatedScript(steps)], env, cwd: '/', binds: [{ source: out, target: OUT, writable: true }], network: false, build: true },
        chooseMethod(o.env),
        { stage: root.stage, skeletons: root.skeletons },
        { stdio: 'files', stdout: logFile, stderr: logFile, forwardSignals: true, signalGroup: true },
      );
      const log = await readFile(logFile, 'utf8').catch(() => '');
      if (code !== 0) {
        throw new StrataError('E_BUILD', `making ${steps.join(', ')} for the environment failed with exit code ${code}; the last lines of its log:\n${log.replace(/\n$/, '').split('\n').slice(-20).map((l) => `  | ${l}`).join('\n')}`);
      }
      const entries = await walkOutput(out, 'generated files');
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      meta = { steps, digest: outputDigest(entries), entries, seconds };
      const m = meta;
      await cache.dir(key, async (tmp) => {
        await rename(out, join(tmp, 'out'));
        await writeFile(join(tmp, 'generated.log'), log);
        await writeFile(join(tmp, 'meta.json'), JSON.stringify(m));
      });
      await cache.writeJson('last', { key });
      const files = entries.filter((e) => e.type !== 'dir').length;
      reporter.info(`made ${steps.join(', ')} in ${seconds} s: ${files} files and links`);
    } finally {
      await removeTree(scratch);
    }
  }
  const dir = join(cache.path(key), 'out');
  const m = meta;
  return {
    label: `strata generated: ${steps.join(', ')}`,
    key: layerKey('generated', o.mtime, [key, m.digest]),
    entries: () => generatedEntries(dir, m.entries),
    comment: `made by the environment's own tools: ${steps.join(', ')}`,
  };
}
