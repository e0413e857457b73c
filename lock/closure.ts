/**
 * Closure hashes: a Merkle hash over a node's own sha256 and the closure hashes of its dependencies. Debian has
 * dependency cycles, so each strongly connected component is hashed as one unit first; every member's closure then
 * covers that unit. A change to any package changes the closure of everything that (transitively) depends on it.
 */
import { Graph, alg } from '@dagrejs/graphlib';
import { createHash } from 'node:crypto';

export interface ClosureNode {
  name: string;
  sha256: string;
  depends: string[];
}

function h(parts: string[]): string {
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p).update('\0');
  return hash.digest('hex');
}

/** Returns name -> `sha256:<hex>` closure for every node. Dependencies must name nodes in the list. */
export function closureHashes(nodes: ClosureNode[]): Map<string, string> {
  const g = new Graph({ directed: true });
  const byName = new Map(nodes.map((n) => [n.name, n]));
  for (const n of nodes) g.setNode(n.name);
  for (const n of nodes) {
    for (const d of n.depends) {
      if (!byName.has(d)) throw new Error(`closure: ${n.name} depends on ${d}, which is not a node`);
      g.setEdge(n.name, d);
    }
  }
  // Tarjan yields components in reverse topological order of the condensation: dependencies come first.
  const components = alg.tarjan(g).map((c: string[]) => [...c].sort());
  const sccOf = new Map<string, number>();
  components.forEach((c, i) => c.forEach((n) => sccOf.set(n, i)));
  const closure = new Map<string, string>();
  const pending = new Set(components.map((_, i) => i));
  // Process in dependency order regardless of the library's output order.
  while (pending.size > 0) {
    let progressed = false;
    for (const i of [...pending]) {
      const members = components[i]!;
      const external = new Set<string>();
      let ready = true;
      for (const m of members) {
        for (const d of byName.get(m)!.depends) {
          if (sccOf.get(d) === i) continue;
          const c = closure.get(d);
          if (c === undefined) ready = false;
          else external.add(c);
        }
      }
      if (!ready) continue;
      const ext = [...external].sort();
      if (members.length === 1 && !byName.get(members[0]!)!.depends.includes(members[0]!)) {
        const n = byName.get(members[0]!)!;
        closure.set(n.name, `sha256:${h(['strata-closure-v1', n.name, n.sha256, ...ext])}`);
      } else {
        const unit = h(['strata-scc-v1', ...members.map((m) => `${m} ${byName.get(m)!.sha256}`), ...ext]);
        for (const m of members) closure.set(m, `sha256:${h(['strata-closure-v1', m, byName.get(m)!.sha256, `scc:${unit}`])}`);
      }
      pending.delete(i);
      progressed = true;
    }
    if (!progressed) throw new Error('closure: dependency order could not be established');
  }
  return closure;
}

/**
 * The whole environment's closure: every package closure plus the host-provided requirements and the arch, and
 * each recipe's name and input hash when there are recipes (none adds nothing: a lock without recipes keeps its
 * closure).
 */
export function environmentClosure(arch: string, closures: Iterable<string>, hostProvided: { name: string; requires: string }[], recipes: { name: string; input: string }[] = []): string {
  return `sha256:${h(['strata-env-v1', arch, ...[...closures].sort(), ...hostProvided.map((x) => `host ${x.name} ${x.requires}`).sort(), ...recipes.map((r) => `recipe ${r.name} ${r.input}`).sort()])}`;
}
