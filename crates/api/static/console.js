// Gatehouse console: the one script of the web console (no libraries).
//
// Pages are server-rendered and read without this script. What it adds:
// - forms and buttons marked `data-api` are sent to the REST API as JSON with
//   the session cookie; the API's own refusals are shown beside them;
// - the playground's answer streams in as the model writes it;
// - passkey sign-in and registration (WebAuthn);
// - copy buttons and sign-out.
(function () {
  "use strict";

  var base = document.body.getAttribute("data-base") || "";

  // ---- talking to the API -------------------------------------------------

  function call(method, url, body) {
    var init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      var type = response.headers.get("content-type") || "";
      var read = type.indexOf("json") >= 0 ? response.json() : response.text().then(function () { return {}; });
      return read.then(function (data) {
        if (!response.ok) {
          var message = data && data.error && data.error.message ? data.error.message : "The request failed (" + response.status + ").";
          var error = new Error(message);
          error.status = response.status;
          throw error;
        }
        return data || {};
      });
    });
  }

  function setPath(target, path, value) {
    var parts = path.split(".");
    var at = target;
    for (var i = 0; i < parts.length - 1; i++) {
      if (typeof at[parts[i]] !== "object" || at[parts[i]] === null) at[parts[i]] = {};
      at = at[parts[i]];
    }
    at[parts[parts.length - 1]] = value;
  }

  // The JSON body a form describes, and the values its `{path.x}` URL takes.
  function formBody(form) {
    var body = {};
    var path = {};
    var sets = {};
    var filled = {};
    Array.prototype.forEach.call(form.elements, function (field) {
      if (!field.name || field.disabled || field.type === "submit" || field.type === "button") return;
      filled[field.name] = field.value !== "";
    });
    Array.prototype.forEach.call(form.elements, function (field) {
      var name = field.name;
      if (!name || field.disabled || field.type === "submit" || field.type === "button") return;
      var type = field.getAttribute("data-type");
      var value = field.value;
      var needs = field.getAttribute("data-with");
      if (needs && !filled[needs]) return;
      if (name.indexOf("path.") === 0) { path[name] = value; return; }
      if (type === "set") {
        if (!sets[name]) sets[name] = [];
        if (field.type !== "checkbox" || field.checked) sets[name].push(value);
        return;
      }
      if (type === "bool") { setPath(body, name, field.checked); return; }
      if (value === "") {
        if (field.getAttribute("data-empty") === "null") setPath(body, name, null);
        return;
      }
      if (type === "number") value = Number(value);
      else if (type === "list") value = value.split(",").map(function (s) { return s.trim(); }).filter(Boolean);
      else if (type === "datetime") value = new Date(value).toISOString();
      setPath(body, name, value);
    });
    Object.keys(sets).forEach(function (name) { setPath(body, name, sets[name]); });
    return { body: body, path: path };
  }

  // `{name}` in a template, from `values`.
  function fill(template, values) {
    return template.replace(/\{([a-z_.]+)\}/g, function (all, name) {
      return values[name] !== undefined ? encodeURIComponent(values[name]).replace(/%2F/g, "/") : all;
    });
  }

  function errorSlot(element) {
    var scope = element.closest("form") || element.closest("td, section, main") || document;
    return scope.querySelector("[data-error]") || document.querySelector("[data-page-error]");
  }

  function showError(element, message) {
    var slot = errorSlot(element);
    if (!slot) { window.alert(message); return; }
    slot.textContent = message;
    slot.hidden = false;
    // The page's own slot is at the top: bring it into view.
    if (slot.hasAttribute("data-page-error")) slot.scrollIntoView({ block: "nearest" });
  }

  function clearError(element) {
    var slot = errorSlot(element);
    if (slot) slot.textContent = "";
  }

  function reveal(selector, scope) {
    var element = (scope || document).querySelector(selector) || document.querySelector(selector);
    if (element) element.hidden = false;
    return element;
  }

  // What to do once the API said yes.
  function done(element, data, sent) {
    var how = element.getAttribute("data-done") || "reload";
    var next = element.getAttribute("data-next") || base + "/";
    if (how === "go") { window.location.assign(fill(next, data)); return; }
    if (how === "signed-in") {
      if (data.mfa_required) {
        element.hidden = true;
        var second = document.getElementById("second-factor");
        second.querySelector("[name=mfa_token]").value = data.mfa_token;
        second.hidden = false;
        second.querySelector("[name=code]").focus();
        return;
      }
      window.location.assign(next);
      return;
    }
    if (how === "registered") {
      call("POST", "/api/v1/auth/login", { login: sent.email, password: sent.password, mode: "session" })
        .then(function () { window.location.assign(next); })
        .catch(function () { window.location.assign(base + "/sign-in"); });
      return;
    }
    if (how === "message") {
      var slot = (element.closest("form") || document).querySelector("[data-message]") || document.querySelector("[data-page-message]");
      if (slot) {
        if (data.added) slot.textContent = "Synced: " + data.added.length + " added, " + data.updated.length + " updated, " + data.unchanged + " unchanged. Reload to see them.";
        slot.hidden = false;
      }
      return;
    }
    if (how === "secret") {
      var field = element.getAttribute("data-field");
      var box = reveal("[data-secret-box]");
      var secret = document.querySelector("[data-secret]");
      if (secret) secret.textContent = data[field] || "";
      if (box) { box.scrollIntoView(); box.setAttribute("tabindex", "-1"); box.focus(); }
      if (element.tagName === "FORM") element.reset();
      return;
    }
    if (how === "totp") {
      var panel = reveal("[data-totp]");
      panel.querySelector("[data-totp-secret]").textContent = data.secret;
      panel.querySelector("[data-totp-qr]").src = "data:image/svg+xml;base64," + btoa(data.qr_svg);
      element.hidden = true;
      panel.querySelector("[name=code]").focus();
      return;
    }
    if (how === "recovery") {
      document.querySelector("[data-totp]").hidden = true;
      reveal("[data-recovery]");
      document.querySelector("[data-recovery-codes]").textContent = data.recovery_codes.join("\n");
      return;
    }
    window.location.reload();
  }

  function busy(element, on) {
    var button = element.tagName === "FORM" ? element.querySelector("[type=submit]") : element;
    if (button) { button.disabled = on; button.setAttribute("aria-busy", on ? "true" : "false"); }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.hasAttribute("data-api")) {
      event.preventDefault();
      var message = form.getAttribute("data-confirm");
      if (message && !window.confirm(message)) return;
      var parts = formBody(form);
      var url = fill(form.getAttribute("data-api"), parts.path);
      clearError(form);
      busy(form, true);
      call(form.getAttribute("data-method") || "POST", url, parts.body)
        .then(function (data) { busy(form, false); done(form, data, parts.body); })
        .catch(function (error) { busy(form, false); showError(form, error.message); });
    } else if (form.hasAttribute("data-send")) {
      event.preventDefault();
      send(form);
    } else if (form.hasAttribute("data-passkey-register")) {
      event.preventDefault();
      registerPasskey(form);
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button) return;
    if (button.hasAttribute("data-api") && button.type === "button") {
      var message = button.getAttribute("data-confirm");
      if (message && !window.confirm(message)) return;
      var raw = button.getAttribute("data-body");
      clearError(button);
      busy(button, true);
      call(button.getAttribute("data-method") || "POST", button.getAttribute("data-api"), raw ? JSON.parse(raw) : undefined)
        .then(function (data) { busy(button, false); done(button, data, {}); })
        .catch(function (error) { busy(button, false); showError(button, error.message); });
    } else if (button.hasAttribute("data-copy")) {
      var source = document.querySelector(button.getAttribute("data-copy"));
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent).then(function () {
          button.textContent = "Copied";
        }, function () { button.textContent = "Select and copy"; });
      }
    } else if (button.hasAttribute("data-sign-out")) {
      call("POST", "/api/v1/auth/logout").then(
        function () { window.location.assign(base + "/sign-in"); },
        function () { window.location.assign(base + "/sign-in"); });
    } else if (button.hasAttribute("data-passkey-sign-in")) {
      signInWithPasskey(button);
    }
  });

  // ---- the playground -----------------------------------------------------

  function messageItem(role, text) {
    var item = document.createElement("li");
    item.className = "message " + role;
    var label = document.createElement("span");
    label.className = "role";
    label.textContent = role;
    var content = document.createElement("div");
    content.className = "content";
    content.textContent = text;
    item.appendChild(label);
    item.appendChild(content);
    return item;
  }

  function send(form) {
    var chat = form.closest("[data-chat]").getAttribute("data-chat");
    var list = document.querySelector("[data-messages]");
    var box = form.querySelector("[name=content]");
    var text = box.value;
    if (!text.trim()) return;
    clearError(form);
    busy(form, true);
    fetch(chat + "/messages", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ content: text })
    }).then(function (response) {
      if (!response.ok) {
        return response.json().then(function (data) {
          throw new Error(data && data.error ? data.error.message : "The model could not be reached.");
        });
      }
      box.value = "";
      list.appendChild(messageItem("user", text));
      var answer = messageItem("assistant", "");
      answer.setAttribute("aria-busy", "true");
      list.appendChild(answer);
      var content = answer.querySelector(".content");
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var pending = "";
      var event = "";
      function line(raw) {
        if (raw.indexOf("event:") === 0) { event = raw.slice(6).trim(); return; }
        if (raw === "") { event = ""; return; }
        if (raw.indexOf("data:") !== 0) return;
        var payload = raw.slice(5).trim();
        if (payload === "[DONE]" || event) return;
        try {
          var chunk = JSON.parse(payload);
          if (chunk.error) { content.textContent += "\n[" + (chunk.error.message || "error") + "]"; return; }
          var choice = chunk.choices && chunk.choices[0];
          if (choice && choice.delta && choice.delta.content) content.textContent += choice.delta.content;
        } catch (e) { /* not a chunk */ }
      }
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) {
            if (pending) line(pending);
            answer.setAttribute("aria-busy", "false");
            answer.setAttribute("data-done", "true");
            return;
          }
          pending += decoder.decode(step.value, { stream: true });
          var lines = pending.split("\n");
          pending = lines.pop();
          lines.forEach(function (l) { line(l.replace(/\r$/, "")); });
          return pump();
        });
      }
      return pump();
    }).then(function () { busy(form, false); box.focus(); })
      .catch(function (error) { busy(form, false); showError(form, error.message); });
  }

  // ---- passkeys -------------------------------------------------------------

  function fromBase64url(text) {
    var padded = text.replace(/-/g, "+").replace(/_/g, "/");
    while (padded.length % 4) padded += "=";
    var raw = atob(padded);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function decodeOptions(options) {
    var key = options.publicKey;
    key.challenge = fromBase64url(key.challenge);
    if (key.user && typeof key.user.id === "string") key.user.id = fromBase64url(key.user.id);
    ["excludeCredentials", "allowCredentials"].forEach(function (list) {
      (key[list] || []).forEach(function (c) { c.id = fromBase64url(c.id); });
    });
    return options;
  }

  function encodeCredential(credential) {
    var response = credential.response;
    var out = { id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type, extensions: {}, response: {} };
    ["attestationObject", "clientDataJSON", "authenticatorData", "signature", "userHandle"].forEach(function (name) {
      if (response[name]) out.response[name] = toBase64url(response[name]);
    });
    return out;
  }

  function signInWithPasskey(button) {
    var slot = document.querySelector("[data-passkey-error]");
    if (slot) slot.textContent = "";
    var next = button.getAttribute("data-next") || base + "/";
    if (!window.PublicKeyCredential) {
      if (slot) slot.textContent = "This browser does not support passkeys.";
      return;
    }
    call("POST", "/api/v1/auth/passkeys/login/start", { mode: "session" }).then(function (ceremony) {
      return navigator.credentials.get(decodeOptions(ceremony.options)).then(function (credential) {
        return call("POST", "/api/v1/auth/passkeys/login/finish", {
          challenge_id: ceremony.challenge_id,
          credential: encodeCredential(credential)
        });
      });
    }).then(function () { window.location.assign(next); })
      .catch(function (error) { if (slot) slot.textContent = error.message || "The passkey did not sign you in."; });
  }

  function registerPasskey(form) {
    var name = form.querySelector("[name=name]").value;
    var password = form.querySelector("[name=password]");
    clearError(form);
    busy(form, true);
    var reauth = password ? { password: password.value } : {};
    call("POST", "/api/v1/auth/passkeys/register/start", reauth).then(function (ceremony) {
      return navigator.credentials.create(decodeOptions(ceremony.options)).then(function (credential) {
        return call("POST", "/api/v1/auth/passkeys/register/finish", {
          challenge_id: ceremony.challenge_id,
          name: name,
          credential: encodeCredential(credential)
        });
      });
    }).then(function () { window.location.reload(); })
      .catch(function (error) { busy(form, false); showError(form, error.message || "The passkey was not added."); });
  }
})();
