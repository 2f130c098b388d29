// The public list of participating facilities (公示, art. 3(2)): no login, no personal data.
// Its text comes from the client's catalogue (i18n/), in the language the client chose.
"use strict";

(() => {
  const messages = window.RENKEI_MESSAGES;
  let lang = localStorage.getItem("renkei.lang") || "ja";
  let facilities;        // undefined: loading; null: failed
  const t = (key) => (messages[lang] ?? messages.ja)[key] ?? messages.ja[key] ?? key;

  // Renders in the chosen language once its catalogue is here (Japanese if it cannot come).
  function showLanguage() {
    window.RenkeiLater.language(lang).catch(() => {}).finally(render);
  }

  function render() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.title = `${t("public.title")} — ${t("app.title")} Renkei`;
    const list = document.getElementById("facility-list");
    list.replaceChildren();
    document.getElementById("facility-error").textContent = facilities === null ? t("public.failed") : "";
    for (const facility of facilities ?? []) {
      const row = document.createElement("tr");
      for (const text of [facility.name, t(`facility.kind.${facility.kind}`), facility.address]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      list.append(row);
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    document.getElementById("language").addEventListener("click", () => {
      lang = lang === "ja" ? "en" : "ja";
      localStorage.setItem("renkei.lang", lang);
      showLanguage();
    });
    try {
      const response = await fetch("/api/v1/facilities");
      if (!response.ok) throw new Error(String(response.status));
      facilities = await response.json();
    } catch { facilities = null; }
    showLanguage();
  });
})();
