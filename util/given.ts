/**
 * `base` with each field of `fields` whose value is given: not missing, and not the "-" that systemd's
 * configuration formats (sysusers.d, tmpfiles.d) write for a column left unset.
 */
export function withGiven<T extends object>(base: T, fields: { [K in keyof T]?: string | undefined }): T {
  const out = { ...base } as Record<string, unknown>;
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== '-') out[k] = v;
  return out as T;
}
