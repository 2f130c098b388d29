// Reaching a nurse who is not looking at the page, in a real browser: the installable app
// (manifest, icons, service worker), the shell that starts offline and caches nothing
// else, a new server version replacing the worker, content-free push notifications and
// where their click leads, and the notification settings.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import vm from "node:vm";
import { chromium } from "playwright-core";
import https from "node:https";
import crypto from "node:crypto";
import { spawnSync } from "node:child_process";
import { env, logIn, newContext, openGroup, screenshot, send, submitLogin, url, useServer } from "./harness.mjs";

// A push service of our own: Chromium here cannot reach Google's (FCM), so the browser's
// subscription is simulated (see `fakeSubscription`) and its endpoint is this HTTPS
// server on localhost, which the renkei server is told to allow and trust. Mail goes to a
// closed port: the server offers e-mail (RENKEI_SMTP_URL set), none is delivered.
const pushDir = mkdtempSync(join(tmpdir(), "renkei-push-"));
const inPushDir = (file) => join(pushDir, file);
// A test CA, and the service's certificate for localhost signed by it (a TLS client
// refuses a CA's own certificate as a server's).
for (const args of [
  ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", inPushDir("ca.key"),
    "-out", inPushDir("ca.pem"), "-days", "2", "-subj", "/CN=Renkei test push CA"],
  ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", inPushDir("key.pem"),
    "-out", inPushDir("service.csr"), "-subj", "/CN=localhost"],
  ["x509", "-req", "-in", inPushDir("service.csr"), "-CA", inPushDir("ca.pem"), "-CAkey", inPushDir("ca.key"),
    "-CAcreateserial", "-out", inPushDir("cert.pem"), "-days", "2", "-extfile", inPushDir("service.ext")],
]) {
  if (args[0] === "x509") {
    writeFileSync(inPushDir("service.ext"), "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n");
  }
  const made = spawnSync("openssl", args, { encoding: "utf8" });
  assert.equal(made.status, 0, made.stderr);
}
after(() => rmSync(pushDir, { recursive: true, force: true }));
Object.assign(process.env, {
  RENKEI_PUSH_HOSTS: "fcm.googleapis.com,localhost",
  RENKEI_PUSH_CA_FILE: inPushDir("ca.pem"),
  RENKEI_NOTIFY_TICK_MS: "50",
  RENKEI_SMTP_URL: "smtp://127.0.0.1:9",
  RENKEI_MAIL_FROM: "Renkei <renkei@example.jp>",
});

useServer();

const YAMADA = "山田 太郎 様";
const source = (file) => readFileSync(new URL(`../${file}`, import.meta.url), "utf8");
const sandbox = {};
for (const file of ["i18n/ja.js", "i18n/en.js"]) vm.runInNewContext(source(file), sandbox);
const { ja, en } = sandbox.RENKEI_MESSAGES;
// The paths the worker may cache, as sw.js lists them.
const SHELL = JSON.parse(source("sw.js").match(/const SHELL = (\[[^\]]*\]);/)[1].replace(/,\s*\]/, "]"));

const origin = () => url("").replace(/\/$/, "");

// Resolves once a service worker controls the page (it claims the page on activation).
async function controlled(page) {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
}

// Asks the page until `fn` is true: what a worker shows or deletes fires no event in the
// page. Bounded by the test's own timeout.
async function until(page, fn, arg) {
  while (!(await page.evaluate(fn, arg))) await new Promise((resolve) => setTimeout(resolve, 50));
}

async function cacheContents(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const name of await caches.keys()) {
      out[name] = (await (await caches.open(name)).keys()).map((r) => new URL(r.url).pathname + new URL(r.url).search);
    }
    return out;
  });
}

async function servedVersion(page, base = url("")) {
  const worker = await (await page.request.get(`${base.replace(/\/$/, "")}/sw.js`)).text();
  return worker.match(/const VERSION = "([0-9a-f]{16})";/)[1];
}

// A group's id, as the list knows it.
async function groupId(page, name) {
  return Number(await page.locator("button.group", { hasText: name }).first().getAttribute("data-group"));
}

test("the app is installable: manifest, icons, and a worker with a fetch handler controlling the page", async () => {
  // Playwright's contexts are incognito, where Chromium never offers to install: a profile.
  const profile = mkdtempSync(join(tmpdir(), "renkei-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    viewport: { width: 390, height: 844 }, locale: "ja-JP",
  });
  try {
    const page = context.pages()[0] ?? await context.newPage();
    await page.goto(url());
    await controlled(page);
    const cdp = await context.newCDPSession(page);
    const manifest = await cdp.send("Page.getAppManifest");
    assert.deepEqual(manifest.errors, []);
    assert.equal(manifest.url, url("/manifest.webmanifest"));
    const parsed = JSON.parse(manifest.data);
    assert.equal(parsed.short_name, "連携");
    assert.equal(parsed.display, "standalone");
    assert.equal(parsed.lang, "ja");
    assert.deepEqual(parsed.icons.map((i) => `${i.sizes} ${i.purpose}`), ["192x192 any", "512x512 any", "512x512 maskable"]);
    const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
    assert.deepEqual(installabilityErrors, []);

    // Every icon is a PNG of the size the manifest says; the worker may claim the root.
    for (const icon of [...parsed.icons, { src: "/icons/apple-touch-icon.png", sizes: "180x180" }]) {
      const response = await page.request.get(url(icon.src));
      assert.equal(response.headers()["content-type"], "image/png");
      const png = await response.body();
      const side = Number(icon.sizes.split("x")[0]);
      assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [side, side], icon.src);
    }
    const worker = await page.request.get(url("/sw.js"));
    assert.equal(worker.headers()["service-worker-allowed"], "/");
    assert.match(worker.headers()["content-type"], /^text\/javascript/);
    assert.match(worker.headers()["content-security-policy"], /script-src 'self'/);
    const head = await page.request.get(url("/manifest.webmanifest"));
    assert.equal(head.headers()["content-type"], "application/manifest+json");
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});

test("the cache holds the shell of the served version only: no API answer, no file, no thumbnail", async () => {
  const nurse = await logIn("sakura.ns.suzuki", {}, async (context) => {
    // What an older version would have left behind: gone once this one activates.
    const page = await context.newPage();
    await page.goto(url("/manifest.webmanifest"));
    await page.evaluate(async () => {
      const stale = await caches.open("renkei-shell-0000000000000000");
      await stale.put("/api/v1/session", new Response("{}"));
    });
    await page.close();
  });
  const { page } = nurse;
  const viaWorker = [];
  page.on("response", (r) => viaWorker.push([new URL(r.url()).pathname, r.fromServiceWorker()]));
  await controlled(page);
  await openGroup(page, YAMADA);
  // A photo: its upload, its thumbnail and the API calls around it pass the worker by.
  const photo = readFileSync(new URL("../icons/icon-192.png", import.meta.url));
  await page.setInputFiles("#composer-file", { name: "創部.png", mimeType: "image/png", buffer: photo });
  await send(page, "創部の写真です CX-1");
  await page.waitForFunction(() => document.querySelector("#timeline img.thumbnail")?.naturalWidth > 0);
  await page.locator("#members-open").click();
  await page.locator("#member-list .person").first().waitFor();
  await page.locator("#members").getByRole("button", { name: "閉じる" }).click();

  const version = await servedVersion(page);
  const contents = await cacheContents(page);
  assert.deepEqual(Object.keys(contents), [`renkei-shell-${version}`]);
  assert.deepEqual(contents[`renkei-shell-${version}`].sort(), [...SHELL].sort());
  const api = viaWorker.filter(([path]) => path.startsWith("/api/"));
  assert.ok(api.some(([path]) => path.includes("/thumbnail")), "a thumbnail was loaded");
  assert.deepEqual(api.filter(([, fromWorker]) => fromWorker), [], "no API answer comes from the worker");
  await nurse.context.close();
});

test("without a network the shell starts and says it is offline; it reconnects when the network is back", async () => {
  const { context, page } = await logIn("sakura.ns.suzuki");
  await controlled(page);
  await context.setOffline(true);
  await page.goto(url("/?group=1"));
  const offline = page.locator("#offline-view");
  await offline.getByRole("heading", { name: ja["offline.heading"] }).waitFor();
  assert.equal(await page.locator("#login-view").isVisible(), false, "no login form that cannot work");
  await screenshot(page, "offline");
  await context.setOffline(false); // the `online` event: the app tries again at once
  await page.getByText("接続中").waitFor();
  assert.equal(await offline.isVisible(), false);
  await context.close();
});

// A proxy in front of the server that can pretend to be a newer server: its sw.js carries
// another version, as a server with changed client files would serve.
async function upgradingProxy() {
  const proxy = { upgraded: false, server: null, port: 0 };
  proxy.server = http.createServer((req, res) => {
    // The worker it rewrites is asked for uncompressed (the server sends brotli when it may)
    // and in full (the server's ETag is of the unrewritten file: it would answer 304).
    const headers = { ...req.headers };
    if (req.url === "/sw.js") { headers["accept-encoding"] = "identity"; delete headers["if-none-match"]; }
    const upstream = http.request({ host: "127.0.0.1", port: env.port, path: req.url, method: req.method, headers }, (answer) => {
      if (!(req.url === "/sw.js" && proxy.upgraded)) {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
        return;
      }
      const chunks = [];
      answer.on("data", (c) => chunks.push(c));
      answer.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8").replace(/const VERSION = "[0-9a-f]{16}";/, 'const VERSION = "feedfacecafebeef";');
        const headers = { ...answer.headers };
        delete headers["content-length"];
        res.writeHead(answer.statusCode, headers);
        res.end(body);
      });
    });
    req.pipe(upstream);
  });
  await new Promise((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
  proxy.port = proxy.server.address().port;
  return proxy;
}

test("a new server version replaces the worker and its cache", async () => {
  const proxy = await upgradingProxy();
  const base = `http://127.0.0.1:${proxy.port}`;
  const context = await newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${base}/`);
    await controlled(page);
    const before = await servedVersion(page, base);
    assert.deepEqual(Object.keys(await cacheContents(page)), [`renkei-shell-${before}`]);

    proxy.upgraded = true;
    const replaced = page.evaluate(() => new Promise((resolve) => {
      navigator.serviceWorker.addEventListener("controllerchange", () => resolve(true), { once: true });
    }));
    await page.evaluate(async () => (await navigator.serviceWorker.ready).update());
    assert.equal(await replaced, true, "the new worker took over the open page");
    // Its activation (clearing the old caches) is done once it is "activated".
    await page.evaluate(() => new Promise((resolve) => {
      const worker = navigator.serviceWorker.controller;
      if (worker.state === "activated") resolve();
      worker.addEventListener("statechange", () => { if (worker.state === "activated") resolve(); });
    }));
    const contents = await cacheContents(page);
    assert.deepEqual(Object.keys(contents), ["renkei-shell-feedfacecafebeef"]);
    assert.deepEqual(contents["renkei-shell-feedfacecafebeef"].sort(), [...SHELL].sort());
  } finally {
    await context.close();
    proxy.server.closeAllConnections();
    await new Promise((resolve) => proxy.server.close(resolve));
  }
});

// The CDP id of the origin's worker registration.
async function registrationId(cdp) {
  const found = new Promise((resolve) => {
    cdp.on("ServiceWorker.workerRegistrationUpdated", ({ registrations }) => {
      const mine = registrations.find((r) => r.scopeURL === url("/") && !r.isDeleted);
      if (mine) resolve(mine.registrationId);
    });
  });
  await cdp.send("ServiceWorker.enable");
  return found;
}

async function notifications(page) {
  return page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications())
    .map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data })));
}

test("a push shows a fixed text, never the post; its click opens the group", async () => {
  const { context, page } = await logIn("sakura.ns.suzuki", {}, (c) => c.grantPermissions(["notifications"], { origin: origin() }));
  await controlled(page);
  const group = await groupId(page, YAMADA);
  const cdp = await context.newCDPSession(page);
  const registration = await registrationId(cdp);
  const push = async (data, expected) => {
    const since = await page.evaluate(() => Date.now());
    await cdp.send("ServiceWorker.deliverPushMessage", { origin: origin(), registrationId: registration, data });
    // Shown by this push: no older than it.
    await until(page, async ([body, after]) => (await (await navigator.serviceWorker.ready).getNotifications())
      .some((n) => n.body === body && n.timestamp >= after), [expected, since]);
  };

  await push(JSON.stringify({ kind: "post", group, id: 1 }), ja["push.post"]);
  let shown = await notifications(page);
  assert.deepEqual(shown, [{ title: "連携 Renkei", body: ja["push.post"], tag: `group-${group}`, data: { kind: "post", group } }]);
  assert.doesNotMatch(JSON.stringify(shown), /山田|太郎/);

  // One notification per group: a mention replaces the post, and a later post does not
  // hide the mention.
  await push(JSON.stringify({ kind: "mention", group, id: 2 }), ja["push.mention"]);
  await push(JSON.stringify({ kind: "post", group, id: 3 }), ja["push.mention"]);
  shown = await notifications(page);
  assert.equal(shown.filter((n) => n.tag === `group-${group}`).length, 1);

  // Kinds without a group, and a payload that cannot be read: still a notification.
  await push(JSON.stringify({ kind: "invitation", id: 4 }), ja["push.invitation"]);
  await push("not json", ja["push.generic"]);
  await push(JSON.stringify({ kind: "<b>山田</b>", group: "1; drop" }), ja["push.generic"]);
  shown = await notifications(page);
  assert.ok(shown.every((n) => n.title === "連携 Renkei" && Object.values(ja).includes(n.body)), JSON.stringify(shown));

  // The worker reads the language the page last used.
  await page.locator("#language").click();
  await push(JSON.stringify({ kind: "test", id: 5 }), en["push.test"]);

  // The click: an open window is brought forward and opens the group (the worker's own
  // click handler path; a notification cannot be clicked from CDP).
  await page.locator("#language").click(); // 日本語 again
  const [worker] = context.serviceWorkers();
  const data = (await notifications(page)).find((n) => n.tag === `group-${group}`).data;
  await worker.evaluate((d) => openApp(d), data);
  await page.locator("#timeline-title").getByText(YAMADA).waitFor();
  assert.equal(await worker.evaluate((d) => target(d).url, data), url(`/?group=${group}`));

  // With no window open, the click opens /?group=<id>: the app opens that group after
  // connecting, and the address loses the id.
  const opened = await context.newPage();
  await opened.goto(url(`/?group=${group}`));
  await opened.locator("#timeline-title").getByText(YAMADA).waitFor();
  assert.equal(opened.url(), url("/"));
  await context.close();
});

test("the page tells the server whether it is in front of the user", async () => {
  const context = await newContext();
  const page = await context.newPage();
  const told = new Promise((resolve) => {
    page.on("websocket", (ws) => ws.on("framesent", ({ payload }) => {
      if (payload.includes('"visibility"')) resolve(JSON.parse(payload));
    }));
  });
  await page.goto(url());
  await submitLogin(page, "sakura.ns.suzuki");
  assert.deepEqual(await told, { type: "visibility", visible: true });
  await context.close();
});

// ---- the settings, against the server's API ------------------------------------------------

// The fake push service: keeps what the renkei server posts to it.
async function pushService() {
  const service = { received: [], waiting: [], server: null, port: 0 };
  service.server = https.createServer({
    key: readFileSync(join(pushDir, "key.pem")), cert: readFileSync(join(pushDir, "cert.pem")),
  }, (req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const push = { path: req.url, headers: req.headers, body: Buffer.concat(chunks) };
      service.received.push(push);
      service.waiting.splice(0).forEach((resolve) => resolve());
      res.writeHead(201).end();
    });
  });
  await new Promise((resolve) => service.server.listen(0, "127.0.0.1", resolve));
  service.port = service.server.address().port;
  // The next push from now on; a push that never comes fails the test, not hangs it.
  service.next = () => new Promise((resolve, reject) => {
    const count = service.received.length;
    const timer = setTimeout(() => reject(new Error("no push reached the push service")), 20_000);
    const check = () => {
      if (service.received.length <= count) { service.waiting.push(check); return; }
      clearTimeout(timer);
      resolve(service.received[count]);
    };
    service.waiting.push(check);
  });
  service.close = () => new Promise((resolve) => { service.server.closeAllConnections(); service.server.close(resolve); });
  return service;
}

// A browser's side of a subscription (RFC 8291): its key pair and secret.
function browserKeys() {
  const ecdh = crypto.createECDH("prime256v1");
  ecdh.generateKeys();
  return { ecdh, p256dh: ecdh.getPublicKey().toString("base64url"), auth: crypto.randomBytes(16).toString("base64url") };
}

// Decrypts an aes128gcm push body (RFC 8188, RFC 8291) as the browser would.
function decrypt(body, keys) {
  const salt = body.subarray(0, 16);
  const idLength = body[20];
  const serverKey = body.subarray(21, 21 + idLength);
  const record = body.subarray(21 + idLength);
  const shared = keys.ecdh.computeSecret(serverKey);
  const info = Buffer.concat([Buffer.from("WebPush: info\0"), keys.ecdh.getPublicKey(), serverKey]);
  const ikm = Buffer.from(crypto.hkdfSync("sha256", shared, Buffer.from(keys.auth, "base64url"), info, 32));
  const cek = Buffer.from(crypto.hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: aes128gcm\0"), 16));
  const nonce = Buffer.from(crypto.hkdfSync("sha256", ikm, salt, Buffer.from("Content-Encoding: nonce\0"), 12));
  const decipher = crypto.createDecipheriv("aes-128-gcm", cek, nonce);
  decipher.setAuthTag(record.subarray(record.length - 16));
  const padded = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
  return padded.subarray(0, padded.lastIndexOf(2)).toString("utf8"); // the last record's delimiter
}

// Stands in for the browser's push service client (PushManager), which needs Google's
// servers: `subscribe` answers with the given endpoint and keys, kept across reloads.
function fakeSubscription(context, endpoint, keys) {
  return context.addInitScript(({ endpoint, p256dh, auth }) => {
    const held = () => JSON.parse(sessionStorage.getItem("test.subscription") ?? "null");
    const make = (key) => ({
      endpoint, expirationTime: null,
      options: { userVisibleOnly: true, applicationServerKey: Uint8Array.from(key).buffer },
      toJSON: () => ({ endpoint, expirationTime: null, keys: { p256dh, auth } }),
      unsubscribe: async () => { sessionStorage.removeItem("test.subscription"); return true; },
    });
    PushManager.prototype.subscribe = async function (options) {
      const key = [...new Uint8Array(options.applicationServerKey)];
      sessionStorage.setItem("test.subscription", JSON.stringify(key));
      return make(key);
    };
    PushManager.prototype.getSubscription = async function () {
      const key = held();
      return key ? make(key) : null;
    };
  }, { endpoint, p256dh: keys.p256dh, auth: keys.auth });
}

async function openNotifications(page) {
  await page.locator("#account-open").click();
  const section = page.locator("#notify-section");
  await section.getByRole("heading", { name: "通知" }).waitFor();
  await page.locator("#notify-settings:not([disabled])").waitFor();
  return section;
}

// Changes a setting and waits for the server's answer to the save.
async function saved(page, change) {
  const answer = page.waitForResponse((r) => r.url().endsWith("/api/v1/notifications/settings") && r.request().method() === "PUT");
  await change();
  return answer;
}

async function settingsOf(page) {
  return (await page.request.get(url("/api/v1/notifications/settings"))).json();
}

test("e-mail, quiet hours and a muted group are kept; the section says where mail goes", async () => {
  const { context, page } = await logIn("sakura.ns.suzuki");
  let section = await openNotifications(page);
  const email = section.getByLabel("メール通知");
  assert.equal(await email.isChecked(), true);
  await section.getByText("送信先: ").waitFor();
  await section.getByRole("button", { name: "テスト通知を送る" }).click();
  await section.getByText("テスト通知を送りました: プッシュ通知 0 台、メール あり。").waitFor();

  await saved(page, () => email.uncheck());
  await saved(page, () => section.getByLabel("夜間は通知しない").check());
  await saved(page, () => section.getByLabel("開始").fill("23:00"));
  await saved(page, () => section.getByLabel("終了").fill("06:30"));
  await section.getByText("保存しました。").waitFor();
  // The same time twice is refused, and the form shows what is stored.
  const refused = await saved(page, () => section.getByLabel("終了").fill("23:00"));
  assert.equal(refused.status(), 400);
  await section.getByText(ja["error.invalid_quiet_hours"]).waitFor();
  assert.equal(await section.getByLabel("終了").inputValue(), "06:30");
  await page.locator("#account-close").click();

  // 「このグループの通知をオフ」 in the members dialog; the list marks the group.
  await openGroup(page, YAMADA);
  await page.locator("#members-open").click();
  const muted = page.waitForResponse((r) => /\/api\/v1\/groups\/\d+\/mute$/.test(r.url()));
  await page.getByLabel("このグループの通知をオフ").check();
  assert.equal((await muted).status(), 204);
  await page.locator("#members").getByRole("button", { name: "閉じる" }).click();
  await page.getByRole("button", { name: "一覧へ戻る" }).click();
  await page.locator("button.group", { hasText: YAMADA }).locator(".muted-mark", { hasText: "通知オフ" }).waitFor();

  await page.reload();
  await page.getByText("接続中").waitFor();
  await page.locator("button.group", { hasText: YAMADA }).locator(".muted-mark").waitFor();
  assert.equal(await page.locator("button.group .muted-mark").count(), 1, "only that group");
  section = await openNotifications(page);
  assert.equal(await section.getByLabel("メール通知").isChecked(), false);
  assert.equal(await section.getByLabel("夜間は通知しない").isChecked(), true);
  assert.equal(await section.getByLabel("開始").inputValue(), "23:00");
  assert.equal(await section.getByLabel("終了").inputValue(), "06:30");
  await section.getByRole("button", { name: "テスト通知を送る" }).click();
  await section.getByText(ja["notify.test_nowhere"]).waitFor();
  const stored = await settingsOf(page);
  assert.deepEqual([stored.email, stored.quiet_hours], [false, { start: "23:00", end: "06:30" }]);

  // Unmuted from the same place.
  await page.locator("#account-close").click();
  await openGroup(page, YAMADA);
  await page.locator("#members-open").click();
  assert.equal(await page.getByLabel("このグループの通知をオフ").isChecked(), true);
  await page.getByLabel("このグループの通知をオフ").uncheck();
  await page.locator("#members").getByRole("button", { name: "閉じる" }).click();
  await page.getByRole("button", { name: "一覧へ戻る" }).click();
  await page.locator("button.group .muted-mark").waitFor({ state: "detached" });
  // Quiet hours off again (the next tests push, at any hour).
  section = await openNotifications(page);
  await saved(page, () => section.getByLabel("夜間は通知しない").uncheck());
  assert.equal((await settingsOf(page)).quiet_hours, null);
  await page.locator("#account-close").click();

  // In English too.
  await page.locator("#language").click();
  await page.locator("#account-open").click();
  const english = page.locator("#notify-section");
  await english.getByRole("heading", { name: "Notifications" }).waitFor();
  await english.getByText("Sent to: sakura.ns.suzuki").waitFor();
  await english.getByLabel("No notifications at night").waitFor();
  await page.locator("#account-close").click();
  await page.locator("#language").click();
  await context.close();
});

test("where this browser has no push service, turning push on says so instead of pretending", async () => {
  // Incognito (Playwright's contexts): Chromium refuses to subscribe at once.
  const { context, page } = await logIn("sakura.ns.suzuki", {}, (c) => c.grantPermissions(["notifications"], { origin: origin() }));
  await controlled(page);
  const section = await openNotifications(page);
  const device = section.getByLabel("この端末でプッシュ通知を受け取る");
  await device.click(); // not check(): the switch goes back off as soon as it fails
  const problem = section.locator("#notify-device-error");
  await problem.filter({ hasText: "この端末を通知先に登録できませんでした" }).waitFor();
  assert.equal(await device.isChecked(), false);
  assert.equal((await settingsOf(page)).push_subscriptions, 0);
  await context.close();

  // A profile whose push service never answers (FCM is out of reach here): a clear
  // timeout rather than a switch that stays on "registering" for ever.
  const profile = mkdtempSync(join(tmpdir(), "renkei-profile-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    viewport: { width: 390, height: 844 }, locale: "ja-JP",
  });
  try {
    await browser.grantPermissions(["notifications"], { origin: origin() });
    await browser.clock.install();
    const tab = browser.pages()[0] ?? await browser.newPage();
    await tab.goto(url());
    await submitLogin(tab, "sakura.ns.suzuki");
    await tab.getByText("接続中").waitFor();
    await controlled(tab);
    const mine = await openNotifications(tab);
    await mine.getByLabel("この端末でプッシュ通知を受け取る").click();
    await mine.getByText(ja["notify.subscribing"]).waitFor();
    // The page's 30 s limit starts once it asked the push service (after fetching the
    // server's key): moved on until it has passed.
    const timedOut = mine.locator("#notify-device-error").filter({ hasText: ja["notify.timeout"] });
    for (let i = 0; i < 10 && !(await timedOut.isVisible()); i++) await tab.clock.runFor(10_000);
    await timedOut.waitFor();
    assert.equal(await mine.getByLabel("この端末でプッシュ通知を受け取る").isChecked(), false);
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
});

test("a subscription on a push service the server does not allow is refused with its reason", async () => {
  const keys = browserKeys();
  const { context, page } = await logIn("sakura.ns.suzuki", {}, async (c) => {
    await c.grantPermissions(["notifications"], { origin: origin() });
    await fakeSubscription(c, "https://push.example.net/send/abc", keys);
  });
  await controlled(page);
  const section = await openNotifications(page);
  await section.getByLabel("この端末でプッシュ通知を受け取る").click();
  await section.locator("#notify-device-error").filter({ hasText: ja["error.push_host_not_allowed"] }).waitFor();
  assert.equal(await section.getByLabel("この端末でプッシュ通知を受け取る").isChecked(), false);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("test.subscription")), null, "the browser's side was undone");
  await context.close();
});

test("from the switch to the lock screen: the server's push reaches the worker with no word of the post", async () => {
  const service = await pushService();
  const keys = browserKeys();
  try {
    const { context, page } = await logIn("sakura.ns.suzuki", {}, async (c) => {
      await c.grantPermissions(["notifications"], { origin: origin() });
      await fakeSubscription(c, `https://localhost:${service.port}/send/nurse-phone`, keys);
    });
    await controlled(page);
    // Whatever earlier tests chose: pushes on, no quiet hours.
    const reset = await page.evaluate(async () => (await fetch("/api/v1/notifications/settings", {
      method: "PUT", headers: { "content-type": "application/json" },
      body: JSON.stringify({ push: true, email: false, quiet_hours: null }),
    })).status);
    assert.equal(reset, 200);
    const group = await groupId(page, YAMADA);
    const cdp = await context.newCDPSession(page);
    const registration = await registrationId(cdp);
    const show = async (push) => {
      const since = await page.evaluate(() => Date.now());
      await cdp.send("ServiceWorker.deliverPushMessage", { origin: origin(), registrationId: registration, data: decrypt(push.body, keys) });
      await until(page, async (from) => (await (await navigator.serviceWorker.ready).getNotifications()).some((n) => n.timestamp >= from), since);
      return (await notifications(page)).sort((a, b) => b.timestamp - a.timestamp)[0];
    };

    let section = await openNotifications(page);
    await section.getByLabel("この端末でプッシュ通知を受け取る").check();
    await section.getByText(ja["notify.device_on"]).waitFor();
    await section.getByText("通知を受け取る端末: 1 台").waitFor();
    await section.getByLabel("夜間は通知しない").check();
    await section.getByText("保存しました。").waitFor();
    await section.locator("#notify-heading").evaluate((heading) => heading.scrollIntoView({ block: "start" }));
    await screenshot(page, "notifications-phone");
    await page.setViewportSize({ width: 1100, height: 900 });
    await section.locator("#notify-heading").evaluate((heading) => heading.scrollIntoView({ block: "start" }));
    await screenshot(page, "notifications-desktop");
    await page.setViewportSize({ width: 390, height: 844 });
    await saved(page, () => section.getByLabel("夜間は通知しない").uncheck());

    // The test notification, as the server sent it to the push service.
    const tested = service.next();
    await section.getByRole("button", { name: "テスト通知を送る" }).click();
    await section.getByText(/プッシュ通知 1 台/).waitFor();
    const test = await tested;
    assert.equal(test.path, "/send/nurse-phone");
    assert.equal(test.headers["content-encoding"], "aes128gcm");
    const { public_key: serverKey } = await (await page.request.get(url("/api/v1/push/key"))).json();
    assert.match(test.headers.authorization, new RegExp(`^vapid t=[\\w-]+\\.[\\w-]+\\.[\\w-]+, k=${serverKey}$`));
    assert.deepEqual(Object.keys(JSON.parse(decrypt(test.body, keys))).sort(), ["id", "kind"]);
    let shown = await show(test);
    assert.deepEqual([shown.title, shown.body], ["連携 Renkei", ja["push.test"]]);
    await page.locator("#account-close").click();

    // The nurse puts the phone away (the page is hidden); the doctor posts.
    await page.evaluate(() => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    const doctor = await logIn("sakura.dr.tanaka");
    await openGroup(doctor.page, YAMADA);
    const posted = service.next();
    await send(doctor.page, "山田さん 38.5℃ 発熱あり 至急 PX-1");
    const push = await posted;
    const payload = decrypt(push.body, keys);
    assert.deepEqual(JSON.parse(payload).group, group);
    assert.doesNotMatch(payload, /山田|発熱|PX-1|田中/);
    shown = await show(push);
    assert.deepEqual([shown.title, shown.body, shown.tag], ["連携 Renkei", ja["push.post"], `group-${group}`]);
    assert.doesNotMatch(JSON.stringify(shown), /山田|発熱|PX-1/);
    await doctor.context.close();

    // The session ends (logout, or the idle lock) and the server forgets the device; the
    // next login registers it again by itself.
    await page.evaluate(() => {
      delete document.visibilityState;
      document.dispatchEvent(new Event("visibilitychange"));
    });
    await page.getByRole("button", { name: "ログアウト" }).click();
    await submitLogin(page, "sakura.ns.suzuki");
    await page.getByText("接続中").waitFor();
    await until(page, async () => (await (await fetch("/api/v1/notifications/settings")).json()).push_subscriptions === 1);

    // Off: the server and the browser both forget it.
    section = await openNotifications(page);
    await section.getByText(ja["notify.device_on"]).waitFor();
    await section.getByLabel("この端末でプッシュ通知を受け取る").uncheck();
    await section.getByText("通知を受け取る端末: 0 台").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("test.subscription")), null);
    await context.close();
  } finally {
    await service.close();
  }
});

test("admins see whom nothing reaches and whose mail was refused", async () => {
  const put = (page, body) => page.evaluate(async (b) => (await fetch("/api/v1/notifications/settings", {
    method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(b),
  })).status, body);
  // The nurse: no device, no e-mail.
  const nurse = await logIn("sakura.ns.suzuki");
  assert.equal(await put(nurse.page, { push: true, email: false, quiet_hours: null }), 200);
  await nurse.context.close();
  // The doctor's test mail is refused (the demo's logins are not mail addresses).
  const doctor = await logIn("sakura.dr.tanaka");
  assert.equal(await put(doctor.page, { push: true, email: true, quiet_hours: null }), 200);
  let section = await openNotifications(doctor.page);
  await section.getByRole("button", { name: "テスト通知を送る" }).click();
  await section.getByText(/メール あり/).waitFor();
  await until(doctor.page, async () => (await (await fetch("/api/v1/notifications/settings")).json()).email_bounced);
  await doctor.page.locator("#account-close").click();
  section = await openNotifications(doctor.page);
  await section.getByText(ja["notify.email_bounced"]).waitFor();
  await doctor.context.close();

  const admin = await logIn("sakura.admin", { viewport: { width: 1100, height: 900 } });
  await admin.page.locator("#admin-open").click();
  await admin.page.getByRole("tab", { name: "職員", selected: true }).waitFor();
  const row = (name) => admin.page.locator(".person", { hasText: name });
  await row("鈴木 花子").getByText("通知手段なし").waitFor();
  // A refused address reaches nobody either: both, the second saying why.
  await row("田中 一郎").getByText("メール不達").waitFor();
  await row("田中 一郎").getByText("通知手段なし").waitFor();
  assert.equal(await row("佐倉 直樹").locator(".tag.warn").count(), 0);
  await admin.context.close();
});
