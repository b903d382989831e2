#!/usr/bin/env python3
"""Independent POP3 client for pecd tests: a small scenario runner on poplib.

Usage:
    pop3_client.py HOST PORT MODE SCRIPT

MODE is one of:
    tls       implicit TLS from the first byte (POP3_SSL, pop3s)
    plain     plain connection (use the `stls` step to upgrade)

The CA to verify the server with is in $POP3_CAFILE (hostname checked).

SCRIPT holds one step per line (shlex quoting). Every step prints exactly one
JSON object on its own line:
    {"step": N, "verb": "...", "ok": true|false, "resp": "...", ...}
`resp` is the server's status line (or the error text poplib raised); list
steps add `lines`. A step failing does not stop the script; a lost
connection does (its record says so).

Steps:
    capa                      CAPA; "caps" = {name: [args]}
    stls                      STLS and the TLS handshake
    user U | pass P           USER / PASS
    auth_plain U P            AUTH PLAIN with an initial response
    stat | noop | rset | quit
    list [N] | uidl [N]       "lines" = the listing (or the one-line answer)
    retr N FILE               RETR; the message (lines joined by CRLF, a
                              final CRLF added) written to FILE; "octets"
    top N L                   TOP; "lines"
    dele N
    raw TEXT                  one command line sent verbatim
    rawbytes N                a line of N 'A's without waiting for a reply
    drop                      close the socket without QUIT
    wait_file PATH SECONDS    wait until PATH exists (ok false after SECONDS)
"""

import json
import os
import poplib
import shlex
import ssl
import sys
import time


def ssl_context():
    ctx = ssl.create_default_context()
    cafile = os.environ.get("POP3_CAFILE")
    if not cafile:
        sys.exit("POP3_CAFILE is not set")
    ctx.load_verify_locations(cafile)
    return ctx


def text(x):
    if isinstance(x, bytes):
        return x.decode("latin-1")
    if isinstance(x, list):
        return [text(i) for i in x]
    return x


def main():
    host, port, mode, script = sys.argv[1:5]
    port = int(port)
    ctx = ssl_context()
    if mode == "tls":
        c = poplib.POP3_SSL(host, port, context=ctx, timeout=30)
    else:
        c = poplib.POP3(host, port, timeout=30)
    print(json.dumps({"step": 0, "verb": "greeting", "ok": True, "resp": text(c.getwelcome())}), flush=True)
    for n, line in enumerate(l for l in script.splitlines() if l.strip()):
        n += 1
        args = shlex.split(line, posix=True)
        verb, args = args[0], args[1:]
        rec = {"step": n, "verb": verb, "ok": True}
        try:
            if verb == "capa":
                rec["caps"] = c.capa()
                rec["resp"] = "+OK"
            elif verb == "stls":
                rec["resp"] = text(c.stls(context=ctx))
            elif verb == "user":
                rec["resp"] = text(c.user(args[0]))
            elif verb == "pass":
                rec["resp"] = text(c.pass_(args[0]))
            elif verb == "auth_plain":
                import base64
                tok = base64.b64encode(b"\0" + args[0].encode() + b"\0" + args[1].encode()).decode()
                rec["resp"] = text(c._shortcmd("AUTH PLAIN " + tok))
            elif verb == "stat":
                count, size = c.stat()
                rec["resp"] = "+OK"
                rec["count"], rec["size"] = count, size
            elif verb in ("noop", "rset", "quit"):
                rec["resp"] = text(getattr(c, verb)())
            elif verb in ("list", "uidl"):
                r = getattr(c, verb)(*args)
                if isinstance(r, tuple):
                    rec["resp"], rec["lines"] = text(r[0]), text(r[1])
                else:
                    rec["resp"] = text(r)
            elif verb == "retr":
                resp, lines, octets = c.retr(args[0])
                data = b"\r\n".join(lines) + b"\r\n"
                with open(args[1], "wb") as f:
                    f.write(data)
                rec["resp"], rec["octets"] = text(resp), octets
            elif verb == "top":
                resp, lines, _ = c.top(args[0], int(args[1]))
                rec["resp"], rec["lines"] = text(resp), text(lines)
            elif verb == "dele":
                rec["resp"] = text(c.dele(args[0]))
            elif verb == "raw":
                rec["resp"] = text(c._shortcmd(args[0]))
            elif verb == "rawbytes":
                c.sock.sendall(b"A" * int(args[0]) + b"\r\n")
                rec["resp"] = text(c._getresp())
            elif verb == "drop":
                c.sock.close()
                rec["resp"] = "dropped"
            elif verb == "wait_file":
                deadline = time.monotonic() + float(args[1])
                while not os.path.exists(args[0]) and time.monotonic() < deadline:
                    time.sleep(0.05)
                rec["ok"] = os.path.exists(args[0])
                rec["resp"] = "waited"
            else:
                raise SystemExit("unknown step " + verb)
        except poplib.error_proto as e:
            rec["ok"] = False
            rec["resp"] = text(e.args[0]) if e.args else str(e)
        except (OSError, EOFError) as e:
            rec["ok"] = False
            rec["resp"] = "connection lost: %r" % (e,)
            print(json.dumps(rec), flush=True)
            return
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
