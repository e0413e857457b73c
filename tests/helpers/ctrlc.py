"""Runs a command on a pseudo-terminal, types Ctrl-C once stdout shows "ready", and reports what happened.

Usage: python3 ctrlc.py CMD [ARGS...]   (cwd and environment are inherited)
Prints one JSON object: {"exit": <exit status>, "output": <everything the terminal showed>}.
"""
import json, os, pty, select, sys, time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
out, sent, deadline = b"", False, time.time() + 60
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    if not sent and b"ready" in out:
        time.sleep(0.3)
        os.write(fd, b"\x03")
        sent = True
_, status = os.waitpid(pid, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "output": out.decode("utf-8", "replace")}))
