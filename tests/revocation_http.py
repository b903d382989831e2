"""HTTP on 127.0.0.1 for tests/revocation.rs: a CA's CRL distribution point
(GET /ca.crl, the DER file made by `openssl ca -gencrl`) and its OCSP
responder (POST /ocsp: each request answered by `openssl ocsp -index`, the
real OpenSSL responder, from the CA's index.txt). OpenSSL 3.0's own
`openssl ocsp -port` takes a port number only and listens on every
interface; this keeps the test on loopback.

usage: revocation_http.py CA_DIR PORT
Each request is logged to CA_DIR/http.log as "METHOD PATH".
"""

import http.server
import os
import subprocess
import sys
import tempfile

root, port = sys.argv[1], int(sys.argv[2])


def log(line):
    with open(os.path.join(root, "http.log"), "a") as f:
        f.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, ctype, body):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        log("GET " + self.path)
        if self.path != "/ca.crl":
            return self.reply(404, "text/plain", b"not found\n")
        with open(os.path.join(root, "ca.crl.der"), "rb") as f:
            self.reply(200, "application/pkix-crl", f.read())

    def do_POST(self):
        log("POST " + self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/ocsp":
            return self.reply(404, "text/plain", b"not found\n")
        with tempfile.TemporaryDirectory() as d:
            req, resp = os.path.join(d, "req.der"), os.path.join(d, "resp.der")
            with open(req, "wb") as f:
                f.write(body)
            p = subprocess.run(
                ["openssl", "ocsp", "-index", os.path.join(root, "index.txt"),
                 "-CA", os.path.join(root, "ca.pem"),
                 "-rsigner", os.path.join(root, "ocsp.pem"),
                 "-rkey", os.path.join(root, "ocsp.key"),
                 "-ndays", "1", "-reqin", req, "-respout", resp],
                capture_output=True)
            if p.returncode != 0:
                log("openssl ocsp failed: " + p.stderr.decode(errors="replace"))
                return self.reply(500, "text/plain", p.stderr)
            with open(resp, "rb") as f:
                self.reply(200, "application/ocsp-response", f.read())

    def log_message(self, *args):
        pass


class Server(http.server.HTTPServer):
    allow_reuse_address = True


Server(("127.0.0.1", port), Handler).serve_forever()
