/**
 * `strata why`: the dependency paths from the manifest's requests to a locked package, each edge named by the
 * relation it satisfies. The relations are not in the lock; they come from the channels' cached indexes (read
 * offline, matched to the lock by sha256). Without a cache the paths are still shown, without relations.
 */
import { loadChannel } from '../channels/channel.ts';
import { parseProvides, parseRelations, satisfiesVersion, formatGroup, type Relation } from '../debian/relation.ts';
import { whyPaths, type WhyResult } from '../lock/why.ts';
import { StrataError } from '../errors.ts';
import type { Ctx } from './ctx.ts';
import type { Candidate, Lockfile, Manifest } from '../model.ts';

export interface WhyEdge {
  from: string;
  to: string;
  /** The relation of `from` that `to` satisfies, e.g. `Depends: libblas3 | libblas.so.3`; undefined when unknown. */
  via?: string;
}

export interface WhyAnswer {
  target: string;
  requested: boolean;
  from: WhyResult['from'];
  paths: WhyEdge[][];
  /** False when no cached index told the relations. */
  relations: boolean;
}

/** The locked packages' candidates from the cached indexes, by name; undefined when some channel is not cached. */
async function lockedCandidates(manifest: Manifest, lock: Lockfile, ctx: Ctx): Promise<Map<string, Candidate> | undefined> {
  const quiet = { ...ctx.reporter, info: () => {} };
  try {
    const loaded = await Promise.all(manifest.channels.map((c, rank) => loadChannel(c, rank, manifest.arch, ctx.store, quiet, { offline: true })));
    const indexes = loaded.flatMap((l) => l.indexes);
    const out = new Map<string, Candidate>();
    for (const p of lock.packages) {
      const c = indexes.flatMap((i) => i.candidates(p.name)).find((x) => x.sha256 === p.sha256);
      if (c) out.set(p.name, c);
    }
    return out;
  } catch (e) {
    if (e instanceof StrataError && e.code === 'E_OFFLINE') return undefined;
    throw e;
  }
}

function satisfies(r: Relation, c: Candidate): boolean {
  if (r.name === c.name) return r.op === undefined || satisfiesVersion(c.version, r.op, r.version!);
  return parseProvides(c.provides).some((p) => p.name === r.name && (r.op === undefined || (p.version !== undefined && satisfiesVersion(p.version, r.op, r.version!))));
}

/** The first relation group of `from` (Pre-Depends, then Depends, then Recommends) that `to` satisfies. */
function relationOf(from: Candidate, to: Candidate): string | undefined {
  for (const [field, text] of [['Pre-Depends', from.preDepends], ['Depends', from.depends], ['Recommends', from.recommends]] as const) {
    for (const group of parseRelations(text)) if (group.some((r) => satisfies(r, to))) return `${field}: ${formatGroup(group)}`;
  }
  return undefined;
}

export async function why(manifest: Manifest, lock: Lockfile, target: string, ctx: Ctx): Promise<WhyAnswer> {
  const pkg = lock.packages.find((p) => p.name === target);
  if (!pkg) {
    const host = lock.hostProvided.find((h) => h.name === target);
    throw new StrataError(
      'E_UNKNOWN_PACKAGE',
      host ? `${target} is not in the environment: it is host-provided (the host's NVIDIA driver supplies it at run time${host.requires ? `, ${host.requires}` : ''})` : `${target} is not in strata.lock`,
      host ? undefined : '`strata lock` lists what the lock holds; check the name',
    );
  }
  const candidates = await lockedCandidates(manifest, lock, ctx);
  const essential = candidates ? [...candidates.values()].filter((c) => c.essential).map((c) => c.name).sort() : [];
  const result = whyPaths(lock, target, essential);
  const paths = result.paths.map((names) =>
    names.slice(1).map((to, i) => {
      const from = names[i]!;
      const via = candidates && candidates.has(from) && candidates.has(to) ? relationOf(candidates.get(from)!, candidates.get(to)!) : undefined;
      return via !== undefined ? { from, to, via } : { from, to };
    }),
  );
  return { target, requested: pkg.root, from: result.from, paths, relations: candidates !== undefined };
}
