/** Turns a resolver solution into a Lockfile: pins every node, computes closure hashes. */
import { closureHashes, environmentClosure } from './closure.ts';
import { LOCK_VERSION, LOCK_VERSION_RECIPES } from './lockfile.ts';
import { lockProblem } from './verify.ts';
import { StrataError } from '../errors.ts';
import { cmp } from '../util/order.ts';
import type { LockedChannel, LockedPackage, LockedRecipe, Lockfile, Manifest, HostProvided, SolvedPackage } from '../model.ts';

/** Locked packages from solved ones, each with its closure hash. */
export function lockedPackages(nodes: SolvedPackage[]): LockedPackage[] {
  const closures = closureHashes(nodes.map((n) => ({ name: n.candidate.name, sha256: n.candidate.sha256, depends: n.depends })));
  return nodes.map((n) => ({
    name: n.candidate.name,
    version: n.candidate.version,
    arch: n.candidate.arch,
    channel: n.candidate.channel,
    source: n.candidate.source,
    filename: n.candidate.filename,
    size: n.candidate.size,
    sha256: n.candidate.sha256,
    root: n.root,
    depends: [...n.depends],
    closure: closures.get(n.candidate.name)!,
  }));
}

/** The lock of a solution; `recipes` (already locked, see engine/lockRecipes.ts) are covered by its closure. */
export function lockFromSolution(manifest: Manifest, channels: LockedChannel[], nodes: SolvedPackage[], hostProvided: HostProvided[], recipes: LockedRecipe[] = []): Lockfile {
  const packages = lockedPackages(nodes);
  const sorted = [...recipes].sort((a, b) => cmp(a.name, b.name));
  const lock: Lockfile = {
    version: recipes.length > 0 ? LOCK_VERSION_RECIPES : LOCK_VERSION,
    manifestSha256: manifest.sha256,
    project: { name: manifest.name, arch: manifest.arch },
    closure: environmentClosure(manifest.arch, packages.map((p) => p.closure), hostProvided, sorted),
    channels,
    image: manifest.image,
    packages,
    hostProvided,
    ...(sorted.length > 0 ? { recipes: sorted } : {}),
  };
  // What strata writes it must read back (lock/verify.ts): an index offering what no lock may hold stops here.
  const problem = lockProblem(lock);
  if (problem) throw new StrataError('E_DEB', `cannot write strata.lock from what the channels offer: ${problem}`, "the channel's Packages index has an entry strata refuses; remove the package or the channel");
  return lock;
}
