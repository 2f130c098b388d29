// Reaching a nurse who is not looking at the page, in a real browser: the installable app
// (manifest, icons, service worker), the shell that starts offline and caches nothing
// else, a new server version replacing the worker, content-free push notifications and
// where their click leads, and the notification settings.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import vm from "node:vm";
import { chromium } from "playwright-core";
import { env, logIn, newContext, openGroup, screenshot, send, submitLogin, url, useServer } from "./harness.mjs";

useServer();

const YAMADA = "山田 太郎 様";
const source = (file) => readFileSync(new URL(`../${file}`, import.meta.url), "utf8");
const sandbox = {};
vm.runInNewContext(source("i18n.js"), sandbox);
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
    const upstream = http.request({ host: "127.0.0.1", port: env.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
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
