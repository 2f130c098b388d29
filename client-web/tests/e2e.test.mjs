// The web client in a real browser against the real server: log in, the confirm step,
// live delivery between two people, reconnection after a server restart, the language
// switch, link warnings and the idle lock. Needs RENKEI_BIN (the renkei binary) and
// Debian's chromium at /usr/bin/chromium (or CHROMIUM).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  env, logIn, newContext, openGroup, post, screenshot, send, startServer, stopServer, submitLogin, url, useServer,
} from "./harness.mjs";

useServer();

test("a post is confirmed against its patient and reaches another member live", async () => {
  const nurse = await logIn("sakura.ns.suzuki");
  const helper = await logIn("midori.hp.yoshida");
  await openGroup(nurse.page, "中村 次郎 様");
  await openGroup(helper.page, "中村 次郎 様");

  // The confirm step names the patient unmistakably; going back sends nothing.
  await post(nurse.page, "本日の訪問で血圧 130/82。");
  assert.equal(await nurse.page.locator("#confirm-patient").textContent(), "中村 次郎 様");
  assert.equal(await nurse.page.locator("#confirm-group").textContent(), "中村 次郎 様");
  await screenshot(nurse.page, "confirm");
  await nurse.page.getByRole("button", { name: "戻って修正する" }).click();
  assert.equal(await nurse.page.locator("#timeline .post").count(), 0);

  await post(nurse.page, "本日の訪問で血圧 130/82。服薬確認済み。");
  await nurse.page.getByRole("button", { name: "この患者のグループに送信する" }).click();
  const seen = helper.page.locator("#timeline .post", { hasText: "服薬確認済み" });
  await seen.waitFor();
  assert.match(await seen.textContent(), /吉田|鈴木 花子/);
  assert.match(await seen.textContent(), /さくら在宅クリニック/, "the sender's facility is shown");
  await screenshot(helper.page, "timeline");

  // The session cookie is out of reach of scripts.
  assert.ok(!(await nurse.page.evaluate(() => document.cookie)).includes("renkei_session"));
  await nurse.context.close();
  await helper.context.close();
});

test("external links open only after a warning naming the sender", async () => {
  const nurse = await logIn("sakura.ns.suzuki");
  const doctor = await logIn("sakura.dr.tanaka");
  await openGroup(nurse.page, "山田 太郎 様");
  await openGroup(doctor.page, "山田 太郎 様");
  await send(nurse.page, "資料: https://example.org/guide");
  const link = doctor.page.getByRole("button", { name: /外部リンク: https:\/\/example.org\/guide/ });
  await link.click();
  await doctor.page.locator("#link-warning").waitFor({ state: "visible" });
  assert.match(await doctor.page.locator("#link-sender").textContent(), /鈴木 花子.*さくら在宅クリニック/);
  await doctor.page.getByRole("button", { name: "開かない" }).click();
  assert.equal(doctor.context.pages().length, 1, "nothing was opened");
  await nurse.context.close();
  await doctor.context.close();
});

test("the client reconnects after a server restart and sends what was waiting", async () => {
  const nurse = await logIn("himawari.ns.ito");
  const pt = await logIn("himawari.pt.watanabe");
  await openGroup(nurse.page, "佐藤 ハナ 様");
  await openGroup(pt.page, "佐藤 ハナ 様");

  await stopServer(env.server);
  await nurse.page.locator("#connection").getByText("オフライン").waitFor();
  // Written while offline: kept, and sent once the connection is back.
  await post(nurse.page, "オフライン中に書いた申し送り");
  await nurse.page.getByRole("button", { name: "この患者のグループに送信する" }).click();
  await nurse.page.getByText("送信中").waitFor();

  env.server = await startServer();
  await nurse.page.getByText("接続中").waitFor({ timeout: 60_000 });
  await pt.page.getByText("接続中").waitFor({ timeout: 60_000 });
  await pt.page.locator("#timeline .post", { hasText: "オフライン中に書いた申し送り" }).waitFor();
  assert.equal(await pt.page.locator("#timeline .post", { hasText: "オフライン中に書いた申し送り" }).count(), 1);
  await nurse.context.close();
  await pt.context.close();
});

test("English is one click away and the choice is kept", async () => {
  const admin = await logIn("midori.admin");
  await admin.page.getByRole("button", { name: "English" }).click();
  await admin.page.getByText("Patient groups").waitFor();
  await admin.page.getByText("Free groups").waitFor();
  await admin.page.reload();
  await admin.page.getByText("Connected").waitFor();
  await admin.context.close();
});

test("an idle screen locks, ends the session and unlocks with the password", async () => {
  const doctor = await logIn("sakura.dr.tanaka");
  await doctor.page.clock.install();
  await doctor.page.reload();
  await doctor.page.getByText("接続中").waitFor();
  await openGroup(doctor.page, "山田 太郎 様");
  await doctor.page.getByRole("button", { name: "メンバー" }).click();
  await doctor.page.locator("#members .person").first().waitFor();
  await doctor.page.clock.fastForward("16:00");
  await doctor.page.locator("#lock").waitFor({ state: "visible" });
  assert.equal(await doctor.page.locator("#members").evaluate((d) => d.open), false, "no dialog stays over the lock");
  assert.equal(await doctor.page.locator("#member-list .person").count(), 0);
  assert.equal(await doctor.page.locator("#timeline .post").count(), 0, "nothing stays on screen");
  const status = await doctor.page.evaluate(async () => (await fetch("/api/v1/session")).status);
  assert.equal(status, 401, "the session ended");
  await doctor.page.locator("#lock-form").getByLabel("パスワード").fill(env.logins["sakura.dr.tanaka"]);
  await doctor.page.getByRole("button", { name: "ロック解除" }).click();
  await doctor.page.locator("#lock").waitFor({ state: "hidden" });
  await doctor.page.getByText("接続中").waitFor();
  await doctor.context.close();
});

test("an invitation appears live and, accepted and approved, brings the group", async () => {
  const admin = await logIn("sakura.admin");
  const pt = await logIn("himawari.pt.watanabe");
  const approver = await logIn("himawari.admin");
  assert.equal(await pt.page.getByRole("button", { name: /山田 太郎 様/ }).count(), 0);

  // The owning facility's admin invites the therapist of another facility.
  const group = Number(await admin.page.locator("button.group", { hasText: "山田 太郎 様" }).getAttribute("data-group"));
  const invited = await admin.page.evaluate(async (group) => {
    const facilities = await (await fetch("/api/v1/facilities")).json();
    const himawari = facilities.find((f) => f.name.includes("ひまわり"));
    const staff = await (await fetch(`/api/v1/facilities/${himawari.id}/directory`)).json();
    const therapist = staff.find((u) => u.name.includes("渡辺"));
    const response = await fetch(`/api/v1/groups/${group}/invitations`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user: therapist.id }),
    });
    return response.status;
  }, group);
  assert.equal(invited, 201);

  // The invitee sees who invites them to which patient, from which facility.
  const invitation = pt.page.locator("#invitations .invitation");
  await invitation.waitFor();
  assert.match(await invitation.textContent(), /さくら在宅クリニック.*山田 太郎 様/);
  await screenshot(pt.page, "invitation");
  await invitation.getByRole("button", { name: "参加する" }).click();
  // Accepted, it stays, saying that it waits for the approval of their own facility.
  await invitation.getByText("所属事業所の管理者の承認を待っています").waitFor();
  assert.equal(await invitation.getByRole("button").count(), 0, "nothing left to answer");
  assert.equal(await pt.page.getByRole("button", { name: /山田 太郎 様/ }).count(), 0, "not before approval");

  // Their own admin approves: the group appears at once, with its history.
  const approval = approver.page.locator("#invitations .invitation");
  await approval.waitFor();
  await approval.getByRole("button", { name: "承認する" }).click();
  await openGroup(pt.page, "山田 太郎 様");
  await pt.page.locator("#timeline .system", { hasText: "参加しました" }).first().waitFor();
  await invitation.waitFor({ state: "detached" });
  for (const who of [admin, pt, approver]) await who.context.close();
});

test("the participating facilities are listed publicly, without logging in", async () => {
  const context = await newContext();
  const page = await context.newPage();
  await page.goto(url("/facilities"));
  await page.locator("#facility-list tr", { hasText: "ひまわり訪問看護ステーション" }).waitFor();
  assert.equal(await page.locator("#facility-list tr").count(), 3);
  const row = page.locator("#facility-list tr", { hasText: "ひまわり" });
  assert.equal(await row.locator("td").nth(1).textContent(), "訪問看護ステーション");
  assert.match(await page.locator("h2").textContent(), /参加事業所一覧/);
  await page.getByRole("button", { name: "English" }).click();
  await page.getByRole("heading", { name: "Participating facilities" }).waitFor();
  assert.equal(await row.locator("td").nth(1).textContent(), "Visiting nurse station");
  await context.close();
});

test("an author deletes a post and every member sees its place marked at once", async () => {
  const nurse = await logIn("sakura.ns.suzuki");
  const helper = await logIn("midori.hp.yoshida");
  await openGroup(nurse.page, "中村 次郎 様");
  await openGroup(helper.page, "中村 次郎 様");
  await send(nurse.page, "間違えて送った内容 QX-1");
  const seen = helper.page.locator("#timeline .post", { hasText: "QX-1" });
  await seen.waitFor();

  nurse.page.once("dialog", (dialog) => dialog.accept());
  await nurse.page.locator("#timeline .post", { hasText: "QX-1" }).getByRole("button", { name: "削除" }).click();
  await helper.page.locator("#timeline .post.deleted", { hasText: "削除されました" }).waitFor();
  assert.equal(await helper.page.locator("#timeline", { hasText: "QX-1" }).count(), 0, "the text is gone from the screen");
  await nurse.page.locator("#timeline .post.deleted").waitFor();
  await nurse.context.close();
  await helper.context.close();
});

test("a password change shows its rules live and logs the other devices out", async () => {
  const phone = await logIn("midori.cm.kato");
  const pc = await logIn("midori.cm.kato", { viewport: { width: 1200, height: 900 } });
  const page = pc.page;
  await page.getByRole("button", { name: "アカウント" }).click();
  const dialog = page.locator("#account");
  await dialog.waitFor({ state: "visible" });
  const rule = (name) => dialog.locator(`#password-rules li[data-rule="${name}"]`);
  // The rules a browser can check turn as the user types.
  await dialog.getByLabel("新しいパスワード").fill("加藤");
  assert.equal(await rule("too_short").getAttribute("data-met"), "false");
  assert.equal(await rule("personal").getAttribute("data-met"), "false");
  const fresh = "tsukimi-dango 2026";
  await dialog.getByLabel("新しいパスワード").fill(fresh);
  for (const name of ["too_short", "needs_letters_digits_symbols", "repetitive", "personal"]) {
    assert.equal(await rule(name).getAttribute("data-met"), "true", name);
  }
  // The ones only the server knows are marked when it refuses.
  await dialog.getByLabel("現在のパスワード").fill(env.logins["midori.cm.kato"]);
  await dialog.getByLabel("新しいパスワード").fill("Password2026!!");
  await dialog.getByRole("button", { name: "変更する" }).click();
  await dialog.locator('#password-rules li[data-rule="common"][data-met="false"]').waitFor();
  // Both devices are listed until the change.
  assert.equal(await dialog.locator("#sessions li").count(), 2);
  await dialog.getByLabel("新しいパスワード").fill(fresh);
  await dialog.getByRole("button", { name: "変更する" }).click();
  await dialog.getByText("パスワードを変更しました").waitFor();
  await screenshot(page, "account");
  // The phone is logged out at once; this device stays.
  await phone.page.locator("#login-view").waitFor({ state: "visible" });
  await dialog.locator("#sessions li").first().waitFor();
  assert.equal(await dialog.locator("#sessions li").count(), 1);
  env.logins["midori.cm.kato"] = fresh;
  await phone.context.close();
  await pc.context.close();
});

// The authenticator app: RFC 6238 (SHA-1, 6 digits, 30 s) for a base32 secret.
function totp(secret, stepsFromNow = 0) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/\s+/g, "")) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigInt64BE(BigInt(Math.floor(Date.now() / 30000) + stepsFromNow));
  const digest = createHmac("sha1", key).update(counter).digest();
  const offset = digest[19] & 0xf;
  const value = (digest.readUInt32BE(offset) & 0x7fffffff) % 1000000;
  return String(value).padStart(6, "0");
}

test("two-step verification is set up in the account screen and asked at the next login", async () => {
  const user = "midori.cm.kato";
  const first = await logIn(user);
  const page = first.page;
  await page.getByRole("button", { name: "アカウント" }).click();
  const dialog = page.locator("#account");
  await dialog.getByRole("button", { name: "2段階認証を設定する" }).click();
  await dialog.locator("#two-factor-setup").waitFor({ state: "visible" });
  const secret = await dialog.locator("#two-factor-secret").textContent();
  assert.match(await dialog.locator("#two-factor-uri").textContent(), /^otpauth:\/\/totp\/Renkei:/);
  await dialog.getByLabel("確認コード").fill(totp(secret));
  await dialog.getByRole("button", { name: "設定を完了する" }).click();
  await dialog.locator("#two-factor-code-list li").nth(9).waitFor();
  await dialog.getByText("設定済み").waitFor();
  await screenshot(page, "two-factor");
  await first.context.close();

  // The next login asks for the code after the password.
  const context = await newContext();
  const next = await context.newPage();
  await next.goto(url());
  await submitLogin(next, user);
  const form = next.locator("#login-form");
  await form.locator("#login-code").waitFor({ state: "visible" });
  await form.locator("#login-code").fill(totp(secret, 1));
  await form.getByRole("button", { name: "ログイン" }).click();
  await next.getByText("接続中").waitFor();
  await context.close();
});

test("the members of a group are listed with their profession and facility", async () => {
  const nurse = await logIn("sakura.ns.suzuki");
  await openGroup(nurse.page, "山田 太郎 様");
  await nurse.page.getByRole("button", { name: "メンバー" }).click();
  const dialog = nurse.page.locator("#members");
  const heading = dialog.getByText(/山田 太郎 様 のメンバー（\d+ 人）/);
  await heading.waitFor();
  const rows = await dialog.locator(".person").allTextContents();
  assert.equal(rows.length, Number((await heading.textContent()).match(/（(\d+) 人）/)[1]));
  assert.ok(rows.length >= 5);
  assert.ok(rows.some((r) => /伊藤 由美.*看護師.*ひまわり訪問看護ステーション/.test(r)), rows.join(" | "));
  assert.ok(rows.some((r) => /加藤 誠.*ケアマネジャー.*みどり居宅介護支援事業所/.test(r)), rows.join(" | "));
  await screenshot(nurse.page, "members");
  await dialog.getByRole("button", { name: "閉じる" }).click();
  await nurse.context.close();
});

test("a member whose connection dropped catches up with nothing missing and nothing twice", async () => {
  // The helper's sockets go through a route the test can cut (a dropped mobile network).
  let cut = false;
  const sockets = [];
  const helper = await logIn("midori.hp.yoshida", {}, (context) => context.routeWebSocket(/\/ws$/, (ws) => {
    if (cut) { ws.close({ code: 4000, reason: "network down" }); return; }
    ws.connectToServer();
    sockets.push(ws);
  }));
  // (Its care manager has a second factor by now: the facility's admin posts instead.)
  const manager = await logIn("midori.admin");
  await openGroup(helper.page, "中村 次郎 様");
  await openGroup(manager.page, "中村 次郎 様");
  await send(manager.page, "接続が切れる前の連絡 DC-0");
  await helper.page.locator("#timeline .post", { hasText: "DC-0" }).waitFor();

  cut = true;
  for (const ws of sockets.splice(0)) await ws.close({ code: 4000, reason: "network down" });
  await helper.page.locator("#connection", { hasText: "オフライン" }).waitFor();
  for (const n of [1, 2, 3]) await send(manager.page, `接続が切れている間の連絡 DC-${n}`);

  cut = false;
  await helper.page.locator("#connection", { hasText: "接続中" }).waitFor({ timeout: 60_000 });
  for (const n of [0, 1, 2, 3]) {
    const post = helper.page.locator("#timeline .post", { hasText: `DC-${n}` });
    await post.waitFor();
    assert.equal(await post.count(), 1, `DC-${n} once`);
  }
  const order = await helper.page.locator("#timeline .post", { hasText: "DC-" }).allTextContents();
  assert.deepEqual(order.map((t) => t.match(/DC-\d/)[0]), ["DC-0", "DC-1", "DC-2", "DC-3"]);
  await helper.context.close();
  await manager.context.close();
});
