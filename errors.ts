/**
 * The one user-error type. A StrataError is something the user caused or can fix: it carries a stable
 * code and, where useful, a hint. Anything else that escapes to the CLI is a bug and is reported as one.
 */
export type ErrorCode =
  | 'E_MANIFEST' // strata.toml is missing, malformed or invalid
  | 'E_MIRROR' // no mirror configured for a channel
  | 'E_FETCH' // a download failed
  | 'E_SIGNATURE' // an OpenPGP signature did not verify
  | 'E_HASH' // bytes did not match the hash that vouches for them
  | 'E_UNKNOWN_PACKAGE' // a requested package exists in no channel
  | 'E_UNSATISFIABLE' // no consistent choice of packages exists
  | 'E_LOCK' // strata.lock is missing, malformed or stale
  | 'E_OFFLINE' // --offline and something is not cached
  | 'E_DEB' // a .deb is malformed or unsafe
  | 'E_DOCKER' // the Docker engine is unreachable or refused
  | 'E_RUN' // an environment cannot be entered
  | 'E_GPU' // GPU passthrough impossible (no driver, too old)
  | 'E_DISK' // out of disk space
  | 'E_OUTPUT' // an output (image layout or archive, strata.lock, standard output) cannot be written there
  | 'E_BUILD' // a recipe's build failed or its output is unusable
  | 'E_REGISTRY' // an image registry refused (credentials, a missing repository) or failed
  | 'E_USAGE'; // bad command line

export class StrataError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  constructor(code: ErrorCode, message: string, hint?: string) {
    super(message);
    this.name = 'StrataError';
    this.code = code;
    if (hint !== undefined) this.hint = hint;
  }
}

export function isStrataError(e: unknown): e is StrataError {
  return e instanceof StrataError;
}

/** Exit codes, one per family of error. */
export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case 'E_USAGE':
      return 64;
    case 'E_LOCK':
      return 3;
    case 'E_UNSATISFIABLE':
    case 'E_UNKNOWN_PACKAGE':
      return 4;
    case 'E_DISK':
    case 'E_OUTPUT':
      return 1; // the filesystem refused a good target: fixable, but not by changing the command line
    default:
      return 1;
  }
}
