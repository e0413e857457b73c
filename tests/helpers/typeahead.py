"""Runs a command on a pseudo-terminal with input typed ahead (written before the command has started), and reports
what the terminal showed.

Usage: python3 typeahead.py INPUT CMD [ARGS...]   (cwd and environment are inherited; INPUT's \\n are newlines)
Prints one JSON object: {"exit": <exit status>, "output": <everything the terminal showed>}.
"""
import json, os, pty, select, sys, time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
os.write(fd, sys.argv[1].encode())
out, deadline = b"", time.time() + 120
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
_, status = os.waitpid(pid, 0)
print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "output": out.decode("utf-8", "replace")}))
