/*
 * Integration Hub web widget. Embed with:
 *   <script src="https://hub.example/static/widget/widget.js" data-channel="<channel id>"
 *           data-key="<widget key>" async></script>
 * Optional: data-api (the hub's origin; default: this script's origin), data-user-id / data-user-hash /
 * data-identity-token (the site vouches for a signed-in user).
 *
 * No dependencies, no eval, no inline style on the host page: everything lives in a shadow root whose styles
 * are a constructed stylesheet (adoptedStyleSheets), so a strict Content-Security-Policy on the host works.
 * The conversation token lives in sessionStorage (one tab's session); the reply arrives as Server-Sent Events
 * read with fetch(), later messages over the push stream, reconnected with backoff and Last-Event-ID.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.__hubWidgetLoaded) return;
  window.__hubWidgetLoaded = true;
  var channel = script.getAttribute("data-channel") || "";
  var key = script.getAttribute("data-key") || "";
  var api = (script.getAttribute("data-api") || new URL(script.src, location.href).origin).replace(/\/+$/, "");
  if (!/^[0-9a-f-]{36}$/i.test(channel) || !key) return;
  var base = api + "/widget/v1/" + channel + "/conversations";
  var storeKey = "hubWidget:" + channel;

  var STRINGS = {
    en: { title: "Chat with us", open: "Open chat", close: "Close chat", input: "Your message",
          placeholder: "Type your question…", send: "Send", sources: "Sources", you: "You", bot: "Assistant", agent: "Support",
          error: "Sorry, something went wrong. Please try again.", busy: "Please wait a moment and try again." },
    de: { title: "Chatten Sie mit uns", open: "Chat öffnen", close: "Chat schließen", input: "Ihre Nachricht",
          placeholder: "Ihre Frage…", send: "Senden", sources: "Quellen", you: "Sie", bot: "Assistent", agent: "Support",
          error: "Entschuldigung, etwas ist schiefgelaufen. Bitte versuchen Sie es erneut.",
          busy: "Bitte warten Sie einen Moment und versuchen Sie es erneut." },
    fr: { title: "Discutez avec nous", open: "Ouvrir le chat", close: "Fermer le chat", input: "Votre message",
          placeholder: "Posez votre question…", send: "Envoyer", sources: "Sources", you: "Vous",
          bot: "Assistant", agent: "Assistance", error: "Désolé, une erreur est survenue. Veuillez réessayer.",
          busy: "Veuillez patienter un instant puis réessayer." },
    es: { title: "Chatea con nosotros", open: "Abrir chat", close: "Cerrar chat", input: "Tu mensaje",
          placeholder: "Escribe tu pregunta…", send: "Enviar", sources: "Fuentes", you: "Tú", bot: "Asistente", agent: "Soporte",
          error: "Lo sentimos, algo salió mal. Inténtalo de nuevo.", busy: "Espera un momento e inténtalo de nuevo." },
    ja: { title: "チャットでお問い合わせ", open: "チャットを開く", close: "チャットを閉じる", input: "メッセージ",
          placeholder: "ご質問を入力してください…", send: "送信", sources: "出典", you: "あなた", bot: "アシスタント", agent: "サポート担当",
          error: "エラーが発生しました。もう一度お試しください。", busy: "しばらくしてからもう一度お試しください。" }
  };
  var languages = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"]);
  var lang = String(languages[0] || "en").toLowerCase().split("-")[0];
  var t = STRINGS[lang] || STRINGS.en;

  var CSS = [
    ":host{all:initial}",
    ".root{position:fixed;right:20px;bottom:20px;z-index:2147483000;font:14px/1.4 system-ui,sans-serif;color:#1d1d1f}",
    ".launcher{width:56px;height:56px;border-radius:50%;border:0;background:#2557d6;color:#fff;font-size:24px;cursor:pointer;box-shadow:0 2px 8px rgba(0,0,0,.25)}",
    ".launcher:focus-visible,button:focus-visible,textarea:focus-visible,a:focus-visible{outline:3px solid #ffb300;outline-offset:2px}",
    ".panel{position:absolute;right:0;bottom:68px;width:min(360px,calc(100vw - 40px));height:min(520px,calc(100vh - 110px));display:flex;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 6px 24px rgba(0,0,0,.25);overflow:hidden}",
    ".panel[hidden]{display:none}",
    "header{display:flex;align-items:center;justify-content:space-between;padding:10px 14px;background:#2557d6;color:#fff}",
    "h2{font-size:15px;margin:0}",
    ".close{background:transparent;border:0;color:#fff;font-size:20px;cursor:pointer}",
    ".log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px}",
    ".msg{max-width:85%;padding:8px 10px;border-radius:10px;white-space:pre-wrap;word-wrap:break-word}",
    ".user{align-self:flex-end;background:#2557d6;color:#fff}",
    ".assistant{align-self:flex-start;background:#f0f2f5}",
    ".agent{align-self:flex-start;background:#e8f0e4}",
    ".who{display:block;font-size:12px;font-weight:600}",
    ".error{align-self:center;color:#b00020}",
    ".sources{margin:6px 0 0;padding-left:18px;font-size:12px}",
    ".sources a{color:#2557d6}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}",
    "form{display:flex;gap:6px;padding:10px;border-top:1px solid #e3e3e3}",
    "textarea{flex:1;resize:none;height:38px;padding:8px;border:1px solid #c4c4c4;border-radius:8px;font:inherit}",
    ".send{padding:0 14px;border:0;border-radius:8px;background:#2557d6;color:#fff;cursor:pointer}",
    ".send:disabled{opacity:.6}"
  ].join("\n");

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var name in attrs || {}) node.setAttribute(name, attrs[name]);
    if (text != null) node.textContent = text;
    return node;
  }

  // --- DOM in a shadow root --------------------------------------------------------------------------------
  var host = el("div", { "data-hub-widget": "" });
  var shadow = host.attachShadow({ mode: "open" });
  if ("adoptedStyleSheets" in shadow && typeof CSSStyleSheet === "function" && CSSStyleSheet.prototype.replaceSync) {
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    shadow.adoptedStyleSheets = [sheet];
  } else {
    shadow.appendChild(el("style", {}, CSS)); // old browsers: only where the host allows it
  }
  var root = el("div", { class: "root", lang: lang });
  var launcher = el("button", { class: "launcher", type: "button", "aria-label": t.open, "aria-expanded": "false",
                                "aria-controls": "hub-panel" }, "💬");
  var panel = el("div", { class: "panel", id: "hub-panel", role: "dialog", "aria-label": t.title, hidden: "" });
  var header = el("header");
  var title = el("h2", {}, t.title);
  var closeButton = el("button", { class: "close", type: "button", "aria-label": t.close }, "×");
  header.append(title, closeButton);
  var log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": t.title, tabindex: "0" });
  var form = el("form");
  var label = el("label", { class: "sr", for: "hub-input" }, t.input);
  var input = el("textarea", { id: "hub-input", rows: "1", placeholder: t.placeholder, "aria-label": t.input,
                               maxlength: "4000" });
  var send = el("button", { class: "send", type: "submit" }, t.send);
  form.append(label, input, send);
  panel.append(header, log, form);
  root.append(panel, launcher);
  shadow.appendChild(root);
  (document.body || document.documentElement).appendChild(host);

  // --- state ---------------------------------------------------------------------------------------------
  var seen = {};
  var lastId = 0;
  var session = load();
  var streamAbort = null;
  var streaming = false;

  function load() {
    try { return JSON.parse(sessionStorage.getItem(storeKey) || "null"); } catch (e) { return null; }
  }
  function save(value) {
    session = value;
    try {
      if (value) sessionStorage.setItem(storeKey, JSON.stringify(value)); else sessionStorage.removeItem(storeKey);
    } catch (e) { /* storage refused: this page view only */ }
  }
  function headers(extra) {
    var h = { "X-Widget-Key": key };
    if (session) h["X-Widget-Token"] = session.token;
    for (var name in extra || {}) h[name] = extra[name];
    return h;
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return String(Date.now()) + Math.random().toString(16).slice(2);
  }

  // --- rendering -----------------------------------------------------------------------------------------
  function bubble(role, text, who) {
    var node = el("div", { class: "msg " + role });
    if (who) node.appendChild(el("span", { class: "who" }, who)); // a person from support (issue 18)
    else node.appendChild(el("span", { class: "sr" }, (role === "user" ? t.you : t.bot) + ": "));
    var body = el("span", { class: "text" }, text || "");
    node.appendChild(body);
    log.appendChild(node);
    log.scrollTop = log.scrollHeight;
    return body;
  }
  function citations(body, list) {
    if (!list || !list.length) return;
    var wrap = el("div");
    wrap.appendChild(el("span", { class: "sr" }, t.sources));
    var ol = el("ol", { class: "sources", "aria-label": t.sources });
    list.forEach(function (c) {
      var href;
      try { href = new URL(c.url || "", api); } catch (e) { return; }
      if (href.protocol !== "https:" && href.protocol !== "http:") return;
      var li = el("li");
      li.appendChild(el("a", { href: href.href, target: "_blank", rel: "noopener noreferrer" }, c.title || href.href));
      ol.appendChild(li);
    });
    wrap.appendChild(ol);
    body.parentNode.appendChild(wrap);
  }
  var deferred = [];
  function show(message) {
    if (!message || seen[message.id]) return;
    if (streaming) { deferred.push(message); return; } // maybe the reply being streamed: after it, by id
    seen[message.id] = true;
    if (message.id > lastId) lastId = message.id;
    var agent = message.role === "agent";
    var role = message.role === "user" ? "user" : agent ? "agent" : "assistant";
    var body = bubble(role, message.text, agent ? message.author || t.agent : "");
    citations(body, message.citations);
  }
  function failure(text) { bubble("error", text); }

  // --- Server-Sent Events over fetch (headers, not secrets in URLs) --------------------------------------
  function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true });
        var at;
        while ((at = buffer.indexOf("\n\n")) >= 0) {
          var block = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          var event = "message", data = "", id = null;
          block.split("\n").forEach(function (line) {
            if (line.indexOf("event: ") === 0) event = line.slice(7);
            else if (line.indexOf("data: ") === 0) data += line.slice(6);
            else if (line.indexOf("id: ") === 0) id = line.slice(4);
          });
          if (data) {
            try { onEvent(event, JSON.parse(data), id); } catch (e) { /* a malformed event is skipped */ }
          }
        }
        return pump();
      });
    }
    return pump();
  }

  // --- conversation --------------------------------------------------------------------------------------
  function start() {
    if (session) return Promise.resolve(session);
    var body = { locales: Array.prototype.slice.call(languages, 0, 10) };
    ["user-id", "user-hash", "identity-token"].forEach(function (name) {
      var value = script.getAttribute("data-" + name);
      if (value) body[name.replace(/-/g, "_")] = value;
    });
    return fetch(base, { method: "POST", headers: headers({ "Content-Type": "application/json" }),
                         body: JSON.stringify(body), credentials: "omit", mode: "cors" })
      .then(function (r) {
        if (!r.ok) throw new Error(String(r.status));
        return r.json();
      })
      .then(function (data) {
        save({ id: data.conversation_id, token: data.token, locale: data.locale });
        connect();
        return session;
      });
  }

  function ask(text) {
    streaming = true;
    send.disabled = true;
    bubble("user", text);
    var idempotencyKey = uuid();
    var attempt = function (retried) {
      return start().then(function () {
        return fetch(base + "/" + session.id + "/messages", {
          method: "POST", credentials: "omit", mode: "cors",
          headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream",
                             "Idempotency-Key": idempotencyKey }),
          body: JSON.stringify({ text: text })
        });
      }).then(function (r) {
        if ((r.status === 404 || r.status === 401) && !retried) { save(null); return attempt(true); }
        if (r.status === 429 || r.status === 503) throw new Error("busy");
        if (!r.ok) throw new Error(String(r.status));
        var body = null;
        return readEvents(r, function (event, data) {
          if (event === "start") {
            seen[data.message_id] = true;
            if (data.message_id > lastId) lastId = data.message_id;
          } else if (event === "delta") {
            // The bubble opens with the first text: a handed-off conversation's turn has none (agents answer
            // later, by push), and must not leave an empty bubble.
            if (!body) body = bubble("assistant", "");
            body.textContent += data.text;
            log.scrollTop = log.scrollHeight;
          } else if (event === "citations" && body) {
            citations(body, data.citations);
          }
        });
      });
    };
    return attempt(false).catch(function (e) {
      failure(e && e.message === "busy" ? t.busy : t.error);
    }).then(function () {
      streaming = false;
      send.disabled = false;
      deferred.splice(0).forEach(show);
    });
  }

  // --- push stream ---------------------------------------------------------------------------------------
  var backoff = 1000;
  function connect() {
    if (!session || streamAbort) return;
    var controller = new AbortController();
    streamAbort = controller;
    var retryMs = 1000;
    fetch(base + "/" + session.id + "/stream", {
      headers: headers(lastId ? { "Last-Event-ID": String(lastId) } : {}), credentials: "omit", mode: "cors",
      signal: controller.signal
    }).then(function (r) {
      if (r.status === 404 || r.status === 401) { save(null); throw new Error("gone"); }
      if (!r.ok) throw new Error(String(r.status));
      backoff = 1000;
      return readEvents(r, function (event, data) {
        if (event === "message") show(data);
      });
    }).then(function () {
      streamAbort = null;
      setTimeout(connect, retryMs); // the server closes every stream after a while: reconnect at once
    }, function (e) {
      streamAbort = null;
      if (e && e.message === "gone") return;
      var wait = backoff + Math.random() * 500;
      backoff = Math.min(backoff * 2, 30000);
      setTimeout(connect, wait);
    });
  }

  // --- interaction ---------------------------------------------------------------------------------------
  function open() {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", t.close);
    input.focus();
    if (session) connect();
  }
  function close() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", t.open);
    launcher.focus();
  }
  launcher.addEventListener("click", function () { if (panel.hidden) open(); else close(); });
  closeButton.addEventListener("click", close);
  root.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !panel.hidden) { event.preventDefault(); close(); }
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || streaming) return;
    input.value = "";
    ask(text);
  });
  if (session) { // a reload of the tab: the conversation so far, then the push stream from there
    fetch(base + "/" + session.id + "/messages?after=0", { headers: headers(), credentials: "omit", mode: "cors" })
      .then(function (r) {
        if (r.status === 404 || r.status === 401) { save(null); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (data) { (data && data.messages || []).forEach(show); })
      .catch(function () { /* the stream catches up later */ })
      .then(connect);
  }
})();
