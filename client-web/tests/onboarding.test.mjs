// Onboarding in a real browser against the real server (issue 19): the two-step setup's
// QR code decodes to its otpauth:// URL, the setup code is typed in four boxes with the
// password rules shown from the start, a facility applies through the public web form and
// reaches the operator's list at once, and mentions received while logged out count in
// 自分宛て after login.
import { test } from "node:test";
import assert from "node:assert/strict";
import jsQR from "jsqr";
import { logIn, newContext, url, useServer } from "./harness.mjs";

// With the demo's week of posts: its mentions are the ones received while logged out.
useServer({ week: true });

const WIDE = { viewport: { width: 1280, height: 800 } };

async function openAdmin(page, tab) {
  if (await page.locator("#admin-view").isHidden()) await page.locator("#admin-open").click();
  await page.getByRole("tab", { name: tab }).click();
  await page.getByRole("tab", { name: tab, selected: true }).waitFor();
}

// The pixels of a PNG (a screenshot), decoded by the browser: { data, width, height }.
async function pixels(page, png) {
  const { data, width, height } = await page.evaluate(async (base64) => {
    const image = new Image();
    image.src = `data:image/png;base64,${base64}`;
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const read = context.getImageData(0, 0, canvas.width, canvas.height);
    return { data: Array.from(read.data), width: read.width, height: read.height };
  }, png.toString("base64"));
  return { data: Uint8ClampedArray.from(data), width, height };
}

test("the two-step setup shows a QR code that decodes to the otpauth:// URL, with the key below", async () => {
  const { context, page } = await logIn("himawari.pt.watanabe");
  await page.getByRole("button", { name: "アカウント" }).click();
  const dialog = page.locator("#account");
  await dialog.getByRole("button", { name: "2段階認証を設定する" }).click();
  await dialog.locator("#two-factor-setup").waitFor({ state: "visible" });
  const qr = dialog.getByRole("img", { name: "認証アプリに登録するための QR コード" });
  await qr.waitFor();
  await qr.evaluate((img) => img.decode());
  await qr.scrollIntoViewIfNeeded();
  // What the screen shows, as pixels: decoded by a QR reader as a phone's camera would.
  const shot = await qr.screenshot();
  const { data, width, height } = await pixels(page, shot);
  const decoded = jsQR(data, width, height);
  assert.ok(decoded, `a QR code is readable in the ${width}×${height} picture`);
  const uri = (await dialog.locator("#two-factor-uri").textContent()).trim();
  assert.match(uri, /^otpauth:\/\/totp\/Renkei:himawari\.pt\.watanabe\?secret=[A-Z2-7]+&issuer=Renkei/);
  assert.equal(decoded.data, uri);
  // The key to type instead, with its explanation.
  await dialog.getByText("読み取れない場合は次のキーを入力してください。").waitFor();
  const key = (await dialog.locator("#two-factor-secret").textContent()).replace(/\s+/g, "");
  assert.equal(new URL(uri).searchParams.get("secret"), key);
  // Only an <img> from a data: URL: nothing of the SVG is in the page's DOM.
  assert.equal(await dialog.locator("svg").count(), 0);
  assert.match(await qr.getAttribute("src"), /^data:image\/svg\+xml;base64,/);
  await context.close();
});

test("a setup code is typed in four boxes, any case, with the password rules shown before trying", async () => {
  const admin = await logIn("sakura.admin", WIDE);
  await openAdmin(admin.page, "職員");
  await admin.page.getByText("職員を登録する").click();
  const form = admin.page.locator("details.creating form");
  await form.getByLabel("氏名").fill("森 さやか");
  await form.getByLabel("メールアドレス（ログインID）").fill("mori@sakura.example.jp");
  await form.getByLabel("職種").fill("nurse");
  await form.getByRole("button", { name: "登録して初期設定コードを発行" }).click();
  const result = admin.page.locator(".result", { hasText: "森 さやか" });
  await result.waitFor();
  // Shown in its groups, as it is typed.
  const code = (await result.locator(".secret").textContent()).trim();
  assert.match(code, /^[0-9A-HJKMNP-TV-Z]{5}(-[0-9A-HJKMNP-TV-Z]{5}){3}$/);
  await admin.context.close();

  const context = await newContext();
  const page = await context.newPage();
  await page.goto(url());
  await page.getByRole("button", { name: "初期設定コードでパスワードを設定する" }).click();
  const setup = page.locator("#setup-form");
  // The rules are listed before the first try, and checked while typing.
  const rules = setup.locator("#setup-rules li");
  await rules.first().waitFor();
  assert.ok(await rules.count() >= 4);
  await setup.getByLabel("ログインID").fill("mori@sakura.example.jp");
  await setup.getByLabel("新しいパスワード").fill("short");
  await setup.locator('#setup-rules li[data-rule="too_short"][data-met="false"]').waitFor();

  // Typed in lower case: five characters move on to the next box, upper-cased.
  const boxes = [1, 2, 3, 4].map((n) => setup.getByLabel(new RegExp(`初期設定コード（${["1〜5", "6〜10", "11〜15", "16〜20"][n - 1]}文字目）`)));
  await boxes[0].click();
  await page.keyboard.type(code.slice(0, 5).toLowerCase());
  assert.equal(await boxes[0].inputValue(), code.slice(0, 5));
  assert.equal(await page.evaluate(() => document.activeElement.id), "setup-code-2");

  // The whole code pasted into the first box is spread over the four.
  await boxes[0].evaluate((input, text) => {
    const data = new DataTransfer();
    data.setData("text", text);
    input.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  }, ` ${code.toLowerCase()} `);
  const groups = code.split("-");
  for (const [i, box] of boxes.entries()) assert.equal(await box.inputValue(), groups[i]);
  assert.equal(await page.evaluate(() => document.activeElement.id), "setup-password");

  await setup.getByLabel("新しいパスワード").fill("Hoshi-Zora!7Kumo");
  await setup.locator('#setup-rules li[data-rule="too_short"][data-met="true"]').waitFor();
  await setup.getByRole("button", { name: "パスワードを設定する" }).click();
  await page.locator("#login-note", { hasText: "パスワードを設定しました" }).waitFor();
  await context.close();
});

test("a facility applies through the web form on a phone and the operator's list shows it at once", async () => {
  // The operator has the facilities tab open.
  const operator = await logIn("city.operator", WIDE);
  await openAdmin(operator.page, "事業所");

  const context = await newContext();
  const page = await context.newPage();
  await page.goto(url());
  await page.getByRole("link", { name: "事業所の利用申請（様式1）" }).click();
  await page.getByRole("heading", { name: "利用申請（様式1）" }).waitFor();
  const form = page.locator("#apply-form");

  // Sent empty: each field says what is missing, next to it; nothing is sent.
  await form.getByRole("button", { name: "申請する" }).click();
  await page.locator('[data-error-for="name"]', { hasText: "入力してください。" }).waitFor();
  await page.locator('[data-error-for="admins[0].email"]', { hasText: "入力してください。" }).waitFor();
  await page.locator('[data-error-for="pledged"]', { hasText: "誓約に同意してください。" }).waitFor();
  assert.equal(await form.getByLabel("事業所名").getAttribute("aria-invalid"), "true");

  await form.getByLabel("事業所名").fill("あおぞら訪問看護ステーション");
  await form.getByLabel("種別").selectOption("visiting_nurse_station");
  await form.getByLabel("所在地").fill("市内青空町 4-5-6");
  const contact = form.locator("fieldset", { hasText: "申請の連絡先" });
  await contact.getByLabel("氏名").fill("青空 一");
  await contact.getByLabel("メールアドレス").fill("info@aozora.example.jp");
  await contact.getByLabel("電話番号").fill("000-1111-2222");

  const admins = form.locator("#apply-admins > li");
  await admins.nth(0).getByLabel("氏名").fill("青空 花子");
  await admins.nth(0).getByLabel("メールアドレス").fill("hanako@aozora.example.jp");
  await admins.nth(0).getByLabel("職種").selectOption("nurse");
  await form.getByRole("button", { name: "管理者を追加" }).click();
  await admins.nth(1).getByLabel("氏名").fill("青空 次郎");
  await admins.nth(1).getByLabel("メールアドレス").fill("HANAKO@aozora.example.jp");
  await admins.nth(1).getByLabel("職種").selectOption("physical_therapist");

  const roster = form.locator("#apply-roster > li");
  for (const [name, email] of [["空野 三郎", "saburo@aozora.example.jp"], ["取消 予定", ""], ["海野 四郎", ""]]) {
    await form.getByRole("button", { name: "職員を追加" }).click();
    const row = roster.last();
    await row.getByLabel("氏名").fill(name);
    await row.getByLabel("職種").selectOption("nurse");
    if (email) await row.getByLabel("メールアドレス（任意）").fill(email);
  }
  await form.getByRole("button", { name: "削除: 職員 2" }).click();
  assert.equal(await roster.count(), 2);
  assert.equal(await roster.nth(1).getByLabel("氏名").inputValue(), "海野 四郎");
  await form.getByLabel(/誓約します/).check();

  // Checked as the server checks: one address per admin, whatever its case.
  await form.getByRole("button", { name: "申請する" }).click();
  await page.locator('[data-error-for="admins[1].email"]', { hasText: "他の管理者と同じ" }).waitFor();
  await admins.nth(1).getByLabel("メールアドレス").fill("jiro@aozora.example.jp");

  // A refusal by the server is shown next to the field it names (the page's own limit
  // lifted here, so that the server is the one to refuse).
  const name = form.getByLabel("事業所名");
  await name.evaluate((input) => { input.dataset.max = "1000"; });
  await name.fill("あ".repeat(201));
  await form.getByRole("button", { name: "申請する" }).click();
  await page.locator('[data-error-for="name"]', { hasText: "200文字以内" }).waitFor();
  await name.fill("あおぞら訪問看護ステーション");

  await form.getByRole("button", { name: "申請する" }).click();
  await page.getByRole("heading", { name: "申請を受け付けました" }).waitFor();
  await page.getByText(/「あおぞら訪問看護ステーション」の申請を受け付けました（受付番号 \d+）/).waitFor();
  assert.ok(await form.isHidden());
  // Every control was reachable and labelled on a phone: nothing wider than the screen.
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390));

  // The operator's open page is told: its list shows the application without a reload,
  // and the chat screen keeps a notice of it.
  const card = operator.page.locator(".facility-list li", { hasText: "あおぞら訪問看護ステーション" });
  await card.waitFor();
  assert.match(await operator.page.locator("#notices").textContent(), /新しい利用申請が届きました/);
  assert.match(await card.textContent(), /申請中|applied/);
  assert.match(await card.textContent(), /青空 花子.*hanako@aozora\.example\.jp/);
  await context.close();
  await operator.context.close();
});

test("mentions received while logged out count in 自分宛て at login", async () => {
  // The demo's week has a post naming 伊藤 由美 that she has not read.
  const { context, page } = await logIn("himawari.ns.ito");
  await page.locator("#mentions-open", { hasText: "自分宛て (1)" }).waitFor();
  await page.locator("#mentions-open").click();
  await page.getByText(/@伊藤 由美 さん、降圧薬を/).first().waitFor();
  await context.close();
});
