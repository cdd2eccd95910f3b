#!/usr/bin/env python3
"""Clients of vmdiskd for tests/suite/reliability/parts/35-vmdiskd-load.sh.

    vmdiskd_load.py SOCKET START KIND=N... > results

Starts N clients of each KIND at once (threads), as soon as the wall clock
reaches START (seconds since the epoch, a float; so that clients of two
processes, run as two uids, arrive together), and prints one line a client:

    KIND OUTCOME SECONDS REPLY

OUTCOME: ok (an {"ok":true} reply), refused (an {"ok":false} reply; REPLY
has its code), none (the connection closed without a reply), error (could
not connect, or no reply within 30 s). Kinds:

    ping        a granted request, sent at once
    denied_op   an operation the policy does not grant (luks_open)
    bad_field   a request the schema refuses (a surplus field, a bad vg)
    slow_ok     ping, one byte every SLOW_OK seconds (done within the
                daemon's read timeout)
    slow        a byte a second, for longer than the read timeout
    drop        half a request, then close
    drop_rst    half a request, then close with a reset (SO_LINGER 0)
    garbage     bytes that are not JSON, a NUL among them
    long        a line of 5 KiB (over vmdiskd's 4 KiB)
    long_nonl   8 KiB without a newline
    hold        one byte, then nothing until the daemon gives up (its read
                timeout) and closes
"""
import json
import socket
import struct
import sys
import threading
import time

SLOW_OK = 0.1
PING = b'{"op":"ping"}\n'


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s


def reply(s):
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return buf


def send(s, data):
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # a refusal at once: its reply is still there


def client(path, kind):
    s = connect(path)
    if kind == "ping":
        send(s, PING)
    elif kind == "denied_op":
        send(s, b'{"op":"luks_open","vg":"vg0","lv":"'
             b'00000000-0000-0000-0000-000000000000_disk","key_id":"'
             b'00000000-0000-0000-0000-000000000001"}\n')
    elif kind == "bad_field":
        send(s, b'{"op":"ping","surplus":1}\n')
    elif kind == "slow_ok":
        for b in PING:
            send(s, bytes([b]))
            time.sleep(SLOW_OK)
    elif kind == "slow":
        for b in b'{"op":"ping"  ':
            send(s, bytes([b]))
            time.sleep(1)
            s.settimeout(0)
            try:
                if s.recv(4096, socket.MSG_PEEK):
                    break  # the daemon gave up on us
            except BlockingIOError:
                pass
            except OSError:
                break
            s.settimeout(30)
        s.settimeout(30)
    elif kind in ("drop", "drop_rst"):
        send(s, PING[:6])
        time.sleep(0.05)
        if kind == "drop_rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack("ii", 1, 0))
        s.close()
        return "none", b""
    elif kind == "hold":
        send(s, b"{")
    elif kind == "garbage":
        send(s, b'{"op":"pi\x00ng"} \xff\xfe not json\n')
    elif kind == "long":
        send(s, b'{"op":"ping","x":"' + b"A" * 5120 + b'"}\n')
    elif kind == "long_nonl":
        send(s, b"{" + b"B" * 8192)
    else:
        raise SystemExit("unknown kind " + kind)
    r = reply(s)
    s.close()
    if not r:
        return "none", r
    try:
        j = json.loads(r)
    except ValueError:
        return "error", r
    return ("ok" if j.get("ok") is True else "refused"), r


def run(path, kind, out, lock):
    t0 = time.monotonic()
    try:
        outcome, r = client(path, kind)
        text = r.decode("ascii", "replace").strip() or "-"
    except OSError as e:
        outcome, text = "error", type(e).__name__
    with lock:
        out.append("%s %s %.2f %s" % (kind, outcome, time.monotonic() - t0,
                                      text))


def main():
    path, start = sys.argv[1], float(sys.argv[2])
    kinds = []
    for arg in sys.argv[3:]:
        k, n = arg.split("=")
        kinds += [k] * int(n)
    out, lock = [], threading.Lock()
    threads = [threading.Thread(target=run, args=(path, k, out, lock))
               for k in kinds]
    delay = start - time.time()
    if delay > 0:
        time.sleep(delay)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("\n".join(out))


if __name__ == "__main__":
    main()
