#!/usr/bin/env python3
"""Run a command with its stderr on a pseudo-terminal (stdout to a file).

    pty_run.py STDOUT_FILE STDERR_FILE COMMAND...

The command sees a terminal on stderr only, as a person running vmdisk
with its output redirected would (stdin is /dev/null). What it writes to
the terminal is saved to STDERR_FILE, byte for byte (the terminal's output
processing is off, so a newline stays a newline). Prints one line:
"RC ELAPSED_SECONDS REDRAWS", where a redraw is a carriage return not
followed by a newline (the progress line being rewritten).
"""
import os
import subprocess
import sys
import termios
import time


def main():
    out_path, err_path, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # bytes as written: no \n -> \r\n
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    data = bytearray()
    with open(out_path, "wb") as out:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=slave, close_fds=True)
        os.close(slave)
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            data += chunk
        rc = proc.wait()
        elapsed = time.monotonic() - start
    os.close(master)
    with open(err_path, "wb") as f:
        f.write(data)
    redraws = sum(1 for i, b in enumerate(data)
                  if b == 0x0D and data[i + 1:i + 2] != b"\n")
    print(f"{rc} {elapsed:.3f} {redraws}")


if __name__ == "__main__":
    main()
