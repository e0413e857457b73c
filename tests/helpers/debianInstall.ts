/**
 * A lock installed the way Debian installs it: mmdebstrap of the lock's exact `name=version` list (apt and dpkg,
 * every maintainer script run), for the installed-parity oracle and the benchmark's side-by-side runs.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Lockfile } from '../../model.ts';

/** The package the Debian install takes in place of the host's GPU driver (`[gpu] driver = "host"`). */
export const HOST_STUB = 'strata-oracle-host-gpu-driver';

/**
 * Installs `lock` into `root` (which must not exist or be empty) from `mirror`. What the lock leaves to the host
 * (the GPU driver) is stood in for by one empty package, HOST_STUB, that provides it at the version it requires at
 * least, so that apt installs the lock's packages and no driver; it is built below the temporary directory (/tmp,
 * which the oracle does not compare).
 */
export function debianInstall(lock: Lockfile, root: string, mirror: string, components: string[], suite = 'trixie'): void {
  const include = lock.packages.map((p) => `${p.name}=${p.version}`).join(',');
  const stub = lock.hostProvided.length > 0 ? hostStub(lock.hostProvided) : undefined;
  try {
    execFileSync(
      'mmdebstrap',
      [
        '--quiet', '--mode=root', '--variant=custom', `--components=${components.join(',')}`, '--aptopt=APT::Install-Recommends "false"', `--include=${include}`,
        ...(stub ? [`--include=${stub.deb}`, '--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount'] : []),
        suite, root, mirror,
      ],
      { stdio: 'pipe', maxBuffer: 64 << 20 },
    );
  } finally {
    if (stub) rmSync(stub.dir, { recursive: true, force: true });
  }
}

function hostStub(provided: { name: string; requires: string }[]): { dir: string; deb: string } {
  const dir = mkdtempSync(join(tmpdir(), 'strata-oracle-stub-'));
  const pkg = join(dir, 'pkg');
  mkdirSync(join(pkg, 'DEBIAN'), { recursive: true });
  const provides = provided.map((h) => {
    const v = /^>=\s*(\S+)$/.exec(h.requires)?.[1];
    return v ? `${h.name} (= ${v})` : h.name;
  });
  writeFileSync(
    join(pkg, 'DEBIAN/control'),
    `Package: ${HOST_STUB}\nVersion: 1\nArchitecture: all\nMaintainer: strata tests <strata@localhost>\nProvides: ${provides.join(', ')}\nDescription: stands in for the host's GPU driver in the installed-parity oracle\n`,
  );
  const deb = join(dir, `${HOST_STUB}_1_all.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-b', pkg, deb], { stdio: 'pipe' });
  return { dir, deb };
}
