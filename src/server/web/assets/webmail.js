// pecd webmail: the only script of the pages (CSP: script-src 'self').
// State changes go to /api/v1 with the session's CSRF token; nothing here
// ever inserts server or message text as HTML except pages this server
// rendered (and escaped) itself.
(function () {
  "use strict";
  var csrfMeta = document.querySelector('meta[name="csrf"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var page = document.body.getAttribute("data-page");

  function api(method, path, body, isJson) {
    var opts = { method: method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
    if (body !== undefined) {
      if (isJson) {
        opts.headers["Content-Type"] = "application/json";
        opts.body = JSON.stringify(body);
      } else {
        opts.body = body;
      }
    }
    return fetch(path, opts);
  }

  function showError(el, text) {
    el.textContent = text;
    el.hidden = false;
  }

  var logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", function () {
      api("DELETE", "/api/v1/session").then(function () { location.href = "/login"; });
    });
  }

  // Folders: create, rename and delete the user's own ones.
  var folderError = document.getElementById("folder-error");
  function folderDone(r, next) {
    if (r.ok) { location.href = next; return; }
    r.json().then(function (j) { showError(folderError, j.error || String(r.status)); },
      function () { showError(folderError, String(r.status)); });
  }
  var folderNew = document.getElementById("folder-new");
  if (folderNew) {
    folderNew.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var name = folderNew.elements.folder.value.trim();
      api("POST", "/api/v1/folders", { name: name }, true).then(function (r) {
        folderDone(r, "/mail/" + encodeURIComponent(name));
      });
    });
  }
  var folderRename = document.getElementById("folder-rename");
  if (folderRename) {
    folderRename.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var from = folderRename.getAttribute("data-folder");
      var name = folderRename.elements.folder.value.trim();
      api("PATCH", "/api/v1/folders/" + encodeURIComponent(from), { name: name }, true).then(function (r) {
        folderDone(r, "/mail/" + encodeURIComponent(name));
      });
    });
  }
  var folderDelete = document.getElementById("folder-delete");
  if (folderDelete) {
    folderDelete.addEventListener("click", function () {
      if (!window.confirm(folderDelete.getAttribute("data-confirm"))) { return; }
      var name = folderDelete.getAttribute("data-folder");
      api("DELETE", "/api/v1/folders/" + encodeURIComponent(name)).then(function (r) {
        folderDone(r, "/mail/INBOX");
      });
    });
  }

  // Replace the element `sel` with the same element of a fresh copy of this page.
  function refresh(sel) {
    return fetch(location.href, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { return; }
      return r.text().then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        [sel, "#folder-list"].forEach(function (s) {
          var fresh = doc.querySelector(s), old = document.querySelector(s);
          if (fresh && old) { old.replaceWith(document.importNode(fresh, true)); }
        });
      });
    });
  }

  if (page === "login") {
    var form = document.getElementById("login-form");
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { username: form.username.value, password: form.password.value };
      var totpRow = document.getElementById("totp-row");
      if (!totpRow.hidden && form.totp.value) { body.totp = form.totp.value; }
      fetch("/api/v1/session", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
      }).then(function (r) {
        return r.json().then(function (j) {
          if (r.ok) { location.href = "/mail/INBOX"; return; }
          if (j.totp_required) { totpRow.hidden = false; form.totp.focus(); }
          showError(document.getElementById("login-error"), j.error || ("HTTP " + r.status));
        });
      });
    });
  }

  if (page === "list") {
    var list = document.getElementById("list");
    var folder = list.getAttribute("data-folder");
    // New mail appears without reloading: poll the folder's UIDNEXT.
    setInterval(function () {
      fetch("/api/v1/folders/" + encodeURIComponent(folder) + "/messages?limit=1", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (j) {
          var cur = document.getElementById("list");
          if (j && cur && String(j.uidnext) !== cur.getAttribute("data-uidnext")) { refresh("#list"); }
        });
    }, 3000);
    document.addEventListener("keydown", function (ev) {
      if (ev.target.tagName === "INPUT" || ev.target.tagName === "TEXTAREA") { return; }
      if (ev.key === "/") { ev.preventDefault(); document.getElementById("q").focus(); }
      if (ev.key === "c") { location.href = "/compose"; }
    });
  }

  if (page === "message") {
    var msg = document.getElementById("message");
    var id = msg.getAttribute("data-id");
    if (msg.getAttribute("data-seen") !== "true") {
      api("POST", "/api/v1/messages/" + id + "/flags", { seen: true }, true);
    }
    msg.addEventListener("click", function (ev) {
      var b = ev.target.closest("button[data-action]");
      if (!b) { return; }
      var a = b.getAttribute("data-action");
      if (a === "flag") {
        api("POST", "/api/v1/messages/" + id + "/flags", { flagged: b.getAttribute("data-on") !== "true" }, true)
          .then(function () { location.reload(); });
      } else if (a === "unread") {
        api("POST", "/api/v1/messages/" + id + "/flags", { seen: false }, true)
          .then(function () { history.back(); });
      } else if (a === "move") {
        var to = document.getElementById("move-to").value;
        api("POST", "/api/v1/messages/" + id + "/move", { folder: to }, true)
          .then(function (r) { return r.json(); })
          .then(function (j) { if (j.id) { location.href = "/message/" + j.id; } });
      } else if (a === "delete") {
        api("DELETE", "/api/v1/messages/" + id).then(function () { location.href = "/mail/INBOX"; });
      }
    });
  }

  if (page === "compose") {
    var cf = document.getElementById("compose-form");
    cf.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var err = document.getElementById("compose-error");
      err.hidden = true;
      var send = document.getElementById("send");
      send.disabled = true;
      api("POST", "/api/v1/messages", new FormData(cf)).then(function (r) {
        return r.json().then(function (j) {
          send.disabled = false;
          if (r.status === 201) { location.href = "/sent"; return; }
          var t = j.detail || j.error || ("HTTP " + r.status);
          if (j.smtp_code) { t += " (" + j.smtp_code + ")"; }
          showError(err, t);
        });
      }, function (e) { send.disabled = false; showError(err, String(e)); });
    });
  }

  if (page === "sent") {
    // Receipts arrive over minutes: refresh the states in place.
    setInterval(function () { refresh("#sent-list"); }, 3000);
  }

  if (page === "verify") {
    var vf = document.getElementById("verify-form");
    vf.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var f = document.getElementById("eml").files[0];
      if (!f) { return; }
      fetch("/api/v1/verify", { method: "POST", credentials: "same-origin", body: f })
        .then(function (r) { return r.text().then(function (t) { return [r, t]; }); })
        .then(function (rt) {
          var out = document.getElementById("verify-out");
          var verdict = document.getElementById("verify-verdict");
          try {
            var j = JSON.parse(rt[1]);
            if (!rt[0].ok) {
              // Refused, not judged: too large, too many, busy (retry_after seconds).
              verdict.textContent = "HTTP " + rt[0].status + ": " + (j.error || "") +
                (j.retry_after ? " (" + j.retry_after + " s)" : "");
              verdict.className = "error";
              out.textContent = "";
              return;
            }
            verdict.textContent = j.ok ? "OK: " + (j.kind_label || j.kind) : "NON VALIDO / NOT VALID: " + (j.reasons || []).join("; ");
            verdict.className = j.ok ? "ok" : "error";
            out.textContent = JSON.stringify(j, null, 2);
          } catch (e) {
            verdict.textContent = "HTTP " + rt[0].status;
            out.textContent = rt[1];
          }
        });
    });
  }

  if (page === "settings") {
    // Each answer is shown in the page's language from the strings the
    // server put on the element; the API's own text only as a fallback.
    var say = function (el, text, bad) {
      el.textContent = text;
      el.className = bad ? "error" : "ok";
      el.hidden = false;
    };
    var reply = function (r) {
      return r.json().then(function (j) { return [r, j]; }, function () { return [r, {}]; });
    };
    var pf = document.getElementById("password-form");
    pf.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var msg = document.getElementById("password-msg");
      if (pf.elements["new"].value !== pf.elements.again.value) {
        say(msg, pf.getAttribute("data-mismatch"), true);
        return;
      }
      api("POST", "/api/v1/account/password",
        { current: pf.elements.current.value, "new": pf.elements["new"].value }, true)
        .then(reply).then(function (rj) {
          var r = rj[0], j = rj[1];
          if (r.status === 204) { pf.reset(); say(msg, pf.getAttribute("data-changed"), false); return; }
          var t = j.error || ("HTTP " + r.status);
          if (r.status === 403) { t = pf.getAttribute("data-wrong"); }
          if (r.status === 429) { t = pf.getAttribute("data-throttled"); }
          if (r.status === 422 && j.reason === "too_short") { t = pf.getAttribute("data-too-short"); }
          if (r.status === 422 && j.reason === "common") { t = pf.getAttribute("data-too-common"); }
          say(msg, t, true);
        });
    });

    var totp = document.getElementById("totp");
    var totpMsg = document.getElementById("totp-msg");
    var totpError = function (r, j) {
      var t = j.error || ("HTTP " + r.status);
      if (r.status === 403) { t = totp.getAttribute("data-wrong"); }
      if (r.status === 429) { t = totp.getAttribute("data-throttled"); }
      say(totpMsg, t, true);
    };
    var start = document.getElementById("totp-start");
    if (start) {
      start.addEventListener("click", function () {
        api("POST", "/api/v1/account/totp", {}, true).then(reply).then(function (rj) {
          var r = rj[0], j = rj[1];
          if (!r.ok) { totpError(r, j); return; }
          totpMsg.hidden = true;
          if (j.qr) { document.getElementById("totp-qr").src = j.qr; }
          document.getElementById("totp-secret").textContent = j.secret;
          document.getElementById("totp-uri").textContent = j.otpauth_uri;
          document.getElementById("totp-enrol").hidden = false;
          start.hidden = true;
          document.getElementById("totp-code").focus();
        });
      });
      var cf2 = document.getElementById("totp-confirm-form");
      cf2.addEventListener("submit", function (ev) {
        ev.preventDefault();
        api("POST", "/api/v1/account/totp/confirm", { code: cf2.elements.code.value.trim() }, true)
          .then(reply).then(function (rj) {
            var r = rj[0], j = rj[1];
            if (!r.ok) { totpError(r, j); return; }
            totpMsg.hidden = true;
            var ol = document.getElementById("recovery-codes");
            (j.recovery_codes || []).forEach(function (c) {
              var li = document.createElement("li");
              var code = document.createElement("code");
              code.textContent = c;
              li.appendChild(code);
              ol.appendChild(li);
            });
            document.getElementById("totp-enrol").hidden = true;
            document.getElementById("totp-recovery").hidden = false;
            document.getElementById("totp-recovery").querySelector("a").focus();
          });
      });
    }
    var off = document.getElementById("totp-off-form");
    if (off) {
      off.addEventListener("submit", function (ev) {
        ev.preventDefault();
        api("DELETE", "/api/v1/account/totp", { code: off.elements.code.value.trim() }, true)
          .then(reply).then(function (rj) {
            if (rj[0].status === 204) { location.reload(); return; }
            totpError(rj[0], rj[1]);
          });
      });
    }

    var appMsg = document.getElementById("app-msg");
    var af = document.getElementById("app-form");
    af.addEventListener("submit", function (ev) {
      ev.preventDefault();
      api("POST", "/api/v1/account/app-passwords", { label: af.elements.label.value }, true)
        .then(reply).then(function (rj) {
          var r = rj[0], j = rj[1];
          if (r.status !== 201) { say(appMsg, j.error || ("HTTP " + r.status), true); return; }
          appMsg.hidden = true;
          document.getElementById("app-password").textContent = j.password;
          document.getElementById("app-new").hidden = false;
          af.hidden = true;
          document.getElementById("app-new").querySelector("a").focus();
        });
    });
    var nf = document.getElementById("notify-form");
    var nMsg = document.getElementById("notify-msg");
    nf.addEventListener("submit", function (ev) {
      ev.preventDefault();
      api("PUT", "/api/v1/account/notify", { email: nf.elements.email.value }, true)
        .then(reply).then(function (rj) {
          var r = rj[0], j = rj[1];
          if (r.status !== 200) { say(nMsg, j.error || ("HTTP " + r.status), true); return; }
          nf.elements.email.value = j.email;
          say(nMsg, j.email ? nf.getAttribute("data-saved") + " " + j.email : nf.getAttribute("data-stopped"), false);
        });
    });
    document.addEventListener("click", function (ev) {
      var b = ev.target.closest("button[data-revoke]");
      if (!b) { return; }
      if (!window.confirm(b.getAttribute("data-confirm"))) { return; }
      api("DELETE", "/api/v1/account/app-passwords/" + encodeURIComponent(b.getAttribute("data-revoke")))
        .then(reply).then(function (rj) {
          if (rj[0].status === 204) { location.reload(); return; }
          say(appMsg, rj[1].error || ("HTTP " + rj[0].status), true);
        });
    });
  }
})();
