/**
 * How a run's standard streams and signals are wired. `strata run` inherits the terminal and forwards the signals
 * strata receives; a build step (a recipe) reads nothing, writes its output to log files, and is not a target of
 * the user's Ctrl-C forwarding (its caller decides when to stop it).
 */
export type RunIO =
  | { stdio: 'inherit'; forwardSignals: boolean }
  | {
      stdio: 'files';
      stdout: string;
      stderr: string;
      forwardSignals: boolean;
      /** Forwarded signals go to every process of the sandbox (its process group), so a build stops whole. */
      signalGroup?: boolean;
    };

/** The terminal's: stdin, stdout and stderr passed through, signals forwarded. */
export const TERMINAL_IO: RunIO = { stdio: 'inherit', forwardSignals: true };
