// The service worker: keeps the app's shell (its own files, never a message, a file or
// any API answer) for starting without a network, and shows Web Push notifications that
// say only that something happened: the payload names a kind and numbers, no text, so
// neither the push service nor a locked phone's screen learns anything about a patient.
"use strict";

// Replaced by the server with a hash of every client file (server/src/web.rs): any change
// to the client changes this file, and the browser installs the new worker and shell.
const VERSION = "__RENKEI_VERSION__";
const CACHE = `renkei-shell-${VERSION}`;

// The shell: exactly these paths are answered from the cache, and only when the network
// fails. Everything else (/api/…, /ws, files, thumbnails, photos) goes to the network
// untouched and is never stored.
const SHELL = [
  "/",
  "/app.js",
  "/ui.js",
  "/admin.js",
  "/notify.js",
  "/drafts.js",
  "/i18n.js",
  "/i18n/ja.js",
  "/i18n/en.js",
  "/app.css",
  "/manifest.webmanifest",
  "/icons/icon-192.png",
  "/icons/icon-512.png",
  "/icons/maskable-512.png",
  "/icons/apple-touch-icon.png",
];

// The catalogues, the same ones the page uses (each sets its language on the global object).
importScripts("/i18n/ja.js", "/i18n/en.js");
const MESSAGES = self.RENKEI_MESSAGES;
const KINDS = ["post", "mention", "invitation", "account", "test", "facility_applied"];

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // `reload`: from the server, not an HTTP cache holding the previous version.
    await cache.addAll(SHELL.map((path) => new Request(path, { cache: "reload" })));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

// Network first: an online client always runs what the server serves now. The cache
// answers only when the network does not.
self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  // A navigation to the app (`/?group=12` included) falls back to the cached page.
  const path = request.mode === "navigate" && url.pathname === "/" ? "/" : url.pathname;
  // The page names its files with their hash (`/app.js?v=<hash>`, see web.rs): the same
  // file as the shell's `/app.js` of this version.
  const versioned = /^\?v=[0-9a-f]{16}$/.test(url.search);
  if (!SHELL.includes(path) || (path !== "/" && url.search !== "" && !versioned)) return;
  event.respondWith((async () => {
    try {
      return await fetch(request);
    } catch (error) {
      const cached = await caches.match(path, { cacheName: CACHE });
      if (cached) return cached;
      throw error;
    }
  })());
});

// ---- notifications ----------------------------------------------------------------------
// The language the page last used, kept in IndexedDB (the worker has no localStorage);
// Japanese when unknown.
function savedLanguage() {
  return new Promise((resolve) => {
    const open = indexedDB.open("renkei", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("settings");
    open.onerror = () => resolve("ja");
    open.onsuccess = () => {
      const db = open.result;
      try {
        const read = db.transaction("settings").objectStore("settings").get("lang");
        read.onsuccess = () => { db.close(); resolve(MESSAGES[read.result] ? read.result : "ja"); };
        read.onerror = () => { db.close(); resolve("ja"); };
      } catch {
        db.close();
        resolve("ja");
      }
    };
  });
}

function text(lang, key) {
  return MESSAGES[lang]?.[key] ?? MESSAGES.ja[key];
}

// What a push says: the kind and a group, both checked; anything else is the generic text.
function readPush(data) {
  let payload = null;
  try { payload = data ? data.json() : null; } catch { payload = null; }
  const kind = KINDS.includes(payload?.kind) ? payload.kind : "generic";
  const group = Number.isSafeInteger(payload?.group) && payload.group > 0 ? payload.group : null;
  return { kind, group };
}

async function notify(data) {
  const { kind, group } = readPush(data);
  const lang = await savedLanguage();
  const tag = group ? `group-${group}` : `renkei-${kind}`;
  // A plain post does not hide a waiting mention of the same group.
  const [older] = await self.registration.getNotifications({ tag });
  const shown = kind === "post" && older?.data?.kind === "mention" ? "mention" : kind;
  await self.registration.showNotification(text(lang, "push.title"), {
    body: text(lang, `push.${shown}`),
    icon: "/icons/icon-192.png",
    badge: "/icons/icon-192.png",
    lang,
    tag,
    renotify: false,
    data: { kind: shown, group },
  });
}

// Always a notification, even for a payload that cannot be read: browsers penalise a push
// that shows nothing.
self.addEventListener("push", (event) => {
  event.waitUntil(notify(event.data));
});

// Where a click leads: the group, or the app.
function target(data) {
  const group = Number.isSafeInteger(data?.group) && data.group > 0 ? data.group : null;
  return { group, url: new URL(group ? `/?group=${group}` : "/", self.location.origin).href };
}

// An open window of the app is brought forward and told to open the group (it keeps its
// connection); without one, a new window opens at the group.
async function openApp(data) {
  const { group, url } = target(data);
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const open = windows.find((client) => new URL(client.url).origin === self.location.origin);
  if (!open) return self.clients.openWindow(url);
  // Focusing needs the click's user activation; a test calling this has none.
  await open.focus().catch(() => {});
  if (group) open.postMessage({ type: "open-group", group });
  return open;
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(openApp(event.notification.data));
});
