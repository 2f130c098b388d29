// Reaching a user who is not looking at the page: the service worker (installable app,
// offline shell, Web Push), this device's push subscription, the notification settings of
// the account dialog and the groups muted. app.js hands in what it shares (text, the
// signed-in user, opening a group); the server decides what is sent, when and to whom.
"use strict";

window.RenkeiNotify = (shell) => {
  const { t } = shell;
  const { api, explain } = shell.ui;
  const $ = (id) => document.getElementById(id);
  // This browser's subscription and whose it is: {user, id} (the server's id, for DELETE).
  // A subscription belongs to the browser, not to the account logged in: the owner says
  // whether the device is registered for this account or for one logged in before.
  const OWNER = "renkei.push";
  const SUBSCRIBE_TIMEOUT_MS = 30000;
  let settings = null; // the account's settings as the server last sent them
  let muted = new Set(); // ids of the groups this user muted

  // ---- the service worker ----------------------------------------------------------------
  // Registered on every start: an unchanged worker is a no-op, a changed one (a new server
  // version) installs itself and its new shell.
  function register() {
    if (!("serviceWorker" in navigator)) return; // not a secure context (plain HTTP), or old
    navigator.serviceWorker.register("/sw.js").catch(() => {});
    // A click on a notification, with the app already open: that window opens the group.
    navigator.serviceWorker.addEventListener("message", (e) => {
      if (e.data?.type === "open-group" && Number.isSafeInteger(e.data.group)) shell.openGroup(e.data.group);
    });
    navigator.serviceWorker.startMessages();
  }

  // The language, where the worker can read it for the notifications' texts (a worker has
  // no localStorage).
  function saveLanguage(lang) {
    if (!("indexedDB" in window)) return;
    const open = indexedDB.open("renkei", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("settings");
    open.onerror = () => {};
    open.onsuccess = () => {
      const db = open.result;
      const write = db.transaction("settings", "readwrite");
      write.objectStore("settings").put(lang, "lang");
      write.oncomplete = () => db.close();
      write.onerror = () => db.close();
    };
  }

  // ---- this device's subscription ---------------------------------------------------------
  // "ok", or why this browser cannot receive pushes: the key of the sentence that says
  // what to do about it.
  function support() {
    if (!window.isSecureContext) return "insecure";
    const ios = /iPhone|iPad|iPod/.test(navigator.userAgent) || (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);
    const installed = navigator.standalone === true || window.matchMedia("(display-mode: standalone)").matches;
    // Safari on iOS delivers Web Push only to an app added to the home screen (16.4+).
    if (ios && !installed) return "ios_install";
    if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) return "unsupported";
    if (Notification.permission === "denied") return "denied";
    return "ok";
  }

  function owner() {
    try { return JSON.parse(localStorage.getItem(OWNER)); } catch { return null; }
  }

  async function subscription() {
    const registration = await navigator.serviceWorker.getRegistration("/");
    return registration ? registration.pushManager.getSubscription() : null;
  }

  async function renderDevice() {
    const box = $("notify-device");
    const why = support();
    const note = $("notify-device-state");
    if (why !== "ok") {
      box.checked = false;
      box.disabled = true;
      note.textContent = t(`notify.${why}`);
      return;
    }
    const current = await subscription().catch(() => null);
    const ours = current !== null && owner()?.user === shell.user()?.id;
    box.checked = ours;
    box.disabled = false;
    note.textContent = ours ? t("notify.device_on") : current ? t("notify.device_other") : "";
  }

  // The VAPID key comes as base64url; the browser wants its bytes.
  function bytes(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(base64url.length / 4) * 4, "=");
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  }

  function sameKey(buffer, key) {
    if (!buffer) return false;
    const held = new Uint8Array(buffer);
    return held.length === key.length && held.every((b, i) => b === key[i]);
  }

  // A browser whose push service cannot be reached may never answer: the user hears why.
  function withTimeout(promise) {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(t("notify.timeout"))), SUBSCRIBE_TIMEOUT_MS);
    });
    return Promise.race([promise, late]).finally(() => clearTimeout(timer));
  }

  async function turnOn() {
    const box = $("notify-device");
    const problem = $("notify-device-error");
    problem.textContent = "";
    // Asked before anything is awaited: browsers grant the prompt to a user's click only.
    const asked = Notification.requestPermission();
    box.disabled = true;
    $("notify-device-state").textContent = t("notify.subscribing");
    try {
      if (await asked !== "granted") return;
      const { public_key: publicKey } = await api("GET", "/api/v1/push/key");
      const key = bytes(publicKey);
      const registration = await withTimeout(navigator.serviceWorker.ready);
      let current = await registration.pushManager.getSubscription();
      // Another account's subscription, or one for a key the server no longer has.
      if (current && (owner()?.user !== shell.user().id || !sameKey(current.options.applicationServerKey, key))) {
        await current.unsubscribe();
        current = null;
      }
      current ??= await withTimeout(registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }));
      const { endpoint, keys } = current.toJSON();
      let created;
      try {
        created = await api("POST", "/api/v1/push/subscriptions", { endpoint, p256dh: keys.p256dh, auth: keys.auth });
      } catch (error) {
        await current.unsubscribe().catch(() => {}); // the server will never use it
        throw error;
      }
      localStorage.setItem(OWNER, JSON.stringify({ user: shell.user().id, id: created.id }));
      await loadSettings().catch(() => {});
    } catch (error) {
      // A REST error has its text; the browser's (no push service, refused) its message.
      problem.textContent = "status" in error ? explain(error)
        : t("notify.subscribe_failed", { reason: error.message || error.name });
    } finally {
      await renderDevice();
    }
  }

  async function turnOff() {
    const problem = $("notify-device-error");
    problem.textContent = "";
    try {
      await forget();
      await loadSettings().catch(() => {});
    } catch (error) {
      problem.textContent = explain(error);
    }
    await renderDevice();
  }

  // This device stops receiving this account's notifications: the server forgets the
  // subscription (first: should it fail, the device keeps receiving and says so), then the
  // browser does.
  async function forget() {
    const mine = owner();
    if (mine?.user === shell.user()?.id && mine?.id) {
      await api("DELETE", `/api/v1/push/subscriptions/${mine.id}`).catch((error) => {
        if (error.status !== 404) throw error;
      });
    }
    if (mine?.user === shell.user()?.id) localStorage.removeItem(OWNER);
    if ("serviceWorker" in navigator) await (await subscription().catch(() => null))?.unsubscribe();
  }

  // The server ties a subscription to the session that made it and forgets it when the
  // session ends (logout, the idle lock, expiry). A new session of the same account
  // registers this device's subscription again, so notifications resume by themselves; the
  // same endpoint keeps its id. Another account's subscription stays theirs to renew.
  async function renew() {
    if (support() !== "ok" || Notification.permission !== "granted") return;
    const mine = owner();
    if (mine?.user !== shell.user()?.id) return;
    const current = await subscription().catch(() => null);
    if (!current) { localStorage.removeItem(OWNER); return; }
    const { endpoint, keys } = current.toJSON();
    try {
      const created = await api("POST", "/api/v1/push/subscriptions", { endpoint, p256dh: keys.p256dh, auth: keys.auth });
      localStorage.setItem(OWNER, JSON.stringify({ user: mine.user, id: created.id }));
    } catch (error) {
      // Refused for good (the allowlist changed): the device is no longer registered.
      if (error.status === 400) { localStorage.removeItem(OWNER); await current.unsubscribe().catch(() => {}); }
    }
  }

  // ---- the account's settings -------------------------------------------------------------
  async function loadSettings() {
    settings = await api("GET", "/api/v1/notifications/settings");
    muted = new Set(settings.muted_groups);
    renderSettings();
  }

  function renderSettings() {
    $("notify-settings").disabled = settings === null;
    if (!settings) return;
    $("notify-push").checked = settings.push;
    $("notify-devices").textContent = t("notify.devices", { n: settings.push_subscriptions });
    $("notify-email").checked = settings.email && settings.email_available;
    $("notify-email").disabled = !settings.email_available;
    $("notify-email-to").textContent = settings.email_available
      ? t("notify.email_to", { email: settings.email_address }) : t("notify.email_unavailable");
    // Why mails do not arrive, while they are wanted.
    $("notify-email-bounced").textContent = settings.email_available && settings.email && settings.email_bounced
      ? t("notify.email_bounced") : "";
    const quiet = settings.quiet_hours;
    $("notify-quiet").checked = quiet !== null;
    if (quiet) {
      $("notify-quiet-start").value = quiet.start;
      $("notify-quiet-end").value = quiet.end;
    }
    $("notify-quiet-start").disabled = quiet === null;
    $("notify-quiet-end").disabled = quiet === null;
  }

  // Every change is saved at once.
  async function saveSettings() {
    $("notify-saved").textContent = "";
    $("notify-error").textContent = "";
    const quiet = $("notify-quiet").checked;
    $("notify-quiet-start").disabled = !quiet;
    $("notify-quiet-end").disabled = !quiet;
    const start = $("notify-quiet-start").value;
    const end = $("notify-quiet-end").value;
    if (quiet && (!start || !end)) return; // a time still being typed
    const body = {
      push: $("notify-push").checked,
      // Not offered when the server sends no mail: what is stored stays.
      email: settings.email_available ? $("notify-email").checked : settings.email,
      quiet_hours: quiet ? { start, end } : null,
    };
    try {
      settings = await api("PUT", "/api/v1/notifications/settings", body);
      muted = new Set(settings.muted_groups ?? muted);
      $("notify-saved").textContent = t("notify.saved");
    } catch (error) {
      $("notify-error").textContent = explain(error);
    }
    renderSettings();
  }

  async function sendTest() {
    const result = $("notify-test-result");
    result.className = "";
    result.textContent = "";
    try {
      const sent = await api("POST", "/api/v1/notifications/test");
      result.className = "ok";
      result.textContent = sent.push === 0 && !sent.email ? t("notify.test_nowhere")
        : t("notify.test_sent", { push: sent.push, email: t(sent.email ? "notify.test_email_yes" : "notify.test_email_no") });
    } catch (error) {
      result.className = "error";
      result.textContent = explain(error);
    }
  }

  // The section is filled each time the account dialog opens.
  async function open() {
    for (const id of ["notify-saved", "notify-error", "notify-device-error", "notify-test-result"]) $(id).textContent = "";
    settings = null;
    renderSettings();
    await Promise.all([
      loadSettings().catch((error) => {
        $("notify-error").textContent = error.status === 404 ? t("notify.failed") : explain(error);
      }),
      renderDevice(),
    ]);
  }

  // ---- muted groups -----------------------------------------------------------------------
  // Loaded after each welcome; without them the list just shows no marks.
  async function loadMuted() {
    await loadSettings().catch(() => {});
  }

  function isMuted(group) {
    return muted.has(group);
  }

  async function setMuted(group, on) {
    await api("PUT", `/api/v1/groups/${group}/mute`, { muted: on });
    if (on) muted.add(group); else muted.delete(group);
  }

  // Logging out: nothing of the account stays in the page.
  function reset() {
    settings = null;
    muted = new Set();
  }

  function bind() {
    $("notify-device").addEventListener("change", (e) => (e.target.checked ? turnOn() : turnOff()));
    for (const id of ["notify-push", "notify-email", "notify-quiet", "notify-quiet-start", "notify-quiet-end"]) {
      $(id).addEventListener("change", saveSettings);
    }
    $("notify-test").addEventListener("click", sendTest);
  }

  // The language changed with the dialog open: its sentences again.
  function refresh() {
    renderSettings();
    renderDevice();
  }

  return { register, saveLanguage, bind, open, refresh, renew, loadMuted, isMuted, setMuted, reset };
};
