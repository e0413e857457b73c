/**
 * `strata freeze`: what was installed into the project's venv, written into strata.toml as recipes, so that a
 * colleague with strata.toml and strata.lock gets the same packages without the venv.
 *
 * The venv is read directly: every `*.dist-info` of its own site-packages (METADATA's Name and Version) and its
 * `direct_url.json` (PEP 610) when pip wrote one. A distribution installed from an index (no direct_url.json)
 * becomes a requirement `NAME == VERSION` of one `kind = "pip"` recipe, `[recipes.venv]` (its files and hashes
 * are resolved at the next `strata lock`). A git checkout (an editable or local-directory install whose directory
 * is a clean git checkout with a reachable remote, or a `git+URL@commit` install) becomes a build recipe of its
 * own with `source = { git = REMOTE, rev = COMMIT }` that pip-installs the tree. Anything else is listed as not
 * freezable, with the reason.
 *
 * strata.toml is edited as text: the recipes go into one block between two marker comments, appended at the end
 * the first time and replaced as a whole afterwards; nothing else of the file is touched.
 */
import { PROJECT_VENV, VENV_SEEDED_FILE } from '../run/develop.ts';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { isValidVersion } from '../debian/version.ts';
import { StrataError } from '../errors.ts';
import { normaliseName } from '../recipes/pip.ts';
import { RECIPE_NAME } from '../recipes/recipe.ts';
import { cmp } from '../util/order.ts';

/** The project-local venv `strata run` and `shell` activate, relative to the project directory. */
/** The project's venv, where `strata run` and `strata shell` install (run/develop.ts). */
export const VENV_DIR = PROJECT_VENV;
/** The recipe that holds the venv's index-installed packages. */
export const FROZEN_RECIPE = 'venv';
export const BEGIN_MARK = '# --- begin: written by `strata freeze` (run it again to update; edits between these lines are replaced) ---';
export const END_MARK = '# --- end: written by `strata freeze` ---';
/** Distributions a venv has for its own sake, never frozen. */
const TOOLING = new Set(['pip']);

/** One distribution of the venv as freeze judged it. */
export type FrozenItem =
  | { kind: 'index'; name: string; version: string }
  | { kind: 'git'; name: string; version: string; git: string; rev: string; subdirectory?: string }
  | { kind: 'not-freezable'; name: string; version: string; reason: string };

export interface FreezeResult {
  items: FrozenItem[];
  /** The new strata.toml text. */
  text: string;
  venv: string;
}

const git = (args: string[], cwd: string) => promisify(execFile)('git', args, { cwd, timeout: 60_000, env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' } });

/** Why a directory cannot be frozen as a git source, or its remote and commit. */
async function gitCheckout(dir: string): Promise<{ git: string; rev: string } | { reason: string }> {
  if (!existsSync(dir)) return { reason: `its directory ${dir} is gone` };
  try {
    await git(['rev-parse', '--git-dir'], dir);
  } catch {
    return { reason: `${dir} is not a git checkout` };
  }
  const status = (await git(['status', '--porcelain', '--untracked-files=no'], dir)).stdout.trim();
  if (status !== '') return { reason: `the git checkout ${dir} has uncommitted changes (commit them, or stash them, and freeze again)` };
  const rev = (await git(['rev-parse', 'HEAD'], dir)).stdout.trim();
  const remotes = (await git(['remote'], dir)).stdout.split('\n').filter(Boolean);
  const remote = remotes.includes('origin') ? 'origin' : remotes[0];
  if (remote === undefined) return { reason: `the git checkout ${dir} has no remote a colleague could fetch from` };
  const url = (await git(['remote', 'get-url', remote], dir)).stdout.trim();
  // Fetched by id into an empty scratch repository: only what the remote itself has can arrive.
  const scratch = await mkdtemp(join(tmpdir(), 'strata-freeze-'));
  try {
    await git(['init', '-q', '--bare'], scratch);
    await git(['-c', 'protocol.file.allow=always', 'fetch', '-q', '--depth', '1', url, rev], scratch);
  } catch (e) {
    const why = ((e as { stderr?: string }).stderr ?? '').trim().split('\n').pop() ?? '';
    return { reason: `commit ${rev.slice(0, 12)} of ${dir} is not reachable at its remote ${url} (push it)${why ? `: ${why}` : ''}` };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return { git: url, rev };
}

/** The site-packages directory of the venv at `venv`. */
function sitePackages(venv: string): string {
  const lib = join(venv, 'lib');
  const py = existsSync(lib) ? readdirSync(lib).filter((d) => /^python3\.\d+$/.test(d)).sort(cmp) : [];
  if (py.length === 0) throw new StrataError('E_USAGE', `${venv} holds no Python venv (no lib/python3.X)`, 'make it first inside the environment, e.g. `strata run -- python3 -m venv --system-site-packages .strata/venv`');
  return join(lib, py[py.length - 1]!, 'site-packages');
}

function metadataField(text: string, field: string): string | undefined {
  const m = new RegExp(`^${field}:[ \\t]*(.*)$`, 'mi').exec(text.split(/\r?\n\r?\n/)[0] ?? '');
  return m?.[1]?.trim();
}

/** Every distribution installed into the venv itself (not the system site-packages it sees), judged. */
export async function readVenv(venv: string): Promise<FrozenItem[]> {
  const site = sitePackages(venv);
  const items: FrozenItem[] = [];
  // What the venv was seeded with from the environment's own Debian wheels is the environment's, not an install.
  const seededFile = join(venv, VENV_SEEDED_FILE);
  const seeded = new Set(existsSync(seededFile) ? readFileSync(seededFile, 'utf8').split('\n').filter(Boolean) : []);
  for (const d of readdirSync(site).filter((x) => x.endsWith('.dist-info') && !seeded.has(x)).sort(cmp)) {
    const meta = readFileSync(join(site, d, 'METADATA'), 'utf8');
    const name = normaliseName(metadataField(meta, 'Name') ?? d.replace(/-[^-]*\.dist-info$/, ''));
    const version = metadataField(meta, 'Version') ?? '';
    if (TOOLING.has(name)) continue;
    const du = join(site, d, 'direct_url.json');
    if (!existsSync(du)) {
      items.push({ kind: 'index', name, version });
      continue;
    }
    const direct = JSON.parse(readFileSync(du, 'utf8')) as { url: string; subdirectory?: string; dir_info?: { editable?: boolean }; vcs_info?: { vcs: string; commit_id: string }; archive_info?: unknown };
    const sub = direct.subdirectory !== undefined ? { subdirectory: direct.subdirectory } : {};
    if (direct.vcs_info) {
      if (direct.vcs_info.vcs !== 'git') items.push({ kind: 'not-freezable', name, version, reason: `installed from ${direct.vcs_info.vcs}, and strata takes git sources only` });
      else items.push({ kind: 'git', name, version, git: direct.url, rev: direct.vcs_info.commit_id, ...sub });
    } else if (direct.dir_info) {
      const how = direct.dir_info.editable ? 'an editable install of' : 'installed from the directory';
      if (!direct.url.startsWith('file://')) {
        items.push({ kind: 'not-freezable', name, version, reason: `${how} ${direct.url}, which is not a local directory` });
        continue;
      }
      const dir = fileURLToPath(direct.url);
      const checkout = await gitCheckout(dir);
      if ('reason' in checkout) items.push({ kind: 'not-freezable', name, version, reason: `${how} ${dir}: ${checkout.reason}` });
      else items.push({ kind: 'git', name, version, ...checkout, ...sub });
    } else {
      items.push({ kind: 'not-freezable', name, version, reason: `installed from the file ${direct.url}, not from an index or a git checkout (publish it on an index, or install it from its git checkout)` });
    }
  }
  return items;
}

const q = (s: string) => JSON.stringify(s);

/** The recipe name of a git item. */
const gitRecipeName = (name: string) => `${FROZEN_RECIPE}-${name}`;

/** The block of recipes freeze writes for `items` (without the markers). */
export function frozenRecipes(items: FrozenItem[]): string {
  const index = items.filter((i) => i.kind === 'index');
  const gits = items.filter((i): i is Extract<FrozenItem, { kind: 'git' }> => i.kind === 'git');
  const out: string[] = [];
  if (index.length > 0) {
    out.push(`[recipes.${FROZEN_RECIPE}]`, 'kind = "pip"', 'version = "1"');
    out.push(`requirements = [\n${index.map((i) => `  ${q(`${i.name} == ${i.version}`)},\n`).join('')}]`);
    // The venv's packages from git come first into the same site-packages, as they did in the venv.
    if (gits.length > 0) out.push(`depends = [${gits.map((g) => q(`recipe:${gitRecipeName(g.name)}`)).join(', ')}]`);
  }
  for (const g of gits) {
    const dir = g.subdirectory !== undefined ? `cd ${q(g.subdirectory)} && ` : '';
    out.push(
      '',
      `[recipes.${gitRecipeName(g.name)}]`,
      `version = ${q(isValidVersion(g.version) ? g.version : '0')}`,
      `source = { git = ${q(g.git)}, rev = ${q(g.rev)} }`,
      'build-depends = ["python3-pip", "python3-setuptools", "python3-wheel"]',
      'depends = ["python3"]',
      `build = [${q(`${dir}python3 -m pip install --isolated --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --root-user-action=ignore --break-system-packages .`)}]`,
    );
  }
  return out.join('\n');
}

/** `text` with the freeze block replaced by `block` (appended when there is none; removed when `block` is empty). */
export function withFrozenBlock(text: string, block: string): string {
  const begin = text.indexOf(BEGIN_MARK);
  const end = text.indexOf(END_MARK);
  const body = block === '' ? '' : `${BEGIN_MARK}\n${block}\n${END_MARK}\n`;
  if (begin >= 0 && end > begin) return `${text.slice(0, begin)}${body}${text.slice(end + END_MARK.length).replace(/^\n/, '')}`;
  if (body === '') return text;
  const sep = text === '' || text.endsWith('\n\n') ? '' : text.endsWith('\n') ? '\n' : '\n\n';
  return `${text}${sep}${body}`;
}

/** Freezes the venv of `projectDir` into the manifest text `text`; the caller writes the result. */
export async function freezeVenv(projectDir: string, text: string, recipeNames: string[]): Promise<FreezeResult> {
  const venv = join(projectDir, VENV_DIR);
  if (!existsSync(venv)) throw new StrataError('E_USAGE', `there is no venv at ${venv} to freeze`, 'pip-install into the project\'s venv (made inside the environment) first');
  const items = await readVenv(venv);
  const owned = text.indexOf(BEGIN_MARK) >= 0 ? text.slice(text.indexOf(BEGIN_MARK), text.indexOf(END_MARK)) : '';
  for (const name of [FROZEN_RECIPE, ...items.filter((i) => i.kind === 'git').map((i) => gitRecipeName(i.name))]) {
    if (!RECIPE_NAME.test(name)) throw new Error(`freeze: ${name} is not a recipe name`);
    if (recipeNames.includes(name) && !owned.includes(`[recipes.${name}]`)) {
      throw new StrataError('E_USAGE', `strata.toml already has a recipe "${name}" that strata freeze did not write`, `rename that recipe: freeze writes [recipes.${name}]`);
    }
  }
  return { items, text: withFrozenBlock(text, frozenRecipes(items)), venv };
}
