/**
 * `strata status`: where the project stands. Whether strata.lock is current against strata.toml, and what the
 * project's venv (run/develop.ts) holds beyond the lock: each package installed into it (name, version, editable
 * or not, and where it lives), read from its `*.dist-info` directories on the host, without entering the
 * environment. What the venv was seeded with (pip, setuptools, wheel from the environment's Debian wheels) is
 * listed apart.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lockPathFor, readLock } from '../lock/lockfile.ts';
import { projectVenvDir, VENV_CLOSURE_FILE, VENV_SEEDED_FILE } from '../run/develop.ts';
import { isStrataError } from '../errors.ts';
import { staleReason } from './ensureLock.ts';
import type { Manifest } from '../model.ts';

export interface VenvPackage {
  name: string;
  version: string;
  editable: boolean;
  /** The source directory of an editable install (or of a local directory installed); else the site-packages directory. */
  location: string;
  /** Put there when the venv was made (from the environment's Debian wheels), not installed by the user. */
  seeded: boolean;
}

export interface ProjectStatus {
  manifest: string;
  lock: { path: string; current: boolean; reason?: string; closure?: string };
  venv: {
    path: string;
    /** absent: never made (or [develop] venv = false); current: made for this lock's closure; stale: for another (the next run makes it again); unavailable: the environment cannot make one. */
    state: 'absent' | 'current' | 'stale' | 'unavailable' | 'off';
    closure?: string;
    python?: string;
    packages: VenvPackage[];
  };
}

export async function projectStatus(manifest: Manifest): Promise<ProjectStatus> {
  const projectDir = join(manifest.path, '..');
  const lockPath = lockPathFor(manifest.path);
  let lock: Awaited<ReturnType<typeof readLock>>;
  let reason: string | undefined;
  try {
    lock = await readLock(lockPath);
    reason = staleReason(manifest, lock);
  } catch (e) {
    if (!isStrataError(e)) throw e;
    reason = e.message;
  }
  const venvPath = projectVenvDir(projectDir);
  const recorded = readText(join(venvPath, VENV_CLOSURE_FILE));
  const state: ProjectStatus['venv']['state'] =
    manifest.develop?.venv === 'off'
      ? 'off'
      : recorded !== undefined
        ? recorded === lock?.closure
          ? 'current'
          : 'stale'
        : readText(`${venvPath}.unavailable`) !== undefined
          ? 'unavailable'
          : 'absent';
  const python = /^version = (.+)$/m.exec(readText(join(venvPath, 'pyvenv.cfg')) ?? '')?.[1]?.trim();
  return {
    manifest: manifest.path,
    lock: { path: lockPath, current: reason === undefined, ...(reason !== undefined ? { reason } : {}), ...(lock ? { closure: lock.closure } : {}) },
    venv: { path: venvPath, state, ...(recorded ? { closure: recorded } : {}), ...(python ? { python } : {}), packages: recorded !== undefined ? venvPackages(venvPath) : [] },
  };
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The distributions in the venv's site-packages, sorted by name. */
export function venvPackages(venvPath: string): VenvPackage[] {
  const seeded = new Set((readText(join(venvPath, VENV_SEEDED_FILE)) ?? '').split('\n').filter(Boolean));
  const out: VenvPackage[] = [];
  const lib = join(venvPath, 'lib');
  const pythons = existsSync(lib) ? readdirSync(lib).filter((d) => /^python3\.\d+$/.test(d)) : [];
  for (const py of pythons) {
    const site = join(lib, py, 'site-packages');
    if (!existsSync(site)) continue;
    for (const d of readdirSync(site).sort()) {
      if (!d.endsWith('.dist-info')) continue;
      const meta = readText(join(site, d, 'METADATA')) ?? '';
      const name = /^Name: (.+)$/m.exec(meta)?.[1]?.trim();
      const version = /^Version: (.+)$/m.exec(meta)?.[1]?.trim();
      if (!name || !version) continue;
      let editable = false;
      let location = site;
      const direct = readText(join(site, d, 'direct_url.json'));
      if (direct) {
        try {
          const j = JSON.parse(direct) as { url?: string; dir_info?: { editable?: boolean } };
          editable = j.dir_info?.editable === true;
          if (j.url?.startsWith('file://') && j.dir_info) location = fileURLToPath(j.url);
        } catch {
          // a damaged record: shown as installed in site-packages
        }
      }
      out.push({ name, version, editable, location, seeded: seeded.has(d) });
    }
  }
  return out.sort((a, b) => (a.name.toLowerCase() < b.name.toLowerCase() ? -1 : a.name.toLowerCase() > b.name.toLowerCase() ? 1 : 0));
}
