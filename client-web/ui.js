// The client's building blocks, shared by the chat (app.js) and the admin screens
// (admin.js): elements, labelled fields, REST calls with typed errors, one-line questions.
"use strict";

window.RenkeiUI = (t) => {
  function h(tag, props = {}, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
    return el;
  }

  // A labelled input: screen readers (and tests) find it by the label's text alone.
  let fields = 0;
  function field(label, input) {
    if (!input.id) input.id = `field-${++fields}`;
    return h("div", { class: "field" }, h("label", { for: input.id }, label), input);
  }

  function button(label, onclick, props = {}) {
    return h("button", { type: "button", onclick, ...props }, label);
  }

  class ApiError extends Error {
    constructor(status, code, message, rules = []) {
      super(message);
      this.status = status;
      this.code = code;
      this.rules = rules; // weak_password: every rule the password broke
    }
  }

  // A REST call: a JSON body, or a Blob (a file) sent as its raw bytes. With `timeoutMs`,
  // a call that gets no answer in time fails as a network error (a silent network leaves
  // a request hanging for minutes).
  async function api(method, path, body, { timeoutMs } = {}) {
    const init = { method, credentials: "same-origin", headers: {} };
    if (timeoutMs) init.signal = AbortSignal.timeout(timeoutMs);
    if (body instanceof Blob) {
      init.headers["content-type"] = "application/octet-stream";
      init.body = body;
    } else if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try { response = await fetch(path, init); } catch { throw new ApiError(0, "network", ""); }
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = data?.error ?? {};
      throw new ApiError(response.status, error.code ?? String(response.status), error.message ?? "", error.rules);
    }
    return data;
  }

  // A REST error in the user's language (the code's text, with the server's sentence for
  // the codes whose sentence names the field).
  function explain(error) {
    const code = error?.code ?? "internal";
    const known = t(`error.${code}`);
    const text = known === `error.${code}` ? t("error.generic", { code }) : known;
    return ["bad_request", "conflict"].includes(code) && error.message ? `${text} (${error.message})` : text;
  }

  // Asks for a reason (or any one line) in a dialog; resolves to the text or null.
  function ask(question, { required = true, type = "text" } = {}) {
    return new Promise((resolve) => {
      const input = h("input", { type, required });
      const form = h("form", { method: "dialog", class: "confirm" },
        h("h2", { id: "ask-question" }, question),
        field(t("ask.answer"), input),
        // OK first: Enter submits with the first button.
        h("div", { class: "actions" },
          h("button", { value: "ok", class: "primary" }, t("ask.ok")),
          h("button", { value: "cancel", formnovalidate: true }, t("ask.cancel"))));
      const dialog = h("dialog", { class: "ask", "aria-labelledby": "ask-question" }, form);
      dialog.addEventListener("close", () => {
        const value = dialog.returnValue === "ok" ? input.value.trim() : null;
        dialog.remove();
        resolve(value === "" && required ? null : value);
      });
      document.body.append(dialog);
      dialog.showModal();
      input.focus();
    });
  }

  return { h, field, button, api, explain, ask };
};
