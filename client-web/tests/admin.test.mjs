// The admins' and the operator's screens (管理) in a real browser against the real server:
// staff registration and the setup code, the report queue and deletion, groups (create,
// consent, invite, remove, archive, restore), facility applications and the audit log.
import { test } from "node:test";
import assert from "node:assert/strict";
import { env, logIn, newContext, openGroup, screenshot, send, url, useServer } from "./harness.mjs";

useServer();

const WIDE = { viewport: { width: 1100, height: 900 } };

async function openAdmin(page, tab) {
  if (await page.locator("#admin-view").isHidden()) await page.locator("#admin-open").click();
  await page.getByRole("tab", { name: tab }).click();
  await page.getByRole("tab", { name: tab, selected: true }).waitFor();
}

// Answers the one-line question the admin screens ask (a reason, a date).
async function answer(page, text) {
  const dialog = page.locator("dialog.ask");
  await dialog.getByLabel("入力").fill(text);
  await dialog.getByRole("button", { name: "決定" }).click();
  await dialog.waitFor({ state: "detached" });
}

test("an admin registers a staff member, who sets a password with the code and logs in", async () => {
  const admin = await logIn("sakura.admin", WIDE);
  await openAdmin(admin.page, "職員");
  await admin.page.getByText("職員を登録する").click();
  const form = admin.page.locator("details.creating form");
  await form.getByLabel("氏名").fill("山本 優子");
  await form.getByLabel("ふりがな").fill("やまもと ゆうこ");
  await form.getByLabel("メールアドレス（ログインID）").fill("yamamoto@sakura.example.jp");
  await form.getByLabel("職種").fill("pharmacist");
  await form.getByRole("button", { name: "登録して初期設定コードを発行" }).click();
  const result = admin.page.locator(".result", { hasText: "山本 優子" });
  await result.waitFor();
  const code = (await result.locator(".secret").textContent()).trim();
  assert.match(code, /^[0-9A-Z]{5}(-[0-9A-Z]{5}){3}$/, `a setup code is shown in groups: ${code}`);
  const row = admin.page.locator(".person", { hasText: "山本 優子" });
  assert.match(await row.textContent(), /薬剤師.*yamamoto@sakura\.example\.jp/);
  await screenshot(admin.page, "admin-staff");

  // The new staff member: a wrong code is refused in words, the right one sets the password.
  const context = await newContext();
  const page = await context.newPage();
  await page.goto(url());
  await page.getByRole("button", { name: "初期設定コードでパスワードを設定する" }).click();
  const setup = page.locator("#setup-form");
  await setup.getByLabel("ログインID").fill("yamamoto@sakura.example.jp");
  // Typed into the first box, a whole code spreads over the four.
  await setup.getByLabel("初期設定コード（1〜5文字目）").fill("ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ");
  await setup.getByLabel("新しいパスワード").fill("Hoshi-Zora!7Kumo");
  await setup.getByRole("button", { name: "パスワードを設定する" }).click();
  await page.locator("#setup-error", { hasText: "正しくないか" }).waitFor();
  await setup.getByLabel("初期設定コード（1〜5文字目）").fill(code);
  await setup.getByRole("button", { name: "パスワードを設定する" }).click();
  await page.locator("#login-note", { hasText: "パスワードを設定しました" }).waitFor();
  assert.equal(await page.locator("#login-id").inputValue(), "yamamoto@sakura.example.jp");
  await page.locator("#login-password").fill("Hoshi-Zora!7Kumo");
  await page.locator("#login-form").getByRole("button", { name: "ログイン" }).click();
  await page.getByText("接続中").waitFor();
  assert.ok(await page.locator("#admin-open").isHidden(), "staff have no admin screens");

  // A profile is edited in place.
  await row.getByRole("button", { name: "編集" }).click();
  await row.getByLabel("職種").fill("nurse");
  await row.getByRole("button", { name: "保存する" }).click();
  await admin.page.locator(".person", { hasText: "山本 優子" }).getByText(/^看護師/).waitFor();

  // The admin restricts the account to reading, with a reason; its composer closes live.
  await row.getByRole("button", { name: "閲覧のみにする" }).click();
  await answer(admin.page, "確認のため一時的に");
  await admin.page.locator(".person", { hasText: "山本 優子" }).getByText("閲覧のみ: 確認のため一時的に").waitFor();
  await admin.page.locator(".person", { hasText: "山本 優子" }).getByRole("button", { name: "制限を解除" }).click();
  await admin.page.locator(".person", { hasText: "山本 優子" }).getByRole("button", { name: "閲覧のみにする" }).waitFor();
  await context.close();
  await admin.context.close();
});

test("a member reports a post; the admin deletes it from the queue and members see its place marked", async () => {
  const nurse = await logIn("sakura.ns.suzuki");
  const ito = await logIn("himawari.ns.ito");
  await openGroup(nurse.page, "山田 太郎 様");
  await openGroup(ito.page, "山田 太郎 様");
  await send(nurse.page, "別の患者さんの話をここに書いてしまいました RP-7");
  const seen = ito.page.locator("#timeline .post", { hasText: "RP-7" });
  await seen.waitFor();
  await seen.getByRole("button", { name: "管理者に報告" }).click();
  ito.page.once("dialog", (d) => d.accept());
  await answer(ito.page, "別の患者の情報です");

  const admin = await logIn("sakura.admin", WIDE);
  await openAdmin(admin.page, "監視と報告");
  const report = admin.page.locator(".reports li", { hasText: "RP-7" });
  await report.waitFor();
  assert.match(await report.textContent(), /伊藤 由美.*別の患者の情報です/);
  assert.match(await report.textContent(), /鈴木 花子（さくら在宅クリニック）/);
  // The monitoring view lists it too, and finds it by a part of a word.
  await admin.page.getByLabel("含む文字").fill("患者さん");
  await admin.page.getByRole("button", { name: "検索" }).click();
  await admin.page.locator(".monitor .post", { hasText: "RP-7" }).waitFor();
  await screenshot(admin.page, "admin-moderation");

  await report.getByRole("button", { name: "削除" }).click();
  await answer(admin.page, "誤送信（本人確認済み）");
  await admin.page.getByText("未対応の報告はありません。").waitFor();
  await ito.page.locator("#timeline .post.deleted", { hasText: "佐倉 直樹 により削除されました" }).waitFor();
  assert.equal(await ito.page.locator("#timeline", { hasText: "RP-7" }).count(), 0, "the text is gone");
  await nurse.page.locator("#timeline .post.deleted").waitFor();
  for (const who of [nurse, ito, admin]) await who.context.close();
});

test("an admin creates a patient group, records its consent, invites and removes a member", async () => {
  const admin = await logIn("midori.admin", WIDE);
  await openAdmin(admin.page, "グループと精査");
  await admin.page.getByText("グループを作成する").click();
  const create = admin.page.locator("details.creating form");
  await create.getByLabel("患者・利用者の氏名").fill("森 春子");
  await create.getByLabel("生年月日").fill("1938-05-12");
  await create.getByRole("button", { name: "作成する" }).click();
  const card = admin.page.locator("article.group-card", { hasText: "森 春子" });
  await card.getByText("同意書未登録").waitFor();

  // Nobody can post before the consent (様式3) is on file.
  await card.getByLabel("署名日").fill("2026-11-20");
  await card.getByRole("button", { name: "同意書を登録する" }).click();
  await card.getByText("同意書未登録").waitFor({ state: "detached" });

  // Invite a nurse of another facility: she accepts, her admin approves.
  await card.getByLabel("招待する人の事業所").selectOption({ label: "ひまわり訪問看護ステーション" });
  await card.getByLabel("招待する人", { exact: true }).selectOption({ label: "伊藤 由美（看護師）" });
  await card.getByRole("button", { name: "招待する" }).click();
  await card.getByText("伊藤 由美（ひまわり訪問看護ステーション） を招待中（本人の返事待ち）").waitFor();
  const ito = await logIn("himawari.ns.ito");
  await ito.page.locator("#invitations .invitation", { hasText: "森 春子" }).getByRole("button", { name: "参加する" }).click();
  const approver = await logIn("himawari.admin");
  await approver.page.locator("#invitations .invitation", { hasText: "森 春子" }).getByRole("button", { name: "承認する" }).click();
  await openGroup(ito.page, "森 春子");

  // The review: she is listed; removed, the group leaves her screen at once.
  await openAdmin(admin.page, "グループと精査");
  const row = admin.page.locator("article.group-card", { hasText: "森 春子" }).locator("tr", { hasText: "伊藤 由美" });
  await row.waitFor();
  await admin.page.getByRole("tab", { name: "グループと精査" }).scrollIntoViewIfNeeded();
  await screenshot(admin.page, "admin-groups");
  await row.getByRole("checkbox").check();
  admin.page.once("dialog", (d) => d.accept());
  await admin.page.locator("article.group-card", { hasText: "森 春子" }).getByRole("button", { name: "選んだメンバーの参加を解除" }).click();
  await ito.page.locator("button.group", { hasText: "森 春子" }).waitFor({ state: "detached" });
  await row.waitFor({ state: "detached" });
  for (const who of [admin, ito, approver]) await who.context.close();
});

test("archiving moves a group out of the members' patient list, and restoring brings it back", async () => {
  const helper = await logIn("midori.hp.yoshida", WIDE);
  await openGroup(helper.page, "中村 次郎 様");
  const patients = helper.page.locator("#group-list h3", { hasText: "患者・利用者グループ" }).locator("+ ul");
  await patients.locator("button.group", { hasText: "中村 次郎 様" }).waitFor();

  const admin = await logIn("midori.admin", WIDE);
  await openAdmin(admin.page, "グループと精査");
  admin.page.once("dialog", (d) => d.accept());
  await admin.page.locator("article.group-card", { hasText: "中村 次郎 様" }).getByRole("button", { name: "保管庫へ移す" }).click();
  await admin.page.locator("article.group-card", { hasText: "中村 次郎 様" }).waitFor({ state: "detached" });

  // Live for the member: out of the patient list, into the archive section, closed for posts.
  await patients.locator("button.group", { hasText: "中村 次郎 様" }).waitFor({ state: "detached" });
  const archived = helper.page.locator("#group-list h3", { hasText: "保管庫" }).locator("+ ul");
  await archived.locator("button.group", { hasText: "中村 次郎 様" }).waitFor();
  assert.equal(await helper.page.locator("#composer-text").isDisabled(), true);

  // The archive view: read its history, then restore it.
  await openAdmin(admin.page, "保管庫");
  const entry = admin.page.locator(".archived li.card", { hasText: "中村 次郎 様" });
  await entry.getByRole("button", { name: "記録を見る" }).click();
  await entry.locator(".history li", { hasText: "保管庫に移されました" }).waitFor();
  await screenshot(admin.page, "admin-archive");
  admin.page.once("dialog", (d) => d.accept());
  await entry.getByRole("button", { name: "保管庫から戻す" }).click();
  await admin.page.getByText("保管庫にグループはありません。").waitFor();
  await patients.locator("button.group", { hasText: "中村 次郎 様" }).waitFor();
  assert.equal(await helper.page.locator("#composer-text").isDisabled(), false);
  await helper.context.close();
  await admin.context.close();
});

test("the operator approves a facility's application and suspends a facility with a reason", async () => {
  const applied = await fetch(url("/api/v1/facilities/applications"), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      name: "あおば薬局", kind: "pharmacy", address: "市内青葉町1-2-3",
      contact: { name: "青葉 一", email: "info@aoba.example.jp", phone: "000-0000-0000" },
      admins: [{ name: "青葉 一", email: "aoba.admin@aoba.example.jp", profession: "pharmacist" }],
      pledged: true,
    }),
  });
  assert.equal(applied.status, 201);

  const operator = await logIn("city.operator", WIDE);
  await openAdmin(operator.page, "事業所");
  const card = operator.page.locator(".facility-list li", { hasText: "あおば薬局" });
  await card.getByText("申請中").waitFor();
  assert.match(await card.textContent(), /薬局.*市内青葉町1-2-3/);
  assert.match(await card.textContent(), /青葉 一（薬剤師・aoba\.admin@aoba\.example\.jp）/);
  await screenshot(operator.page, "admin-facilities");
  await card.getByRole("button", { name: "承認する" }).click();
  await operator.page.locator(".result", { hasText: "あおば薬局 を承認しました" }).locator(".secret").waitFor();
  await card.getByText("参加中").waitFor();

  await card.getByRole("button", { name: "一時停止" }).click();
  await answer(operator.page, "誓約書の確認が終わるまで");
  await card.getByText("一時停止中").waitFor();
  assert.match(await card.textContent(), /理由: 誓約書の確認が終わるまで/);

  // The operator manages any facility's staff through the facility chooser.
  await openAdmin(operator.page, "職員");
  await operator.page.getByLabel("対象の事業所").selectOption({ label: "ひまわり訪問看護ステーション" });
  await operator.page.locator(".person", { hasText: "渡辺 健" }).waitFor();

  // A facility's groups are changed by its own admins: the operator only reviews them.
  await openAdmin(operator.page, "グループと精査");
  await operator.page.locator("article.group-card", { hasText: "佐藤 ハナ 様" }).waitFor();
  assert.equal(await operator.page.getByText("グループを作成する").count(), 0);
  assert.equal(await operator.page.getByRole("button", { name: "保管庫へ移す" }).count(), 0);
  assert.equal(await operator.page.getByRole("checkbox").count(), 0);

  // Logging out leaves nothing of the operator's screens for the next person.
  await operator.page.getByRole("button", { name: "ログアウト" }).click();
  await operator.page.locator("#login-form").waitFor();
  assert.equal(await operator.page.locator("#admin-view").evaluate((v) => v.childElementCount), 0);
  assert.equal(await operator.page.getByText("あおば薬局").count(), 0, "nor anything of the chat");
  await operator.context.close();
});

test("the audit log is searched by person and exported as CSV", async () => {
  const admin = await logIn("himawari.admin", WIDE);
  await openAdmin(admin.page, "監査ログ");
  await admin.page.locator("table.audit tbody tr").first().waitFor();
  await admin.page.getByLabel("操作した人").selectOption({ label: "高橋 美咲" });
  await admin.page.getByRole("button", { name: "検索" }).click();
  await admin.page.waitForFunction(() => {
    const cells = [...document.querySelectorAll("table.audit tbody tr:not(.routine) td:nth-child(2)")];
    return cells.length > 0 && cells.every((cell) => cell.textContent === "高橋 美咲");
  });
  // One row per record (a run of routine reads has a line of its own above its records).
  const who = await admin.page.locator("table.audit tbody tr:not(.routine) td:nth-child(2)").allTextContents();
  assert.ok(who.length > 0 && who.every((name) => name === "高橋 美咲"), who.join(","));
  await screenshot(admin.page, "admin-audit");

  const href = await admin.page.getByRole("link", { name: "CSV で書き出す" }).getAttribute("href");
  assert.match(href, /format=csv/);
  const csv = await admin.page.evaluate(async (href) => (await fetch(href)).text(), href);
  const lines = csv.trim().split("\r\n");
  assert.match(lines[0], /^\uFEFF?id,time,at_ms,actor,facility,action,group,target,source,result,hash$/);
  // The CSV holds the records on screen (and the search's own record, written after it).
  const actors = new Set(lines.slice(1).map((line) => line.split(",")[3]));
  assert.ok(lines.length - 1 >= who.length, `${lines.length - 1} rows`);
  assert.equal(actors.size, 1, "one person's records only");
  await admin.context.close();
});

test("the audit log says what was done in words and folds routine reads into one line", async () => {
  // A nurse connects: the server records the catch-up of each of her groups.
  const nurse = await logIn("himawari.ns.ito");
  await nurse.context.close();
  const admin = await logIn("himawari.admin", WIDE);
  await openAdmin(admin.page, "監査ログ");
  const rows = admin.page.locator("table.audit tbody tr");
  await rows.first().waitFor();
  // No raw API path in the action column; the raw record stays in the row's title (and CSV).
  const actions = await admin.page.locator("table.audit tbody tr:not(.routine) td:nth-child(3)").allTextContents();
  assert.ok(actions.length > 0);
  assert.deepEqual(actions.filter((a) => /^(GET|POST|PUT|PATCH|DELETE|ws) /.test(a)), []);
  // The admin's own screen loads: one line with a count, the records hidden until asked.
  const run = admin.page.locator("table.audit tr.routine").first();
  const toggle = run.getByRole("button", { name: /^画面の表示（一覧の読み込み）×\d+$/ });
  assert.equal(await toggle.getAttribute("aria-expanded"), "false");
  const n = Number((await toggle.textContent()).split("×")[1]);
  assert.ok(n >= 2, `${n}`);
  const hidden = await admin.page.locator("table.audit tbody tr[hidden]").count();
  assert.ok(hidden >= n, `${hidden} hidden rows`);
  await toggle.click();
  assert.equal(await toggle.getAttribute("aria-expanded"), "true");
  assert.equal(await admin.page.locator("table.audit tbody tr[hidden]").count(), hidden - n);
  // The nurse's catch-up names her groups' patients, not their numbers.
  const all = await admin.page.locator("table.audit tbody td:nth-child(3)").allTextContents();
  assert.ok(all.some((a) => /^接続時の同期: .+ 様$/.test(a)), all.join(" | "));
  assert.ok(all.some((a) => a === "ログイン"), "the logins in words");
  // The table scrolls in a region the keyboard reaches.
  const region = admin.page.getByRole("region", { name: "監査証跡の一覧" });
  assert.equal(await region.getAttribute("tabindex"), "0");
  await admin.context.close();
});

test("English covers the admin screens", async () => {
  const admin = await logIn("sakura.admin", WIDE);
  await admin.page.getByRole("button", { name: "English" }).click();
  await admin.page.locator("#admin-open", { hasText: "Admin" }).click();
  for (const tab of ["Staff", "Groups and review", "Monitoring and reports", "Archive", "Audit log"]) {
    await admin.page.getByRole("tab", { name: tab }).click();
    await admin.page.getByRole("tab", { name: tab, selected: true }).waitFor();
    // Headings, labels, buttons and column names: the people and facility names stay as they are.
    const texts = await admin.page.locator("#admin-view :is(h3, button, label, th, [role=tab])").allTextContents();
    assert.ok(texts.length > 3);
    for (const text of texts) assert.doesNotMatch(text, /[ぁ-んァ-ヶ]/u, `"${text}" on the ${tab} tab is in English`);
  }
  await admin.page.getByRole("button", { name: "日本語" }).click();
  await admin.context.close();
});
