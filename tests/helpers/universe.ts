/**
 * Universes over candidates written in a test: `memoryIndex` is the in-memory CandidateIndex (its tables exact), the
 * second implementation beside the store's (channels/indexCache.ts).
 */
import { parseProvides } from '../../debian/relation.ts';
import { Universe } from '../../resolver/universe.ts';
import { cmp } from '../../util/order.ts';
import type { Candidate, CandidateIndex } from '../../model.ts';

/** `candidates` (of any channels, each with its channel and rank) as one index, in the list's order. */
export function memoryIndex(candidates: Candidate[]): CandidateIndex {
  const byName = new Map<string, Candidate[]>();
  const providers = new Map<string, Set<string>>();
  for (const c of candidates) {
    byName.set(c.name, [...(byName.get(c.name) ?? []), c]);
    for (const p of parseProvides(c.provides)) providers.set(p.name, (providers.get(p.name) ?? new Set()).add(c.name));
  }
  const sorted = (names: Iterable<string>) => [...new Set(names)].sort(cmp);
  const names = sorted(byName.keys());
  return {
    names: () => names,
    candidates: (name) => [...(byName.get(name) ?? [])],
    providerNames: (virtual) => sorted(providers.get(virtual) ?? []),
    essentialNames: () => sorted(candidates.filter((c) => c.essential).map((c) => c.name)),
    namesFromSources: (prefix) => sorted(candidates.filter((c) => c.source.startsWith(prefix)).map((c) => c.name)),
  };
}

export function universeOf(candidates: Candidate[], arch = 'amd64'): Universe {
  return new Universe([memoryIndex(candidates)], arch);
}
