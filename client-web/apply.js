// The public application form of a facility (様式1): no login. It checks what the server
// checks (required fields, lengths, e-mail addresses, 1 to 20 admins each with their own
// address, at most 500 roster lines, the pledges) before sending, and shows a refusal of
// the server next to the field it names (`admins[1].email …`).
"use strict";

(() => {
  const messages = window.RENKEI_MESSAGES;
  let lang = localStorage.getItem("renkei.lang") || "ja";
  const t = (key, params = {}) => ((messages[lang] ?? messages.ja)[key] ?? messages.ja[key] ?? key)
    .replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
  const $ = (id) => document.getElementById(id);

  // The server's limits (server/src/facility.rs).
  const MAX_ADMINS = 20;
  const MAX_ROSTER = 500;
  const KINDS = ["hospital", "clinic", "dental_clinic", "pharmacy", "visiting_nurse_station",
    "care_management_office", "home_help_office", "day_service", "other"];
  const PROFESSIONS = ["doctor", "dentist", "nurse", "pharmacist", "physical_therapist",
    "occupational_therapist", "care_manager", "helper", "dietitian", "medical_social_worker"];

  // The fields of one row: its name in the API, the label's key, limits, and the input.
  const ROWS = {
    admins: [
      { name: "name", label: "apply.person_name", max: 100, required: true, autocomplete: "name" },
      { name: "kana", label: "apply.kana", max: 100 },
      { name: "email", label: "apply.email", kind: "email", required: true },
      { name: "profession", label: "apply.profession", kind: "profession", required: true },
    ],
    roster: [
      { name: "name", label: "apply.person_name", max: 100, required: true },
      { name: "profession", label: "apply.profession", kind: "profession", required: true },
      { name: "email", label: "apply.email_optional", kind: "email" },
    ],
  };

  function h(tag, props = {}, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === false) continue;
      if (key === "dataset") Object.assign(el.dataset, value);
      else if (key === "text") el.textContent = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    el.append(...children);
    return el;
  }

  function professionSelect() {
    const select = h("select", {}, h("option", { value: "", "data-i18n": "apply.choose" }));
    for (const p of PROFESSIONS) select.append(h("option", { value: p, "data-i18n": `profession.${p}` }));
    return select;
  }

  function addRow(list, values = {}) {
    const li = h("li", { class: "apply-row" }, h("h3", { class: "apply-row-title" }));
    for (const spec of ROWS[list]) {
      const input = spec.kind === "profession" ? professionSelect()
        : h("input", { type: spec.kind === "email" ? "email" : "text", autocomplete: spec.autocomplete ?? "off" });
      input.dataset.field = spec.name;
      if (spec.max) input.dataset.max = spec.max;
      if (spec.kind === "email") input.dataset.kind = "email";
      if (spec.required) input.required = true;
      input.value = values[spec.name] ?? "";
      li.append(h("div", { class: "field" }, h("label", { "data-i18n": spec.label }), input, h("p", { class: "error" })));
    }
    const remove = h("button", { type: "button", class: "link-button", "data-i18n": "apply.remove" });
    remove.addEventListener("click", () => { li.remove(); renumber(); render(); });
    li.append(remove);
    $(`apply-${list}`).append(li);
    renumber();
    render();
    return li;
  }

  // Rows are named by their place (`admins[0].email`), as the server names them.
  function renumber() {
    for (const list of ["admins", "roster"]) {
      const rows = [...$(`apply-${list}`).children];
      rows.forEach((li, i) => {
        for (const field of li.querySelectorAll(".field")) {
          const input = field.querySelector("input, select");
          const path = `${list}[${i}].${input.dataset.field}`;
          input.id = `apply-${list}-${i}-${input.dataset.field}`;
          input.dataset.path = path;
          field.querySelector("label").htmlFor = input.id;
          field.querySelector(".error").dataset.errorFor = path;
        }
        // Each admin's own button; the last admin cannot be removed (at least one).
        li.querySelector("button").hidden = list === "admins" && rows.length === 1;
      });
    }
    $("apply-add-admin").disabled = $("apply-admins").children.length >= MAX_ADMINS;
    $("apply-add-staff").disabled = $("apply-roster").children.length >= MAX_ROSTER;
  }

  // Renders in the chosen language once its catalogue is here (Japanese if it cannot come).
  function showLanguage() {
    window.RenkeiLater.language(lang).catch(() => {}).finally(render);
  }

  function render() {
    document.documentElement.lang = lang;
    document.title = `${t("apply.title")} — ${t("app.title")} Renkei`;
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll(".apply-row-title").forEach((el) => {
      const li = el.closest("li");
      const list = li.parentElement.id === "apply-admins" ? "admins" : "roster";
      el.textContent = t(list === "admins" ? "apply.admin_n" : "apply.staff_n", { n: [...li.parentElement.children].indexOf(li) + 1 });
    });
    // Remove buttons say whose row they remove.
    document.querySelectorAll(".apply-row > button").forEach((button) => {
      button.setAttribute("aria-label", `${t("apply.remove")}: ${button.closest("li").querySelector(".apply-row-title").textContent}`);
    });
    for (const el of document.querySelectorAll("[data-error-for]")) {
      if (el.dataset.key) el.textContent = t(el.dataset.key, JSON.parse(el.dataset.params || "{}"));
    }
  }

  // ---- checks: the server's, field by field -------------------------------------------
  const chars = (s) => [...s.trim()].length;

  // As the server's `input::email`: something@domain.with.dot, no spaces, at most 254.
  function isEmail(value) {
    const v = value.trim().toLowerCase();
    const at = v.indexOf("@");
    if (at <= 0 || v.length > 254 || /\s/.test(v)) return false;
    const domain = v.slice(at + 1);
    return domain.includes(".") && !domain.startsWith(".") && !domain.endsWith(".") && !domain.includes("@");
  }

  function problem(input) {
    const value = input.type === "checkbox" ? input.checked : input.value;
    if (input.type === "checkbox") return value ? null : ["apply.pledge_required"];
    if (input.required && value.trim() === "") return ["apply.required"];
    if (value.trim() === "") return null;
    if (input.dataset.kind === "email" && !isEmail(value)) return ["apply.not_email"];
    const max = Number(input.dataset.max || 0);
    if (max && chars(value) > max) return ["apply.too_long", { n: max }];
    if (/[\u0000-\u0009\u000b-\u001f\u007f]/.test(value)) return ["apply.invalid"];
    return null;
  }

  function showError(path, key, params = {}) {
    const box = document.querySelector(`[data-error-for="${CSS.escape(path)}"]`);
    const input = document.querySelector(`[data-path="${CSS.escape(path)}"]`);
    if (!box) return false;
    box.dataset.key = key;
    box.dataset.params = JSON.stringify(params);
    box.id = box.id || `error-${path.replace(/[^a-z0-9]/gi, "-")}`;
    box.textContent = t(key, params);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", box.id);
    }
    return true;
  }

  function clearErrors() {
    $("apply-error").textContent = "";
    for (const box of document.querySelectorAll("[data-error-for]")) {
      box.textContent = "";
      delete box.dataset.key;
      delete box.dataset.params;
    }
    for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  function check() {
    let first = null;
    for (const input of document.querySelectorAll("#apply-form [data-path]")) {
      const found = problem(input);
      if (found && showError(input.dataset.path, ...found)) first ??= input;
    }
    const seen = new Map();
    for (const input of document.querySelectorAll("#apply-admins [data-field='email']")) {
      const email = input.value.trim().toLowerCase();
      if (email && seen.has(email) && showError(input.dataset.path, "apply.email_repeated")) first ??= input;
      seen.set(email, true);
    }
    return first;
  }

  function application() {
    const value = (id) => $(id).value.trim();
    const rows = (list) => [...$(`apply-${list}`).children].map((li) => Object.fromEntries(
      [...li.querySelectorAll("[data-field]")].map((input) => [input.dataset.field, input.value.trim()])));
    return {
      name: value("apply-name"),
      kind: value("apply-kind"),
      address: value("apply-address"),
      contact: { name: value("apply-contact-name"), email: value("apply-contact-email"), phone: value("apply-contact-phone") },
      admins: rows("admins"),
      roster: rows("roster"),
      pledged: $("apply-pledged").checked,
    };
  }

  // The server's refusal starts with the field it names; its wording picks our text.
  function serverError(message) {
    const match = /^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)?)[: ]/.exec(message ?? "");
    const key = /is required/.test(message) ? ["apply.required"]
      : /longer than (\d+)/.test(message) ? ["apply.too_long", { n: Number(/longer than (\d+)/.exec(message)[1]) }]
      : /not an e-mail address/.test(message) ? ["apply.not_email"]
      : /another admin's/.test(message) ? ["apply.email_repeated"]
      : /^pledged/.test(message) ? ["apply.pledge_required"]
      : /^admins:/.test(message) ? ["apply.admins_count", { n: MAX_ADMINS }]
      : ["apply.invalid"];
    const named = match && showError(match[1], ...key);
    if (named) document.querySelector(`[data-path="${CSS.escape(match[1])}"]`)?.focus();
    else $("apply-error").textContent = t("apply.failed");
  }

  async function submit(e) {
    e.preventDefault();
    clearErrors();
    const first = check();
    if (first) { first.focus(); $("apply-error").textContent = t("apply.check_fields"); return; }
    const button = e.submitter ?? document.querySelector("#apply-form [type=submit]");
    button.disabled = true;
    try {
      const response = await fetch("/api/v1/facilities/applications", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(application()),
      });
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        if (response.status === 400) serverError(body?.error?.message);
        else $("apply-error").textContent = t(response.status === 429 ? "apply.slow_down" : "apply.failed");
        return;
      }
      $("apply-form").hidden = true;
      $("apply-done").hidden = false;
      $("apply-done-text").textContent = t("apply.done", { id: body.id, name: body.name });
      $("apply-done").focus();
    } catch {
      $("apply-error").textContent = t("apply.failed");
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const kind = $("apply-kind");
    kind.append(h("option", { value: "", "data-i18n": "apply.choose" }));
    for (const k of KINDS) kind.append(h("option", { value: k, "data-i18n": `facility.kind.${k}` }));
    $("apply-done").tabIndex = -1;
    $("language").addEventListener("click", () => {
      lang = lang === "ja" ? "en" : "ja";
      localStorage.setItem("renkei.lang", lang);
      showLanguage();
    });
    $("apply-add-admin").addEventListener("click", () => addRow("admins").querySelector("input").focus());
    $("apply-add-staff").addEventListener("click", () => addRow("roster").querySelector("input").focus());
    $("apply-form").addEventListener("submit", submit);
    addRow("admins");
    showLanguage();
  });
})();
