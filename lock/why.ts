/**
 * Why a package is in a lock: the dependency paths that lead to it, read from the lock's edges alone. Pure.
 * Starts are the requested packages (root = true); a package no request reaches came with the default channel's
 * Essential set, and its paths start at the Essential packages named by the caller.
 */
import type { Lockfile } from '../model.ts';

/** The shortest path (by edges) from `start` to `target`, as package names, or undefined when none exists. */
function shortestPath(edges: Map<string, string[]>, start: string, target: string): string[] | undefined {
  const prev = new Map<string, string | null>([[start, null]]);
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const at = queue[i]!;
    if (at === target) {
      const path: string[] = [];
      for (let n: string | null = at; n !== null; n = prev.get(n)!) path.push(n);
      return path.reverse();
    }
    for (const next of edges.get(at) ?? []) {
      if (prev.has(next)) continue;
      prev.set(next, at);
      queue.push(next);
    }
  }
  return undefined;
}

export interface WhyResult {
  /** One shortest path per start that reaches the target, shortest first, then by start name. */
  paths: string[][];
  /** Where the paths start: requested packages, or (when none reaches it) the Essential set. */
  from: 'requested' | 'essential' | 'none';
}

/** The paths to `target` from the lock's requested packages, else from `essential` (names of Essential packages). */
export function whyPaths(lock: Lockfile, target: string, essential: string[] = []): WhyResult {
  const edges = new Map(lock.packages.map((p) => [p.name, p.depends]));
  const collect = (starts: string[]) =>
    starts
      .map((s) => shortestPath(edges, s, target))
      .filter((p): p is string[] => p !== undefined)
      .sort((a, b) => a.length - b.length || (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0));
  const requested = collect(lock.packages.filter((p) => p.root).map((p) => p.name));
  if (requested.length > 0) return { paths: requested, from: 'requested' };
  const fromEssential = collect(essential.filter((n) => edges.has(n)));
  return fromEssential.length > 0 ? { paths: fromEssential, from: 'essential' } : { paths: [], from: 'none' };
}
