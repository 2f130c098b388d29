// The message catalogue (i18n/ja.js, i18n/en.js): every key the client uses exists in Japanese and in
// English, and both languages have the same keys. No browser needed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const read = (file) => readFileSync(new URL(`../${file}`, import.meta.url), "utf8");
const sandbox = {};
for (const file of ["i18n/ja.js", "i18n/en.js"]) vm.runInNewContext(read(file), sandbox);
const { ja, en } = sandbox.RENKEI_MESSAGES;

test("Japanese and English have the same keys", () => {
  assert.deepEqual(Object.keys(en).filter((k) => !(k in ja)), []);
  assert.deepEqual(Object.keys(ja).filter((k) => !(k in en)), []);
});

test("every key the client names is in the catalogue", () => {
  const sources = ["app.js", "admin.js", "notify.js", "drafts.js", "ui.js", "facilities.js", "index.html", "facilities.html", "apply.js", "apply.html"].map(read).join("\n");
  const keys = new Set([
    ...[...sources.matchAll(/\bt\("([a-z_.]+)"/g)].map((m) => m[1]),
    ...[...sources.matchAll(/data-i18n(?:-placeholder)?="([a-z_.]+)"/g)].map((m) => m[1]),
    ...[...sources.matchAll(/(?:ask|withReason\([^,]+,)\s*"([a-z_]+\.[a-z_.]+)"/g)].map((m) => m[1]),
  ]);
  assert.ok(keys.size > 100, `found ${keys.size} keys`);
  assert.deepEqual([...keys].filter((k) => !(k in ja)), []);
});

// The service worker's notifications: a fixed text for every kind a push may name, and
// the generic one for a payload it cannot read.
test("every kind of push has its text", () => {
  const worker = read("sw.js");
  const kinds = JSON.parse(worker.match(/const KINDS = (\[[^\]]*\]);/)[1]);
  assert.deepEqual(kinds, ["post", "mention", "invitation", "account", "test", "facility_applied"]);
  const keys = ["push.title", "push.generic", ...kinds.map((k) => `push.${k}`)];
  assert.deepEqual(keys.filter((k) => !(k in ja) || !(k in en)), []);
});

// Values the server sends that the client shows in words: every value of these protocol
// enums (from docs/openapi.json, generated from the protocol crate) has its text.
test("every value of the protocol's enums shown in words has its text", () => {
  const schemas = JSON.parse(read("../docs/openapi.json")).components.schemas;
  const values = (name) => {
    const schema = schemas[name];
    return schema.enum ?? schema.oneOf.flatMap((o) => o.enum);
  };
  const families = {
    "role.": "Role", "status.": "AccountStatus", "facility.status.": "FacilityStatus",
    "facility.kind.": "FacilityKind", "flag.": "ReviewFlag", "consent.": "ConsentSigner", "rule.": "PasswordRule",
  };
  const keys = Object.entries(families).flatMap(([prefix, name]) => values(name).map((v) => prefix + v));
  assert.ok(keys.length > 30);
  assert.deepEqual(keys.filter((k) => !(k in ja)), []);
  const tabs = ["facilities", "staff", "groups", "moderation", "archive", "audit"].map((k) => `admin.tab.${k}`);
  assert.deepEqual(tabs.filter((k) => !(k in ja)), []);
});

// The audit trail in words (admin.js): every endpoint the API has (from docs/openapi.json)
// has its words, and every word its text in both languages.
test("every audited action has its words", () => {
  const admin = read("admin.js");
  const table = admin.slice(admin.indexOf("const AUDIT_ACTIONS = {"), admin.indexOf("};", admin.indexOf("const AUDIT_ACTIONS = {")));
  const actions = new Map([...table.matchAll(/"([^"]+)": \["([a-z_]+)", (true|false)\]/g)].map((m) => [m[1], m[2]]));
  const paths = JSON.parse(read("../docs/openapi.json")).paths;
  const endpoints = Object.entries(paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
  assert.ok(endpoints.length > 50, `found ${endpoints.length} endpoints`);
  assert.deepEqual(endpoints.filter((e) => !actions.has(e)), []);
  for (const action of ["ws sync", "ws history"]) assert.ok(actions.has(action), action);
  const keys = [...new Set(actions.values())].map((k) => `audit.do.${k}`);
  assert.deepEqual(keys.filter((k) => !(k in ja) || !(k in en)), []);
});
