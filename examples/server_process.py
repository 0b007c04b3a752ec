# SPDX-License-Identifier: MIT
# For the check scripts: starts an example server on a free port and returns it with its port.
import re
import subprocess
import sys


def start(command, name):
    """Runs `command` (which must include --port 0) and waits for its "listening on" line.
    Returns (process, port); exits 1, naming `name`, when the server does not start."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if found:
            return proc, int(found.group(1))
    print(f"{name}: the server did not start")
    sys.exit(1)
