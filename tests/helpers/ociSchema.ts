/**
 * Validates JSON against the OCI image-spec's own JSON schemas (draft-04), as Debian ships them in
 * golang-github-opencontainers-image-spec-dev. The schemas refer to each other by relative URIs resolved
 * against several base URIs (the spec's Go loader serves every file under each of its namespaces), so
 * each file is registered under every namespace here too, with nested `id`s removed.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import AjvModule from 'ajv-draft-04';
import addFormatsModule from 'ajv-formats';

// CommonJS packages whose typings declare an ES default export: under Node's ESM the default import is
// `module.exports`, which these packages also expose as `.default`.
const Ajv = AjvModule.default;
const addFormats = addFormatsModule.default;

export const OCI_SCHEMA_DIR = '/usr/share/gocode/src/github.com/opencontainers/image-spec/schema';

const NAMESPACES = [
  'https://opencontainers.org/schema/image/descriptor/',
  'https://opencontainers.org/schema/image/index/',
  'https://opencontainers.org/schema/image/manifest/',
  'https://opencontainers.org/schema/image/',
  'https://opencontainers.org/schema/descriptor/',
  'https://opencontainers.org/schema/',
];

const ENTRY = {
  descriptor: 'https://opencontainers.org/schema/content-descriptor.json',
  layout: 'https://opencontainers.org/schema/image/image-layout-schema.json',
  manifest: 'https://opencontainers.org/schema/image/image-manifest-schema.json',
  index: 'https://opencontainers.org/schema/image/image-index-schema.json',
  config: 'https://opencontainers.org/schema/image/config-schema.json',
} as const;

export type OciSchemaKind = keyof typeof ENTRY;

function withoutIds(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutIds);
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if ((k === 'id' && typeof v === 'string') || k === '$schema') continue;
      out[k] = withoutIds(v);
    }
    return out;
  }
  return value;
}

/** Returns a validator; `validate` gives the schema errors as lines (empty when valid). */
export async function loadOciSchemas(): Promise<{ validate(kind: OciSchemaKind, value: unknown): string[] }> {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const files = (await readdir(OCI_SCHEMA_DIR)).filter((f) => f.endsWith('.json'));
  if (files.length === 0) throw new Error(`no OCI schemas under ${OCI_SCHEMA_DIR}`);
  for (const file of files) {
    const schema = withoutIds(JSON.parse(await readFile(join(OCI_SCHEMA_DIR, file), 'utf8'))) as object;
    for (const ns of NAMESPACES) ajv.addSchema({ ...schema, id: `${ns}${file}` });
  }
  return {
    validate(kind, value) {
      const check = ajv.getSchema(ENTRY[kind]);
      if (check === undefined) throw new Error(`schema ${ENTRY[kind]} not loaded`);
      if (check(value)) return [];
      return (check.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`);
    },
  };
}
