// What every browser test file shares: a renkei server on a demo city of its own (a fresh
// data directory and port per file), headless Debian Chromium, logging in, posting, and
// screenshots. Needs RENKEI_BIN (the renkei binary) and /usr/bin/chromium (or CHROMIUM).
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { chromium } from "playwright-core";

const BIN = process.env.RENKEI_BIN ?? "../../target/debug/renkei";
// `RENKEI_SCREENSHOTS=../../docs/screenshots npm test` refreshes the README's pictures.
const SCREENSHOTS = process.env.RENKEI_SCREENSHOTS ?? join(tmpdir(), "renkei-screenshots");

// The shared state of one test file: `server` changes when a test restarts it.
export const env = { port: 0, server: null, browser: null, logins: {}, dataDir: "" };

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
    probe.on("error", reject);
  });
}

// Starts renkei and resolves once it listens.
export function startServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, [], {
      // Admins log in with a password alone here; the second factor has its own test.
      env: {
        ...process.env, RENKEI_DATA_DIR: env.dataDir, RENKEI_LISTEN: `127.0.0.1:${env.port}`,
        // Test files run at once: each server its own metrics port.
        RENKEI_METRICS_LISTEN: "127.0.0.1:0",
        RENKEI_LOG_FORMAT: "json", RENKEI_TWO_FACTOR: "optional",
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let buffered = "";
    child.stderr.on("data", (chunk) => {
      buffered += chunk;
      if (buffered.includes('"listening"')) resolve(child);
    });
    child.on("exit", (code) => reject(new Error(`renkei exited with ${code}: ${buffered}`)));
  });
}

export function stopServer(child) {
  return new Promise((resolve) => {
    child.removeAllListeners("exit");
    child.on("exit", resolve);
    child.kill("SIGTERM");
  });
}

// Registers the file's set-up and clean-up: a demo city, its server, the browser. The
// demo's groups start empty unless `week` asks for its week of posts.
export function useServer({ week = false } = {}) {
  before(async () => {
    env.dataDir = mkdtempSync(join(tmpdir(), "renkei-web-"));
    const demo = spawnSync(BIN, week ? ["demo"] : ["demo", "--empty"], { env: { ...process.env, RENKEI_DATA_DIR: env.dataDir }, encoding: "utf8" });
    assert.equal(demo.status, 0, demo.stderr);
    env.logins = Object.fromEntries(
      demo.stdout.split("\n").map((l) => l.trim().split(/\s+/)).filter((w) => w[0]?.includes(".")).map((w) => [w[0], w[1]]),
    );
    env.port = await freePort();
    env.server = await startServer();
    env.browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
  });
  after(async () => {
    await env.browser?.close();
    if (env.server) await stopServer(env.server);
    rmSync(env.dataDir, { recursive: true, force: true });
  });
}

export const url = (path = "/") => `http://127.0.0.1:${env.port}${path}`;

// A phone-sized browser context (most helpers use a smartphone), in Japan.
export function newContext(options = {}) {
  return env.browser.newContext({ viewport: { width: 390, height: 844 }, locale: "ja-JP", timezoneId: "Asia/Tokyo", ...options });
}

// Fills the login form and submits it (a second factor, if asked, is the caller's).
export async function submitLogin(page, login, password = env.logins[login]) {
  const form = page.locator("#login-form");
  await form.getByLabel("ログインID").fill(login);
  await form.getByLabel("パスワード").fill(password);
  await form.getByRole("button", { name: "ログイン" }).click();
}

export async function logIn(login, options = {}, prepare = async () => {}) {
  const context = await newContext(options);
  await prepare(context);
  const page = await context.newPage();
  await page.goto(url());
  await submitLogin(page, login);
  await page.getByText("接続中").waitFor();
  return { context, page };
}

export async function openGroup(page, name) {
  await page.getByRole("button", { name: new RegExp(name) }).first().click();
  await page.locator("#timeline-title").getByText(name).waitFor();
}

export async function post(page, text) {
  await page.getByLabel("投稿内容").fill(text);
  await page.getByRole("button", { name: "内容を確認" }).click();
  await page.locator("#confirm").waitFor({ state: "visible" });
}

// Posts through the confirm step.
export async function send(page, text) {
  await post(page, text);
  await page.locator("#confirm-send").click();
  await page.locator("#timeline .post", { hasText: text }).last().waitFor();
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}
