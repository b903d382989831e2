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
})();
