/**
 * `strata.lock`: the one serializer and parser of the lockfile. The writer is deterministic to the byte: fixed key
 * order, packages sorted by name then arch, one array element per line where arrays grow, a trailing newline.
 */
import { readFileSync } from 'node:fs';
import { readFile, writeFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import TOML from '@iarna/toml';
import { StrataError } from '../errors.ts';
import { cmp } from '../util/order.ts';
import { sha256Hex } from '../util/bytes.ts';
import { verifyLock } from './verify.ts';
import { MAX_LOCK_BYTES } from '../limits.ts';
import { readBounded } from '../store/readBounded.ts';
import { onOutput, removeStaleTemps, tempName } from '../util/outputs.ts';
import type { HostProvided, ImageSettings, LockedChannel, LockedPackage, LockedRecipe, LockedSource, Lockfile } from '../model.ts';
import { formatRecipeRequest, parseRecipeRequest } from '../recipes/recipe.ts';

/** The format of a lock without recipes: unchanged since the first strata, so such locks keep their bytes. */
export const LOCK_VERSION = 1;
/** The format of a lock with `[[recipe]]` entries: an older strata refuses it rather than ignore the recipes. */
export const LOCK_VERSION_RECIPES = 2;

function str(s: string): string {
  // JSON escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL.
  return JSON.stringify(s).replace(/\x7f/g, '\\u007f');
}

function key(k: string): string {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : str(k);
}

function inlineArray(xs: string[]): string {
  return `[${xs.map(str).join(', ')}]`;
}

const formatRequest = formatRecipeRequest;

function blockArray(xs: string[]): string {
  if (xs.length === 0) return '[]';
  return `[\n${xs.map((x) => `  ${str(x)},\n`).join('')}]`;
}


export function serializeLock(lock: Lockfile): string {
  const out: string[] = [];
  out.push('# strata.lock: written by `strata lock`. Commit it next to strata.toml; do not edit it by hand.');
  out.push(`version = ${lock.version}`);
  out.push(`manifest-sha256 = ${str(lock.manifestSha256)}`);
  out.push(`closure = ${str(lock.closure)}`);
  out.push('');
  out.push('[project]');
  out.push(`name = ${str(lock.project.name)}`);
  out.push(`arch = ${str(lock.project.arch)}`);
  for (const c of lock.channels) {
    out.push('');
    out.push('[[channel]]');
    out.push(`name = ${str(c.name)}`);
    out.push(`suite = ${str(c.suite)}`);
    if (c.unread) {
      out.push('unread = true');
      out.push(`components = ${inlineArray(c.components)}`);
    } else {
      out.push(`codename = ${str(c.codename)}`);
      out.push(`components = ${inlineArray(c.components)}`);
      out.push(`date = ${str(c.date)}`);
      out.push(`release-sha256 = ${str(c.releaseSha256)}`);
    }
    if (c.urls.length > 0) out.push(`urls = ${inlineArray(c.urls)}`);
    if (c.snapshot) {
      out.push(`snapshot = ${str(c.snapshot.timestamp)}`);
      out.push(`snapshot-archive = ${str(c.snapshot.archive)}`);
      if (c.snapshot.urls.length > 0) out.push(`snapshot-urls = ${inlineArray(c.snapshot.urls)}`);
    }
  }
  const img = lock.image;
  out.push('');
  out.push('[image]');
  if (img.gpuDriver) out.push(`gpu-driver = ${str(img.gpuDriver)}`);
  if (img.entrypoint) out.push(`entrypoint = ${inlineArray(img.entrypoint)}`);
  if (img.cmd) out.push(`cmd = ${inlineArray(img.cmd)}`);
  if (img.shellHook !== undefined) out.push(`shell-hook = ${str(img.shellHook)}`);
  for (const [table, values] of [['env', img.env], ['alternatives', img.alternatives]] as const) {
    const keys = Object.keys(values).sort(cmp);
    if (keys.length === 0) continue;
    out.push('');
    out.push(`[image.${table}]`);
    for (const k of keys) out.push(`${key(k)} = ${str(values[k]!)}`);
  }
  for (const h of [...lock.hostProvided].sort((a, b) => cmp(a.name, b.name))) {
    out.push('');
    out.push('[[host-provided]]');
    out.push(`name = ${str(h.name)}`);
    out.push(`requires = ${str(h.requires)}`);
  }
  packageBlocks(out, '[[package]]', lock.packages);
  for (const r of [...(lock.recipes ?? [])].sort((a, b) => cmp(a.name, b.name))) recipeBlock(out, r);
  return `${out.join('\n')}\n`;
}

/** Package blocks under `header`, sorted by name then arch. */
function packageBlocks(out: string[], header: string, packages: LockedPackage[]): void {
  const pkgs = [...packages].sort((a, b) => cmp(a.name, b.name) || cmp(a.arch, b.arch));
  for (const p of pkgs) {
    out.push('');
    out.push(header);
    out.push(`name = ${str(p.name)}`);
    out.push(`version = ${str(p.version)}`);
    out.push(`arch = ${str(p.arch)}`);
    out.push(`channel = ${str(p.channel)}`);
    out.push(`source = ${str(p.source)}`);
    if (p.root) out.push('root = true');
    out.push(`filename = ${str(p.filename)}`);
    out.push(`size = ${p.size}`);
    out.push(`sha256 = ${str(p.sha256)}`);
    out.push(`depends = ${blockArray([...p.depends].sort(cmp))}`);
    out.push(`closure = ${str(p.closure)}`);
  }
}

/**
 * One `[[recipe]]` entry: the recipe as the manifest gives it (so `realise` needs only the lock), what its
 * depends resolved to, its build environment (packages verified like the environment's) and its input hash.
 */
function recipeBlock(out: string[], r: LockedRecipe): void {
  out.push('');
  out.push('[[recipe]]');
  out.push(`name = ${str(r.name)}`);
  out.push(`version = ${str(r.version)}`);
  out.push(`kind = ${str(r.kind)}`);
  if (r.kind === 'pip') {
    if (r.index !== undefined) out.push(`index = ${str(r.index)}`);
    out.push(`requirements = ${blockArray(r.requirements ?? [])}`);
  }
  out.push(`prefix = ${str(r.prefix)}`);
  out.push(`build-depends = ${blockArray(r.buildDepends.map(formatRequest))}`);
  out.push(`depends = ${blockArray(r.depends.map(formatRequest))}`);
  out.push(`resolved-depends = ${blockArray([...r.resolvedDepends].sort(cmp))}`);
  out.push(`build = ${blockArray(r.build)}`);
  out.push(`build-closure = ${str(r.buildClosure)}`);
  out.push(`input = ${str(r.input)}`);
  const env = Object.keys(r.env).sort(cmp);
  if (env.length > 0) {
    out.push('');
    out.push('[recipe.env]');
    for (const k of env) out.push(`${key(k)} = ${str(r.env[k]!)}`);
  }
  for (const s of r.sources) {
    out.push('');
    out.push('[[recipe.source]]');
    if ('url' in s) out.push(`url = ${str(s.url)}`);
    else out.push(`git = ${str(s.git)}`, `rev = ${str(s.rev)}`);
    out.push(`sha256 = ${str(s.sha256)}`);
    if (s.dest !== undefined) out.push(`dest = ${str(s.dest)}`);
  }
  for (const w of r.wheels ?? []) {
    out.push('');
    out.push('[[recipe.wheel]]');
    out.push(`name = ${str(w.name)}`);
    out.push(`version = ${str(w.version)}`);
    out.push(`filename = ${str(w.filename)}`);
    out.push(`url = ${str(w.url)}`);
    out.push(`sha256 = ${str(w.sha256)}`);
  }
  for (const h of [...r.buildHostProvided].sort((a, b) => cmp(a.name, b.name))) {
    out.push('');
    out.push('[[recipe.build-host-provided]]');
    out.push(`name = ${str(h.name)}`);
    out.push(`requires = ${str(h.requires)}`);
  }
  packageBlocks(out, '[[recipe.build-package]]', r.buildPackages);
}

type T = Record<string, unknown>;

function need<V>(v: unknown, what: string, check: (x: unknown) => boolean): V {
  if (!check(v)) throw new Error(`${what} is missing or has the wrong type`);
  return v as V;
}
const isStr = (x: unknown) => typeof x === 'string';
const isNum = (x: unknown) => typeof x === 'number' && Number.isInteger(x);
const isStrs = (x: unknown) => Array.isArray(x) && x.every(isStr);
const isTable = (x: unknown) => typeof x === 'object' && x !== null && !Array.isArray(x);
const isStrTable = (x: unknown) => isTable(x) && Object.values(x as T).every(isStr);

/** An array of tables (`[[name]]`), or none. */
function tables(v: unknown, what: string): T[] {
  return need<T[]>(v ?? [], what, (x) => Array.isArray(x) && x.every(isTable));
}

function parsePackage(p: T, at: string): LockedPackage {
  const w = `${at}${typeof p.name === 'string' ? ` (${JSON.stringify(p.name)})` : ''}`;
  if (p.root !== undefined && p.root !== true && p.root !== false) throw new Error(`${w}.root must be true or false`);
  return {
    name: need<string>(p.name, `${w}.name`, isStr),
    version: need<string>(p.version, `${w}.version`, isStr),
    arch: need<string>(p.arch, `${w}.arch`, isStr),
    channel: need<string>(p.channel, `${w}.channel`, isStr),
    source: need<string>(p.source, `${w}.source`, isStr),
    filename: need<string>(p.filename, `${w}.filename`, isStr),
    size: need<number>(p.size, `${w}.size`, isNum),
    sha256: need<string>(p.sha256, `${w}.sha256`, isStr),
    root: p.root === true,
    depends: [...need<string[]>(p.depends ?? [], `${w}.depends`, isStrs)],
    closure: need<string>(p.closure, `${w}.closure`, isStr),
  };
}

function parseRecipe(r: T, i: number): LockedRecipe {
  const w = `recipe[${i}]${typeof r.name === 'string' ? ` (${JSON.stringify(r.name)})` : ''}`;
  const requests = (k: string) =>
    need<string[]>(r[k] ?? [], `${w}.${k}`, isStrs).map((x) => {
      try {
        return parseRecipeRequest(x);
      } catch (e) {
        throw new Error(`${w}.${k}: ${(e as Error).message}`);
      }
    });
  const kind = need<string>(r.kind, `${w}.kind`, isStr);
  if (kind !== 'build' && kind !== 'pip') throw new Error(`${w}.kind must be "build" or "pip"`);
  const pip =
    kind === 'pip'
      ? {
          ...(r.index !== undefined ? { index: need<string>(r.index, `${w}.index`, isStr) } : {}),
          requirements: [...need<string[]>(r.requirements, `${w}.requirements`, isStrs)],
          wheels: tables(r.wheel, `${w}.wheel`).map((x, j) => ({
            name: need<string>(x.name, `${w}.wheel[${j}].name`, isStr),
            version: need<string>(x.version, `${w}.wheel[${j}].version`, isStr),
            filename: need<string>(x.filename, `${w}.wheel[${j}].filename`, isStr),
            url: need<string>(x.url, `${w}.wheel[${j}].url`, isStr),
            sha256: need<string>(x.sha256, `${w}.wheel[${j}].sha256`, isStr),
          })),
        }
      : {};
  if (kind === 'build' && (r.index !== undefined || r.requirements !== undefined || r.wheel !== undefined)) throw new Error(`${w}: index, requirements and wheel belong to kind "pip"`);
  const sources: LockedSource[] = tables(r.source, `${w}.source`).map((s, j) => {
    const at = `${w}.source[${j}]`;
    const dest = s.dest === undefined ? {} : { dest: need<string>(s.dest, `${at}.dest`, isStr) };
    const sha256 = need<string>(s.sha256, `${at}.sha256`, isStr);
    if (s.url !== undefined) return { url: need<string>(s.url, `${at}.url`, isStr), sha256, ...dest };
    return { git: need<string>(s.git, `${at}.git or url`, isStr), rev: need<string>(s.rev, `${at}.rev`, isStr), sha256, ...dest };
  });
  return {
    name: need<string>(r.name, `${w}.name`, isStr),
    version: need<string>(r.version, `${w}.version`, isStr),
    kind: kind as 'build' | 'pip',
    ...pip,
    prefix: need<string>(r.prefix, `${w}.prefix`, isStr),
    sources,
    buildDepends: requests('build-depends'),
    depends: requests('depends'),
    env: { ...need<Record<string, string>>(r.env ?? {}, `${w}.env`, isStrTable) },
    build: need<string[]>(r.build, `${w}.build`, isStrs),
    buildPackages: tables(r['build-package'], `${w}.build-package`).map((p, j) => parsePackage(p, `${w}.build-package[${j}]`)),
    buildHostProvided: tables(r['build-host-provided'], `${w}.build-host-provided`).map((h, j) => ({
      name: need<string>(h.name, `${w}.build-host-provided[${j}].name`, isStr),
      requires: need<string>(h.requires, `${w}.build-host-provided[${j}].requires`, isStr),
    })),
    buildClosure: need<string>(r['build-closure'], `${w}.build-closure`, isStr),
    resolvedDepends: [...need<string[]>(r['resolved-depends'] ?? [], `${w}.resolved-depends`, isStrs)],
    input: need<string>(r.input, `${w}.input`, isStr),
  };
}

/**
 * Parses and verifies a lock (lock/verify.ts): a lock that is malformed, or that strata could not have written (a
 * closure that does not match, an edge to no locked package, a bad name or path), is refused with E_LOCK.
 */
export function parseLock(text: string, path = 'strata.lock'): Lockfile {
  let doc: T;
  try {
    doc = TOML.parse(text) as T;
  } catch (e) {
    throw new StrataError('E_LOCK', `${path} is not valid TOML: ${(e as Error).message.split('\n')[0]}`, 'run `strata lock` to write it again');
  }
  let lock: Lockfile;
  try {
    const version = need<number>(doc.version, 'version', isNum);
    if (version !== LOCK_VERSION && version !== LOCK_VERSION_RECIPES) throw new Error(`lock format version ${version} is not supported (this strata reads versions ${LOCK_VERSION} and ${LOCK_VERSION_RECIPES})`);
    const project = need<T>(doc.project, '[project]', isTable);
    const image = need<T>(doc.image ?? {}, '[image]', isTable);
    const settings: ImageSettings = {
      env: { ...need<Record<string, string>>(image.env ?? {}, '[image.env]', isStrTable) },
      alternatives: { ...need<Record<string, string>>(image.alternatives ?? {}, '[image.alternatives]', isStrTable) },
    };
    if (image['gpu-driver'] !== undefined && image['gpu-driver'] !== 'host') throw new Error('image.gpu-driver must be "host"');
    if (image['gpu-driver'] === 'host') settings.gpuDriver = 'host';
    if (image.entrypoint !== undefined) settings.entrypoint = need<string[]>(image.entrypoint, 'image.entrypoint', isStrs);
    if (image.cmd !== undefined) settings.cmd = need<string[]>(image.cmd, 'image.cmd', isStrs);
    if (image['shell-hook'] !== undefined) settings.shellHook = need<string>(image['shell-hook'], 'image.shell-hook', isStr);
    const channels: LockedChannel[] = tables(doc.channel, '[[channel]]').map((c, i) => ({
      name: need<string>(c.name, `channel[${i}].name`, isStr),
      suite: need<string>(c.suite, `channel[${i}].suite`, isStr),
      codename: c.unread === true && c.codename === undefined ? '' : need<string>(c.codename, `channel[${i}].codename`, isStr),
      components: need<string[]>(c.components, `channel[${i}].components`, isStrs),
      date: c.unread === true && c.date === undefined ? '' : need<string>(c.date, `channel[${i}].date`, isStr),
      releaseSha256: c.unread === true && c['release-sha256'] === undefined ? '' : need<string>(c['release-sha256'], `channel[${i}].release-sha256`, isStr),
      ...(c.unread === true ? { unread: true as const } : {}),
      urls: c.urls === undefined ? [] : need<string[]>(c.urls, `channel[${i}].urls`, isStrs),
      ...(c.snapshot === undefined
        ? {}
        : {
            snapshot: {
              timestamp: need<string>(c.snapshot, `channel[${i}].snapshot`, (v): v is string => isStr(v) && /^\d{8}T\d{6}Z$/.test(v)),
              archive: need<string>(c['snapshot-archive'], `channel[${i}].snapshot-archive`, isStr),
              urls: c['snapshot-urls'] === undefined ? [] : need<string[]>(c['snapshot-urls'], `channel[${i}].snapshot-urls`, isStrs),
            },
          }),
    }));
    const hostProvided: HostProvided[] = tables(doc['host-provided'], '[[host-provided]]').map((h, i) => ({
      name: need<string>(h.name, `host-provided[${i}].name`, isStr),
      requires: need<string>(h.requires, `host-provided[${i}].requires`, isStr),
    }));
    const packages: LockedPackage[] = tables(doc.package, '[[package]]').map((p, i) => parsePackage(p, `package[${i}]`));
    const recipes = tables(doc.recipe, '[[recipe]]').map((r, i) => parseRecipe(r, i));
    const expected = recipes.length > 0 ? LOCK_VERSION_RECIPES : LOCK_VERSION;
    if (version !== expected) throw new Error(recipes.length > 0 ? `it holds recipes, which lock format version ${version} cannot (version ${LOCK_VERSION_RECIPES} does)` : `lock format version ${version} is for locks with recipes, and this one has none`);
    lock = {
      version: expected,
      manifestSha256: need<string>(doc['manifest-sha256'], 'manifest-sha256', isStr),
      project: { name: need<string>(project.name, 'project.name', isStr), arch: need<string>(project.arch, 'project.arch', isStr) },
      closure: need<string>(doc.closure, 'closure', isStr),
      channels,
      image: settings,
      packages,
      hostProvided,
      ...(recipes.length > 0 ? { recipes } : {}),
    };
  } catch (e) {
    if (e instanceof StrataError) throw e;
    throw new StrataError('E_LOCK', `${path} is malformed: ${(e as Error).message}`, 'run `strata lock` to write it again');
  }
  verifyLock(lock, path);
  return lock;
}

/** Where a manifest's lock lives: strata.lock beside it. */
export function lockPathFor(manifestPath: string): string {
  return join(dirname(manifestPath), 'strata.lock');
}

/**
 * Locks read before: the parsed lock of bytes that this very reader parsed and verified (engine/ensureLock.ts keeps
 * them in the store, `strata verify` parses each again). Reading and verifying the seed's 170 KB lock takes 25 to 40
 * ms, a sixth of a warm `strata run`; taking it from the memo about 2 ms.
 */
export interface LockMemo {
  get(key: string): Promise<{ text: string; lock: Lockfile } | undefined>;
  put(key: string, entry: { text: string; lock: Lockfile }): Promise<void>;
}

/** The modules whose code decides what reading a lock gives (the parser, the verifier and what they call). */
const READER_MODULES = ['lock/lockfile.ts', 'lock/verify.ts', 'lock/closure.ts', 'recipes/recipe.ts', 'recipes/pip.ts', 'debian/version.ts', 'debian/relation.ts', 'util/order.ts', 'limits.ts'];

/**
 * The memo key of lock text `text`: its bytes and the source of every module of the reader, so that a strata whose
 * parser or verifier changed in any way reads every lock afresh.
 */
export function lockMemoKey(text: string): string {
  const here = dirname(dirname(new URL(import.meta.url).pathname));
  const reader = READER_MODULES.map((m) => sha256Hex(readFileSync(join(here, m)))).join(' ');
  return sha256Hex(`strata lock memo 1\n${reader}\n${text}`);
}

export async function readLock(path: string, memo?: LockMemo): Promise<Lockfile | undefined> {
  let text: string;
  try {
    text = (await readBounded(path, MAX_LOCK_BYTES)).toString('utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new StrataError('E_LOCK', `cannot read ${path}: ${(e as Error).message}`);
  }
  const key = memo ? lockMemoKey(text) : undefined;
  if (memo && key) {
    const hit = await memo.get(key).catch(() => undefined);
    if (hit && hit.text === text && typeof hit.lock === 'object' && hit.lock !== null) return hit.lock;
  }
  const shown = relative(process.cwd(), path);
  const lock = parseLock(text, shown && !shown.startsWith('..') && !isAbsolute(shown) ? shown : path);
  // Losing the entry costs one more parse: a store that cannot take it is no reason to fail.
  if (memo && key) await memo.put(key, { text, lock }).catch(() => undefined);
  return lock;
}

/** The temp name older versions wrote the lock through (`strata.lock.<pid>.tmp`): its pid, to clean it up. */
function legacyTempPid(name: string): number | undefined {
  const m = /^strata\.lock\.(\d+)\.tmp$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * Writes the lock atomically (a unique temp file beside it, then a rename); returns false (and writes nothing) when
 * the bytes would not change. On failure the temp file goes and the previous lock is untouched; temp files that
 * killed runs left beside it are removed first, written or not. A full disk is E_DISK, any other refusal E_OUTPUT, naming the lock.
 */
export async function writeLock(path: string, lock: Lockfile): Promise<boolean> {
  const text = serializeLock(lock);
  await removeStaleTemps(dirname(path), basename(path), legacyTempPid);
  try {
    if ((await readBounded(path, MAX_LOCK_BYTES)).toString('utf8') === text) return false;
  } catch {
    // absent: write it
  }
  const tmp = tempName(path);
  await onOutput({ what: 'the lock', path }, async () => {
    try {
      await writeFile(tmp, text, { flag: 'wx' });
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
    }
  });
  return true;
}

export interface LockDiff {
  added: LockedPackage[];
  removed: LockedPackage[];
  changed: { from: LockedPackage; to: LockedPackage }[];
}

export function diffLocks(before: Lockfile | undefined, after: Lockfile): LockDiff {
  const old = new Map((before?.packages ?? []).map((p) => [`${p.name}:${p.arch}`, p]));
  const now = new Map(after.packages.map((p) => [`${p.name}:${p.arch}`, p]));
  const d: LockDiff = { added: [], removed: [], changed: [] };
  for (const [k, p] of now) {
    const o = old.get(k);
    if (!o) d.added.push(p);
    else if (o.sha256 !== p.sha256 || o.channel !== p.channel) d.changed.push({ from: o, to: p });
  }
  for (const [k, p] of old) if (!now.has(k)) d.removed.push(p);
  return d;
}
