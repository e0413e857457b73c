/**
 * A recipe's build, the parts that are not workflow: the sandbox's fixed places and environment, the driver that
 * runs the build commands, reading the output tree (`$PREFIX`) back deterministically, comparing two outputs, and
 * what the output becomes in the image (layer entries, the dpkg database entry, the provenance file).
 *
 * The sandbox's rules (README "Recipes"): the build environment's rootfs read-only; the source tree at
 * /build/src (a writable scratch copy, the working directory); HOME at /build/home (writable, empty); $PREFIX a
 * writable empty directory bound over the prefix; /tmp private; every other path read-only; no network (a fresh
 * network namespace); uid 0 of a user namespace of its own; a fixed environment.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink, rmdir, unlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { StrataError } from '../errors.ts';
import { cmp } from '../util/order.ts';
import { recipePackageName } from './recipe.ts';
import type { LayerEntry } from '../realiser/layertar.ts';
import type { LockedRecipe } from '../model.ts';

export const BUILD_SRC = '/build/src';
export const BUILD_HOME = '/build/home';
export const BUILD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The environment of a build: fixed, whatever the host's. The recipe's own `env` comes on top (it cannot set
 * PREFIX, JOBS, SOURCE_DATE_EPOCH or HOME: the manifest refuses those).
 */
export function buildEnvironment(r: Pick<LockedRecipe, 'env' | 'prefix'>, o: { sourceDateEpoch: number; jobs: number }): Record<string, string> {
  return {
    PATH: BUILD_PATH,
    HOME: BUILD_HOME,
    TZ: 'UTC',
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    TMPDIR: '/tmp',
    SOURCE_DATE_EPOCH: String(o.sourceDateEpoch),
    PREFIX: r.prefix,
    JOBS: String(o.jobs),
    ...r.env,
  };
}

/**
 * The build's program: `/bin/sh -c DRIVER strata-build STEP...`. Each step runs in its own `sh -e` in the source
 * tree, in order, echoed first; the first step that fails ends the build with its exit code, after a last line
 * naming it (`strata-build: step N of M failed with exit code X`).
 */
export function buildArgv(steps: string[]): string[] {
  const driver = [
    'n=0',
    'for step in "$@"; do',
    '  n=$((n+1))',
    '  printf "+ [%s/%s] %s\\n" "$n" "$#" "$step"',
    '  /bin/sh -e -c "$step"',
    '  s=$?',
    '  if [ "$s" -ne 0 ]; then printf "strata-build: step %s of %s failed with exit code %s\\n" "$n" "$#" "$s"; exit "$s"; fi',
    'done',
  ].join('\n');
  return ['/bin/sh', '-c', driver, 'strata-build', ...steps];
}

/** From a build log's last lines: which step failed (1-based), when the driver said so. */
export function failedStep(log: string): number | undefined {
  const m = [...log.matchAll(/^strata-build: step (\d+) of \d+ failed with exit code \d+$/gm)].pop();
  return m ? Number(m[1]) : undefined;
}

/** One entry of an output tree, relative to `$PREFIX`. */
export interface OutputEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink';
  mode: number;
  size?: number;
  sha256?: string;
  md5?: string;
  /** A symlink's target; a hardlink's primary path (relative to `$PREFIX`). */
  linkname?: string;
  /** Files only: the inode, to find hardlinks (not recorded). */
  ino?: string;
}

async function hashes(file: string): Promise<{ sha256: string; md5: string }> {
  const s = createHash('sha256');
  const m = createHash('md5');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) {
    s.update(chunk);
    m.update(chunk);
  }
  return { sha256: s.digest('hex'), md5: m.digest('hex') };
}

/**
 * Every entry under `dir`, sorted by path, never following a symlink. A FIFO, socket or device node is an error
 * (a layer cannot carry it meaningfully).
 */
export async function walkOutput(dir: string, label: string): Promise<OutputEntry[]> {
  const out: OutputEntry[] = [];
  const walk = async (rel: string) => {
    for (const name of (await readdir(join(dir, rel))).sort(cmp)) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const abs = join(dir, path);
      const st = await lstat(abs);
      const mode = st.mode & 0o7777;
      if (st.isDirectory()) {
        out.push({ path, type: 'dir', mode });
        await walk(path);
      } else if (st.isSymbolicLink()) {
        out.push({ path, type: 'symlink', mode: 0o777, linkname: await readlink(abs) });
      } else if (st.isFile()) {
        out.push({ path, type: 'file', mode, size: st.size, ...(await hashes(abs)), ino: `${st.dev}:${st.ino}` });
      } else {
        throw new StrataError('E_BUILD', `${label}: the build left ${path} under $PREFIX, which is not a file, directory or symlink (a FIFO, socket or device)`, 'remove it in the build commands');
      }
    }
  };
  await walk('');
  return out.sort((a, b) => cmp(a.path, b.path));
}

const same = (a: OutputEntry, b: OutputEntry) => a.type === b.type && a.mode === b.mode && a.sha256 === b.sha256 && a.linkname === b.linkname;

/**
 * The recipe's own entries: those of `all` that `baseline` (the outputs of the recipes it depends on, copied into
 * `$PREFIX` before the build) does not hold unchanged, with the directories above them; hardlinked files become
 * one file and hardlinks to it (the first path in order is the file).
 */
export function ownEntries(all: OutputEntry[], baseline: OutputEntry[]): OutputEntry[] {
  const base = new Map(baseline.map((e) => [e.path, e]));
  const kept = all.filter((e) => {
    const b = base.get(e.path);
    return b === undefined || !same(b, e);
  });
  const paths = new Set(kept.map((e) => e.path));
  const byPath = new Map(all.map((e) => [e.path, e]));
  for (const e of [...kept]) {
    for (let d = posix.dirname(e.path); d !== '.'; d = posix.dirname(d)) {
      if (paths.has(d)) break;
      paths.add(d);
      kept.push(byPath.get(d)!);
    }
  }
  kept.sort((a, b) => cmp(a.path, b.path));
  const primary = new Map<string, string>();
  return kept.map((e) => {
    if (e.type !== 'file' || e.ino === undefined) return e;
    const first = primary.get(e.ino);
    const { ino: _ino, ...rest } = e;
    if (first === undefined) {
      primary.set(e.ino, e.path);
      return rest;
    }
    return { path: e.path, type: 'hardlink', mode: e.mode, linkname: first };
  });
}

/** Removes from `dir` what the baseline put there and the build left as it was (so the store keeps only the recipe's own files). */
export async function removeBaseline(dir: string, all: OutputEntry[], own: OutputEntry[]): Promise<void> {
  const keep = new Set(own.map((e) => e.path));
  const drop = all.filter((e) => !keep.has(e.path));
  for (const e of drop) if (e.type !== 'dir') await unlink(join(dir, e.path));
  for (const e of drop.filter((x) => x.type === 'dir').reverse()) await rmdir(join(dir, e.path));
}

/** A digest of an output's entries (paths, types, modes, contents, links): equal digests, equal outputs. */
export function outputDigest(entries: OutputEntry[]): string {
  const h = createHash('sha256');
  for (const e of entries) h.update(JSON.stringify([e.path, e.type, e.mode, e.sha256 ?? '', e.linkname ?? ''])).update('\n');
  return `sha256:${h.digest('hex')}`;
}

/** The first path where two outputs differ, with how; undefined when they are the same. */
export function firstDifference(a: OutputEntry[], b: OutputEntry[]): { path: string; why: string } | undefined {
  const am = new Map(a.map((e) => [e.path, e]));
  const bm = new Map(b.map((e) => [e.path, e]));
  for (const path of [...new Set([...am.keys(), ...bm.keys()])].sort(cmp)) {
    const x = am.get(path);
    const y = bm.get(path);
    if (!x) return { path, why: 'only the second build made it' };
    if (!y) return { path, why: 'only the first build made it' };
    if (x.type !== y.type) return { path, why: `a ${x.type} in the first build, a ${y.type} in the second` };
    if (x.sha256 !== y.sha256) return { path, why: `its content differs (sha256 ${x.sha256?.slice(0, 12)}… and ${y.sha256?.slice(0, 12)}…)` };
    if (x.linkname !== y.linkname) return { path, why: `it points at ${x.linkname} in the first build and at ${y.linkname} in the second` };
    if (x.mode !== y.mode) return { path, why: `its mode differs (${x.mode.toString(8)} and ${y.mode.toString(8)})` };
  }
  return undefined;
}

/** Where a recipe's provenance file lives in the image. */
export const provenancePath = (name: string) => `usr/share/doc/${recipePackageName(name)}/provenance.json`;

/** The provenance file: what the output was built from (sources, input hash, build environment, commands). */
export function provenance(r: LockedRecipe, arch: string, digest: string): string {
  const doc = {
    recipe: r.name,
    version: r.version,
    kind: r.kind,
    arch,
    prefix: r.prefix,
    input: r.input,
    output: digest,
    sources: r.sources.map((s) => ('url' in s ? { url: s.url, sha256: s.sha256, ...(s.dest ? { dest: s.dest } : {}) } : { git: s.git, rev: s.rev, sha256: s.sha256, ...(s.dest ? { dest: s.dest } : {}) })),
    buildClosure: r.buildClosure,
    buildPackages: [...r.buildPackages].sort((a, b) => cmp(a.name, b.name)).map((p) => `${p.name}=${p.version}`),
    depends: r.resolvedDepends,
    env: Object.fromEntries(Object.entries(r.env).sort(([a], [b]) => cmp(a, b))),
    build: r.build,
    ...(r.kind === 'pip' ? { index: r.index ?? null, requirements: r.requirements ?? [], wheels: (r.wheels ?? []).map((w) => ({ name: w.name, version: w.version, url: w.url, sha256: w.sha256 })) } : {}),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/** The output's entries in its layer: mapped under the prefix, owned by root, plus the provenance file. */
export function layerEntries(r: LockedRecipe, arch: string, own: OutputEntry[], outDir: string, digest: string): LayerEntry[] {
  const under = r.prefix.slice(1);
  const out: LayerEntry[] = own.map((e) => {
    const entry: LayerEntry = { path: `${under}/${e.path}`, type: e.type, mode: e.mode, uid: 0, gid: 0 };
    if (e.type === 'file') {
      entry.size = e.size!;
      entry.source = join(outDir, e.path);
    } else if (e.type === 'symlink') entry.linkname = e.linkname!;
    else if (e.type === 'hardlink') entry.linkname = `${under}/${e.linkname}`;
    return entry;
  });
  const doc = Buffer.from(provenance(r, arch, digest));
  const at = provenancePath(r.name);
  if (out.some((e) => e.path === at || e.path === posix.dirname(at))) throw new StrataError('E_BUILD', `recipe ${r.name}: its output holds /${at}, where strata writes its provenance`);
  out.push({ path: at, type: 'file', mode: 0o644, uid: 0, gid: 0, size: doc.length, content: doc });
  return out;
}

/** The dpkg `control` paragraph of a recipe's output (`strata-recipe-NAME`), for the image's dpkg database. */
export function dpkgControl(r: LockedRecipe, arch: string, own: OutputEntry[], digest: string): string {
  const kib = Math.ceil(own.reduce((n, e) => n + (e.size ?? 0), 0) / 1024);
  const depends = r.resolvedDepends.map((d) => (d.startsWith('recipe:') ? recipePackageName(d.slice(7)) : d));
  return [
    `Package: ${recipePackageName(r.name)}`,
    `Version: ${r.version}`,
    `Architecture: ${arch}`,
    'Maintainer: strata recipe <recipes@strata.invalid>',
    `Installed-Size: ${kib}`,
    ...(depends.length > 0 ? [`Depends: ${depends.join(', ')}`] : []),
    'Section: local',
    'Priority: optional',
    `Description: ${r.name} built by strata from a recipe`,
    ` Input hash ${r.input}, output ${digest}.`,
    ` Sources and build environment: /${provenancePath(r.name)}`,
    '',
  ].join('\n');
}

/** Paths the dpkg entry owns (relative, as a .deb's are): the prefix's ancestors, the output, the provenance. */
export function ownedPaths(r: LockedRecipe, own: OutputEntry[]): string[] {
  const under = r.prefix.slice(1).split('/');
  const ancestors = under.map((_, i) => under.slice(0, i + 1).join('/'));
  const doc = provenancePath(r.name);
  return [...ancestors, ...own.map((e) => `${under.join('/')}/${e.path}`), 'usr', 'usr/share', 'usr/share/doc', posix.dirname(doc), doc].filter((p, i, all) => all.indexOf(p) === i);
}

/** dpkg's md5sums text for the output's regular files. */
export function md5sums(r: LockedRecipe, own: OutputEntry[], all: OutputEntry[]): string {
  const md5 = new Map(all.filter((e) => e.md5).map((e) => [e.path, e.md5!]));
  const under = r.prefix.slice(1);
  return own
    .filter((e) => e.type === 'file' || e.type === 'hardlink')
    .map((e) => `${md5.get(e.path)}  ${under}/${e.path}\n`)
    .join('');
}

/** Which of the image's search paths the output adds to (by the directories it has under the prefix). */
export function searchPaths(r: Pick<LockedRecipe, 'prefix'>, own: OutputEntry[], multiarch: string | undefined): { bin: string[]; lib: string[]; pkgconfig: string[] } {
  const dirs = new Set(own.filter((e) => e.type === 'dir' || e.type === 'symlink').map((e) => e.path));
  const at = (p: string) => `${r.prefix}/${p}`;
  const lib = ['lib', ...(multiarch ? [`lib/${multiarch}`] : [])].filter((d) => dirs.has(d));
  return {
    bin: ['bin'].filter((d) => dirs.has(d)).map(at),
    lib: lib.map(at),
    pkgconfig: [...lib.map((d) => `${d}/pkgconfig`), 'share/pkgconfig'].filter((d) => dirs.has(d)).map(at),
  };
}
