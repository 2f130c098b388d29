// Texts and what a page fetches later. The catalogue is one file per language:
// i18n/ja.js, loaded by every page (Japanese is the default and every language's
// fallback), and i18n/en.js, fetched only when a user chooses English. The admin screens
// (admin.js) are fetched when 管理 is first opened. A page names these files in
// <template id="later">, so that the server writes their versioned URLs there as it does
// for the page's own scripts (server/src/web.rs); the template keeps them from loading.
"use strict";

globalThis.RENKEI_MESSAGES ??= {};

(() => {
  const loading = new Map(); // name -> Promise

  // Resolves once the script named `name` (data-name in #later) has run.
  function load(name) {
    if (!loading.has(name)) {
      loading.set(name, new Promise((resolve, reject) => {
        const named = document.getElementById("later")?.content.querySelector(`script[data-name="${name}"]`);
        if (!named) { reject(new Error(`no script named ${name}`)); return; }
        const script = document.createElement("script");
        script.src = named.getAttribute("src");
        script.onload = () => resolve();
        script.onerror = () => { loading.delete(name); reject(new Error(`${name} did not load`)); };
        document.head.append(script);
      }));
    }
    return loading.get(name);
  }

  globalThis.RenkeiLater = {
    load,
    // The catalogue of `lang`; Japanese is always there.
    language: (lang) => (globalThis.RENKEI_MESSAGES[lang] ? Promise.resolve() : load(`i18n-${lang}`)),
  };
})();
