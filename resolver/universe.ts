/**
 * The universe: every candidate of every channel, looked up by name and by the virtual names they provide, with
 * Debian's rules for which candidates satisfy or conflict with a relation. It reads the channels' indexes on demand:
 * a lock decodes only the names it reaches, never the whole archive.
 */
import { parseRelations, parseProvides, satisfiesVersion, type Relation } from '../debian/relation.ts';
import { compareVersions } from '../debian/version.ts';
import { cmp } from '../util/order.ts';
import type { Candidate, CandidateIndex } from '../model.ts';

export interface Provided {
  candidate: Candidate;
  version?: string;
}

/** Parsed relation fields of a candidate, computed once. */
export interface Parsed {
  depends: Relation[][];
  recommends: Relation[][];
  conflicts: Relation[];
  breaks: Relation[];
  provides: { name: string; version?: string }[];
}

export class Universe {
  readonly arch: string;
  private readonly indexes: readonly CandidateIndex[];
  private readonly byName = new Map<string, Candidate[]>();
  private readonly byVirtual = new Map<string, Provided[]>();
  private readonly parsed = new Map<Candidate, Parsed>();
  private allNames: string[] | undefined;

  /** `indexes` in channel order (rank), and within a channel in component order. */
  constructor(indexes: readonly CandidateIndex[], arch: string) {
    this.indexes = indexes;
    this.arch = arch;
  }

  /**
   * The candidates of a name, in the universe's deterministic order: channel rank, then version descending, then
   * arch; a version a channel lists twice (native and `all`, or a repeated entry) is kept once, the first.
   */
  candidates(name: string): readonly Candidate[] {
    let list = this.byName.get(name);
    if (!list) {
      const all = this.indexes.flatMap((i) => i.candidates(name));
      all.sort((a, b) => a.channelRank - b.channelRank || compareVersions(b.version, a.version) || cmp(a.arch, b.arch));
      list = [];
      for (const c of all) if (!list.some((x) => x.channel === c.channel && x.version === c.version)) list.push(c);
      this.byName.set(name, list);
    }
    return list;
  }

  /** The candidates that provide `virtual`, one entry per Provides of it, in name order, then each name's order. */
  providers(virtual: string): readonly Provided[] {
    let list = this.byVirtual.get(virtual);
    if (!list) {
      list = [];
      for (const name of this.union((i) => i.providerNames(virtual))) {
        for (const c of this.candidates(name)) {
          for (const p of this.parse(c).provides) {
            if (p.name !== virtual) continue;
            list.push(p.version !== undefined ? { candidate: c, version: p.version } : { candidate: c });
          }
        }
      }
      this.byVirtual.set(virtual, list);
    }
    return list;
  }

  /** Whether any channel has `name` as a package or as a virtual package. */
  known(name: string): boolean {
    return this.candidates(name).length > 0 || this.providers(name).length > 0;
  }

  /** The candidates marked `Essential: yes`, in name order. */
  essential(): Candidate[] {
    return this.union((i) => i.essentialNames()).flatMap((n) => this.candidates(n).filter((c) => c.essential));
  }

  /** The candidates built from a source package whose name starts with `prefix`, in name order. */
  fromSources(prefix: string): Candidate[] {
    return this.union((i) => i.namesFromSources(prefix)).flatMap((n) => this.candidates(n).filter((c) => c.source.startsWith(prefix)));
  }

  /** All names in the universe, sorted, for suggestions. */
  names(): readonly string[] {
    this.allNames ??= this.union((i) => i.names());
    return this.allNames;
  }

  parse(c: Candidate): Parsed {
    let p = this.parsed.get(c);
    if (!p) {
      p = {
        depends: [...parseRelations(c.preDepends), ...parseRelations(c.depends)],
        recommends: parseRelations(c.recommends),
        conflicts: parseRelations(c.conflicts).flat(),
        breaks: parseRelations(c.breaks).flat(),
        provides: parseProvides(c.provides),
      };
      this.parsed.set(c, p);
    }
    return p;
  }

  /** Whether a relation's architecture qualifier can be met in this single-architecture universe. */
  private archOk(r: Relation): boolean {
    const q = r.archQualifier;
    return q === undefined || q === 'any' || q === 'native' || q === this.arch;
  }

  /** Candidates that satisfy a dependency relation: the real package with a matching version, or a provider. */
  satisfiers(r: Relation): Candidate[] {
    if (!this.archOk(r)) return [];
    const out: Candidate[] = [];
    for (const c of this.candidates(r.name)) {
      if (r.op === undefined || satisfiesVersion(c.version, r.op, r.version!)) out.push(c);
    }
    for (const p of this.providers(r.name)) {
      if (r.op === undefined || (p.version !== undefined && satisfiesVersion(p.version, r.op, r.version!))) {
        if (!out.includes(p.candidate)) out.push(p.candidate);
      }
    }
    return out;
  }

  /** Candidates a Conflicts/Breaks relation of `owner` rules out (never `owner`'s own name). */
  conflicting(owner: Candidate, r: Relation): Candidate[] {
    return this.satisfiers(r).filter((c) => c.name !== owner.name);
  }

  /** The names every index's table gives, merged: sorted (code-unit order), each once. */
  private union(table: (i: CandidateIndex) => readonly string[]): string[] {
    return [...new Set(this.indexes.flatMap((i) => [...table(i)]))].sort(cmp);
  }
}

export function describeCandidate(c: Candidate): string {
  return `${c.name} ${c.version} (${c.channel})`;
}
