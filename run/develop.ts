/**
 * Developing inside an environment: the project's own Python environment (a venv under the project directory),
 * the variables a build on top of the environment needs (CUDA_PATH, LIBRARY_PATH), and the `[shell] hook`.
 *
 * What needs the environment's own files (is there a python3, an nvcc?) is decided inside the run, by a short
 * POSIX shell prelude that runs before the command in both backends (`developPrelude`); what the lock and the
 * image's environment already tell is decided here (`developEnv`). Everything the prelude writes lies under the
 * project's `.strata/` directory: never in the image, never in HOME.
 *
 * The venv (`projectVenvDir`) is the one place packages installed on top of the lock live; `strata status` and
 * `strata freeze` read it there. It is made with the environment's own `python3 -m venv --system-site-packages`
 * (so the image's NumPy, SciPy, MKL... stay importable) and seeded offline from Debian's wheels in
 * `/usr/share/python-wheels` (python3-venv brings pip's and setuptools'; python3-wheel-whl brings wheel's). It
 * records the lock's closure it was made for (`VENV_CLOSURE_FILE`) and is made again when the lock changes, so a
 * venv never mixes with another Python or another closure.
 */
import { join } from 'node:path';
import { DRIVER_LIB_DIR } from './gpu.ts';

/** The project's venv, relative to the project directory (the manifest's). */
export const PROJECT_VENV = '.strata/venv';
/** The file inside the venv that records the lock closure it was made for. */
export const VENV_CLOSURE_FILE = 'strata-closure';
/** The file inside the venv that lists the `*.dist-info` directories it was seeded with (pip, setuptools, wheel). */
export const VENV_SEEDED_FILE = 'strata-seeded';
/** pip's cache for the project's venv, relative to the project directory (so pip never writes HOME). */
export const PIP_CACHE = '.strata/cache/pip';
/** Where Debian's python3-*-whl packages put their wheels: pip's offline source of pip, setuptools, wheel. */
export const DEBIAN_WHEELS = '/usr/share/python-wheels';

/** The absolute path of the venv of the project in `projectDir` (whether or not it exists yet). */
export function projectVenvDir(projectDir: string): string {
  return join(projectDir, PROJECT_VENV);
}

/**
 * `[develop] venv`: `auto` (the default) makes the venv when the environment can (it has python3 with the venv
 * module), else runs without one; `required` (`venv = true`) stops with a message instead; `off` (`venv = false`)
 * never makes or activates it.
 */
export type VenvMode = 'auto' | 'required' | 'off';

export interface DevelopOptions {
  projectDir: string;
  /** The lock's closure: the venv is made again when it differs from the one recorded there. */
  closure: string;
  venv: VenvMode;
  /** Whether the lock has python3 at all: without it there is nothing to make. */
  python: boolean;
  /** Whether the environment may have a CUDA toolkit (look for nvcc). */
  cuda: boolean;
  /** `[shell] hook`. */
  hook?: string;
  /** `strata shell` (the hook then runs in the interactive shell itself, so its aliases and functions stay). */
  shell: boolean;
}

/** Single-quoted for a POSIX shell. */
export function shq(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * Variables strata sets over the image's environment (`imageEnv`) for a run, unless the image, `[env]` or `-e`
 * already set them: LIBRARY_PATH mirrors LD_LIBRARY_PATH (the host driver's directory and the recipes' `lib`),
 * so a linker and a pip build find libcuda and the recipes' libraries as the loader does; CPATH gets each
 * recipe prefix's `include`. `set` is what the run sets itself (`[env]`, `-e`, the GPU's variables).
 */
export function developEnv(imageEnv: Record<string, string>, set: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  // The GPU's LD_LIBRARY_PATH names the driver's directory; the image's may hold the recipes' directories too.
  const image = imageEnv.LD_LIBRARY_PATH?.split(':').filter(Boolean) ?? [];
  const wanted = set.LD_LIBRARY_PATH?.split(':').filter(Boolean) ?? [];
  const ld = [...image, ...wanted.filter((d) => !image.includes(d))];
  if (set.LD_LIBRARY_PATH !== undefined && ld.join(':') !== set.LD_LIBRARY_PATH) out.LD_LIBRARY_PATH = ld.join(':');
  if (imageEnv.LIBRARY_PATH === undefined && set.LIBRARY_PATH === undefined && ld.length > 0) out.LIBRARY_PATH = ld.join(':');
  const includes = ld.filter((d) => d !== DRIVER_LIB_DIR && d.endsWith('/lib')).map((d) => `${d.slice(0, -'/lib'.length)}/include`);
  if (imageEnv.CPATH === undefined && set.CPATH === undefined && includes.length > 0) out.CPATH = includes.join(':');
  return out;
}

/**
 * The shell prelude of a run: make or check the venv and activate it, set CUDA_PATH/CUDA_HOME where the
 * environment has a CUDA toolkit, and (for `run`) run the hook. Empty when there is nothing to do, so an
 * environment without Python, CUDA or a hook runs its command as it is.
 */
export function developPrelude(o: DevelopOptions): string {
  const parts: string[] = [];
  if (o.venv !== 'off' && o.python) parts.push(venvScript(o));
  if (o.cuda) parts.push(CUDA_SCRIPT);
  if (o.hook && !o.shell) parts.push(`{\n${o.hook}\n} >&2`);
  return parts.join('\n');
}

// Debian's toolkit (nvidia-cuda-toolkit) puts nvcc in /usr/bin (a wrapper of /usr/lib/nvidia-cuda-toolkit/bin/nvcc),
// its headers in /usr/include and its libraries in the multiarch directory: its CUDA_HOME is /usr (`$CUDA_HOME/bin/nvcc`,
// `$CUDA_HOME/include/cuda.h`). NVIDIA's own layout (a recipe's, say) is /usr/local/cuda, and goes first.
const CUDA_SCRIPT = `if [ -z "\${CUDA_PATH+x}" ]; then
  for strata_p in /usr/local/cuda /usr; do
    if [ -x "$strata_p/bin/nvcc" ]; then CUDA_PATH=$strata_p; export CUDA_PATH; break; fi
  done
  unset strata_p
fi
if [ -n "\${CUDA_PATH:-}" ] && [ -z "\${CUDA_HOME+x}" ]; then CUDA_HOME=$CUDA_PATH; export CUDA_HOME; fi`;

function venvScript(o: DevelopOptions): string {
  const v = projectVenvDir(o.projectDir);
  const required = o.venv === 'required';
  // Without a usable venv: `auto` says so once (a marker records the closure it failed for), `required` stops the run.
  const fail = (why: string) =>
    required ? `echo "strata: [develop] venv = true, but ${why}" >&2; exit 1` : `echo "strata: no Python environment for this project: ${why} ([develop] venv = false turns this off)" >&2`;
  return `strata_d=${shq(o.projectDir)}; strata_v=${shq(v)}; strata_c=${shq(o.closure)}; strata_w=${shq(DEBIAN_WHEELS)}; strata_f=
strata_fresh() { [ -x "$strata_v/bin/python3" ] && [ "$(cat "$strata_v/${VENV_CLOSURE_FILE}" 2>/dev/null)" = "$strata_c" ]; }
if ! command -v python3 >/dev/null 2>&1; then
  ${required ? fail('the environment has no python3') : ':'}
elif ! strata_fresh && ${required ? 'true' : '[ "$(cat "$strata_v.unavailable" 2>/dev/null)" != "$strata_c" ]'}; then
  mkdir -p "$strata_d/.strata" && { [ -e "$strata_d/.strata/.gitignore" ] || printf '*\\n' > "$strata_d/.strata/.gitignore"; }
  # One run makes it; a concurrent one waits (a maker that died leaves its lock: taken over after 2 minutes).
  strata_n=0
  while ! mkdir "$strata_v.making" 2>/dev/null; do
    strata_n=$((strata_n + 1)); if [ "$strata_n" -gt 1200 ]; then rm -rf "$strata_v.making"; strata_n=0; fi; sleep 0.1
  done
  if ! strata_fresh; then
    if [ -e "$strata_v" ]; then
      echo "strata: the lock changed since $strata_v was made: making it again for this environment (what was installed into it must be installed again)" >&2
      rm -rf "$strata_v"
    fi
    strata_log="$strata_v.making/log"
    if python3 -m venv --system-site-packages "$strata_v" >"$strata_log" 2>&1 \\
      || { rm -rf "$strata_v"; python3 -m venv --system-site-packages --without-pip "$strata_v" >>"$strata_log" 2>&1; }; then
      # No ensurepip (no python3-venv): pip from Debian's pip wheel, which runs as it is.
      if ! "$strata_v/bin/python3" -m pip --version >/dev/null 2>&1; then
        for strata_p in "$strata_w"/pip-*.whl; do
          [ -f "$strata_p" ] && "$strata_v/bin/python3" "$strata_p/pip" install --quiet --no-index --find-links "$strata_w" --no-cache-dir pip >>"$strata_log" 2>&1
        done
      fi
      for strata_p in setuptools wheel; do
        if ls "$strata_w/$strata_p"-*.whl >/dev/null 2>&1 && "$strata_v/bin/python3" -m pip --version >/dev/null 2>&1; then
          "$strata_v/bin/python3" -m pip install --quiet --no-index --find-links "$strata_w" --disable-pip-version-check --no-cache-dir "$strata_p" >>"$strata_log" 2>&1
        fi
      done
      if ! "$strata_v/bin/python3" -m pip --version >/dev/null 2>&1; then
        echo "strata: made $strata_v without pip: the environment has no pip (add python3-venv to [packages])" >&2
      fi
      (cd "$strata_v" && ls -d lib/python3*/site-packages/*.dist-info 2>/dev/null | sed 's,.*/,,') > "$strata_v/${VENV_SEEDED_FILE}"
      echo "$strata_c" > "$strata_v/${VENV_CLOSURE_FILE}"
      rm -f "$strata_v.unavailable" "$strata_v.unavailable.log"
    else
      rm -rf "$strata_v"; echo "$strata_c" > "$strata_v.unavailable"; cp "$strata_log" "$strata_v.unavailable.log" 2>/dev/null
      strata_f="python3 -m venv failed in this environment (add python3-venv to [packages]; its output: $strata_v.unavailable.log)"
    fi
  fi
  rm -rf "$strata_v.making"
  if [ -n "$strata_f" ]; then ${fail('$strata_f')}; fi
fi
if strata_fresh; then
  VIRTUAL_ENV=$strata_v; PATH="$strata_v/bin:$PATH"; export VIRTUAL_ENV PATH
  [ -n "\${PIP_CACHE_DIR+x}" ] || { PIP_CACHE_DIR="$strata_d/${PIP_CACHE}"; export PIP_CACHE_DIR; }
  [ -n "\${PIP_DISABLE_PIP_VERSION_CHECK+x}" ] || { PIP_DISABLE_PIP_VERSION_CHECK=1; export PIP_DISABLE_PIP_VERSION_CHECK; }
  if [ -z "\${PIP_FIND_LINKS+x}" ] && [ -d "$strata_w" ]; then PIP_FIND_LINKS=$strata_w; export PIP_FIND_LINKS; fi
fi
unset strata_d strata_v strata_c strata_w strata_f strata_n strata_p strata_log
unset -f strata_fresh 2>/dev/null`;
}

/**
 * The argv of a run: the prelude, then the command (`exec "$@"`), or for a shell the hook inside the interactive
 * shell itself (bash's rcfile, sh's ENV), so that what it defines (aliases, functions, PS1) stays.
 */
export function developArgv(prelude: string, command: string[] | undefined, hook: string | undefined): string[] {
  if (command !== undefined) return prelude === '' ? command : ['/bin/sh', '-c', `${prelude}\nexec "$@"`, 'sh', ...command];
  const lines = prelude === '' ? [] : [prelude];
  if (hook) {
    let tag = 'STRATA_HOOK';
    while (hook.split('\n').includes(tag)) tag += '_';
    const rc = `3<<'${tag}'\n${hook}\n${tag}`;
    lines.push(
      `if command -v bash >/dev/null 2>&1; then exec bash --noprofile --rcfile /proc/self/fd/3 -i ${rc}\nfi`,
      `ENV=/proc/self/fd/3 exec sh -i ${rc}`,
    );
  } else {
    lines.push('if command -v bash >/dev/null 2>&1; then exec bash --norc --noprofile -i; fi', 'exec sh -i');
  }
  return ['/bin/sh', '-c', lines.join('\n')];
}
