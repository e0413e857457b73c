/**
 * `kind = "pip"` recipes, the pure part: the requirement grammar the manifest accepts, the commands pip runs (the
 * resolution at lock time, `pip install --dry-run --report`, and the install at build time, `--no-index --no-deps
 * --require-hashes` from the locked files only), reading pip's installation report into locked wheels, the
 * requirements file the install is given, and the default index from the host's configuration.
 *
 * pip's installation report (pip's docs, "Installation Report"): JSON with `install[]`, each with
 * `metadata.name`, `metadata.version`, `download_info.url` and `download_info.archive_info.hashes.sha256` (or the
 * older `archive_info.hash`, "sha256=<hex>").
 */
import { posix } from 'node:path';
import { StrataError } from '../errors.ts';
import { cmp } from '../util/order.ts';
import type { LockedWheel } from '../model.ts';

/** The build environment a pip recipe always has: pip itself (python3 comes with it). */
export const PIP_BUILD_DEPENDS = 'python3-pip';
/** What a pip recipe's output needs at run time: the environment's python3, whose dist-packages it fills. */
export const PIP_DEPENDS = 'python3';
/** Where a pip recipe's output lives: Debian's python3 looks in /usr/local/lib/python3.X/dist-packages. */
export const PIP_PREFIX = '/usr/local';
/** The requirements file strata writes beside the locked wheels in the build's source tree. */
export const PIP_REQUIREMENTS_FILE = 'strata-requirements.txt';

/**
 * The install step: exactly the locked files (found beside the requirements file, each checked against its
 * sha256 by pip as well), no index, no dependencies of their own, no bytecode (the generated layer compiles it),
 * into Debian's /usr/local scheme (`/usr/local/lib/python3.X/dist-packages`, scripts in /usr/local/bin).
 */
export const PIP_INSTALL = [
  'python3 -m pip install --isolated --no-index --no-deps --require-hashes --no-compile --no-cache-dir',
  '--disable-pip-version-check --no-warn-script-location --root-user-action=ignore --break-system-packages',
  `--find-links /build/src -r /build/src/${PIP_REQUIREMENTS_FILE}`,
].join(' ');

/**
 * The lock-time resolution, run by /bin/sh in the build environment with `$STRATA_PIP_INDEX_URL` set: every file
 * the requirements need, from the index alone (what is installed in the build environment does not count), wheels
 * only, reported as JSON and installed nowhere.
 */
export function pipResolveArgv(reportPath: string, requirementsPath: string): string[] {
  const cmd = [
    'python3 -m pip install --isolated --dry-run --ignore-installed --only-binary :all: --no-cache-dir',
    '--disable-pip-version-check --quiet --root-user-action=ignore',
    `--index-url "$STRATA_PIP_INDEX_URL" --report ${reportPath} -r ${requirementsPath}`,
  ].join(' ');
  return ['/bin/sh', '-c', cmd];
}

/** Why a requirement string is not one strata passes to pip, or undefined. */
export function requirementProblem(text: string): string | undefined {
  if (text.trim() === '') return 'is empty';
  if (/[\0\n\r]/.test(text)) return 'holds a NUL or a line break';
  if (text.trim().startsWith('-')) return 'is a pip option, not a requirement (name a package: "numpy == 2.1.0")';
  if (!/^[A-Za-z0-9]/.test(text.trim())) return 'does not start with a package name';
  return undefined;
}

/** A distribution name, normalised as PEP 503 does (the name of its page on a simple index). */
export const normaliseName = (name: string) => name.toLowerCase().replace(/[-_.]+/g, '-');

/** The requirements file of the install step: one exact pin with its hash per locked wheel. */
export function pipRequirementsText(wheels: LockedWheel[]): string {
  return wheels.map((w) => `${w.name}==${w.version} --hash=sha256:${w.sha256}\n`).join('');
}

/** A wheel's file name from its URL (the last path segment, percent-decoded). */
export function wheelFilename(url: string): string {
  const path = new URL(url).pathname;
  return decodeURIComponent(posix.basename(path));
}

/** Why a locked wheel cannot be installed as strata installs it, or undefined (lock verification). */
export function wheelProblem(w: LockedWheel): string | undefined {
  if (!/^[0-9a-f]{64}$/.test(w.sha256)) return `sha256 ${JSON.stringify(w.sha256)} is not 64 lower-case hex digits`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._+!-]*\.whl$/.test(w.filename) || w.filename.includes('..')) return `filename ${JSON.stringify(w.filename)} is not a wheel's file name`;
  if (!/^https?:\/\/\S+$/.test(w.url)) return `url ${JSON.stringify(w.url)} is not an http(s):// URL`;
  if (normaliseName(w.name) !== w.name || !/^[a-z0-9][a-z0-9-]*$/.test(w.name)) return `name ${JSON.stringify(w.name)} is not a normalised distribution name`;
  if (!/^[A-Za-z0-9.+!_-]+$/.test(w.version)) return `version ${JSON.stringify(w.version)} is not a package version`;
  return undefined;
}

interface ReportItem {
  metadata?: { name?: unknown; version?: unknown };
  download_info?: { url?: unknown; archive_info?: { hash?: unknown; hashes?: Record<string, unknown> } };
}

/**
 * The locked wheels of pip's installation report, sorted by name. A source distribution is refused naming the
 * package (strata installs wheels only: building an sdist would run its code at lock time), as is a file the
 * index gives no sha256 for.
 */
export function wheelsFromReport(text: string, label: string): LockedWheel[] {
  let doc: { install?: ReportItem[] };
  try {
    doc = JSON.parse(text) as { install?: ReportItem[] };
  } catch (e) {
    throw new StrataError('E_LOCK', `${label}: pip's installation report is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(doc.install)) throw new StrataError('E_LOCK', `${label}: pip's installation report has no "install" list`);
  const wheels = doc.install.map((item): LockedWheel => {
    const name = item.metadata?.name;
    const version = item.metadata?.version;
    const url = item.download_info?.url;
    if (typeof name !== 'string' || typeof version !== 'string' || typeof url !== 'string') throw new StrataError('E_LOCK', `${label}: pip's installation report has an entry without name, version or download URL`);
    const filename = wheelFilename(url);
    if (!filename.endsWith('.whl')) {
      throw new StrataError('E_LOCK', `${label}: ${name} ${version} resolves to ${filename}, a source distribution; pip recipes install wheels only`, `ask for a version of ${name} the index has as a wheel, or build it in a kind = "build" recipe`);
    }
    const info = item.download_info?.archive_info;
    const fromHashes = info?.hashes?.sha256;
    const fromHash = typeof info?.hash === 'string' && info.hash.startsWith('sha256=') ? info.hash.slice(7) : undefined;
    const sha256 = (typeof fromHashes === 'string' ? fromHashes : fromHash)?.toLowerCase();
    if (sha256 === undefined || !/^[0-9a-f]{64}$/.test(sha256)) throw new StrataError('E_LOCK', `${label}: the index gives no sha256 for ${filename} (${name} ${version})`, 'serve the files with "#sha256=<hex>" links (PEP 503)');
    return { name: normaliseName(name), version, filename, url, sha256 };
  });
  return wheels.sort((a, b) => cmp(a.name, b.name));
}

/** The last lines of pip's output that say why it failed (its "ERROR:" lines when it has them). */
export function pipReason(log: string): string {
  const lines = log.split('\n').map((l) => l.trimEnd()).filter((l) => l.trim() !== '');
  const errors = lines.filter((l) => l.startsWith('ERROR:'));
  return (errors.length > 0 ? errors : lines.slice(-5)).join('\n  ');
}

/**
 * The index a pip recipe without `index` resolves against: STRATA_PIP_INDEX, else PIP_INDEX_URL, else the
 * `index-url` of the host's pip configuration (`pip config list` output, given as `configList`).
 */
export function defaultPipIndex(env: NodeJS.ProcessEnv, configList: string | undefined): string | undefined {
  if (env.STRATA_PIP_INDEX) return env.STRATA_PIP_INDEX;
  if (env.PIP_INDEX_URL) return env.PIP_INDEX_URL;
  for (const scope of ['install', 'global']) {
    const m = new RegExp(`^${scope}\\.index-url='([^']*)'$`, 'm').exec(configList ?? '');
    if (m && m[1]) return m[1];
  }
  return undefined;
}
