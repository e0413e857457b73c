/**
 * The Reporter is threaded through every long stage; the engine never writes to stdout or stderr itself.
 * Implementations: a terminal reporter (progress bars on a TTY, plain lines otherwise), a quiet one, and
 * a recording one for tests.
 */
import { MultiBar, Presets } from 'cli-progress';

export interface Progress {
  /** Advance by `n` units (items or bytes, as the progress was created). */
  tick(n?: number, detail?: string): void;
  /** Raise the total when it becomes known. */
  setTotal(total: number): void;
  done(): void;
}

export interface Reporter {
  info(message: string): void;
  warn(message: string): void;
  /** Progress over `total` units; `unit` is `'items'` or `'bytes'`. */
  progress(label: string, total: number, unit?: 'items' | 'bytes'): Progress;
}

const noProgress: Progress = { tick() {}, setTotal() {}, done() {} };

export function quietReporter(): Reporter {
  return { info() {}, warn() {}, progress: () => noProgress };
}

export interface RecordingReporter extends Reporter {
  lines: string[];
}

export function recordingReporter(): RecordingReporter {
  const lines: string[] = [];
  return {
    lines,
    info: (m) => lines.push(m),
    warn: (m) => lines.push(`warning: ${m}`),
    progress: () => noProgress,
  };
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
export { formatBytes };

/**
 * Writes to stderr: messages always, progress bars only when stderr is a terminal. Concurrent stages (unpacking
 * while layers are written) share one multi-line display; it is torn down when the last bar is done.
 */
export function terminalReporter(stream: NodeJS.WriteStream = process.stderr): Reporter {
  const tty = Boolean(stream.isTTY) && !process.env.CI;
  let multi: MultiBar | undefined;
  let active = 0;
  const say = (m: string) => (multi ? multi.log(`${m}\n`) : void stream.write(`${m}\n`));
  return {
    info: (m) => say(m),
    warn: (m) => say(`warning: ${m}`),
    progress(label, total, unit = 'items') {
      if (!tty) return noProgress;
      const fmt = unit === 'bytes' ? (v: number) => formatBytes(v) : (v: number) => String(v);
      multi ??= new MultiBar(
        { stream, format: '{label} [{bar}] {v}/{t} {detail}', hideCursor: true, clearOnComplete: true, etaBuffer: 50, fps: 10 },
        Presets.shades_classic,
      );
      const m = multi;
      let value = 0;
      let t = total;
      const bar = m.create(total, 0, { label: label.padEnd(8), v: fmt(0), t: fmt(total), detail: '' });
      active++;
      let finished = false;
      return {
        tick(n = 1, detail = '') {
          value += n;
          bar.update(value, { label: label.padEnd(8), v: fmt(value), t: fmt(t), detail });
        },
        setTotal(nt) {
          t = nt;
          bar.setTotal(nt);
        },
        done() {
          if (finished) return;
          finished = true;
          m.remove(bar);
          if (--active === 0) {
            m.stop();
            multi = undefined;
          }
        },
      };
    },
  };
}
