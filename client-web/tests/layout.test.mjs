// The chat laid out as an app, on a phone (390×844) and a desktop (1280×800): with 200
// posts in a group the page holds still, the header and the composer stay in view and the
// timeline scrolls on its own, opening at the first unread post (ここから未読) or at the
// newest; nothing is focused on opening a group; every control is at least 44×44 px; the
// unread count is a pill by the group's name and in the tab's title; older posts load
// without moving what is on screen; new posts do not pull a reader who scrolled up. Also:
// 利用者 for care managers and helpers, and the consent banner (登録しました) on a phone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { logIn, openGroup, post, screenshot, useServer } from "./harness.mjs";

// 200 posts are made in a few seconds: the per-user post rate (10/s, bursts of 30) would
// make it take 20 s. Read by the server this file starts.
process.env.RENKEI_POSTS_PER_SECOND = "1000";
process.env.RENKEI_POST_BURST = "1000";

useServer();

const PHONE = { viewport: { width: 390, height: 844 } };
const DESKTOP = { viewport: { width: 1280, height: 800 } };
const SATO = "佐藤 ハナ 様";
const COUNT = 200;

// Posts `texts` into a group over a WebSocket of the page's own session (as another
// device of the same user would), resolving once every post is acknowledged. Bounded:
// it gives up after 30 s.
function postAll(page, group, texts) {
  return page.evaluate(({ group, texts }) => new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://${location.host}/ws`);
    const waiting = new Set();
    const timer = setTimeout(() => { socket.close(); reject(new Error(`${waiting.size} posts unacknowledged`)); }, 30_000);
    socket.onmessage = (m) => {
      const message = JSON.parse(m.data);
      if (message.type === "welcome") {
        texts.forEach((text, i) => {
          const id = `layout-${Date.now()}-${i}`;
          waiting.add(id);
          socket.send(JSON.stringify({ type: "post", group, client_id: id, text }));
        });
      } else if (message.type === "ack") {
        waiting.delete(message.client_id);
        if (waiting.size === 0) { clearTimeout(timer); socket.close(); resolve(texts.length); }
      } else if (message.type === "error") {
        clearTimeout(timer);
        socket.close();
        reject(new Error(`refused: ${message.code}`));
      }
    };
    socket.onerror = () => { clearTimeout(timer); reject(new Error("socket failed")); };
  }), { group, texts });
}

async function groupId(page, name) {
  return Number(await page.locator("button.group", { hasText: name }).first().getAttribute("data-group"));
}

// The poster (伊藤 由美) writes COUNT posts into 佐藤 ハナ 様 once, for every test.
let posted = null;
function seed() {
  posted ??= (async () => {
    const nurse = await logIn("himawari.ns.ito", DESKTOP);
    const group = await groupId(nurse.page, SATO);
    const texts = Array.from({ length: COUNT }, (_, i) => `申し送り LX-${String(i + 1).padStart(3, "0")}: 体温 36.${i % 10} 度、食事は半量。`);
    assert.equal(await postAll(nurse.page, group, texts), COUNT);
    await nurse.context.close();
    return group;
  })();
  return posted;
}

// What must hold on the chat screen whatever the viewport: the page does not scroll, the
// fixed parts are inside the viewport, the timeline is a scroll container of its own.
async function assertAppLayout(page, label) {
  const layout = await page.evaluate(() => {
    const box = (selector) => {
      const r = document.querySelector(selector).getBoundingClientRect();
      return { top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: r.height };
    };
    const timeline = document.getElementById("timeline");
    return {
      inner: { width: innerWidth, height: innerHeight },
      scrollHeight: document.scrollingElement.scrollHeight,
      bar: box("header.bar"), head: box(".timeline-head"), composer: box("#composer"),
      timeline: { scrollHeight: timeline.scrollHeight, clientHeight: timeline.clientHeight, overflow: getComputedStyle(timeline).overflowY },
    };
  });
  assert.ok(layout.scrollHeight <= layout.inner.height + 1,
    `${label}: the page itself scrolls (${layout.scrollHeight} > ${layout.inner.height})`);
  for (const part of ["bar", "head", "composer"]) {
    const r = layout[part];
    assert.ok(r.top >= 0 && r.bottom <= layout.inner.height + 0.5 && r.height > 0 && r.right <= layout.inner.width + 0.5,
      `${label}: ${part} out of the viewport: ${JSON.stringify(r)} in ${JSON.stringify(layout.inner)}`);
  }
  assert.ok(layout.timeline.scrollHeight > layout.timeline.clientHeight * 2 && layout.timeline.overflow === "auto",
    `${label}: the timeline does not scroll on its own: ${JSON.stringify(layout.timeline)}`);
}

// Every visible control of the chat screen (buttons, links, labels standing for inputs,
// inputs) measured: the ones smaller than 44×44 px, by name and size.
async function smallTargets(page) {
  return page.evaluate(() => {
    const offenders = [];
    for (const el of document.querySelectorAll("button, a[href], label[for], input, select, textarea, summary")) {
      if (el.closest("dialog:not([open])") || el.closest(".visually-hidden") || el.classList.contains("visually-hidden")) continue;
      if (el.type === "hidden") continue;
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue; // not displayed
      if (getComputedStyle(el).visibility === "hidden") continue;
      if (r.width < 44 || r.height < 44) {
        const name = (el.getAttribute("aria-label") || el.textContent || el.id || el.tagName).trim().slice(0, 30);
        offenders.push(`${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""} "${name}" ${Math.round(r.width)}×${Math.round(r.height)}`);
      }
    }
    return [...new Set(offenders)];
  });
}

// Whether an element is inside the timeline's visible part.
function inTimelineView(page, selector) {
  return page.evaluate((selector) => {
    const list = document.getElementById("timeline").getBoundingClientRect();
    const el = document.querySelector(selector);
    if (!el) return false;
    const r = el.getBoundingClientRect();
    return r.top >= list.top - 1 && r.bottom <= list.bottom + 1 && r.height > 0;
  }, selector);
}

function atBottom(page) {
  return page.evaluate(() => {
    const list = document.getElementById("timeline");
    return list.scrollHeight - list.scrollTop - list.clientHeight <= 8;
  });
}

// The app badge, where the platform has one: recorded by a stand-in for the test.
async function recordBadge(context) {
  await context.addInitScript(() => {
    window.badges = [];
    Object.defineProperty(Navigator.prototype, "setAppBadge", {
      configurable: true, value: (n) => { window.badges.push(n); return Promise.resolve(); },
    });
    Object.defineProperty(Navigator.prototype, "clearAppBadge", {
      configurable: true, value: () => { window.badges.push(0); return Promise.resolve(); },
    });
  });
}

const SIZES = [["phone", PHONE, "himawari.pt.watanabe"], ["desktop", DESKTOP, "sakura.dr.tanaka"]];

// Holds back what the server sends about `group` after its first two events, until
// `release()`: the group is opened while its catch-up still streams in, a post at a time,
// and its unread page is still on its way (a slow network, a busy server). Nothing else
// is held, and the order of everything is kept.
function gate(group) {
  const held = [];
  let open = false;
  let seen = 0;
  let holding;
  const holds = new Promise((resolve) => { holding = resolve; }); // the first held message
  let release = () => { open = true; };
  const route = (context) => context.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    release = () => { open = true; for (const m of held.splice(0)) ws.send(m); };
    server.onMessage((message) => {
      const m = JSON.parse(message);
      if (!open && m.group === group && (m.type !== "event" || ++seen > 2)) { held.push(message); holding(); }
      else ws.send(message);
    });
  });
  return { route, release: () => release(), holds, held };
}

// The readers first: the posters' tests add posts they would count. The desktop reader
// opens the group while its posts are still arriving.
for (const [size, viewport, reader] of SIZES) {
  test(`${size}: 200 unread posts open at ここから未読 with the page holding still; pill, title and badge count them`, async () => {
    const group = await seed();
    const slow = size === "desktop" ? gate(group) : null;
    const { context, page } = await logIn(reader, viewport, async (c) => {
      await recordBadge(c);
      if (slow) await slow.route(c);
    });

    // The list: the unread count is a small pill right after the group's name.
    const button = page.locator("button.group", { hasText: SATO });
    const badge = button.locator(".badge");
    await badge.filter({ hasText: String(COUNT) }).waitFor();
    // Measured in one go: the list is redrawn as counts change.
    const { name, pill } = await page.evaluate((label) => {
      const entry = [...document.querySelectorAll("button.group")].find((b) => b.textContent.includes(label));
      const box = (el) => { const r = el.getBoundingClientRect(); return { x: r.x, y: r.y, width: r.width, height: r.height }; };
      return { name: box(entry.querySelector(".group-name")), pill: box(entry.querySelector(".badge")) };
    }, SATO);
    assert.ok(pill.width < 80, `the pill is ${pill.width}px wide`);
    assert.ok(pill.x >= name.x + name.width - 1 && pill.x - (name.x + name.width) < 16,
      `the pill is not next to the name: name ${JSON.stringify(name)}, pill ${JSON.stringify(pill)}`);
    assert.ok(Math.abs((pill.y + pill.height / 2) - (name.y + name.height / 2)) < 12, "the pill is on the name's line");
    assert.match(await page.title(), new RegExp(`^\\(${COUNT}\\) 連携 Renkei$`), "the title carries the unread total");
    assert.ok((await page.evaluate(() => window.badges)).includes(COUNT), "the app badge shows the total");
    if (size === "phone") {
      assert.deepEqual(await smallTargets(page), [], "tap targets under 44 px on the group list");
      await screenshot(page, "layout-phone-groups");
    }

    // (The desktop reader's first two posts are in the page before it opens the group.)
    if (slow) await slow.holds;
    await openGroup(page, SATO);
    if (slow) {
      // Opened on its first two posts; the rest of the catch-up and the unread page after.
      assert.equal(await page.locator("#timeline .post").count(), 2);
      slow.release();
    }
    // Opened at the first unread post, fetched back from the older pages.
    const marker = page.locator("#unread-marker");
    await marker.waitFor();
    await page.locator("#timeline .post", { hasText: "LX-001" }).waitFor();
    await page.waitForFunction(() => {
      const list = document.getElementById("timeline").getBoundingClientRect();
      const r = document.getElementById("unread-marker")?.getBoundingClientRect();
      return r && r.top >= list.top - 1 && r.bottom <= list.bottom + 1;
    }, null, { timeout: 5000 });
    assert.equal(await marker.textContent(), "ここから未読");
    assert.ok(await inTimelineView(page, '#timeline .post[data-seq]'), "the first unread post shows under the marker");
    const first = await page.evaluate(() => document.querySelector("#unread-marker + .post").textContent);
    assert.match(first, /LX-001/, "the marker stands above the first unread post");
    assert.equal(await page.locator("#timeline .post").count(), COUNT);

    // Nothing focused: a phone's keyboard does not cover the timeline.
    const focused = await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
    assert.ok(["BODY", "timeline"].includes(focused), `focused on opening: ${focused}`);
    await assertAppLayout(page, size);
    assert.deepEqual(await smallTargets(page), [], "tap targets under 44 px on the chat screen");

    // Read: the title and the badge clear.
    await page.waitForFunction(() => document.title === "連携 Renkei");
    await page.waitForFunction(() => window.badges.at(-1) === 0);
    if (size === "phone") await screenshot(page, "layout-phone-unread");
    await context.close();
  });
}

for (const [size, viewport] of SIZES) {
  test(`${size}: the poster's own group opens at the newest post; older posts load without a jump; new posts do not pull a reader up`, async () => {
    const group = await seed();
    const poster = await logIn("himawari.ns.ito", viewport);
    await openGroup(poster.page, SATO);
    const last = poster.page.locator("#timeline .post", { hasText: `LX-${COUNT}` });
    await last.waitFor();
    await poster.page.waitForFunction(() => {
      const list = document.getElementById("timeline");
      return list.scrollHeight - list.scrollTop - list.clientHeight <= 8;
    });
    assert.ok(await inTimelineView(poster.page, "#timeline > li:last-child"), "the newest post shows");
    assert.equal(await poster.page.locator("#unread-marker").count(), 0, "no marker when nothing is unread");
    const focused = await poster.page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
    assert.ok(["BODY", "timeline"].includes(focused), `focused on opening: ${focused}`);
    await assertAppLayout(poster.page, `${size}, newest`);
    assert.deepEqual(await smallTargets(poster.page), [], "tap targets under 44 px on one's own posts");
    await screenshot(poster.page, `layout-${size}-chat`);

    // Scrolled to the top: the page before loads above, and what was on screen stays put.
    const held = await poster.page.locator("#timeline .post").count();
    assert.ok(held < COUNT, `only the latest page is held at first (${held})`);
    const anchor = await poster.page.evaluate(() => {
      const list = document.getElementById("timeline");
      list.scrollTop = 0;
      const item = list.querySelector(".post[data-seq]");
      return { seq: item.dataset.seq, top: item.getBoundingClientRect().top };
    });
    await poster.page.waitForFunction((held) => document.querySelectorAll("#timeline .post").length > held, held, { timeout: 5000 });
    const moved = await poster.page.evaluate((seq) =>
      document.querySelector(`#timeline .post[data-seq="${seq}"]`).getBoundingClientRect().top, anchor.seq);
    assert.ok(Math.abs(moved - anchor.top) <= 2, `the post at the top moved from ${anchor.top} to ${moved}`);

    // A reader scrolled up stays where they are when a post arrives; a button offers the new one.
    const before = await poster.page.evaluate(() => document.getElementById("timeline").scrollTop);
    await postAll(poster.page, group, [`追加の申し送り NX-${size}-1`]);
    await poster.page.locator("#timeline .post", { hasText: `NX-${size}-1` }).waitFor();
    assert.equal(await poster.page.evaluate(() => document.getElementById("timeline").scrollTop), before, "no jump");
    await poster.page.locator("#jump-new").waitFor();
    assert.ok(!(await atBottom(poster.page)));
    await poster.page.locator("#jump-new").click();
    assert.ok(await atBottom(poster.page), "the button goes to the newest post");
    await poster.page.locator("#jump-new").waitFor({ state: "hidden" });

    // At the bottom, it stays at the bottom as posts arrive.
    await postAll(poster.page, group, [`追加の申し送り NX-${size}-2`]);
    await poster.page.locator("#timeline .post", { hasText: `NX-${size}-2` }).waitFor();
    assert.ok(await inTimelineView(poster.page, "#timeline > li:last-child"), "the new post shows at the bottom");
    assert.ok(await atBottom(poster.page));

    // The keyboard: the visual viewport shrinks, the composer stays above it.
    await poster.page.setViewportSize({ width: viewport.viewport.width, height: 480 });
    await poster.page.waitForFunction(() => document.getElementById("composer").getBoundingClientRect().bottom <= innerHeight + 0.5);
    await assertAppLayout(poster.page, `${size}, short viewport`);
    await poster.context.close();
  });
}

test("a helper's confirm step says 利用者; a doctor's says 患者", async () => {
  const helper = await logIn("midori.hp.yoshida");
  await openGroup(helper.page, SATO);
  await post(helper.page, "訪問介護で入浴介助をしました。");
  assert.equal(await helper.page.locator("#confirm-patient-label").textContent(), "利用者");
  assert.equal(await helper.page.locator("#confirm-send").textContent(), "この利用者のグループに送信する");
  await helper.page.getByRole("button", { name: "戻って修正する" }).click();
  await helper.context.close();

  const doctor = await logIn("sakura.dr.tanaka");
  await openGroup(doctor.page, SATO);
  await post(doctor.page, "往診予定を確認しました。");
  assert.equal(await doctor.page.locator("#confirm-patient-label").textContent(), "患者");
  assert.equal(await doctor.page.locator("#confirm-send").textContent(), "この患者のグループに送信する");
  await doctor.context.close();
});

test("the header names the patient once", async () => {
  const nurse = await logIn("himawari.ns.ito");
  await openGroup(nurse.page, SATO);
  const head = await nurse.page.locator(".timeline-head").innerText();
  assert.equal(head.split("佐藤 ハナ").length - 1, 1, `the patient's name more than once: ${head}`);
  await nurse.context.close();
});

test("on a phone, recording a consent says 登録しました (and no longer 作成しました); tables scroll instead of squeezing names", async () => {
  const admin = await logIn("sakura.admin");
  await admin.page.locator("#admin-open").click();
  await admin.page.getByRole("tab", { name: "グループと精査" }).click();
  await admin.page.getByText("グループを作成する").click();
  const create = admin.page.locator("details.creating form");
  await create.getByLabel("患者・利用者の氏名").fill("長谷川 秋子");
  await create.getByLabel("生年月日").fill("1936-09-30");
  await create.getByRole("button", { name: "作成する" }).click();
  await admin.page.locator(".result", { hasText: "作成しました" }).waitFor();
  const card = admin.page.locator("article.group-card", { hasText: "長谷川 秋子" });
  await card.getByLabel("署名日").fill("2026-11-20");
  await card.getByRole("button", { name: "同意書を登録する" }).click();
  await admin.page.locator(".result", { hasText: "登録しました" }).waitFor();
  assert.equal(await admin.page.locator(".result", { hasText: "作成しました" }).count(), 0, "the old banner is gone");

  // A member's name stays on one line: the table scrolls sideways in a focusable region.
  const wrap = admin.page.locator("article.group-card", { hasText: "山田 太郎" }).locator(".table-wrap");
  assert.equal(await wrap.getAttribute("tabindex"), "0");
  assert.match(await wrap.getAttribute("aria-label"), /山田 太郎/);
  const cell = await wrap.locator("td strong", { hasText: "田中 一郎" }).boundingBox();
  assert.ok(cell.height < 32 && cell.width > cell.height, `the name is squeezed: ${JSON.stringify(cell)}`);
  assert.ok(await admin.page.evaluate(() => document.scrollingElement.scrollWidth <= innerWidth + 1), "the page does not scroll sideways");
  await admin.context.close();
});
