#!/usr/bin/env python3
"""A time-stamping authority for the tests: RFC 3161 over HTTP (POST of
application/timestamp-query), each reply made by `openssl ts -reply`.

Usage: tsa_server.py PORT OPENSSL_TS_CONFIG WORKDIR
"""
import http.server
import os
import subprocess
import sys
import tempfile

PORT, CONF, WORK = int(sys.argv[1]), sys.argv[2], sys.argv[3]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        query = self.rfile.read(n)
        if self.headers.get("Content-Type") != "application/timestamp-query":
            self.send_error(415, "expected application/timestamp-query")
            return
        with tempfile.TemporaryDirectory(dir=WORK) as d:
            q, r = os.path.join(d, "q.tsq"), os.path.join(d, "r.tsr")
            with open(q, "wb") as f:
                f.write(query)
            p = subprocess.run(
                ["openssl", "ts", "-reply", "-config", CONF, "-queryfile", q, "-out", r],
                capture_output=True,
            )
            if p.returncode != 0:
                self.send_error(500, p.stderr.decode(errors="replace")[:200])
                return
            with open(r, "rb") as f:
                body = f.read()
        with open(os.path.join(WORK, "requests"), "a") as f:
            f.write("1\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
