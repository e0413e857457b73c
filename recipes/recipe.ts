/**
 * Recipes, the pure part: the grammar of a build-depends/depends entry, a recipe's canonical text, the order
 * recipes build in (and the cycle when there is none), and the input hash a recipe's output is stored under.
 * Shared by the manifest reader, the lock (written and verified) and the engine, so every one of them computes
 * the same thing from the same fields.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { formatConstraint, parseConstraint } from '../debian/relation.ts';
import { cmp } from '../util/order.ts';
import type { LockedRecipe, LockedSource, PackageRequest, RecipeRequest, RecipeSource, RecipeSpec } from '../model.ts';
import { sha256Hex } from '../util/bytes.ts';

/** A recipe's name: its output is registered as the dpkg package `strata-recipe-NAME`, so a package name's rules. */
export const RECIPE_NAME = /^[a-z0-9][a-z0-9+.-]*$/;
export const RECIPE_NAME_RULE = 'lower-case letters, digits, "+", "-" and ".", starting with a letter or digit';
/** The dpkg package that stands for a recipe's output in the image. */
export const recipePackageName = (name: string) => `strata-recipe-${name}`;
export const SHA256_HEX = /^[0-9a-f]{64}$/;
export const GIT_REV = /^[0-9a-f]{40}$/;

const PACKAGE = /^([a-z0-9][a-z0-9+.-]+)/;

/**
 * Parses one build-depends/depends string: `recipe:NAME`, or a channel package `NAME`, `NAME OP VERSION`,
 * `NAME (OP VERSION)`, each optionally followed by ` @CHANNEL` (take it from that channel). Throws an Error
 * with the reason.
 */
export function parseRecipeRequest(text: string): RecipeRequest {
  const s = text.trim();
  if (s.startsWith('recipe:')) {
    const name = s.slice('recipe:'.length);
    if (!RECIPE_NAME.test(name)) throw new Error(`"${text}": "${name}" is not a recipe name (${RECIPE_NAME_RULE})`);
    return { recipe: name };
  }
  const m = PACKAGE.exec(s);
  if (!m) throw new Error(`"${text}" is neither a Debian package name nor recipe:NAME`);
  const req: PackageRequest = { name: m[1]! };
  let rest = s.slice(m[1]!.length).trim();
  const at = /\s*@([A-Za-z0-9_.-]+)$/.exec(rest);
  if (at) {
    req.channel = at[1]!;
    rest = rest.slice(0, at.index).trim();
  }
  if (rest.startsWith('(')) {
    if (!rest.endsWith(')')) throw new Error(`"${text}": an unclosed "("`);
    rest = rest.slice(1, -1).trim();
  }
  if (rest !== '') {
    if (!/^(<<|<=|=|>=|>>|<|>|!=|~=|\^|~)/.test(rest)) throw new Error(`"${text}": after the name comes a relation like ">= 1.2", or "@channel"`);
    let c;
    try {
      c = parseConstraint(rest);
    } catch (e) {
      throw new Error(`"${text}": ${(e as Error).message.replace(/^version constraint "[^"]*": /, '')}`);
    }
    if (c) req.constraint = c;
  }
  return { package: req };
}

/** The canonical text of a request: what the lock records and what the input hash covers. */
export function formatRecipeRequest(r: RecipeRequest): string {
  if ('recipe' in r) return `recipe:${r.recipe}`;
  const p = r.package;
  return `${p.name}${p.constraint ? ` (${formatConstraint(p.constraint)})` : ''}${p.channel ? ` @${p.channel}` : ''}`;
}

/** The channel packages of a list of requests. */
export const packageRequests = (rs: RecipeRequest[]): PackageRequest[] => rs.flatMap((r) => ('package' in r ? [r.package] : []));

/** The recipes a recipe depends on (build-depends and depends), sorted, once each. */
export function recipeDeps(r: Pick<RecipeSpec, 'buildDepends' | 'depends'>): string[] {
  return [...new Set([...r.buildDepends, ...r.depends].flatMap((x) => ('recipe' in x ? [x.recipe] : [])))].sort(cmp);
}

/** Why `prefix` cannot hold a recipe's output, or undefined. */
export function prefixProblem(prefix: string): string | undefined {
  if (!prefix.startsWith('/')) return 'is not an absolute path';
  if (posix.normalize(prefix) !== prefix || prefix.endsWith('/') || prefix.includes('//')) return 'is not a normalised path (no trailing "/", no "." or ".." parts)';
  if (/[\0\n\\:]/.test(prefix)) return 'holds a NUL, a newline, a backslash or a ":"';
  const top = prefix.split('/')[1]!;
  if (['dev', 'proc', 'sys', 'tmp', 'run', 'build'].includes(top)) return `lies under /${top}, which the build sandbox provides itself`;
  if (['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'].includes(top)) return `lies under /${top}, a merged-/usr link; use /usr/${prefix.slice(1)}`;
  if (prefix.split('/').length === 2 && prefix !== '/opt' && prefix !== '/srv') return 'is a top-level directory of the system, which the build environment needs (use a directory below it, like /usr/local or /opt/NAME)';
  if (prefix === '/usr/lib' || prefix === '/usr/share' || prefix === '/usr/bin' || prefix === '/usr/include' || prefix === '/usr/sbin') return 'is a directory the build environment\'s packages fill';
  return undefined;
}

/** Why a source's `dest` is not a relative path inside the source tree, or undefined. */
export function destProblem(dest: string): string | undefined {
  if (dest === '' || dest.startsWith('/')) return 'must be a relative path inside the source tree';
  if (dest.split('/').some((s) => s === '' || s === '.' || s === '..')) return 'must not have empty, "." or ".." parts';
  if (/[\0\n\\]/.test(dest)) return 'holds a NUL, a newline or a backslash';
  return undefined;
}

/** Why a source URL cannot be fetched, or undefined. `channels`: the manifest's channel names (for mirror://). */
export function urlProblem(url: string, channels: string[]): string | undefined {
  const mirror = /^mirror:\/\/([^/]+)\/(.+)$/.exec(url);
  if (url.startsWith('mirror://')) {
    if (!mirror) return 'a mirror:// URL is mirror://CHANNEL/PATH';
    if (!channels.includes(mirror[1]!)) return `names channel "${mirror[1]}", which is not declared (declared: ${channels.join(', ')})`;
    if (mirror[2]!.split('/').some((s) => s === '..' || s === '.' || s === '') || /[?#\s\\]/.test(mirror[2]!)) return 'its PATH must be a plain relative path on the mirror (no "..", "?", "#" or blanks)';
    return undefined;
  }
  if (!/^(https?|file):\/\/\S+$/.test(url)) return 'is not an http(s)://, file:// or mirror://CHANNEL/PATH URL';
  return undefined;
}

/** A mirror:// URL's channel and path, or undefined for another scheme. */
export function mirrorUrl(url: string): { channel: string; path: string } | undefined {
  const m = /^mirror:\/\/([^/]+)\/(.+)$/.exec(url);
  return m ? { channel: m[1]!, path: m[2]! } : undefined;
}

type AnySource = RecipeSource | LockedSource;

/** The recipe as the manifest gives it, canonically: the same text from the manifest and from the lock. */
export function canonicalRecipe(r: Pick<RecipeSpec, 'name' | 'version' | 'kind' | 'buildDepends' | 'depends' | 'env' | 'build' | 'prefix' | 'index' | 'requirements'> & { sources: AnySource[] }): string {
  const sources = r.sources.map((s) => ('url' in s ? ['url', s.url, s.sha256, s.dest ?? ''] : ['git', s.git, s.rev, s.dest ?? '']));
  const env = Object.keys(r.env)
    .sort(cmp)
    .map((k) => [k, r.env[k]!]);
  // A pip recipe adds its index (as written) and requirements; a build recipe's text is unchanged by them.
  const pip = r.kind === 'pip' ? [r.index ?? null, r.requirements ?? []] : [];
  return JSON.stringify(['strata-recipe-v1', r.name, r.version, r.kind, sources, r.buildDepends.map(formatRecipeRequest), r.depends.map(formatRecipeRequest), env, r.build, r.prefix, ...pip]);
}

/** The sha256 (hex) of a recipe's canonical text. */
export const recipeTextSha256 = (r: Parameters<typeof canonicalRecipe>[0]): string => sha256Hex(canonicalRecipe(r));

/**
 * A recipe's input hash: its canonical text, every source's sha256 (a git source's: of its tree's deterministic
 * tar), its build environment's closure, the architecture, the input hash of each recipe it depends on, and for a
 * pip recipe each locked wheel (name, version, file name, sha256; its URL is not an input, the bytes are).
 */
export function recipeInput(r: Omit<LockedRecipe, 'input' | 'buildPackages' | 'buildHostProvided' | 'resolvedDepends'>, arch: string, inputs: Map<string, string>): string {
  const deps = recipeDeps(r).map((d) => `${d} ${inputs.get(d) ?? '?'}`);
  return `sha256:${createHash('sha256')
    .update(JSON.stringify(['strata-recipe-input-v1', arch, canonicalRecipe(r), r.sources.map((s) => s.sha256), r.buildClosure, deps, ...(r.wheels ? [r.wheels.map((w) => [w.name, w.version, w.filename, w.sha256])] : [])]))
    .digest('hex')}`;
}

/**
 * The order recipes build in: every recipe after the recipes it depends on, ties by name. Returns the cycle
 * (`a`, `b`, `a`) when there is one, or the first dependency on a recipe that does not exist.
 */
export function recipeOrder(recipes: Pick<RecipeSpec, 'name' | 'buildDepends' | 'depends'>[]): { order: string[] } | { cycle: string[] } | { unknown: { recipe: string; missing: string } } {
  const byName = new Map(recipes.map((r) => [r.name, r]));
  for (const r of [...recipes].sort((a, b) => cmp(a.name, b.name))) {
    for (const d of recipeDeps(r)) if (!byName.has(d)) return { unknown: { recipe: r.name, missing: d } };
  }
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  let cycle: string[] | undefined;
  const visit = (n: string): void => {
    if (cycle) return;
    const s = state.get(n);
    if (s === 'done') return;
    if (s === 'visiting') {
      cycle = [...stack.slice(stack.indexOf(n)), n];
      return;
    }
    state.set(n, 'visiting');
    stack.push(n);
    for (const d of recipeDeps(byName.get(n)!)) visit(d);
    stack.pop();
    state.set(n, 'done');
    if (!cycle) order.push(n);
  };
  for (const n of [...byName.keys()].sort(cmp)) visit(n);
  return cycle ? { cycle } : { order };
}

/** Every recipe `name` depends on, directly or not, in build order (dependencies first). */
export function recipeClosure(name: string, byName: Map<string, Pick<RecipeSpec, 'name' | 'buildDepends' | 'depends'>>): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (n: string) => {
    for (const d of recipeDeps(byName.get(n)!)) {
      if (seen.has(d)) continue;
      seen.add(d);
      visit(d);
      out.push(d);
    }
  };
  visit(name);
  return out;
}
