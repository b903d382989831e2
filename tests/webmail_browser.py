#!/usr/bin/env python3
"""Browser scenario for the pecd webmail: real headless Chromium driven by
Selenium (Debian chromium + chromium-driver + python3-selenium).

Usage: webmail_browser.py CONFIG.json
CONFIG holds: alpha, beta (base URLs), alice, bob, ghost (addresses), password,
attachment (path), downloads (dir), shots (dir), xss_subject (a subject to
find in bob's inbox whose body is hostile HTML).

Prints one JSON object per check: {"check": name, "ok": bool, ...}; the Rust
test asserts on them. A failing step prints {"check": ..., "ok": false,
"error": ...} and the scenario stops.
"""

import json
import os
import sys
import time
import traceback

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
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
    o.add_experimental_option("prefs", {
        "download.default_directory": cfg["downloads"],
        "download.prompt_for_download": False,
        "intl.accept_languages": "it-IT,it",
    })
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": cfg["downloads"]})
    d.set_page_load_timeout(60)
    return d


def wait(d, secs=30):
    return WebDriverWait(d, secs, poll_frequency=0.2)


def login(d, base, user):
    d.get(base + "/login")
    d.find_element(By.ID, "username").send_keys(user)
    d.find_element(By.ID, "password").send_keys(cfg["password"])
    d.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait(d).until(EC.url_contains("/mail/INBOX"))


def shot(d, name):
    d.save_screenshot(os.path.join(cfg["shots"], name))


def main():
    alice = browser()
    bob = browser()
    try:
        # Bob watches his inbox; the new PEC must appear without a reload.
        login(bob, cfg["beta"], cfg["bob"])
        out("bob_logged_in", url=bob.current_url)
        bob.execute_script("window.__sameDocument = 'yes';")

        login(alice, cfg["alpha"], cfg["alice"])
        out("alice_logged_in")
        alice.get(cfg["alpha"] + "/compose")
        note = alice.find_element(By.ID, "bcc-note").text
        out("compose_says_no_bcc", "Bcc" in note or "Ccn" in note, note=note)
        alice.find_element(By.ID, "to").send_keys(cfg["bob"] + ", " + cfg["ghost"])
        alice.find_element(By.ID, "subject").send_keys(cfg["subject"])
        alice.find_element(By.ID, "body").send_keys("Gentile Bob,\nin allegato il contratto firmato.\n")
        alice.find_element(By.ID, "attachment").send_keys(cfg["attachment"])
        Select(alice.find_element(By.ID, "tipo_ricevuta")).select_by_value("completa")
        shot(alice, "webmail-compose.png")
        alice.find_element(By.ID, "send").click()
        wait(alice).until(EC.url_contains("/sent"))
        out("sent_page_after_send")

        # The row reaches "consegnato" on the open page, refreshed by the script.
        sel = 'tr.state-consegnato[data-address="%s"]' % cfg["bob"]
        wait(alice, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, sel)))
        sel_err = 'tr.state-errore[data-address="%s"]' % cfg["ghost"]
        wait(alice, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, sel_err)))
        row = alice.find_element(By.CSS_SELECTOR, sel).text
        out("row_consegnato", "consegnato" in row, row=row)
        shot(alice, "webmail-sent.png")

        # Evidence: one click downloads the zip.
        alice.find_element(By.CSS_SELECTOR, 'a[href$="/evidence"]').click()
        deadline = time.time() + 30
        zips = []
        while time.time() < deadline:
            zips = [f for f in os.listdir(cfg["downloads"]) if f.endswith(".zip")]
            if zips:
                break
            time.sleep(0.2)
        out("evidence_downloaded", bool(zips), files=zips)

        # Folders from the side list: create one, rename it, delete it.
        def folder_names():
            return [a.find_element(By.TAG_NAME, "span").text
                    for a in alice.find_elements(By.CSS_SELECTOR, "#folder-list a")]
        alice.get(cfg["alpha"] + "/mail/INBOX")
        out("special_folders_kept", not alice.find_elements(By.ID, "folder-rename")
            and not alice.find_elements(By.ID, "folder-delete"))
        alice.find_element(By.ID, "new-folder").send_keys("Fatture")
        alice.find_element(By.CSS_SELECTOR, "#folder-new button").click()
        wait(alice).until(EC.url_contains("/mail/Fatture"))
        field = wait(alice).until(EC.presence_of_element_located((By.ID, "rename-folder")))
        field.clear()
        field.send_keys("Fatture 2026")
        alice.find_element(By.CSS_SELECTOR, "#folder-rename button").click()
        wait(alice).until(EC.url_contains("/mail/Fatture%202026"))
        names = folder_names()
        out("folder_created_and_renamed", "Fatture 2026" in names and "Fatture" not in names,
            names=names)
        alice.find_element(By.ID, "folder-delete").click()
        alice.switch_to.alert.accept()
        wait(alice).until(EC.url_contains("/mail/INBOX"))
        names = folder_names()
        out("folder_deleted", "Fatture 2026" not in names, names=names)

        alice.get(cfg["alpha"] + "/mail/INBOX")
        wait(alice).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#rows tr")))
        shot(alice, "webmail-inbox.png")

        # Bob: the busta appeared in the open inbox, no navigation.
        xp = "//tbody[@id='rows']//a[contains(., '%s')]" % cfg["subject"]
        wait(bob, 60).until(EC.presence_of_element_located((By.XPATH, xp)))
        same = bob.execute_script("return window.__sameDocument;")
        out("new_mail_without_reload", same == "yes")
        bob.find_element(By.XPATH, xp).click()
        wait(bob).until(EC.presence_of_element_located((By.CSS_SELECTOR, "section.pec")))
        panel = bob.find_element(By.CSS_SELECTOR, "section.pec").text
        title = bob.find_element(By.TAG_NAME, "h1").text
        out("busta_shows_original_and_facts", True, title=title, panel=panel,
            certified="ok" in bob.find_element(By.CSS_SELECTOR, "section.pec").get_attribute("class"))
        shot(bob, "webmail-pec.png")

        # Hostile HTML: open it and see that nothing ran.
        bob.get(cfg["beta"] + "/mail/INBOX")
        for subj in cfg["xss_subjects"]:
            xp = "//tbody[@id='rows']//a[contains(., '%s')]" % subj
            wait(bob, 60).until(EC.presence_of_element_located((By.XPATH, xp)))
            bob.find_element(By.XPATH, xp).click()
            wait(bob).until(EC.presence_of_element_located((By.ID, "message")))
            time.sleep(1.5)
            top_title = bob.title
            top_x = bob.execute_script("return typeof window.x === 'undefined' ? null : String(window.x);")
            frames = bob.find_elements(By.CSS_SELECTOR, "iframe.body")
            inner = {}
            if frames:
                sandbox = frames[0].get_attribute("sandbox")
                bob.switch_to.frame(frames[0])
                inner = {
                    "sandbox": sandbox,
                    "title": bob.execute_script("return document.title;"),
                    "x": bob.execute_script("return typeof window.x === 'undefined' ? null : String(window.x);"),
                    "scripts": len(bob.find_elements(By.TAG_NAME, "script")),
                    "html": bob.find_element(By.TAG_NAME, "body").get_attribute("innerHTML")[:2000],
                }
                bob.switch_to.default_content()
            alerts = None
            try:
                alerts = bob.switch_to.alert.text
            except Exception:
                pass
            out("xss_inert", top_x is None and "pwned" not in top_title and alerts is None,
                subject=subj, top_title=top_title, top_x=top_x, inner=inner, alert=alerts)
            bob.back()

        # Logout: the cookie the browser had is dead on the server at once.
        cookie = alice.get_cookie("pecd_session")
        alice.find_element(By.ID, "logout").click()
        wait(alice).until(EC.url_contains("/login"))
        alice.get(cfg["alpha"] + "/mail/INBOX")
        out("logged_out", "/login" in alice.current_url, old_cookie=cookie["value"] if cookie else None,
            cookie_flags={"httpOnly": cookie.get("httpOnly"), "secure": cookie.get("secure"),
                          "sameSite": cookie.get("sameSite")} if cookie else None)
    finally:
        alice.quit()
        bob.quit()


try:
    main()
    out("done")
except Exception as e:
    out("exception", False, error=repr(e), trace=traceback.format_exc())
