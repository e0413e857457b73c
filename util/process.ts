/** Whether process `pid` exists on this machine (in this PID namespace): kill(pid, 0) answers ESRCH only for none. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
