"""A misbehaving HTTP origin on 127.0.0.1 for tests/suite/http/run.sh.

    origin.py ROOT PORTFILE

Serves files of ROOT and writes the port it listens on to PORTFILE. The first
path element says how it misbehaves:

  /drop/NAME     the first request without a Range header gets the whole
                 Content-Length and half the body, then the connection is
                 closed; Range requests ("bytes=N-") get a correct 206
  /norange/NAME  like drop, but Range headers are ignored afterwards (200)
  /lie/NAME      Content-Length is 64 KiB larger than the body, then close;
                 a Range request gets 416
  /reset/NAME    a quarter of the body, then a TCP reset, on every request
"""
import os
import re
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = sys.argv[1]
seen = set()
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, fmt, *args):
        sys.stderr.write('origin: ' + (fmt % args) + '\n')

    def do_GET(self):
        parts = self.path.split('/')
        if len(parts) != 3 or not re.fullmatch(r'[A-Za-z0-9._-]+', parts[2]):
            self.send_error(404)
            return
        mode, name = parts[1], parts[2]
        path = os.path.join(ROOT, name)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, 'rb') as f:
            data = f.read()
        size = len(data)
        rng = self.headers.get('Range')
        m = re.fullmatch(r'bytes=(\d+)-', rng) if rng else None
        if mode == 'lie':
            if m:
                self.send_response(416)
                self.send_header('Content-Range', 'bytes */%d' % size)
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.send_response(200)
            self.send_header('Content-Length', str(size + 65536))
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True
            return
        if mode == 'reset':
            self.send_response(200)
            self.send_header('Content-Length', str(size))
            self.end_headers()
            self.wfile.write(data[:size // 4])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack('ii', 1, 0))
            self.close_connection = True
            return
        if mode not in ('drop', 'norange'):
            self.send_error(404)
            return
        with lock:
            first = (mode, name) not in seen
            seen.add((mode, name))
        if first:
            self.send_response(200)
            self.send_header('Content-Length', str(size))
            self.send_header('Accept-Ranges', 'bytes')
            self.end_headers()
            self.wfile.write(data[:size // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if m and mode == 'drop':
            start = int(m.group(1))
            if start >= size:
                self.send_response(416)
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.send_response(206)
            self.send_header('Content-Range',
                             'bytes %d-%d/%d' % (start, size - 1, size))
            self.send_header('Content-Length', str(size - start))
            self.end_headers()
            self.wfile.write(data[start:])
            return
        self.send_response(200)
        self.send_header('Content-Length', str(size))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
server.daemon_threads = True
with open(sys.argv[2] + '.tmp', 'w') as f:
    f.write(str(server.server_address[1]))
os.rename(sys.argv[2] + '.tmp', sys.argv[2])
server.serve_forever()
