// Working together on a post in a real browser: unread counts that clear on every device,
// 既読 with who read, 確認しました, @mentions, search in Japanese, photos and the record
// export.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { logIn, openGroup, post, screenshot, send, url, useServer } from "./harness.mjs";

useServer();

const WIDE = { viewport: { width: 1100, height: 900 } };
const YAMADA = "山田 太郎 様";

// The unread badge of a group in the list (0 when none).
async function unread(page, name) {
  const badge = page.locator("button.group", { hasText: name }).locator(".badge");
  return (await badge.count()) === 0 ? 0 : Number(await badge.textContent());
}

async function waitUnread(page, name, expected) {
  const badge = page.locator("button.group", { hasText: name }).locator(".badge");
  if (expected === 0) await badge.waitFor({ state: "detached" });
  else await badge.filter({ hasText: new RegExp(`^${expected}$`) }).waitFor();
}

test("unread counts clear on every device; 既読 and 確認しました show on the post", async () => {
  const nurse = await logIn("sakura.ns.suzuki", WIDE);
  const desk = await logIn("sakura.dr.tanaka", WIDE);
  const phone = await logIn("sakura.dr.tanaka", WIDE);
  // The doctor is looking at another patient on both devices.
  await openGroup(desk.page, "佐藤 ハナ 様");
  await openGroup(phone.page, "佐藤 ハナ 様");
  const before = await unread(desk.page, YAMADA);

  await openGroup(nurse.page, YAMADA);
  await send(nurse.page, "褥瘡の処置を実施しました RX-1");
  await waitUnread(desk.page, YAMADA, before + 1);
  await waitUnread(phone.page, YAMADA, before + 1);

  // Read on the phone: the desk's count goes too.
  await openGroup(phone.page, YAMADA);
  await waitUnread(desk.page, YAMADA, 0);

  // The author sees who has read it.
  const mine = nurse.page.locator("#timeline .post", { hasText: "RX-1" });
  const readBy = mine.locator("button.read-by");
  await readBy.filter({ hasText: /既読 [1-9]/ }).waitFor();
  await readBy.click();
  const readers = nurse.page.locator("#readers");
  await readers.locator("li.read", { hasText: "田中 一郎" }).waitFor();
  await screenshot(nurse.page, "read-by");
  await readers.getByRole("button", { name: "閉じる" }).click();

  // 確認しました: recorded once, shown to everyone at the post.
  const theirs = phone.page.locator("#timeline .post", { hasText: "RX-1" });
  await theirs.getByRole("button", { name: "確認しました" }).click();
  await mine.locator(".confirmations", { hasText: "確認 1: 田中 一郎" }).waitFor();
  await theirs.locator(".confirmations", { hasText: "田中 一郎" }).waitFor();
  assert.equal(await theirs.getByRole("button", { name: "確認しました" }).count(), 0, "once");
  for (const person of [nurse, desk, phone]) await person.context.close();
});

test("a mention written from the member list reaches the named doctor; search finds half-width kana", async () => {
  const nurse = await logIn("sakura.ns.suzuki", WIDE);
  const doctor = await logIn("sakura.dr.tanaka", WIDE);
  await openGroup(doctor.page, "佐藤 ハナ 様");
  await openGroup(nurse.page, YAMADA);

  // "@" next to a member writes their name into the post.
  await nurse.page.locator("#members-open").click();
  await nurse.page.getByRole("button", { name: "田中 一郎 さん宛てに書く" }).click();
  const box = nurse.page.getByLabel("投稿内容");
  assert.equal(await box.inputValue(), "@田中 一郎 ");
  await post(nurse.page, `${await box.inputValue()}明日の往診の時間を教えてください MX-1`);
  await nurse.page.locator("#confirm-send").click();

  const mentions = doctor.page.locator("#mentions-open");
  await mentions.filter({ hasText: "自分宛て (1)" }).waitFor();
  await mentions.click();
  const hit = doctor.page.locator("#search-results .hit", { hasText: "MX-1" });
  await hit.waitFor();
  assert.match(await hit.textContent(), /山田 太郎/);
  await hit.click();
  await doctor.page.locator("#timeline-title").getByText(YAMADA).waitFor();
  await doctor.page.locator("#timeline .post.mentioned", { hasText: "MX-1" }).waitFor();
  assert.equal(await mentions.textContent(), "自分宛て");

  // Search: typed in half-width kana, found in full-width, only in the doctor's groups.
  await send(nurse.page, "ガーゼ交換を実施 SX-1");
  await doctor.page.getByLabel("投稿を検索").fill("ｶﾞｰｾﾞ");
  await doctor.page.getByLabel("投稿を検索").press("Enter");
  const found = doctor.page.locator("#search-results .hit", { hasText: "SX-1" });
  await found.waitFor();
  await screenshot(doctor.page, "search");
  await doctor.page.locator("#search").getByRole("button", { name: "閉じる" }).click();
  await doctor.page.getByLabel("投稿を検索").fill("存在しない語句");
  await doctor.page.getByLabel("投稿を検索").press("Enter");
  await doctor.page.locator("#search-results", { hasText: "見つかりませんでした" }).waitFor();
  await nurse.context.close();
  await doctor.context.close();
});

test("the owning facility's admin exports a patient's record as a document", async () => {
  const admin = await logIn("sakura.admin", WIDE);
  await admin.page.locator("#admin-open").click();
  await admin.page.getByRole("tab", { name: "グループと精査" }).click();
  const card = admin.page.locator("article.group-card", { hasText: "山田 太郎" });
  const link = card.getByRole("link", { name: "記録を出力（HTML）" });
  await link.waitFor();
  const response = await admin.page.request.get(url(await link.getAttribute("href")));
  assert.equal(response.status(), 200);
  assert.match(response.headers()["content-disposition"], /attachment/);
  const html = await response.text();
  assert.match(html, /山田 太郎/);
  assert.doesNotMatch(html, /<script/);
  await admin.context.close();
});

test("a photo is attached, confirmed against the patient and shown to members as a preview", async () => {
  const nurse = await logIn("sakura.ns.suzuki", WIDE);
  const doctor = await logIn("sakura.dr.tanaka", WIDE);
  await openGroup(nurse.page, YAMADA);
  await openGroup(doctor.page, YAMADA);

  const photo = readFileSync(new URL("../../docs/screenshots/members.png", import.meta.url));
  await nurse.page.setInputFiles("#composer-file", { name: "仙骨部.png", mimeType: "image/png", buffer: photo });
  await nurse.page.locator("#composer-file-name", { hasText: "仙骨部.png" }).waitFor();
  await post(nurse.page, "仙骨部の褥瘡の写真です FX-1");
  assert.match(await nurse.page.locator("#confirm-file").textContent(), /仙骨部\.png/);
  await nurse.page.locator("#confirm-send").click();

  const seen = doctor.page.locator("#timeline .post", { hasText: "FX-1" });
  const preview = seen.locator("img.thumbnail");
  await preview.waitFor();
  await doctor.page.waitForFunction(() => document.querySelector("#timeline img.thumbnail")?.naturalWidth > 0);
  assert.match(await preview.getAttribute("src"), /^blob:/);
  const link = await seen.locator("a:has(img.thumbnail)").getAttribute("href");
  const response = await doctor.page.request.get(url(link));
  assert.equal(response.status(), 200);
  assert.equal(response.headers()["content-type"], "image/png");
  assert.deepEqual(Buffer.from(await response.body()), photo);
  await screenshot(doctor.page, "photo");
  await nurse.context.close();
  await doctor.context.close();
});
