/**
 * `strata status`: whether strata.lock is current against strata.toml, and what the project's venv holds beyond
 * the lock (engine/status.ts). Exit 0 either way: it reports, it does not check (`strata lock --check` does).
 */
import { relative } from 'node:path';
import { loadManifest } from '../manifest/manifest.ts';
import { projectStatus } from '../engine/status.ts';

export interface StatusOptions {
  manifest: string;
  json?: boolean;
}

export async function statusCommand(opts: StatusOptions): Promise<void> {
  const manifest = loadManifest(opts.manifest);
  const s = await projectStatus(manifest);
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return;
  }
  const here = (p: string) => relative(process.cwd(), p) || '.';
  const out: string[] = [];
  out.push(s.lock.current ? `lock: ${here(s.lock.path)} is current (closure ${s.lock.closure})` : `lock: ${here(s.lock.path)} is not current: ${s.lock.reason} (the next run locks first; or run \`strata lock\`)`);
  const venv = here(s.venv.path);
  const states: Record<ProjectState, string> = {
    off: `venv: off ([develop] venv = false)`,
    absent: `venv: ${venv} not made yet (the first \`strata run\` or \`strata shell\` makes it when the environment has python3)`,
    unavailable: `venv: this environment cannot make one (see ${venv}.unavailable.log; add python3-venv to [packages])`,
    current: `venv: ${venv}, Python ${s.venv.python ?? '?'}, made for this lock`,
    stale: `venv: ${venv}, Python ${s.venv.python ?? '?'}, made for another lock (closure ${s.venv.closure}): the next run makes it again, without these packages`,
  };
  out.push(states[s.venv.state]);
  const installed = s.venv.packages.filter((p) => !p.seeded);
  const seeded = s.venv.packages.filter((p) => p.seeded);
  if (s.venv.state === 'current' || s.venv.state === 'stale') {
    if (installed.length === 0) out.push('  nothing installed beyond the lock');
    else {
      out.push(`  installed beyond the lock (${installed.length}):`);
      const w = Math.max(...installed.map((p) => `${p.name} ${p.version}`.length));
      for (const p of installed) out.push(`    ${`${p.name} ${p.version}`.padEnd(w)}  ${(p.editable ? 'editable' : 'installed').padEnd(9)}  ${p.location}`);
    }
    if (seeded.length > 0) out.push(`  seeded from the environment's Debian wheels: ${seeded.map((p) => `${p.name} ${p.version}`).join(', ')}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

type ProjectState = Awaited<ReturnType<typeof projectStatus>>['venv']['state'];
