/**
 * The channel client: fetches a suite's InRelease (or Release + Release.gpg), verifies its OpenPGP signature
 * against the channel's keyring, fetches each component's `Packages` index for the wanted architecture through
 * the store (which checks it against the sha256 the signed Release lists), and parses it into candidates.
 */
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import * as openpgp from 'openpgp';
import { xz } from '@napi-rs/lzma';
import { StrataError } from '../errors.ts';
import { sha256Hex as sha256 } from '../util/bytes.ts';
import { parseParagraphs, parseParagraphStream, field } from '../debian/deb822.ts';
import { httpGet, type Store } from '../store/store.ts';
import { readBounded } from '../store/readBounded.ts';
import { readIndexCache, writeIndexCache } from './indexCache.ts';
import { MAX_KEYRING_BYTES } from '../limits.ts';
import { channelUrls, defaultKeyring, isFlat, releaseDir, snapshotBases, snapshotTimestamp, snapshotUrl } from './mirror.ts';
import type { Reporter } from '../report/reporter.ts';
import type { Candidate, CandidateIndex, ChannelSpec, LockedChannel } from '../model.ts';
import { sha256Hex } from '../util/bytes.ts';

export interface ReleaseFile {
  suite: string;
  codename: string;
  date: string;
  validUntil?: string;
  /** path (relative to dists/<suite>/) -> { sha256, size } */
  files: Map<string, { sha256: string; size: number }>;
}

export interface LoadedChannel {
  spec: ChannelSpec;
  rank: number;
  locked: LockedChannel;
  /** One per component, in the spec's order (a flat repository has one). */
  indexes: CandidateIndex[];
}

export function parseRelease(text: string): ReleaseFile {
  // An empty Release names no suite: checkSuite refuses it.
  const para = parseParagraphs(text)[0] ?? new Map<string, string>();
  const files = new Map<string, { sha256: string; size: number }>();
  for (const line of (field(para, 'SHA256') ?? '').split('\n')) {
    const parts = line.trim().split(/\s+/);
    if (parts.length === 3) files.set(parts[2]!, { sha256: parts[0]!.toLowerCase(), size: Number(parts[1]) });
  }
  const r: ReleaseFile = {
    suite: field(para, 'Suite') ?? '',
    codename: field(para, 'Codename') ?? '',
    date: field(para, 'Date') ?? '',
    files,
  };
  const vu = field(para, 'Valid-Until');
  if (vu) r.validUntil = vu;
  return r;
}

async function readKeyring(path: string): Promise<openpgp.PublicKey[]> {
  let bytes: Buffer;
  try {
    bytes = await readBounded(path, MAX_KEYRING_BYTES);
  } catch (e) {
    throw new StrataError('E_SIGNATURE', `cannot read keyring ${path}: ${(e as Error).message}`, 'signed-by must name an OpenPGP keyring file (binary or armored)');
  }
  const text = bytes.toString('latin1');
  try {
    if (text.includes('-----BEGIN PGP PUBLIC KEY BLOCK-----')) return await openpgp.readKeys({ armoredKeys: bytes.toString('utf8') });
    return await openpgp.readKeys({ binaryKeys: new Uint8Array(bytes) });
  } catch (e) {
    throw new StrataError('E_SIGNATURE', `${path} is not an OpenPGP keyring: ${(e as Error).message}`);
  }
}

/**
 * Why a Release did not verify, in the cases that call for different actions: `damaged` (not a whole signed
 * file: cut short, corrupt, or not an OpenPGP file at all), `unknown-key` (well formed, signed by a key the keyring
 * does not hold), `mismatch` (signed by a key the keyring holds, but the bytes are not the ones signed: altered or
 * corrupt), `rejected` (a signature by a key the keyring holds that OpenPGP.js refuses for another reason: an
 * expired or revoked key, an algorithm no longer accepted), and `unsigned` (no InRelease and no Release.gpg).
 */
type VerifyFailure = 'damaged' | 'unknown-key' | 'mismatch' | 'rejected' | 'unsigned';

export class ReleaseVerifyError extends Error {
  readonly kind: VerifyFailure;
  constructor(kind: VerifyFailure, message: string) {
    super(message);
    this.name = 'ReleaseVerifyError';
    this.kind = kind;
  }
}

async function anyVerified(signatures: Awaited<ReturnType<typeof openpgp.verify>>['signatures']): Promise<void> {
  if (signatures.length === 0) throw new ReleaseVerifyError('damaged', 'it holds no signature');
  const seen = new Map<VerifyFailure, string>();
  for (const s of signatures) {
    try {
      await s.verified;
      return;
    } catch (e) {
      const msg = (e as Error).message;
      const kind = /could not find signing key/i.test(msg) ? 'unknown-key' : /digest did not match/i.test(msg) ? 'mismatch' : 'rejected';
      if (!seen.has(kind)) seen.set(kind, msg);
    }
  }
  // A signature by a key we hold that fails says more than one by a key we lack.
  const kind = (['mismatch', 'rejected', 'unknown-key'] as const).find((k) => seen.has(k))!;
  throw new ReleaseVerifyError(kind, seen.get(kind)!);
}

async function parsed<T>(what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (e) {
    throw new ReleaseVerifyError('damaged', `${what} is not a complete OpenPGP file (${(e as Error).message})`);
  }
}

/** Verifies a clearsigned InRelease; returns the signed text. Throws ReleaseVerifyError. */
export async function verifyInRelease(bytes: Buffer, keys: openpgp.PublicKey[]): Promise<string> {
  const message = await parsed('it', () => openpgp.readCleartextMessage({ cleartextMessage: bytes.toString('utf8') }));
  const result = await openpgp.verify({ message, verificationKeys: keys });
  await anyVerified(result.signatures);
  return result.data as string;
}

/** Verifies a Release against its detached Release.gpg. Throws ReleaseVerifyError. */
export async function verifyDetached(data: Buffer, signature: Buffer, keys: openpgp.PublicKey[]): Promise<void> {
  const text = signature.toString('latin1');
  const sig = await parsed('its Release.gpg', () =>
    text.includes('-----BEGIN PGP SIGNATURE-----')
      ? openpgp.readSignature({ armoredSignature: signature.toString('utf8') })
      : openpgp.readSignature({ binarySignature: new Uint8Array(signature) }),
  );
  const message = await openpgp.createMessage({ binary: new Uint8Array(data) });
  const result = await openpgp.verify({ message, signature: sig, verificationKeys: keys });
  await anyVerified(result.signatures);
}

/** The StrataError for a Release that did not verify: only a well-formed file signed by another key is the keyring's matter. */
function releaseRefusal(spec: ChannelSpec, kind: 'InRelease' | 'Release', keyring: string, e: unknown): StrataError {
  const what = `channel "${spec.name}": the ${kind} of suite "${spec.suite}"`;
  const err = e instanceof ReleaseVerifyError ? e : new ReleaseVerifyError('damaged', (e as Error).message);
  switch (err.kind) {
    case 'unknown-key':
      return new StrataError(
        'E_SIGNATURE',
        `${what} is not signed by a key in ${keyring}: ${err.message}`,
        'if the archive is signed by another key, point signed-by at its keyring; trusted = true skips the check (not recommended)',
      );
    case 'mismatch':
      return new StrataError(
        'E_SIGNATURE',
        `${what} does not match its signature (a key in ${keyring} made it, but for other bytes: the file was altered or damaged): ${err.message}`,
        'the mirror serves a corrupt or tampered-with file; try again later or use another mirror',
      );
    case 'rejected':
      return new StrataError(
        'E_SIGNATURE',
        `${what} has a signature by a key in ${keyring} that is not accepted: ${err.message}`,
        'the key may have expired or been revoked, or the signature uses an algorithm no longer accepted: update the keyring, or ask the archive\'s maintainers',
      );
    case 'unsigned':
      return new StrataError(
        'E_SIGNATURE',
        `${what} is not signed: the suite has no InRelease and no Release.gpg`,
        'if the archive is unsigned by design, trusted = true skips the check (not recommended)',
      );
    case 'damaged':
      return new StrataError(
        'E_SIGNATURE',
        `${what} is damaged: ${err.message}`,
        'the mirror served an incomplete or corrupt file (cut short, mid-sync, or an error page); try again later or use another mirror',
      );
  }
}

/**
 * The suite asked for must be the Release's Suite or its Codename: the test of apt's metaIndex::CheckDist (including
 * its reading of `buster/updates` as `buster`), which apt reports as a "Conflicting distribution" warning and strata
 * refuses. A mirror serving another suite's validly signed Release under dists/<suite>/ (bookworm's as trixie, an
 * old one as stable) would otherwise pass every signature check. Returns which field matched.
 */
export function checkSuite(spec: ChannelSpec, kind: 'InRelease' | 'Release', release: ReleaseFile): 'Suite' | 'Codename' {
  const slash = spec.suite.lastIndexOf('/');
  const asked = slash > 0 ? [spec.suite, spec.suite.slice(0, slash)] : [spec.suite];
  if (release.suite !== '' && asked.includes(release.suite)) return 'Suite';
  if (release.codename !== '' && asked.includes(release.codename)) return 'Codename';
  const is = [release.suite && `Suite "${release.suite}"`, release.codename && `Codename "${release.codename}"`].filter(Boolean).join(', ');
  throw new StrataError(
    'E_SIGNATURE',
    `channel "${spec.name}": dists/${spec.suite}/${kind} is the Release of ${is || 'no named suite (it has no Suite and no Codename)'}, not of "${spec.suite}": the mirror serves another suite in its place (a substituted or downgraded suite)`,
    `if you meant that suite, write suite = "${release.codename || release.suite || spec.suite}"; otherwise use another mirror`,
  );
}

/** The key of the small pointer per (urls, suite) naming the last InRelease seen, for `--offline`. */
function pointerKey(urls: string[], suite: string): string {
  return sha256Hex(`${urls.join(' ')}\n${suite}`).slice(0, 32);
}

interface ReleasePointer {
  kind: 'InRelease' | 'Release';
  release: string; // sha256 of the InRelease or Release bytes
  signature?: string; // sha256 of Release.gpg
}

async function fetchRelease(
  spec: ChannelSpec,
  urls: string[],
  store: Store,
  offline: boolean,
): Promise<{ kind: 'InRelease' | 'Release'; bytes: Buffer; signature?: Buffer }> {
  const pointers = store.cache('channels');
  const pointer = pointerKey(urls, spec.suite);
  if (offline) {
    const p = await pointers.readJson<ReleasePointer>(pointer);
    if (!p) {
      throw new StrataError('E_OFFLINE', `--offline: channel "${spec.name}" (${spec.suite}) has never been fetched on this machine`, 'run `strata lock` once with network access');
    }
    const rel = await store.has(p.release);
    const sig = p.signature ? await store.has(p.signature) : undefined;
    if (!rel || (p.signature && !sig)) throw new StrataError('E_OFFLINE', `--offline: the cached Release of channel "${spec.name}" is missing from the store`);
    const out: { kind: 'InRelease' | 'Release'; bytes: Buffer; signature?: Buffer } = { kind: p.kind, bytes: await readFile(rel) };
    if (sig) out.signature = await readFile(sig);
    return out;
  }
  const dist = releaseDir(spec.suite);
  const inRelease = await httpGet(urls, `${dist}InRelease`);
  let result: { kind: 'InRelease' | 'Release'; bytes: Buffer; signature?: Buffer };
  if (inRelease.ok) {
    result = { kind: 'InRelease', bytes: inRelease.body };
  } else {
    const release = await httpGet(urls, `${dist}Release`);
    if (!release.ok) {
      throw new StrataError(
        'E_FETCH',
        isFlat(spec.suite)
          ? `channel "${spec.name}": no flat repository at ${urls.map((u) => `${u}/${dist}`).join(', ')} (HTTP ${release.status} for ${dist}Release)`
          : `channel "${spec.name}": suite "${spec.suite}" not found at ${urls.join(', ')} (HTTP ${release.status} for dists/${spec.suite}/Release)`,
        isFlat(spec.suite) ? 'a flat repository has InRelease (or Release and Release.gpg) and Packages at its URL itself: check the URL' : 'check the suite name and the mirror URL',
      );
    }
    result = { kind: 'Release', bytes: release.body };
    const sig = await httpGet(urls, `${dist}Release.gpg`);
    if (sig.ok) result.signature = sig.body;
  }
  const ptr: ReleasePointer = { kind: result.kind, release: sha256(result.bytes) };
  await store.put(result.bytes, ptr.release);
  if (result.signature) {
    ptr.signature = sha256(result.signature);
    await store.put(result.signature, ptr.signature);
  }
  await pointers.writeJson(pointer, ptr);
  return result;
}


/** Loads one channel: verified Release, verified indexes, their candidates for `arch` and `all`. */
export async function loadChannel(
  spec: ChannelSpec,
  rank: number,
  arch: string,
  store: Store,
  reporter: Reporter,
  opts: { offline?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<LoadedChannel> {
  const snapshot = spec.snapshot ? { ...spec.snapshot, timestamp: spec.snapshot.timestamp === 'latest' ? snapshotTimestamp(new Date()) : spec.snapshot.timestamp } : undefined;
  let urls: string[];
  if (snapshot) {
    const bases = snapshotBases(snapshot.urls, opts.env);
    if (bases.length === 0) {
      throw new StrataError('E_MIRROR', `channel "${spec.name}" reads a snapshot, but it has no snapshot-url and STRATA_DEBIAN_SNAPSHOT is not set`, `set snapshot-url = "http://<a snapshot archive>" in [channels.${spec.name}], or export STRATA_DEBIAN_SNAPSHOT`);
    }
    urls = bases.map((b) => snapshotUrl(b, snapshot.archive, snapshot.timestamp));
  } else urls = channelUrls(spec, opts.env);
  const fetched = await fetchRelease(spec, urls, store, opts.offline ?? false);
  let releaseText: string;
  if (spec.trusted) {
    reporter.warn(`channel "${spec.name}" is marked trusted = true: its signature is NOT checked`);
    releaseText = fetched.kind === 'InRelease' ? stripClearsign(fetched.bytes.toString('utf8')) : fetched.bytes.toString('utf8');
  } else {
    const keyring = spec.signedBy ?? defaultKeyring();
    if (!keyring) {
      throw new StrataError(
        'E_SIGNATURE',
        `channel "${spec.name}" has no signed-by keyring and the host has no Debian archive keyring`,
        `set signed-by = "/path/to/keyring.gpg" in [channels.${spec.name}] (or install debian-archive-keyring)`,
      );
    }
    const keys = await readKeyring(keyring);
    try {
      if (fetched.kind === 'InRelease') {
        releaseText = await verifyInRelease(fetched.bytes, keys);
      } else {
        if (!fetched.signature) throw new ReleaseVerifyError('unsigned', 'the suite has no InRelease and no Release.gpg');
        await verifyDetached(fetched.bytes, fetched.signature, keys);
        releaseText = fetched.bytes.toString('utf8');
      }
    } catch (e) {
      throw releaseRefusal(spec, fetched.kind, keyring, e);
    }
  }
  const release = parseRelease(releaseText);
  // A flat repository names no suite (its Release usually has neither Suite nor Codename): apt checks none.
  const flat = isFlat(spec.suite);
  if (!flat) checkSuite(spec, fetched.kind, release);
  if (release.validUntil && !spec.trusted && !opts.offline) {
    const until = Date.parse(release.validUntil);
    if (!Number.isNaN(until) && until < Date.now()) {
      if (spec.checkValidUntil === false || snapshot) {
        reporter.warn(`channel "${spec.name}": the Release of "${spec.suite}" expired on ${release.validUntil} (Valid-Until); accepted because ${snapshot ? 'the channel reads a snapshot' : 'check-valid-until = false'} (its signature was verified)`);
      } else {
        throw new StrataError(
          'E_SIGNATURE',
          `channel "${spec.name}": the Release of "${spec.suite}" expired on ${release.validUntil} (Valid-Until)`,
          'the mirror is stale or replaying an old Release: use another mirror, or, when you know it lags (or it is a snapshot archive), set check-valid-until = false on the channel (the signature is still checked)',
        );
      }
    }
  }

  const indexes: CandidateIndex[] = [];
  for (const component of flat ? [''] : spec.components) {
    const base = flat ? 'Packages' : `${component}/binary-${arch}/Packages`;
    const variant = ['.xz', '.gz', ''].map((ext) => base + ext).find((p) => release.files.has(p));
    if (!variant) {
      throw new StrataError(
        'E_FETCH',
        flat
          ? `channel "${spec.name}": the Release of the flat repository at ${urls[0]}/${releaseDir(spec.suite)} lists no Packages{.xz,.gz,}`
          : `channel "${spec.name}": the Release of "${spec.suite}" lists no ${base}{.xz,.gz} (is "${component}" a component of this suite, and "${arch}" one of its architectures?)`,
      );
    }
    const { sha256: want, size } = release.files.get(variant)!;
    const label = `${spec.name} ${spec.suite}/${variant}`;
    // Checked on the way out of the store (its verified stamp, else a re-hash): a damaged index is fetched again.
    const cached = await store.check(want, size);
    if (cached.state === 'damaged') reporter.warn(`the cached ${label} was damaged (${cached.reason}); fetching it again`);
    let path = cached.state === 'ok' ? cached.path : undefined;
    if (!path) {
      if (opts.offline) throw new StrataError('E_OFFLINE', `--offline: ${label} is not cached`, 'run `strata lock` once with network access');
      reporter.info(`fetching ${label}`);
      path = await store.fetch({ urls: urls.map((u) => `${u}/${releaseDir(spec.suite)}${variant}`), sha256: want, size, label });
    }
    indexes.push(await readIndex(store, path, want, arch, spec.name, rank));
  }
  return {
    spec,
    rank,
    indexes,
    locked: {
      name: spec.name,
      suite: spec.suite,
      codename: release.codename,
      components: [...spec.components],
      date: release.date,
      releaseSha256: sha256(fetched.bytes),
      urls: [...spec.urls],
      ...(snapshot ? { snapshot: { timestamp: snapshot.timestamp, archive: snapshot.archive, urls: [...snapshot.urls] } } : {}),
    },
  };
}

/**
 * The candidates of one verified index. Parsing a 100 MB index costs seconds, so the parsed form is kept beside the
 * store (channels/indexCache.ts), keyed by the index's sha256 (the Release vouched for those bytes) and the arch; it
 * is derived data, never trusted for anything the hash does not cover. An entry that does not read back whole is
 * made again.
 */
async function readIndex(store: Store, path: string, sha: string, arch: string, channel: string, rank: number): Promise<CandidateIndex> {
  const indexes = store.cache('indexes');
  const key = `${sha}-${arch}-${INDEX_CACHE_FORMAT}`;
  const cached = await readIndexCache(indexes.path(key), channel, rank);
  if (cached) return cached;
  await indexes.remove(key);
  const candidates = await parseIndex(path, arch, channel, rank);
  const dir = await indexes.dir(key, (tmp) => writeIndexCache(tmp, candidates));
  const written = await readIndexCache(dir, channel, rank);
  if (!written) throw new Error(`the parsed index just written to ${dir} does not read back`);
  return written;
}

/** The candidates for `arch` and `all` of the index file at `path` (xz, gzip or plain), in index order. */
async function parseIndex(path: string, arch: string, channel: string, rank: number): Promise<Candidate[]> {
  const raw = await readFile(path);
  const text = path.endsWith('.xz') || isXz(raw) ? await xz.decompress(raw) : isGzip(raw) ? gunzipSync(raw) : raw;
  const list: Candidate[] = [];
  for await (const p of parseParagraphStream([text])) {
    const c = toCandidate(p, channel, rank);
    if (c && (c.arch === arch || c.arch === 'all')) list.push(c);
  }
  return list;
}

const INDEX_CACHE_FORMAT = 'v2';
const isXz = (b: Buffer) => b.length >= 6 && b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
const isGzip = (b: Buffer) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

function stripClearsign(text: string): string {
  const m = /-----BEGIN PGP SIGNED MESSAGE-----\r?\n(?:[^\n]+\n)*\r?\n([\s\S]*?)\r?\n-----BEGIN PGP SIGNATURE-----/.exec(text);
  return m ? m[1]!.replace(/^- /gm, '') : text;
}

export function toCandidate(p: Map<string, string>, channel: string, rank: number): Candidate | undefined {
  const name = field(p, 'Package');
  const version = field(p, 'Version');
  const arch = field(p, 'Architecture');
  const filename = field(p, 'Filename');
  const sha = field(p, 'SHA256');
  if (!name || !version || !arch || !filename || !sha) return undefined;
  const src = field(p, 'Source') ?? name;
  const m = /^(\S+)(?:\s+\((\S+)\))?/.exec(src);
  const c: Candidate = {
    name,
    version,
    arch,
    channel,
    channelRank: rank,
    source: m?.[1] ?? name,
    sourceVersion: m?.[2] ?? version,
    essential: field(p, 'Essential') === 'yes',
    depends: field(p, 'Depends') ?? '',
    preDepends: field(p, 'Pre-Depends') ?? '',
    recommends: field(p, 'Recommends') ?? '',
    provides: field(p, 'Provides') ?? '',
    conflicts: field(p, 'Conflicts') ?? '',
    breaks: field(p, 'Breaks') ?? '',
    // `./name.deb` (flat repositories write their Filenames so) is `name.deb` below the same URL.
    filename: filename.replace(/^(?:\.\/)+/, ''),
    size: Number(field(p, 'Size') ?? 0),
    sha256: sha.toLowerCase(),
  };
  const opt = (k: keyof Candidate, f: string) => {
    const v = field(p, f);
    if (v !== undefined) (c as unknown as Record<string, unknown>)[k] = v;
  };
  opt('multiArch', 'Multi-Arch');
  opt('priority', 'Priority');
  opt('section', 'Section');
  opt('maintainer', 'Maintainer');
  opt('homepage', 'Homepage');
  const desc = field(p, 'Description');
  if (desc !== undefined) c.description = desc.split('\n')[0]!;
  const isz = field(p, 'Installed-Size');
  if (isz !== undefined) c.installedSize = Number(isz);
  return c;
}
