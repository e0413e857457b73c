/**
 * Image references as Docker and the OCI distribution spec read them: `[registry/]path[:tag][@sha256:digest]`.
 * The first component is a registry when it contains a `.` or a `:` or is `localhost` (the rule of Docker's
 * `distribution/reference`), so `localhost:5000/x` is repository `localhost:5000/x` with tag `latest`, not tag
 * `5000/x`.
 */
import { StrataError } from '../../errors.ts';

export interface Reference {
  /** The registry host (and port), when the reference names one. */
  registry?: string;
  /** The repository path within the registry, e.g. `team/gp-lidar`. */
  path: string;
  /** The name as Docker tags it: `registry/path`, or `path`. */
  repository: string;
  /** The tag; `latest` when the reference gives none. */
  tag: string;
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const REGISTRY = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$/;

function invalid(ref: string, why: string): StrataError {
  return new StrataError('E_USAGE', `"${ref}" is not an image reference: ${why}`, 'write it as [registry/]name[:tag], e.g. gp-lidar:v1 or localhost:5000/team/gp-lidar:v1');
}

/** Parses a reference; throws E_USAGE naming what is wrong. */
export function parseReference(ref: string): Reference {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw invalid(ref, `the digest "${digest}" is not sha256:<64 hex digits>`);
  }
  let tag = 'latest';
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(ref, `the tag "${tag}" may hold only letters, digits, _ . - (at most 128, not starting with . or -)`);
  }
  const parts = rest.split('/');
  let registry: string | undefined;
  if (parts.length > 1 && (parts[0]!.includes('.') || parts[0]!.includes(':') || parts[0] === 'localhost')) {
    registry = parts.shift()!;
    if (!REGISTRY.test(registry)) throw invalid(ref, `"${registry}" is not a registry host[:port]`);
  }
  if (parts.length === 0 || parts.some((c) => !COMPONENT.test(c))) {
    throw invalid(ref, 'each name component must be lower-case letters and digits, separated by . _ __ or -');
  }
  const path = parts.join('/');
  const out: Reference = { path, repository: registry ? `${registry}/${path}` : path, tag };
  if (registry) out.registry = registry;
  if (digest) out.digest = digest;
  return out;
}

/** `repository:tag`, the way Docker names a tagged image. */
export function repoTag(r: Reference): string {
  return `${r.repository}:${r.tag}`;
}
