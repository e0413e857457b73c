/**
 * Reading `strata.toml` with positions: every mistake becomes `file:line:column: message` (E_MANIFEST). Shared by
 * the manifest's sections (manifest.ts) and its recipes (recipes.ts).
 */
import { StrataError } from '../errors.ts';

export type Table = Record<string, unknown>;

export const isTable = (v: unknown): v is Table => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

/** Finds the line/column of `key` inside table `[tablePath]` by scanning the source; 1-based. */
export function locateKey(source: string, tablePath: string[], key?: string): { line: number; column: number } {
  const lines = source.split('\n');
  let current: string[] = [];
  const want = tablePath.join('.');
  let tableLine = -1;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const line = raw.trim();
    const header = /^\[\[?\s*([^\]]+?)\s*\]\]?/.exec(line);
    if (header) {
      current = header[1]!.split('.').map((s) => s.trim().replace(/^"(.*)"$/, '$1'));
      if (key !== undefined && current.slice(0, tablePath.length + 1).join('.') === [...tablePath, key].join('.')) {
        return { line: i + 1, column: raw.indexOf('[') + 1 };
      }
      if (current.join('.') === want) {
        tableLine = i;
        if (key === undefined) return { line: i + 1, column: raw.indexOf('[') + 1 };
      }
      continue;
    }
    if (key === undefined) continue;
    // `key = ...` inside the wanted table, or dotted `table.key = ...` at an outer level.
    const m = /^("?)([A-Za-z0-9_.-]+)\1\s*=/.exec(line);
    if (!m) continue;
    const full = [...current, ...m[2]!.split('.')].join('.');
    if (full === [...tablePath, key].join('.')) return { line: i + 1, column: raw.indexOf(m[0]) + 1 };
  }
  return tableLine >= 0 ? { line: tableLine + 1, column: 1 } : { line: 1, column: 1 };
}

export class ManifestReader {
  readonly path: string;
  readonly source: string;
  constructor(path: string, source: string) {
    this.path = path;
    this.source = source;
  }
  fail(tablePath: string[], key: string | undefined, message: string, hint?: string): never {
    const { line, column } = locateKey(this.source, tablePath, key);
    throw new StrataError('E_MANIFEST', `${this.path}:${line}:${column}: ${message}`, hint);
  }
  /**
   * Like `fail`, at a place inside the value of `key` (an inline table or an array of them): `inner` steps are
   * element indexes (the n-th `{` after the key) and keys (`name =` after that).
   */
  failInside(tablePath: string[], key: string, inner: (string | number)[], message: string, hint?: string): never {
    const at = locateKey(this.source, tablePath, key);
    const lines = this.source.split('\n');
    let offset = lines.slice(0, at.line - 1).reduce((n, l) => n + l.length + 1, 0) + at.column - 1;
    const rest = (from: number) => {
      // Stop at the next table header: what follows belongs to another table.
      const next = /\n\s*\[/.exec(this.source.slice(from));
      return this.source.slice(from, next ? from + next.index : undefined);
    };
    for (const step of inner) {
      const text = rest(offset);
      let found = -1;
      if (typeof step === 'number') {
        let seen = -1;
        for (let i = 0; i < text.length; i++) {
          if (text[i] === '{' && ++seen === step) {
            found = i;
            break;
          }
        }
      } else {
        const m = new RegExp(`(^|[\\s{,])"?${step.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"?\\s*=`).exec(text);
        if (m) found = m.index + m[1]!.length;
      }
      if (found < 0) break;
      offset += found;
    }
    const before = this.source.slice(0, offset).split('\n');
    throw new StrataError('E_MANIFEST', `${this.path}:${before.length}:${before[before.length - 1]!.length + 1}: ${message}`, hint);
  }
  table(parent: Table, path: string[], key: string, required = false): Table | undefined {
    const v = parent[key];
    if (v === undefined) {
      if (required) this.fail(path, undefined, `missing table [${[...path, key].join('.')}]`);
      return undefined;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Date) {
      this.fail(path, key, `${[...path, key].join('.')} must be a table`);
    }
    return v as Table;
  }
  string(t: Table, path: string[], key: string): string | undefined {
    const v = t[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') this.fail(path, key, `${[...path, key].join('.')} must be a string, not ${describe(v)}`);
    return v;
  }
  bool(t: Table, path: string[], key: string): boolean | undefined {
    const v = t[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') this.fail(path, key, `${[...path, key].join('.')} must be true or false, not ${describe(v)}`);
    return v;
  }
  strings(t: Table, path: string[], key: string): string[] | undefined {
    const v = t[key];
    if (v === undefined) return undefined;
    if (typeof v === 'string') return [v];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
      this.fail(path, key, `${[...path, key].join('.')} must be a string or an array of strings`);
    }
    return v as string[];
  }
  onlyKeys(t: Table, path: string[], allowed: string[]): void {
    for (const k of Object.keys(t)) {
      if (!allowed.includes(k)) {
        this.fail(path, k, `unknown key "${k}" in [${path.join('.') || 'top level'}]`, `allowed here: ${allowed.join(', ')}`);
      }
    }
  }
}

export function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'a table';
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** The names `[env]` and `run -e` accept: what a POSIX shell can export. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const ENV_NAME_RULE = 'letters, digits and _, not starting with a digit';

