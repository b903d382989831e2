#!/usr/bin/env python3
"""Browser scenario for the webmail's settings page (issue 24): real
headless Chromium driven by Selenium, as tests/webmail_browser.py.

Usage: settings_browser.py CONFIG.json
CONFIG holds: base (URL), user, password, new_password, shots (dir).

Prints one JSON object per check: {"check": name, "ok": bool, ...}; the Rust
test (tests/account.rs) asserts on them. A failing step prints
{"check": "error", "ok": false, "error": ...} and the scenario stops.
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import time
import traceback

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from selenium.webdriver.support import expected_conditions as EC

cfg = json.load(open(sys.argv[1]))


def out(check, ok=True, **kw):
    kw.update({"check": check, "ok": ok})
    print(json.dumps(kw), flush=True)


def browser():
    o = webdriver.ChromeOptions()
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900", "--ignore-certificate-errors", "--lang=it-IT"]:
        o.add_argument(a)
    o.binary_location = "/usr/bin/chromium"
    o.add_experimental_option("prefs", {"intl.accept_languages": "it-IT,it"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_page_load_timeout(60)
    return d


def wait(d, secs=30):
    return WebDriverWait(d, secs, poll_frequency=0.2)


def totp_now(b32):
    """RFC 6238 (SHA-1, 6 digits, 30 s): the code an authenticator app shows."""
    key = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    h = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
    o = h[-1] & 15
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


# Every visible form control of the page, and those without a label.
UNLABELLED = """
return Array.from(document.querySelectorAll('input, select, textarea, button'))
  .filter(e => e.offsetParent !== null && e.type !== 'hidden')
  .filter(e => e.tagName === 'BUTTON'
      ? !(e.textContent.trim() || e.getAttribute('aria-label'))
      : !((e.labels && e.labels.length) || e.getAttribute('aria-label')))
  .map(e => e.outerHTML);
"""
OVERFLOW = "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"


def sizes(d, name):
    """Labels and horizontal overflow at desktop and phone size, with a
    screenshot of each."""
    for w, h, tag in [(1280, 900, "desktop"), (390, 844, "phone")]:
        d.set_window_size(w, h)
        time.sleep(0.3)
        d.save_screenshot(os.path.join(cfg["shots"], "webmail-%s-%s.png" % (name, tag)))
        missing = d.execute_script(UNLABELLED)
        over = d.execute_script(OVERFLOW)
        out("%s_%s" % (name, tag), not missing and over <= 0, unlabelled=missing, overflow=over)
    d.set_window_size(1280, 900)


def main():
    d = browser()
    base = cfg["base"]
    try:
        d.get(base + "/login")
        d.find_element(By.ID, "username").send_keys(cfg["user"])
        d.find_element(By.ID, "password").send_keys(cfg["password"])
        d.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
        wait(d).until(EC.url_contains("/mail/INBOX"))
        link = d.find_element(By.CSS_SELECTOR, 'header nav a[href="/settings"]')
        out("menu_link", link.text == "Impostazioni", text=link.text)
        link.click()
        wait(d).until(EC.url_contains("/settings"))
        out("settings_page", d.find_element(By.TAG_NAME, "h1").text == "Impostazioni")

        # An app password: shown once.
        d.find_element(By.ID, "app-label").send_keys("Thunderbird")
        d.find_element(By.CSS_SELECTOR, "#app-form button[type=submit]").click()
        wait(d).until(EC.visibility_of_element_located((By.ID, "app-new")))
        app = d.find_element(By.ID, "app-password").text
        out("app_password_shown", len(app) == 20, password=app)
        d.find_element(By.CSS_SELECTOR, "#app-new a").click()
        wait(d).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#app-list tr[data-id]")))
        row = d.find_element(By.CSS_SELECTOR, "#app-list tr[data-id]").text
        out("app_password_listed", "Thunderbird" in row and app not in d.page_source, row=row)

        # The second factor: QR code and key, a code from the key, the
        # recovery codes shown once.
        d.find_element(By.ID, "totp-start").click()
        wait(d).until(EC.visibility_of_element_located((By.ID, "totp-enrol")))
        qr = d.find_element(By.ID, "totp-qr")
        src = qr.get_attribute("src") or ""
        loaded = d.execute_script("return arguments[0].complete && arguments[0].naturalWidth;", qr)
        out("qr_shown", src.startswith("data:image/svg+xml;base64,") and bool(loaded), width=loaded)
        sizes(d, "settings-enrol")
        secret = d.find_element(By.ID, "totp-secret").text.strip()
        d.find_element(By.ID, "totp-code").send_keys(totp_now(secret))
        d.find_element(By.CSS_SELECTOR, "#totp-confirm-form button[type=submit]").click()
        wait(d).until(EC.visibility_of_element_located((By.ID, "totp-recovery")))
        codes = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#recovery-codes li")]
        out("recovery_codes_shown", len(codes) == 10, codes=codes)
        d.find_element(By.CSS_SELECTOR, "#totp-recovery a").click()
        wait(d).until(EC.presence_of_element_located((By.ID, "totp-off-form")))
        out("totp_on", "Attiva" in d.find_element(By.ID, "totp-state").text)

        # The password: a mismatch and a weak one are said in Italian, then
        # a good one.
        msg = d.find_element(By.ID, "password-msg")
        def change(current, new, again):
            for i, v in [("password-current", current), ("password-new", new), ("password-again", again)]:
                e = d.find_element(By.ID, i)
                e.clear()
                e.send_keys(v)
            d.find_element(By.CSS_SELECTOR, "#password-form button[type=submit]").click()
        change(cfg["password"], "x", "y")
        wait(d).until(lambda _: msg.is_displayed() and "coincidono" in msg.text)
        change(cfg["password"], "Password123", "Password123")
        wait(d).until(lambda _: "comuni" in msg.text)
        out("weak_password_said", True, text=msg.text)
        change(cfg["password"], cfg["new_password"], cfg["new_password"])
        wait(d).until(lambda _: "cambiata" in msg.text)
        out("password_changed", True, text=msg.text)
        sizes(d, "settings")

        # The new-PEC notice: a PEC address is refused in words, an
        # ordinary one is saved and said.
        nmsg = d.find_element(By.ID, "notify-msg")
        def notify(addr):
            e = d.find_element(By.ID, "notify-email")
            e.clear()
            e.send_keys(addr)
            d.find_element(By.CSS_SELECTOR, "#notify-form button[type=submit]").click()
        notify(cfg["user"])
        wait(d).until(lambda _: nmsg.is_displayed() and "PEC address" in nmsg.text)
        notify("Avvisi@Plain.test")
        wait(d).until(lambda _: "avvisi@plain.test" in nmsg.text)
        out("notice_address_saved", d.find_element(By.ID, "notify-email").get_attribute("value")
            == "avvisi@plain.test", text=nmsg.text)

        # Revoking the app password.
        d.find_element(By.CSS_SELECTOR, "button[data-revoke]").click()
        d.switch_to.alert.accept()
        wait(d).until(lambda _: not d.find_elements(By.CSS_SELECTOR, "button[data-revoke]"))
        out("app_password_revoked")
    except Exception as e:  # noqa: BLE001 - every failure is reported to the Rust test
        out("error", False, error="%s: %s" % (type(e).__name__, e), trace=traceback.format_exc(),
            url=d.current_url)
    finally:
        d.quit()


main()
