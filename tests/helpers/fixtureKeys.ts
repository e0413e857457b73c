/**
 * OpenPGP keys for the fixture archive, made with the real `gpg` in a private GNUPGHOME.
 *
 * Two ed25519 signing keys are generated once per process (no passphrase): `archive` signs the fixture
 * archives, `other` exists only so tests can point a channel at the wrong key. The GNUPGHOME and its
 * gpg-agent are removed when the process exits.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface FixtureKey {
  fingerprint: string;
  /** Binary transferable public key (what `gpg --export` writes): a keyring file's bytes. */
  publicKey: Buffer;
  armoredPublicKey: string;
}

export interface FixtureKeys {
  /** The GNUPGHOME holding both secret keys. */
  home: string;
  archive: FixtureKey;
  other: FixtureKey;
}

let keys: Promise<FixtureKeys> | undefined;

/** The process's two fixture keys, generated on first use. */
export function fixtureKeys(): Promise<FixtureKeys> {
  keys ??= generateKeys();
  return keys;
}

async function gpg(home: string, args: string[]): Promise<{ stdout: string; stdoutBytes: Buffer }> {
  try {
    const { stdout } = await run('gpg', ['--homedir', home, '--batch', '--no-tty', '--pinentry-mode', 'loopback', '--passphrase', '', ...args], {
      encoding: 'buffer',
      maxBuffer: 64 * 1024 * 1024,
      env: { ...process.env, GNUPGHOME: home },
    });
    return { stdout: stdout.toString('utf8'), stdoutBytes: stdout };
  } catch (e) {
    const err = e as Error & { stderr?: Buffer };
    throw new Error(`gpg ${args.join(' ')} failed: ${err.stderr?.toString('utf8') ?? err.message}`);
  }
}

/** Signs `releasePath` as a Debian archive does: a clearsigned `InRelease` and an armored detached `Release.gpg`. */
export async function signRelease(k: FixtureKeys, releasePath: string, out: { inRelease?: string; releaseGpg: string }): Promise<void> {
  const common = ['--yes', '--local-user', k.archive.fingerprint, '--digest-algo', 'SHA512'];
  if (out.inRelease) await gpg(k.home, [...common, '--clearsign', '--output', out.inRelease, releasePath]);
  await gpg(k.home, [...common, '--armor', '--detach-sign', '--output', out.releaseGpg, releasePath]);
}

let signing = 0;

/**
 * Runs `fn`, which signs with `k`, then stops the gpg-agent signing started once no other signing of this process is
 * under way (mirrors built concurrently by one test file would otherwise kill the agent under each other: gpg then
 * fails with "signing failed: Broken pipe"). A later signature starts the agent again.
 */
export async function withSigning<T>(k: FixtureKeys, fn: () => Promise<T>): Promise<T> {
  signing++;
  try {
    return await fn();
  } finally {
    if (--signing === 0) stopAgent(k);
  }
}

/** Stops the gpg-agent that signing started; a later signature starts it again. */
function stopAgent(k: FixtureKeys): void {
  spawnSync('gpgconf', ['--homedir', k.home, '--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: k.home }, stdio: 'ignore' });
}

async function generateKeys(): Promise<FixtureKeys> {
  // Short path: gpg-agent's socket may live in the home, and socket paths are limited to ~100 bytes.
  const home = mkdtempSync(join(tmpdir(), 'strata-gpg-'));
  process.once('exit', () => {
    spawnSync('gpgconf', ['--homedir', home, '--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: home }, stdio: 'ignore' });
    rmSync(home, { recursive: true, force: true });
  });
  const make = async (uid: string): Promise<FixtureKey> => {
    const { stdout } = await gpg(home, ['--status-fd', '1', '--quick-gen-key', uid, 'ed25519', 'sign', 'never']);
    const fingerprint = /^\[GNUPG:\] KEY_CREATED \S+ ([0-9A-F]{40})/m.exec(stdout)?.[1];
    if (!fingerprint) throw new Error(`gpg --quick-gen-key did not report a fingerprint:\n${stdout}`);
    const publicKey = (await gpg(home, ['--export', fingerprint])).stdoutBytes;
    const armoredPublicKey = (await gpg(home, ['--armor', '--export', fingerprint])).stdout;
    return { fingerprint, publicKey, armoredPublicKey };
  };
  const archive = await make('Strata Fixture Archive <archive@strata.invalid>');
  const other = await make('Strata Other Key <other@strata.invalid>');
  const k = { home, archive, other };
  stopAgent(k);
  return k;
}
