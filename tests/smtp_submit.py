#!/usr/bin/env python3
"""Submit one message to pecd over STARTTLS + AUTH with Python's smtplib
(an independent SMTP client for tests).

Usage: smtp_submit.py HOST PORT CAFILE USER PASSWORD TO SUBJECT
"""
import smtplib
import ssl
import sys

host, port, cafile, user, password, to, subject = sys.argv[1:]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False
msg = (
    "From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <idle.%s@python.test>\r\n\r\nhello\r\n"
    % (user, to, subject, port)
)
with smtplib.SMTP(host, int(port), timeout=30) as s:
    s.starttls(context=ctx)
    s.login(user, password)
    s.sendmail(user, [to], msg.encode())
