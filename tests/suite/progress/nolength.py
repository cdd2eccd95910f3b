#!/usr/bin/env python3
"""An HTTP origin on 127.0.0.1 that never says how large a file is.

    nolength.py ROOT PORTFILE

Serves the files of ROOT (plain names only) as HTTP/1.0 answers without
Content-Length, the body ended by closing the connection, in 256 KiB
pieces 20 ms apart (so a 16 MiB file takes over a second), for the
download progress of a size that is not known. Writes its port to
PORTFILE.
"""
import os
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'

    def log_message(self, fmt, *args):
        sys.stderr.write('nolength: ' + (fmt % args) + '\n')

    def _open(self):
        name = self.path.lstrip('/')
        if not re.fullmatch(r'[A-Za-z0-9._-]+', name):
            return None
        path = os.path.join(ROOT, name)
        return path if os.path.isfile(path) else None

    def do_HEAD(self):
        if not self._open():
            self.send_error(404)
            return
        self.send_response(200)
        self.end_headers()

    def do_GET(self):
        path = self._open()
        if not path:
            self.send_error(404)
            return
        self.send_response(200)
        self.end_headers()
        with open(path, 'rb') as f:
            while True:
                piece = f.read(256 * 1024)
                if not piece:
                    break
                self.wfile.write(piece)
                self.wfile.flush()
                time.sleep(0.02)
        self.close_connection = True


def main():
    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    with open(sys.argv[2] + '.tmp', 'w') as f:
        f.write(str(server.server_address[1]))
    os.rename(sys.argv[2] + '.tmp', sys.argv[2])
    server.serve_forever()


if __name__ == '__main__':
    main()
