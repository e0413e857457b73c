"""Runs a command on a pseudo-terminal with input typed ahead (written before the command has started), and reports
what the terminal showed.

Usage: python3 typeahead.py INPUT CMD [ARGS...]   (cwd and environment are inherited; TYPEAHEAD_TIMEOUT: seconds,
default 120; TYPEAHEAD_THEN=MARKER TYPEAHEAD_THEN_INPUT=TEXT: type TEXT once the terminal has shown MARKER, after
TYPEAHEAD_THEN_DELAY seconds, default 0; e.g. INPUT "" and TEXT "\x03" for a Ctrl-C once the command is ready)
Prints one JSON object: {"exit": <exit status>, "output": <everything the terminal showed>}.
"""
import json, os, pty, select, sys, time

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
os.write(fd, sys.argv[1].encode())
then, then_input = os.environ.get("TYPEAHEAD_THEN", "").encode(), os.environ.get("TYPEAHEAD_THEN_INPUT", "").encode()
out, deadline = b"", time.time() + float(os.environ.get("TYPEAHEAD_TIMEOUT", "120"))
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
        if then and then in out:
            time.sleep(float(os.environ.get("TYPEAHEAD_THEN_DELAY", "0")))
            os.write(fd, then_input)
            then = b""
# The terminal closes a moment before the process is gone: give it a few seconds to be reaped.
done, status, reap_until = 0, 0, time.time() + 5
while done == 0 and time.time() < reap_until:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        time.sleep(0.05)
if done == 0:
    # Still running at the deadline: a hang, reported as exit null.
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print(json.dumps({"exit": None, "output": out.decode("utf-8", "replace")}))
else:
    print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "output": out.decode("utf-8", "replace")}))
