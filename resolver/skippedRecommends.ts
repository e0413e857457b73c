/**
 * The Recommends a solution leaves unmet that name libraries: what a user of `apt --no-install-recommends` meets as
 * a loader error at run time (MKL's threading layer wants `libiomp5`, which arrives only through `libmkl-rt`'s
 * Recommends on `libomp-dev`). strata skips Recommends by default, as `[resolve] recommends` says; the lock's
 * summary lists these so the user can take just them with `[resolve] recommends = ["libomp-dev"]`.
 */
import type { Universe } from './universe.ts';
import type { Candidate } from '../model.ts';
import { cmp } from '../util/order.ts';

export interface SkippedRecommend {
  /** The first alternative of the unmet group: what apt would install. */
  name: string;
  /** The chosen packages that recommend it, sorted. */
  by: string[];
}

/** A package in Debian's library sections (`libs`, `libdevel`, in any area), or named as libraries are. */
function isLibrary(c: Candidate | undefined, name: string): boolean {
  if (c?.section !== undefined) return /(^|\/)(libs|libdevel)$/.test(c.section);
  return name.startsWith('lib');
}

export function skippedLibraryRecommends(u: Universe, chosen: Candidate[]): SkippedRecommend[] {
  const names = new Set(chosen.map((c) => c.name));
  const chosenSet = new Set(chosen);
  const out = new Map<string, Set<string>>();
  for (const c of chosen) {
    for (const group of u.parse(c).recommends) {
      if (group.some((r) => u.satisfiers(r).some((s) => chosenSet.has(s)))) continue;
      const first = group[0];
      if (!first || names.has(first.name)) continue;
      const candidate = u.satisfiers(first)[0];
      if (!candidate || !isLibrary(u.candidates(first.name)[0] ?? candidate, first.name)) continue;
      let by = out.get(first.name);
      if (!by) out.set(first.name, (by = new Set()));
      by.add(c.name);
    }
  }
  return [...out.entries()].map(([name, by]) => ({ name, by: [...by].sort(cmp) })).sort((a, b) => cmp(a.name, b.name));
}

/** The summary's lines for them, or none. */
export function describeSkippedRecommends(skipped: SkippedRecommend[], max = 12): string[] {
  if (skipped.length === 0) return [];
  const shown = skipped.slice(0, max).map((s) => `${s.name} (recommended by ${s.by.slice(0, 3).join(', ')}${s.by.length > 3 ? `, ${s.by.length - 3} more` : ''})`);
  return [
    `skipped ${skipped.length} Recommends that are libraries, which a program may load at run time: ${shown.join(', ')}${skipped.length > max ? `, ${skipped.length - max} more` : ''}`,
    `  take the ones you need with [resolve] recommends = ["${skipped[0]!.name}"], or all Recommends with recommends = true`,
  ];
}
