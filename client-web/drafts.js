// What the page keeps across a reload, or the phone killing the tab: the posts not yet
// acknowledged and each group's unfinished draft, in IndexedDB, encrypted (AES-GCM,
// Web Crypto) under the session's storage key (`GET /api/v1/session/key`). The key is
// imported non-extractable and lives only in this page's memory and in the session's row
// on the server: when the session ends (logout, idle lock, ban, expiry) the server
// forgets it, and what stays in the browser cannot be read by anyone.
//
// A record in the clear says only its kind ("post" or "draft") and an id made of random
// characters (a post's client id, a draft's random slot); the group, the text and the
// times are inside the ciphertext. Each record has its own random 12-byte IV, and its id
// is authenticated with it (additional data), so records cannot be swapped.
"use strict";

window.RenkeiDrafts = (() => {
  const DB = "renkei-unsent";
  const STORE = "records";
  let key = null; // the session's CryptoKey, once fetched

  function available() {
    return "indexedDB" in window && !!window.crypto?.subtle;
  }

  function open() {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(DB, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "id" });
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  // Runs `work(store)` in one transaction; resolves with what it returns when committed.
  async function transact(mode, work) {
    const db = await open();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction(STORE, mode);
        let result;
        const request = work(tx.objectStore(STORE));
        if (request) request.onsuccess = () => { result = request.result; };
        tx.oncomplete = () => resolve(result);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  }

  function fromBase64url(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  }

  // Takes the session's key (base64url of 32 bytes); the bytes are not kept.
  async function setKey(encoded) {
    const raw = fromBase64url(encoded);
    key = await crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
    raw.fill(0);
  }

  function hasKey() {
    return key !== null;
  }

  function forgetKey() {
    key = null;
  }

  // Stores `value` (anything JSON) encrypted as record `id` of `kind`.
  async function put(id, kind, value) {
    const current = key;
    if (!current || !available()) return;
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const plain = new TextEncoder().encode(JSON.stringify(value));
    const data = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: new TextEncoder().encode(id) }, current, plain);
    if (key !== current) return; // cleared meanwhile (logout): nothing more is written
    await transact("readwrite", (store) => store.put({ id, kind, iv, data }));
  }

  async function remove(id) {
    if (!available()) return;
    await transact("readwrite", (store) => store.delete(id));
  }

  // Every record this key can read, as {id, kind, value}. Records it cannot read (they
  // were written under an ended session's key) are deleted: nobody can read them anymore.
  async function readAll() {
    if (!key || !available()) return [];
    const records = (await transact("readonly", (store) => store.getAll())) ?? [];
    const readable = [];
    const unreadable = [];
    for (const record of records) {
      try {
        const plain = await crypto.subtle.decrypt(
          { name: "AES-GCM", iv: record.iv, additionalData: new TextEncoder().encode(record.id) }, key, record.data);
        readable.push({ id: record.id, kind: record.kind, value: JSON.parse(new TextDecoder().decode(plain)) });
      } catch {
        unreadable.push(record.id);
      }
    }
    if (unreadable.length > 0) {
      await transact("readwrite", (store) => { for (const id of unreadable) store.delete(id); });
    }
    return readable;
  }

  // How many records of `kind` there are, without reading them (offline, with no key).
  async function count(kind) {
    if (!available()) return 0;
    const records = (await transact("readonly", (store) => store.getAll())) ?? [];
    return records.filter((r) => r.kind === kind).length;
  }

  // Deletes every record and forgets the key (logout, the idle lock, an ended session).
  async function clear() {
    key = null;
    if (!available()) return;
    await transact("readwrite", (store) => store.clear());
  }

  return { available, setKey, hasKey, forgetKey, put, remove, readAll, count, clear };
})();
