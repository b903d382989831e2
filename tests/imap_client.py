#!/usr/bin/env python3
"""Independent IMAP client for pecd tests: a small scenario runner on imaplib.

Usage:
    imap_client.py HOST PORT MODE USER PASSWORD SCRIPT

MODE is one of:
    tls       implicit TLS from the first byte (imaps)
    starttls  plain connection, STARTTLS before anything else
    plain     plain connection, no TLS (use the `starttls` step to upgrade)

SCRIPT holds one step per line (shell-like quoting, see shlex; backslashes are
literal so that flags read naturally: store 1 +FLAGS (\Seen)). Every step
prints exactly one JSON object on its own line:
    {"step": N, "verb": "...", "typ": "OK"|"NO"|"BAD"|"ERR", "data": [...], ...}
`data` holds the response data decoded as latin-1 (literals included), so the
caller can assert on it. A step failing does not stop the script (the point
of several tests is that the session survives a refusal); only a lost
connection does.

Steps:
    capability | noop | logout | expunge | close | unselect | namespace | check
    login                      LOGIN with USER/PASSWORD
    login_as U P               LOGIN with other credentials
    auth_plain [U P]           AUTHENTICATE PLAIN (SASL-IR off: continuation round)
    starttls                   upgrade a plain connection
    select MBOX | examine MBOX
    create MBOX | delete MBOX | subscribe MBOX | unsubscribe MBOX
    rename OLD NEW
    list REF PATTERN | lsub REF PATTERN
    status MBOX ITEMS          e.g. status INBOX "(MESSAGES UIDNEXT)"
    search CRITERIA...         SEARCH (one argument per token)
    fetch SET ITEMS...         FETCH (the remaining tokens are joined)
    store SET OP FLAGS...      e.g. store 1 +FLAGS (\Seen)
    copy SET MBOX | move SET MBOX
    uid CMD ARGS...            any UID command (FETCH, SEARCH, STORE, COPY, MOVE, EXPUNGE);
                               "ok" lists untagged OK texts (COPYUID of UID MOVE)
    append MBOX FLAGS FILE     APPEND the bytes of FILE ("" for no flags)
    save_uid UID FILE          UID FETCH BODY.PEEK[] and write the exact bytes to FILE
    raw TEXT                   send "<tag> TEXT" verbatim; typ = tagged status
    raw_literal SIZE PLUS      send "<tag> APPEND INBOX {SIZE[+]}" (+ the bytes if PLUS=1)
    idle TIMEOUT CMD...        IDLE, run CMD (argv) once idling, wait for EXISTS;
                               reports "exists" and "elapsed" (seconds)
    sleep SECONDS
"""

import imaplib
import json
import os
import shlex
import socket
import ssl
import subprocess
import sys
import time


def ssl_context():
    ctx = ssl.create_default_context()
    cafile = os.environ.get("IMAP_CAFILE")
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def text(x):
    if isinstance(x, bytes):
        return x.decode("latin-1")
    if isinstance(x, tuple):
        return [text(i) for i in x]
    if isinstance(x, list):
        return [text(i) for i in x]
    if x is None:
        return None
    return str(x)


def emit(step, verb, typ, data, **extra):
    rec = {"step": step, "verb": verb, "typ": typ, "data": text(data)}
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def read_tagged(m, tag, limit=100):
    """Read lines until the tagged response; return (status, text, untagged lines)."""
    untagged = []
    for _ in range(limit):
        line = m.readline()
        if not line:
            raise EOFError("connection closed")
        s = line.decode("latin-1").rstrip("\r\n")
        if s.startswith(tag + " "):
            parts = s.split(" ", 2)
            return parts[1], (parts[2] if len(parts) > 2 else ""), untagged
        untagged.append(s)
    raise RuntimeError("no tagged response")


def raw_step(m, line_bytes, payload=None):
    tag = m._new_tag().decode()
    m.send(tag.encode() + b" " + line_bytes + b"\r\n")
    if payload is not None:
        m.send(payload + b"\r\n")
    return read_tagged(m, tag)


def idle_step(m, timeout, argv):
    tag = m._new_tag().decode()
    m.send(tag.encode() + b" IDLE\r\n")
    line = m.readline().decode("latin-1")
    if not line.startswith("+"):
        return "NO", [line.strip()], {}
    start = time.monotonic()
    if argv:
        subprocess.run(argv, check=True)
    m.sock.settimeout(0.1)
    exists = None
    seen = []
    buf = b""
    while time.monotonic() - start < timeout and exists is None:
        try:
            chunk = m.sock.recv(4096)
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        except (socket.timeout, ssl.SSLWantReadError, TimeoutError):
            continue
        while b"\r\n" in buf:
            l, buf = buf.split(b"\r\n", 1)
            s = l.decode("latin-1")
            seen.append(s)
            if s.startswith("* ") and s.endswith(" EXISTS"):
                exists = int(s.split()[1])
    elapsed = time.monotonic() - start
    m.sock.settimeout(None)
    m.send(b"DONE\r\n")
    # The tagged OK may already be in our buffer or still on the wire.
    while True:
        while b"\r\n" in buf:
            l, buf = buf.split(b"\r\n", 1)
            s = l.decode("latin-1")
            if s.startswith(tag + " "):
                typ = s.split(" ", 2)[1]
                return typ, seen, {"exists": exists, "elapsed": elapsed}
            seen.append(s)
        chunk = m.sock.recv(4096)
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk


def run_step(m, verb, args, user, password):
    extra = {}
    if verb == "capability":
        typ, data = m.capability()
    elif verb == "noop":
        typ, data = m.noop()
    elif verb == "logout":
        typ, data = m.logout()
    elif verb == "login":
        typ, data = m.login(user, password)
    elif verb == "login_as":
        typ, data = m.login(args[0], args[1])
    elif verb == "auth_plain":
        u, p = (args[0], args[1]) if len(args) >= 2 else (user, password)
        typ, data = m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (u, p)).encode())
    elif verb == "starttls":
        typ, data = m.starttls(ssl_context=ssl_context())
    elif verb in ("select", "examine"):
        typ, data = m.select(args[0], readonly=(verb == "examine"))
        extra["uidvalidity"] = text(m.untagged_responses.get("UIDVALIDITY", [None])[-1])
    elif verb in ("create", "delete", "subscribe", "unsubscribe"):
        typ, data = getattr(m, verb)(args[0])
    elif verb == "rename":
        typ, data = m.rename(args[0], args[1])
    elif verb in ("list", "lsub"):
        ref = args[0] if args and args[0] else '""'
        typ, data = getattr(m, verb)(ref, args[1] if len(args) > 1 else "*")
    elif verb == "status":
        typ, data = m.status(args[0], " ".join(args[1:]))
    elif verb == "search":
        typ, data = m.search(None, *args)
    elif verb == "fetch":
        typ, data = m.fetch(args[0], " ".join(args[1:]))
    elif verb == "store":
        typ, data = m.store(args[0], args[1], " ".join(args[2:]))
    elif verb == "copy":
        typ, data = m.copy(args[0], args[1])
    elif verb == "move":
        typ, data = m._simple_command("MOVE", args[0], args[1])
        extra["expunge"] = text(m.untagged_responses.pop("EXPUNGE", []))
        data = [text(m.untagged_responses.pop("OK", []))]
    elif verb == "uid":
        typ, data = m.uid(*args)
        extra["ok"] = text(m.untagged_responses.pop("OK", []))
        extra["expunge"] = text(m.untagged_responses.pop("EXPUNGE", []))
    elif verb == "expunge":
        typ, data = m.expunge()
    elif verb == "close":
        typ, data = m.close()
    elif verb == "unselect":
        typ, data = m.unselect()
    elif verb == "namespace":
        typ, data = m.namespace()
    elif verb == "check":
        typ, data = m.check()
    elif verb == "append":
        with open(args[2], "rb") as f:
            body = f.read()
        typ, data = m.append(args[0], args[1] or None, None, body)
    elif verb == "save_uid":
        typ, data = m.uid("FETCH", args[0], "(BODY.PEEK[])")
        body = None
        for item in data:
            if isinstance(item, tuple):
                body = item[1]
        if typ == "OK" and body is not None:
            with open(args[1], "wb") as f:
                f.write(body)
            extra["size"] = len(body)
        else:
            typ = "NO"
        data = []
    elif verb == "raw":
        typ, msg, untagged = raw_step(m, args[0].encode("latin-1"))
        data, extra["untagged"] = [msg], untagged
    elif verb == "raw_literal":
        size, plus = int(args[0]), args[1] == "1"
        head = ("APPEND INBOX {%d%s}" % (size, "+" if plus else "")).encode()
        payload = (b"x" * size) if plus else None
        typ, msg, untagged = raw_step(m, head, payload)
        data, extra["untagged"] = [msg], untagged
    elif verb == "idle":
        typ, data, extra = idle_step(m, float(args[0]), args[1:])
    elif verb == "sleep":
        time.sleep(float(args[0]))
        typ, data = "OK", []
    else:
        typ, data = "ERR", ["unknown step " + verb]
    return typ, data, extra


def main():
    if len(sys.argv) != 7:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    host, port, mode, user, password, script = sys.argv[1:]
    port = int(port)
    if mode == "tls":
        m = imaplib.IMAP4_SSL(host, port, ssl_context=ssl_context(), timeout=30)
    else:
        m = imaplib.IMAP4(host, port, timeout=30)
        if mode == "starttls":
            m.starttls(ssl_context=ssl_context())
    emit(0, "connect", "OK", [m.welcome], capabilities=list(m.capabilities))
    steps = [s for s in script.splitlines() if s.strip()]
    for i, line in enumerate(steps, 1):
        lex = shlex.shlex(line, posix=True)
        lex.whitespace_split = True
        lex.escape = ""  # backslashes are IMAP's (\Seen), not the shell's
        argv = list(lex)
        verb, args = argv[0], argv[1:]
        try:
            typ, data, extra = run_step(m, verb, args, user, password)
        except (imaplib.IMAP4.error, imaplib.IMAP4.abort) as e:
            typ, data, extra = "ERR", [str(e)], {}
        except (EOFError, OSError) as e:
            emit(i, verb, "ERR", [str(e)], fatal=True)
            sys.exit(1)
        emit(i, verb, typ, data, **extra)


if __name__ == "__main__":
    main()
