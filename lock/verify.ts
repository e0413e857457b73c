/**
 * What reading a lock verifies. The lock is the only input of `realise` and `run`, and it is a text file people can
 * edit, so every reader (`parseLock`, hence `readLock`) checks that it is one strata could have written:
 *
 * - every package block is well formed: a valid Debian package name and source name, a valid Debian version, the
 *   project's architecture or `all`, a channel the lock records, a relative archive path without `..` segments,
 *   a size, a sha256, a `sha256:` closure; no package name appears twice;
 * - every dependency edge names a locked package (not itself, not twice); at least one package is a root;
 * - every node's closure is recomputed from the sha256s and edges and must equal the recorded one, and so must the
 *   environment's closure. The first node that differs is named: the lowest one, whose own sha256 or edges changed,
 *   not the packages above it whose closures changed because of it.
 *
 * - every recipe (`[[recipe]]`) is well formed (name, version, prefix, sources with sha256s, requests naming
 *   declared channels and locked recipes, no cycle); its build packages pass the same checks as the environment's
 *   (as a set of their own), its build closure and its input hash are recomputed and must equal the recorded ones
 *   (in build order, each input covering the inputs of the recipes it depends on), and the environment's closure
 *   covers every recipe's input.
 *
 * Against the manifest (`lockMatchesManifest`), a lock that records the manifest's sha256 must also hold what that
 * manifest asks for: the project, the channels, the image settings, its recipes as written, and its packages (and
 * the recipes' channel depends) as roots.
 *
 * A lock edited consistently (bytes swapped and every closure recomputed) passes these checks: closures make a lock
 * self-consistent, not authentic. `strata lock --check --online` compares every locked package with the channels'
 * signed indexes (lock/checkOnline.ts), and `realise` checks every .deb against its locked sha256.
 */
import { alg, Graph } from '@dagrejs/graphlib';
import { StrataError } from '../errors.ts';
import { isValidVersion } from '../debian/version.ts';
import { satisfiesVersion } from '../debian/relation.ts';
import { closureHashes, environmentClosure } from './closure.ts';
import { wheelProblem } from '../recipes/pip.ts';
import {
  GIT_REV,
  RECIPE_NAME,
  canonicalRecipe,
  destProblem,
  packageRequests,
  prefixProblem,
  recipeInput,
  recipeOrder,
  urlProblem,
} from '../recipes/recipe.ts';
import type { ImageSettings, LockedPackage, LockedRecipe, Lockfile, Manifest, PackageRequest } from '../model.ts';

/** Debian policy 5.6.1: lower-case letters, digits, `+`, `-`, `.`; at least two characters; alphanumeric first. */
export const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;
const ARCH = /^[a-z0-9][a-z0-9-]*$/;
const SHA256 = /^[0-9a-f]{64}$/;
const CLOSURE = /^sha256:[0-9a-f]{64}$/;

export const LOCK_HINT = 'run `strata lock` to re-create it from strata.toml (or restore it from version control)';

/** A name as messages show it: quoted only when it is not a valid package name. */
function q(name: string): string {
  return PACKAGE_NAME.test(name) ? name : JSON.stringify(name);
}

function short(closure: string): string {
  return `${closure.slice(0, 19)}…`;
}

/** Why `filename` is not a relative archive path that stays inside the archive, or undefined when it is one. */
function filenameProblem(filename: string): string | undefined {
  if (filename === '') return 'is empty';
  if (filename.startsWith('/')) return 'is absolute';
  // Printable ASCII without blanks, backslashes or URL delimiters: the path is appended to a mirror URL.
  if (!/^[\x21-\x7e]+$/.test(filename) || /[\\?#]/.test(filename)) return 'has a blank, a control character, a backslash, `?` or `#`';
  for (const seg of filename.split('/')) {
    if (seg === '..') return 'has a `..` segment';
    if (/^(?:\.|%2e){2}$/i.test(seg)) return 'has an encoded `..` segment';
  }
  return undefined;
}

/** The first structural problem of one package block, or undefined. */
function packageProblem(p: LockedPackage, lock: Lockfile): string | undefined {
  if (!PACKAGE_NAME.test(p.name)) return `package ${JSON.stringify(p.name)}: not a valid Debian package name (lower-case letters, digits, "+", "-", "."; at least two characters)`;
  const w = `package ${p.name}`;
  if (!isValidVersion(p.version) || p.version !== p.version.trim()) return `${w}: version ${JSON.stringify(p.version)} is not a valid Debian version`;
  if (!ARCH.test(p.arch) || (p.arch !== 'all' && p.arch !== lock.project.arch)) return `${w}: architecture ${JSON.stringify(p.arch)} is neither the project's (${lock.project.arch}) nor "all"`;
  if (!PACKAGE_NAME.test(p.source)) return `${w}: source ${JSON.stringify(p.source)} is not a valid Debian source package name`;
  if (!lock.channels.some((c) => c.name === p.channel)) return `${w}: names channel ${JSON.stringify(p.channel)}, which the lock does not contain`;
  if (lock.channels.some((c) => c.name === p.channel && c.unread)) return `${w}: names channel ${JSON.stringify(p.channel)}, which the lock records as unread (supplying no package)`;
  const f = filenameProblem(p.filename);
  if (f) return `${w}: filename ${JSON.stringify(p.filename)} ${f}`;
  if (!Number.isSafeInteger(p.size) || p.size < 0) return `${w}: size ${p.size} is not a number of bytes`;
  if (!SHA256.test(p.sha256)) return `${w}: sha256 ${JSON.stringify(p.sha256)} is not 64 lower-case hex digits`;
  if (!CLOSURE.test(p.closure)) return `${w}: closure ${JSON.stringify(p.closure)} is not sha256:<64 hex digits>`;
  return undefined;
}

/**
 * Among the nodes whose recorded closure differs from the recomputed one, the one to name: a node none of whose
 * dependencies outside its own dependency cycle differs (its own sha256 or edges changed, or another member's of its
 * cycle, which is hashed as one unit). Such a node always exists: the differing nodes' cycles form a finite acyclic
 * graph, which has a bottom. Ties go to the first name. Returns it and the other members of its cycle.
 */
function lowestDiffering(packages: LockedPackage[], differing: Set<string>): { name: string; cycle: string[] } {
  const g = new Graph({ directed: true });
  for (const p of packages) g.setNode(p.name);
  for (const p of packages) for (const d of p.depends) g.setEdge(p.name, d);
  const sccs = alg.tarjan(g).map((members: string[]) => [...members].sort());
  const scc = new Map<string, number>();
  sccs.forEach((members, i) => members.forEach((m) => scc.set(m, i)));
  const byName = new Map(packages.map((p) => [p.name, p]));
  const names = [...differing].sort();
  const name = names.find((n) => byName.get(n)!.depends.every((d) => !differing.has(d) || scc.get(d) === scc.get(n))) ?? names[0]!;
  return { name, cycle: sccs[scc.get(name)!]!.filter((m) => m !== name) };
}

/** The first reason the lock is not one strata could have written, or undefined when it is consistent. */
export function lockProblem(lock: Lockfile): string | undefined {
  if (!SHA256.test(lock.manifestSha256)) return `manifest-sha256 ${JSON.stringify(lock.manifestSha256)} is not 64 lower-case hex digits`;
  if (!ARCH.test(lock.project.arch) || lock.project.arch === 'all') return `project.arch ${JSON.stringify(lock.project.arch)} is not a Debian architecture`;
  const channelNames = new Set<string>();
  for (const c of lock.channels) {
    if (channelNames.has(c.name)) return `channel ${JSON.stringify(c.name)} is listed twice`;
    channelNames.add(c.name);
  }
  if (lock.packages.length === 0) return 'it holds no packages (every environment has at least the packages its manifest names)';
  const checked = packageSetProblem(lock.packages, lock, lock.hostProvided, '');
  if (typeof checked === 'string') return checked;
  if (!lock.packages.some((p) => p.root)) return 'no package is marked root = true (a lock holds the packages its manifest names as roots)';
  const recipes = recipesProblem(lock);
  if (typeof recipes === 'string') return recipes;
  const env = environmentClosure(lock.project.arch, checked.values(), lock.hostProvided, lock.recipes ?? []);
  if (env !== lock.closure) return `recorded environment closure ${short(lock.closure)} but its packages${(lock.recipes ?? []).length > 0 ? ', recipes' : ''} and host-provided requirements give ${short(env)}`;
  return undefined;
}

/**
 * The checks of one set of locked packages (the environment's, or a recipe's build environment): each block well
 * formed, no name twice, every edge to a package of the set, every closure as recomputed. Messages start with
 * `label` (a recipe's name for its build packages). Returns the recomputed closures when all holds.
 */
function packageSetProblem(packages: LockedPackage[], lock: Lockfile, hostProvided: { name: string }[], label: string): string | Map<string, string> {
  const seen = new Map<string, LockedPackage>();
  for (const p of packages) {
    const problem = packageProblem(p, lock);
    if (problem) return `${label}${problem}`;
    const first = seen.get(p.name);
    if (first) return `${label}package ${p.name} is listed twice (${first.version} ${first.arch} and ${p.version} ${p.arch}); a lock has one block per package`;
    seen.set(p.name, p);
  }
  for (const p of packages) {
    const edges = new Set<string>();
    for (const d of p.depends) {
      if (!seen.has(d)) return `${label}package ${p.name} depends on ${q(d)}, which the lock does not contain`;
      if (d === p.name) return `${label}package ${p.name} depends on itself`;
      if (edges.has(d)) return `${label}package ${p.name} lists the dependency ${d} twice`;
      edges.add(d);
    }
  }
  for (const h of hostProvided) {
    if (!PACKAGE_NAME.test(h.name)) return `${label}host-provided ${JSON.stringify(h.name)} is not a valid Debian package name`;
  }
  const closures = closureHashes(packages);
  const differing = new Set(packages.filter((p) => closures.get(p.name) !== p.closure).map((p) => p.name));
  if (differing.size > 0) {
    const low = lowestDiffering(packages, differing);
    const p = packages.find((x) => x.name === low.name)!;
    const others = differing.size - 1;
    const cycle = low.cycle.length > 0 ? `, with its dependency cycle (${low.cycle.join(', ')}),` : '';
    return `${label}package ${p.name}: recorded closure ${short(p.closure)} but its sha256${cycle} and dependencies give ${short(closures.get(p.name)!)}${others > 0 ? ` (the closures of ${others} more package${others === 1 ? '' : 's'} differ too)` : ''}`;
  }
  return closures;
}

/** The first problem of one recipe's own fields (not its build packages), or undefined. */
function recipeFieldProblem(r: LockedRecipe, lock: Lockfile, names: Set<string>): string | undefined {
  const w = `recipe ${r.name}`;
  if (!isValidVersion(r.version)) return `${w}: version ${JSON.stringify(r.version)} is not a valid Debian version`;
  const prefix = prefixProblem(r.prefix);
  if (prefix) return `${w}: prefix ${JSON.stringify(r.prefix)} ${prefix}`;
  if (r.build.length === 0) return `${w}: it has no build commands`;
  for (const wheel of r.wheels ?? []) {
    const why = wheelProblem(wheel);
    if (why) return `${w}: wheel ${wheel.name}: ${why}`;
  }
  const channels = lock.channels.map((c) => c.name);
  for (const s of r.sources) {
    if (!SHA256.test(s.sha256)) return `${w}: a source's sha256 ${JSON.stringify(s.sha256)} is not 64 lower-case hex digits`;
    if (s.dest !== undefined && destProblem(s.dest)) return `${w}: a source's dest ${JSON.stringify(s.dest)} ${destProblem(s.dest)}`;
    if ('url' in s) {
      const why = urlProblem(s.url, channels);
      if (why) return `${w}: source ${JSON.stringify(s.url)} ${why}`;
    } else if (!GIT_REV.test(s.rev)) return `${w}: git source ${JSON.stringify(s.git)}: rev ${JSON.stringify(s.rev)} is not a full commit id`;
  }
  for (const req of [...r.buildDepends, ...r.depends]) {
    if ('recipe' in req) {
      if (!names.has(req.recipe)) return `${w} depends on recipe:${req.recipe}, which the lock does not contain`;
    } else if (req.package.channel !== undefined && !channels.includes(req.package.channel)) {
      return `${w}: ${req.package.name} asks for channel ${JSON.stringify(req.package.channel)}, which the lock does not contain`;
    }
  }
  const locked = new Set(lock.packages.map((p) => p.name));
  for (const d of r.resolvedDepends) {
    const rec = d.startsWith('recipe:') ? d.slice(7) : undefined;
    if (rec !== undefined ? !names.has(rec) : !locked.has(d)) return `${w}: its depends resolved to ${JSON.stringify(d)}, which the lock does not contain`;
  }
  if (!CLOSURE.test(r.buildClosure) || !CLOSURE.test(r.input)) return `${w}: build-closure and input must be sha256:<64 hex digits>`;
  return undefined;
}

/**
 * The recipes' checks: names, fields, references between recipes (no cycle), each build environment as a package
 * set with its closure, and every input hash as recomputed, in build order. A string names the first problem.
 */
function recipesProblem(lock: Lockfile): string | undefined {
  const recipes = lock.recipes ?? [];
  if (recipes.length === 0) return undefined;
  const names = new Set<string>();
  for (const r of recipes) {
    if (!RECIPE_NAME.test(r.name)) return `recipe ${JSON.stringify(r.name)}: not a valid recipe name`;
    if (names.has(r.name)) return `recipe ${r.name} is listed twice`;
    names.add(r.name);
  }
  for (const r of recipes) {
    const problem = recipeFieldProblem(r, lock, names);
    if (problem) return problem;
  }
  const order = recipeOrder(recipes);
  if (!('order' in order)) return 'cycle' in order ? `recipes depend on each other in a cycle: ${order.cycle.join(' -> ')}` : `recipe ${order.unknown.recipe} depends on recipe:${order.unknown.missing}, which the lock does not contain`;
  const byName = new Map(recipes.map((r) => [r.name, r]));
  const inputs = new Map<string, string>();
  for (const name of order.order) {
    const r = byName.get(name)!;
    const label = `recipe ${r.name}: build `;
    const closures = packageSetProblem(r.buildPackages, lock, r.buildHostProvided, label);
    if (typeof closures === 'string') return closures;
    const build = environmentClosure(lock.project.arch, closures.values(), r.buildHostProvided);
    if (build !== r.buildClosure) return `recipe ${r.name}: recorded build-closure ${short(r.buildClosure)} but its build packages give ${short(build)}`;
    const input = recipeInput(r, lock.project.arch, inputs);
    if (input !== r.input) return `recipe ${r.name}: recorded input ${short(r.input)} but its text, sources, build closure and recipe dependencies give ${short(input)}`;
    inputs.set(r.name, input);
  }
  return undefined;
}

/** Throws E_LOCK naming the first problem `lockProblem` finds. `path` is the lock as the user should read it. */
export function verifyLock(lock: Lockfile, path = 'strata.lock'): void {
  const problem = lockProblem(lock);
  if (problem) throw new StrataError('E_LOCK', `${path}: ${problem}: the lock was edited or damaged`, LOCK_HINT);
}

/** The lock with every closure recomputed from its packages' sha256s and edges (what `lockFromSolution` writes). */
export function rehashLock(lock: Lockfile): Lockfile {
  const closures = closureHashes(lock.packages);
  return {
    ...lock,
    packages: lock.packages.map((p) => ({ ...p, closure: closures.get(p.name)! })),
    closure: environmentClosure(lock.project.arch, closures.values(), lock.hostProvided, lock.recipes ?? []),
  };
}

/** Every request the manifest makes of the environment: `[packages]`, and each recipe's channel `depends`. */
export function environmentRequests(manifest: Manifest): PackageRequest[] {
  return [...manifest.packages, ...(manifest.recipes ?? []).flatMap((r) => packageRequests(r.depends))];
}

function canonicalImage(i: ImageSettings): string {
  const sorted = (o: Record<string, string>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return JSON.stringify([sorted(i.env), sorted(i.alternatives), i.entrypoint ?? null, i.cmd ?? null, i.gpuDriver ?? null, i.shellHook ?? null]);
}

/**
 * For a lock that records this manifest's sha256: why it does not hold what the manifest asks for, or undefined
 * when it does. The project, the channels (name, suite, components, URLs, in order) and the image settings must be
 * the manifest's. Each request names one root: the locked package of that name when it meets the request's version
 * and channel, else a package providing the name. So a locked package that meets a request must be a root, and
 * there are no more roots that no request names than requests that no locked package meets. (A request met through
 * a provider cannot be told from a deleted root without the indexes' Provides: `lock --check --online` checks it.)
 */
export function lockMatchesManifest(manifest: Manifest, lock: Lockfile): string | undefined {
  if (lock.project.name !== manifest.name) return `the lock is for project ${JSON.stringify(lock.project.name)}, the manifest names ${JSON.stringify(manifest.name)}`;
  if (lock.project.arch !== manifest.arch) return `the lock is for architecture ${lock.project.arch}, the manifest asks for ${manifest.arch}`;
  const chan = (c: { name: string; suite: string; components: string[]; urls: string[] }) => JSON.stringify([c.name, c.suite, c.components, c.urls]);
  const want = manifest.channels.map(chan);
  const have = lock.channels.map(chan);
  for (let i = 0; i < Math.max(want.length, have.length); i++) {
    if (want[i] !== have[i]) {
      const m = manifest.channels[i];
      const l = lock.channels[i];
      if (!l) return `the manifest's channel ${JSON.stringify(m!.name)} is not in the lock`;
      if (!m) return `the lock's channel ${JSON.stringify(l.name)} is not in the manifest`;
      return `the lock's channel ${JSON.stringify(l.name)} (${l.suite}) is not the manifest's channel ${JSON.stringify(m.name)} (${m.suite}) as written`;
    }
  }
  if (canonicalImage(lock.image) !== canonicalImage(manifest.image)) return "the lock's [image] settings are not the ones the manifest gives";
  const want_r = (manifest.recipes ?? []).map((r) => canonicalRecipe(r));
  const have_r = (lock.recipes ?? []).map((r) => canonicalRecipe(r));
  for (let i = 0; i < Math.max(want_r.length, have_r.length); i++) {
    if (want_r[i] !== have_r[i]) {
      const m = manifest.recipes?.[i];
      const l = lock.recipes?.[i];
      if (!l) return `the manifest's recipe ${m!.name} is not in the lock`;
      if (!m) return `the lock's recipe ${l.name} is not in the manifest`;
      return `the lock's recipe ${l.name} is not the manifest's recipe ${m.name} as written`;
    }
  }

  const byName = new Map(lock.packages.map((p) => [p.name, p]));
  const matched = new Set<string>();
  const unmatched: string[] = [];
  for (const r of environmentRequests(manifest)) {
    const p = byName.get(r.name);
    const meets = p !== undefined && (r.channel === undefined || p.channel === r.channel) && (r.constraint === undefined || satisfiesVersion(p.version, r.constraint.op, r.constraint.version));
    if (!meets) {
      unmatched.push(r.name);
      continue;
    }
    if (!p.root) return `package ${p.name}: the manifest asks for it, but the lock does not mark it root = true`;
    matched.add(p.name);
  }
  const roots = lock.packages.filter((p) => p.root);
  const unexplained = roots.filter((p) => !matched.has(p.name));
  if (unexplained.length > unmatched.length) return `package ${unexplained[0]!.name}: marked root = true, but the manifest does not ask for it`;
  return undefined;
}

/** Throws E_LOCK when a lock that records this manifest's sha256 does not hold what the manifest asks for. */
export function verifyLockMatchesManifest(manifest: Manifest, lock: Lockfile, path = 'strata.lock'): void {
  const problem = lockMatchesManifest(manifest, lock);
  if (problem) throw new StrataError('E_LOCK', `${path} records the sha256 of strata.toml, but ${problem}: the lock was edited or damaged`, LOCK_HINT);
}
