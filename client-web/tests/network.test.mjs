// Sending over bad networks (issue 19): the page reaches the server through a loopback
// TCP proxy of the test's own that can go silent (it stops forwarding both ways without
// closing anything, as a dead mobile link or a NAT that dropped its mapping does) or
// refuse (connections reset, as with no network at all). The heartbeat finds a silent
// socket, `online` reconnects at once, unsent posts survive a reload encrypted under the
// session's key and are sent once, and after logout nothing in IndexedDB can be read.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { env, logIn, newContext, openGroup, post, submitLogin, useServer } from "./harness.mjs";

useServer();

// ---- the proxy ------------------------------------------------------------------------
// "forward": bytes pass both ways. "silent": nothing passes, nothing closes; a stream that
// lost bytes cannot go on, so when forwarding resumes such connections are dropped (as a
// dead link's connections are). "refuse": every connection is reset.
function startProxy(target) { // target(): the server's port
  const links = new Set();
  const proxy = { mode: "forward", port: 0, refused: 0 };
  const server = net.createServer((client) => {
    if (proxy.mode === "refuse") { proxy.refused += 1; client.destroy(); return; }
    const link = { client, upstream: null, broken: proxy.mode !== "forward" };
    links.add(link);
    const end = () => {
      links.delete(link);
      client.destroy();
      link.upstream?.destroy();
    };
    const connectUpstream = () => {
      link.upstream = net.connect(target(), "127.0.0.1");
      link.upstream.on("data", (chunk) => {
        if (proxy.mode === "forward" && !link.broken) client.write(chunk); else link.broken = true;
      });
      // The server's close passes only while forwarding; silence hides it too.
      link.upstream.on("close", () => { if (proxy.mode === "forward") end(); else link.broken = true; });
      link.upstream.on("error", () => {});
    };
    // Opened in silence: the server never hears of it (no connection, no deadline there).
    if (!link.broken) connectUpstream();
    client.on("data", (chunk) => {
      if (proxy.mode === "forward" && !link.broken && link.upstream) link.upstream.write(chunk); else link.broken = true;
    });
    client.on("close", () => { if (proxy.mode === "forward") end(); else link.broken = true; });
    client.on("error", () => {});
  });
  proxy.set = (mode) => {
    proxy.mode = mode;
    for (const link of [...links]) {
      if (mode === "refuse" || (mode === "forward" && link.broken)) {
        links.delete(link);
        link.client.destroy();
        link.upstream?.destroy();
      }
    }
  };
  proxy.close = () => new Promise((resolve) => {
    proxy.set("refuse");
    server.close(resolve);
  });
  return new Promise((resolve, reject) => {
    server.listen(0, "127.0.0.1", () => {
      proxy.port = server.address().port;
      resolve(proxy);
    });
    server.on("error", reject);
  });
}

let proxy;
// The server's port is looked up per connection: it is chosen in the harness's own hook.
before(async () => { proxy = await startProxy(() => env.port); });
after(async () => { await proxy?.close(); });

const viaProxy = (path = "/") => `http://127.0.0.1:${proxy.port}${path}`;

// Logs in through the proxy (the page, its API calls and its socket all pass it; its
// origin is the proxy's, which the server accepts as the host it was reached at).
async function logInViaProxy(login) {
  const context = await newContext();
  const page = await context.newPage();
  const key = page.waitForResponse((r) => r.url().endsWith("/api/v1/session/key") && r.status() === 200);
  await page.goto(viaProxy());
  await submitLogin(page, login);
  await page.locator("#connection").getByText("接続中").waitFor();
  return { context, page, key: (await (await key).json()).key };
}

// The raw records of the page's IndexedDB store (what a thief of the device could read).
function records(page) {
  return page.evaluate(() => new Promise((resolve, reject) => {
    const open = indexedDB.open("renkei-unsent", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("records", { keyPath: "id" });
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const read = db.transaction("records").objectStore("records").getAll();
      read.onsuccess = () => {
        db.close();
        resolve(read.result.map((r) => ({
          id: r.id, kind: r.kind, iv: Array.from(r.iv), data: Array.from(new Uint8Array(r.data)),
        })));
      };
      read.onerror = () => reject(read.error);
    };
  }));
}

// Which of `list` decrypt under `key` (base64url), and to what.
function decrypt(page, list, key) {
  return page.evaluate(async ({ list, key }) => {
    const b64 = key.replace(/-/g, "+").replace(/_/g, "/");
    const raw = Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) => c.charCodeAt(0));
    const cryptoKey = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["decrypt"]);
    const opened = [];
    for (const r of list) {
      try {
        const plain = await crypto.subtle.decrypt(
          { name: "AES-GCM", iv: new Uint8Array(r.iv), additionalData: new TextEncoder().encode(r.id) },
          cryptoKey, new Uint8Array(r.data));
        opened.push(JSON.parse(new TextDecoder().decode(plain)));
      } catch { /* not readable with this key */ }
    }
    return opened;
  }, { list, key });
}

// Waits (bounded) until `check()` holds.
async function until(what, check, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    assert.ok(Date.now() < deadline, `timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function confirmSend(page) {
  await page.getByRole("button", { name: /この(患者の)?グループに送信する/ }).click();
}

// Exactly one post with `text` in the timeline of a page that loaded it afresh from the
// server (a reload syncs from the store: what it shows is what was stored).
async function storedOnce(page, text) {
  await page.locator("#timeline .post", { hasText: text }).first().waitFor({ timeout: 40_000 });
  await page.reload();
  await page.locator("#connection").getByText("接続中").waitFor();
  await openGroup(page, "佐藤 ハナ 様");
  await page.locator("#timeline .post", { hasText: text }).first().waitFor();
  assert.equal(await page.locator("#timeline .post", { hasText: text }).count(), 1, `${text} stored once`);
}

test("a silent network is found within 15 s and a post written into it arrives once", async () => {
  proxy.set("forward");
  const nurse = await logInViaProxy("himawari.ns.ito");
  const pt = await logIn("himawari.pt.watanabe");
  await openGroup(nurse.page, "佐藤 ハナ 様");
  await openGroup(pt.page, "佐藤 ハナ 様");
  const status = nurse.page.locator("#connection");

  // The heartbeat alone: nothing is sent, nothing closes, and still the page knows.
  proxy.set("silent");
  let silentAt = Date.now();
  await status.getByText("オフライン").waitFor({ timeout: 15_000 });
  assert.ok(Date.now() - silentAt <= 15_000, `found after ${Date.now() - silentAt} ms`);
  proxy.set("forward");
  await status.getByText("接続中").waitFor({ timeout: 30_000 });

  // A post sent into a socket that looks alive but is silent.
  proxy.set("silent");
  silentAt = Date.now();
  const text = "無音の回線で書いた申し送り";
  await post(nurse.page, text);
  await confirmSend(nurse.page);
  await nurse.page.locator("#timeline .post", { hasText: text }).getByText("送信中").waitFor();
  await status.getByText("オフライン").waitFor({ timeout: 15_000 });
  assert.ok(Date.now() - silentAt <= 15_000);
  proxy.set("forward");
  await status.getByText("接続中").waitFor({ timeout: 30_000 });
  await nurse.page.locator("#timeline .post", { hasText: text }).getByText("送信中").waitFor({ state: "detached", timeout: 30_000 });
  await storedOnce(pt.page, text);
  await nurse.context.close();
  await pt.context.close();
});

test("the browser's online event reconnects at once instead of after the backoff", async () => {
  proxy.set("forward");
  const nurse = await logInViaProxy("himawari.ns.ito");
  const status = nurse.page.locator("#connection");
  proxy.set("refuse");
  await status.getByText("オフライン").waitFor();
  // Five failed tries: the next one waits 8 to 16 s.
  await until("five tries failed", async () => Number(await status.getAttribute("data-retry")) >= 5, 40_000);
  proxy.set("forward");
  const sockets = [];
  nurse.page.on("websocket", (ws) => sockets.push(ws));
  const asked = Date.now();
  await nurse.page.evaluate(() => window.dispatchEvent(new Event("online")));
  await until("a new socket", () => sockets.length > 0, 2_000);
  await status.getByText("接続中").waitFor({ timeout: 5_000 });
  assert.ok(Date.now() - asked < 5_000);
  await nurse.context.close();
});

test("a post waiting at a reload is kept encrypted, listed offline and sent once after", async () => {
  proxy.set("forward");
  const nurse = await logInViaProxy("himawari.ns.ito");
  const pt = await logIn("himawari.pt.watanabe");
  await openGroup(pt.page, "佐藤 ハナ 様");
  // The worker controls the page, so that a reload without the server finds the shell.
  await nurse.page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 15_000 });
  await openGroup(nurse.page, "佐藤 ハナ 様");

  proxy.set("refuse");
  await nurse.page.locator("#connection").getByText("オフライン").waitFor();
  const text = "再読み込みをまたいだ申し送り";
  await post(nurse.page, text);
  await confirmSend(nurse.page);
  await nurse.page.getByText("送信中").waitFor();
  await until("the post is kept", async () => (await records(nurse.page)).some((r) => r.kind === "post"));
  const kept = (await records(nurse.page)).filter((r) => r.kind === "post");
  assert.equal(kept.length, 1);
  assert.ok(!Buffer.from(kept[0].data).toString("utf8").includes("申し送り"), "no text in the clear");
  const [opened] = await decrypt(nurse.page, kept, nurse.key);
  assert.equal(opened?.text, text, "the session's key reads it");

  // Leaving with an unsent post asks first; the reload goes ahead.
  const dialogs = [];
  nurse.page.on("dialog", (dialog) => { dialogs.push(dialog.type()); dialog.accept(); });
  await nurse.page.reload();
  assert.deepEqual(dialogs, ["beforeunload"]);
  // Offline: the shell from the worker, the count of waiting posts and not their text.
  await nurse.page.locator("#offline-view").waitFor();
  await nurse.page.getByText("1件の未送信の投稿があります").waitFor();
  assert.ok(!(await nurse.page.locator("body").innerText()).includes(text));

  proxy.set("forward");
  await nurse.page.evaluate(() => window.dispatchEvent(new Event("online")));
  await nurse.page.locator("#connection").getByText("接続中").waitFor({ timeout: 20_000 });
  await storedOnce(pt.page, text);
  // Acknowledged: nothing of it stays in the browser.
  await until("the record is gone", async () => (await records(nurse.page)).every((r) => r.kind !== "post"), 20_000);
  await nurse.context.close();
  await pt.context.close();
});

test("after logout nothing in IndexedDB can be read, and the old key is gone", async () => {
  proxy.set("forward");
  const nurse = await logInViaProxy("himawari.ns.ito");
  await openGroup(nurse.page, "佐藤 ハナ 様");
  const draft = "書きかけ: 夕方の訪問で再確認";
  await nurse.page.getByLabel("投稿内容").fill(draft);
  await until("the draft is kept", async () => (await records(nurse.page)).some((r) => r.kind === "draft"));
  const kept = await records(nurse.page);
  assert.equal((await decrypt(nurse.page, kept, nurse.key))[0]?.text, draft, "the draft reads under the key");
  const [cookie] = (await nurse.context.cookies()).filter((c) => c.name === "renkei_session");
  assert.ok(cookie, "the session's cookie");

  await nurse.page.getByRole("button", { name: "ログアウト" }).click();
  await nurse.page.locator("#login-form").waitFor();
  const left = await records(nurse.page);
  assert.deepEqual(await decrypt(nurse.page, left, nurse.key), [], "nothing decrypts");
  assert.equal(left.length, 0, "nothing is left at all");
  // The server no longer has the session, nor its key.
  const refused = await fetch(viaProxy("/api/v1/session/key"), { headers: { authorization: `Bearer ${cookie.value}` } });
  assert.equal(refused.status, 401);
  await nurse.context.close();
});
