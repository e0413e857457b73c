/**
 * `[recipes.NAME]` tables of strata.toml: what to build from which pinned sources, with which packages, how, and
 * where the output lives. Every mistake is `strata.toml:LINE:COL` (E_MANIFEST), like the rest of the manifest.
 */
import { isValidVersion } from '../debian/version.ts';
import {
  GIT_REV,
  RECIPE_NAME,
  RECIPE_NAME_RULE,
  SHA256_HEX,
  destProblem,
  parseRecipeRequest,
  prefixProblem,
  recipeOrder,
  urlProblem,
} from '../recipes/recipe.ts';
import { PIP_BUILD_DEPENDS, PIP_DEPENDS, PIP_INSTALL, PIP_PREFIX, requirementProblem } from '../recipes/pip.ts';
import { cmp } from '../util/order.ts';
import { ENV_NAME, ENV_NAME_RULE, isTable, type ManifestReader, type Table } from './reader.ts';
import type { RecipeRequest, RecipeSource, RecipeSpec } from '../model.ts';

const KEYS = ['version', 'kind', 'source', 'sources', 'build-depends', 'depends', 'env', 'build', 'prefix'];
/** A pip recipe's keys: its files come from the index, its install command and prefix are strata's. */
const PIP_KEYS = ['version', 'kind', 'index', 'requirements', 'build-depends', 'depends', 'env'];
/** Set by the build itself; a recipe's env cannot change them. */
const RESERVED_ENV = ['PREFIX', 'JOBS', 'SOURCE_DATE_EPOCH', 'HOME'];
export const DEFAULT_PREFIX = '/usr/local';

function parseSource(r: ManifestReader, t: unknown, path: string[], key: string, inner: number[], channels: string[]): RecipeSource {
  const where = key === 'source' ? `${path.join('.')}.source` : `${path.join('.')}.sources[${inner[0]}]`;
  const fail = (innerKey: string | undefined, msg: string, hint?: string): never => r.failInside(path, key, innerKey ? [...inner, innerKey] : inner, `${where}: ${msg}`, hint);
  if (!isTable(t)) fail(undefined, 'must be a table: { url = "...", sha256 = "..." } or { git = "...", rev = "<40-hex commit>" }');
  const s = t as Table;
  for (const k of Object.keys(s)) {
    if (!['url', 'sha256', 'git', 'rev', 'dest'].includes(k)) fail(k, `unknown key "${k}"`, 'allowed here: url, sha256 (a download), git, rev (a repository), dest');
  }
  for (const k of Object.keys(s)) if (typeof s[k] !== 'string') fail(k, `${k} must be a string`);
  const str = (k: string) => s[k] as string | undefined;
  const dest = str('dest');
  if (dest !== undefined) {
    const why = destProblem(dest);
    if (why) fail('dest', `dest "${dest}" ${why}`);
  }
  const url = str('url');
  const git = str('git');
  if (url !== undefined && git !== undefined) fail('git', 'give either url (a download) or git (a repository), not both');
  if (url !== undefined) {
    const why = urlProblem(url, channels);
    if (why) fail('url', `"${url}" ${why}`);
    if (str('rev') !== undefined) fail('rev', 'rev goes with git, not with url');
    const sha256 = str('sha256');
    if (sha256 === undefined) fail(undefined, `a url source needs its sha256 (the hash of the file at ${url})`, 'add sha256 = "<64 hex digits>" (sha256sum FILE prints it)');
    if (!SHA256_HEX.test(sha256!.toLowerCase())) fail('sha256', `sha256 "${sha256}" is not 64 hex digits`);
    return { url, sha256: sha256!.toLowerCase(), ...(dest !== undefined ? { dest } : {}) };
  }
  if (git !== undefined) {
    if (git === '') fail('git', 'git names no repository');
    if (str('sha256') !== undefined) fail('sha256', 'a git source is pinned by rev; strata.lock records the sha256 of its tree');
    const rev = str('rev');
    if (rev === undefined) fail(undefined, 'a git source needs rev = "<the full 40-hex commit id>"');
    if (!GIT_REV.test(rev!)) fail('rev', `rev "${rev}" is not a full commit id (40 lower-case hex digits)`, 'a branch or tag can move; `git rev-parse REF` prints the commit to pin');
    return { git, rev: rev!, ...(dest !== undefined ? { dest } : {}) };
  }
  return fail(undefined, 'needs url (with sha256) or git (with rev)');
}

function parseRequests(r: ManifestReader, t: Table, path: string[], key: string, channels: string[]): RecipeRequest[] {
  const v = t[key];
  if (v === undefined) return [];
  if (!Array.isArray(v)) r.fail(path, key, `${path.join('.')}.${key} must be an array of package names (or recipe:NAME)`);
  return (v as unknown[]).map((x, i) => {
    let req: RecipeRequest;
    if (typeof x === 'string') {
      try {
        req = parseRecipeRequest(x);
      } catch (e) {
        r.fail(path, key, `${path.join('.')}.${key}[${i}]: ${(e as Error).message}`);
      }
    } else if (isTable(x)) {
      for (const k of Object.keys(x)) if (!['name', 'version', 'channel'].includes(k)) r.failInside(path, key, [i, k], `${path.join('.')}.${key}[${i}]: unknown key "${k}"`, 'allowed here: name, version, channel');
      if (typeof x.name !== 'string') r.failInside(path, key, [i], `${path.join('.')}.${key}[${i}] needs name = "<package>"`);
      const ver = typeof x.version === 'string' ? x.version.trim() : '';
      const text = [x.name, ver === '' || ver === '*' ? '' : /^[<>=!~^]/.test(ver) ? ver : `= ${ver}`, typeof x.channel === 'string' ? `@${x.channel}` : ''].filter(Boolean).join(' ');
      if ((x.version !== undefined && typeof x.version !== 'string') || (x.channel !== undefined && typeof x.channel !== 'string')) r.failInside(path, key, [i], `${path.join('.')}.${key}[${i}]: version and channel must be strings`);
      try {
        req = parseRecipeRequest(text);
      } catch (e) {
        r.failInside(path, key, [i], `${path.join('.')}.${key}[${i}]: ${(e as Error).message}`);
      }
      if ('recipe' in req!) r.failInside(path, key, [i], `${path.join('.')}.${key}[${i}]: a recipe is named as the string "recipe:NAME"`);
    } else {
      r.fail(path, key, `${path.join('.')}.${key}[${i}] must be a string like "gcc", "gcc >= 12", "gcc @current" or "recipe:NAME"`);
    }
    const got = req!;
    if ('package' in got && got.package.channel !== undefined && !channels.includes(got.package.channel)) {
      r.fail(path, key, `${path.join('.')}.${key}[${i}]: "${got.package.name}" asks for channel "${got.package.channel}", which is not declared`, `declared channels: ${channels.join(', ')}`);
    }
    return got;
  });
}

function parseEnv(r: ManifestReader, t: Table, path: string[], name: string): Record<string, string> {
  const env: Record<string, string> = {};
  const envT = r.table(t, path, 'env');
  if (envT) {
    for (const k of Object.keys(envT)) {
      const v = envT[k];
      if (typeof v !== 'string') r.failInside(path, 'env', [k], `recipes.${name}.env.${k} must be a string`);
      if (!ENV_NAME.test(k)) r.failInside(path, 'env', [k], `recipes.${name}.env: "${k}" is not a valid environment variable name (${ENV_NAME_RULE})`);
      if (RESERVED_ENV.includes(k)) r.failInside(path, 'env', [k], `recipes.${name}.env: ${k} is set by the build sandbox itself`, `the build sees ${RESERVED_ENV.join(', ')} as strata sets them`);
      if ((v as string).includes('\0')) r.failInside(path, 'env', [k], `recipes.${name}.env.${k} contains a NUL character`);
      env[k] = v as string;
    }
  }
  return env;
}

/** The requests with `implied` first (unless the user names the same package already). */
function withImplied(implied: string, given: RecipeRequest[]): RecipeRequest[] {
  const has = given.some((g) => 'package' in g && g.package.name === implied);
  return has ? given : [{ package: { name: implied } }, ...given];
}

/**
 * A `kind = "pip"` recipe: `requirements` (required, a non-empty list) resolved against `index` at lock time. Its
 * build environment always has python3-pip, its output always depends on python3 (added unless named), it lives
 * under /usr/local, and its one build step is strata's install of the locked files.
 */
function parsePip(r: ManifestReader, t: Table, path: string[], name: string, version: string, env: Record<string, string>, channels: string[]): RecipeSpec {
  const index = r.string(t, path, 'index');
  if (index !== undefined && !/^https?:\/\/\S+$/.test(index)) r.fail(path, 'index', `recipes.${name}.index "${index}" is not an http(s):// URL (a package index's "simple" page, PEP 503)`);
  const requirements = r.strings(t, path, 'requirements');
  if (requirements === undefined || requirements.length === 0) {
    r.fail(path, requirements === undefined ? undefined : 'requirements', `recipe "${name}" (kind = "pip") needs requirements = ["<package> == <version>", ...]`, 'the requirements are resolved against the index at `strata lock`, each file pinned by sha256');
  }
  requirements!.forEach((q, i) => {
    const why = requirementProblem(q);
    if (why) r.failInside(path, 'requirements', [i], `recipes.${name}.requirements[${i}] "${q}" ${why}`);
  });
  return {
    name,
    version,
    kind: 'pip',
    ...(index !== undefined ? { index } : {}),
    requirements: requirements!.map((q) => q.trim()),
    sources: [],
    buildDepends: withImplied(PIP_BUILD_DEPENDS, parseRequests(r, t, path, 'build-depends', channels)),
    depends: withImplied(PIP_DEPENDS, parseRequests(r, t, path, 'depends', channels)),
    env,
    build: [PIP_INSTALL],
    prefix: PIP_PREFIX,
  };
}

/** Reads `[recipes]`; an empty list when there is none. */
export function parseRecipes(r: ManifestReader, doc: Table, channels: string[]): RecipeSpec[] {
  const all = r.table(doc, [], 'recipes');
  if (!all) return [];
  const out: RecipeSpec[] = [];
  for (const name of Object.keys(all).sort(cmp)) {
    const path = ['recipes', name];
    const t = r.table(all, ['recipes'], name)!;
    if (!RECIPE_NAME.test(name)) r.fail(path, undefined, `recipe name "${name}" must be ${RECIPE_NAME_RULE} (its output is the dpkg package strata-recipe-${name})`);
    const kind = r.string(t, path, 'kind') ?? 'build';
    if (kind !== 'build' && kind !== 'pip') r.fail(path, 'kind', `recipes.${name}.kind must be "build" or "pip", not "${kind}"`);
    r.onlyKeys(t, path, kind === 'pip' ? PIP_KEYS : KEYS);
    const version = r.string(t, path, 'version');
    if (version === undefined) r.fail(path, undefined, `recipe "${name}" needs a version (e.g. version = "1.0"); it is the version of the dpkg entry strata-recipe-${name}`);
    if (!isValidVersion(version!)) r.fail(path, 'version', `recipes.${name}.version "${version}" is not a valid Debian version (it starts with a digit: "2.9.0", "1.0+git20240101")`);
    const env = parseEnv(r, t, path, name);
    if (kind === 'pip') {
      out.push(parsePip(r, t, path, name, version!, env, channels));
      continue;
    }
    const sources: RecipeSource[] = [];
    if (t.source !== undefined) sources.push(parseSource(r, t.source, path, 'source', [], channels));
    if (t.sources !== undefined) {
      if (!Array.isArray(t.sources)) r.fail(path, 'sources', `recipes.${name}.sources must be an array of sources`);
      (t.sources as unknown[]).forEach((s, i) => sources.push(parseSource(r, s, path, 'sources', [i], channels)));
    }
    const build = r.strings(t, path, 'build');
    if (build === undefined || build.length === 0) r.fail(path, build === undefined ? undefined : 'build', `recipe "${name}" needs build = ["<shell command>", ...]: the commands that install into $PREFIX`);
    if (build!.some((c) => c.includes('\0'))) r.fail(path, 'build', `recipes.${name}.build holds a NUL character`);
    const prefix = r.string(t, path, 'prefix') ?? DEFAULT_PREFIX;
    const why = prefixProblem(prefix);
    if (why) r.fail(path, 'prefix', `recipes.${name}.prefix "${prefix}" ${why}`);
    out.push({
      name,
      version: version!,
      kind: 'build',
      sources,
      buildDepends: parseRequests(r, t, path, 'build-depends', channels),
      depends: parseRequests(r, t, path, 'depends', channels),
      env,
      build: build!,
      prefix,
    });
  }
  const order = recipeOrder(out);
  if ('unknown' in order) {
    const { recipe, missing } = order.unknown;
    const t = all[recipe] as Table;
    const key = [...((t.depends as unknown[]) ?? [])].includes(`recipe:${missing}`) ? 'depends' : 'build-depends';
    r.fail(['recipes', recipe], key, `recipe "${recipe}" depends on recipe:${missing}, which strata.toml does not define`, `defined recipes: ${out.map((x) => x.name).join(', ')}`);
  }
  if ('cycle' in order) {
    r.fail(['recipes', order.cycle[0]!], undefined, `recipes depend on each other in a cycle: ${order.cycle.join(' -> ')}`, 'a recipe cannot need its own output; break the cycle');
  }
  return out;
}
