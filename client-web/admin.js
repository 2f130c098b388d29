// The admins' and the operator's screens (管理): staff, groups and their membership
// review, moderation, the archive, the audit trail, and (the operator) facilities.
// app.js hands in what the screens share with the chat (text, times, the signed-in user);
// the server decides every permission again, these screens only hide what would fail.
"use strict";

window.RenkeiAdmin = (shell) => {
  const { t, formatTime, groupLabel } = shell;
  const { h, field, button, api, explain, ask } = shell.ui;
  const $ = (id) => document.getElementById(id);
  const fresh = () => ({
    tab: null,
    facility: null,       // the facility whose staff, groups, reports and trail are shown
    facilities: [],       // the operator's list (FacilityDetails)
    staff: new Map(),     // id -> UserDetails of the shown facility (names for the trail)
    staffOf: null,        // the facility `staff` belongs to
    result: null,         // what the last action returned worth keeping on screen (a setup code)
    loading: 0,           // which load is the latest: an older answer arriving late is dropped
  });
  let view = fresh();

  // Runs an action, shows its error in the panel, reloads the tab when it succeeded.
  async function act(run, { reload = true } = {}) {
    const problem = $("admin-error");
    problem.textContent = "";
    try {
      const value = await run();
      if (reload) await load();
      return value;
    } catch (error) {
      $("admin-error").textContent = explain(error);
      return undefined;
    }
  }

  const date = (ms) => (ms ? new Date(ms).toLocaleDateString(shell.lang()) : "");
  const today = () => {
    const d = new Date(); // the local date: in Japan the UTC one is yesterday until 9:00
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
  };
  const dayStart = (value) => (value ? new Date(`${value}T00:00:00`).getTime() : undefined);
  const query = (params) => {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== "") q.set(key, value);
    const s = q.toString();
    return s ? `?${s}` : "";
  };
  const profession = (p) => { const s = t(`profession.${p}`); return s === `profession.${p}` ? p : s; };
  const person = (u) => `${u.name}${u.facility ? `（${u.facility.name}）` : ""}`;
  const tag = (text, kind = "") => h("span", { class: `tag ${kind}` }, text);

  // ---- the frame: tabs and the facility in view ----------------------------------------
  function tabs() {
    const user = shell.user();
    const all = ["staff", "groups", "moderation", "archive", "audit"];
    return user?.role === "operator" ? ["facilities", ...all] : all;
  }

  async function open() {
    const user = shell.user();
    if (user.role === "operator") {
      view.facilities = await api("GET", "/api/v1/facilities/applications").catch(() => []);
    } else {
      view.facility = user.facility?.id ?? null;
    }
    if (!tabs().includes(view.tab)) view.tab = tabs()[0];
    await load();
  }

  // Logging out: nothing of this account's screens (a setup code, above all) stays.
  function reset() {
    view = fresh();
    clear();
  }

  function clear() {
    $("admin-view").replaceChildren();
  }

  // Arrow keys move between tabs (the tablist pattern).
  function tabKeys(e) {
    const keys = tabs();
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (!step) return;
    view.tab = keys[(keys.indexOf(view.tab) + step + keys.length) % keys.length];
    view.result = null;
    load().then(() => document.querySelector(`#admin-view [data-tab="${view.tab}"]`)?.focus());
  }

  function frame(content) {
    const user = shell.user();
    const nav = h("div", { class: "tabs", role: "tablist", "aria-label": t("admin.heading"), onkeydown: tabKeys },
      tabs().map((key) => h("button", {
        type: "button", role: "tab", id: `admin-tab-${key}`, "aria-controls": "admin-panel",
        "aria-selected": String(key === view.tab), tabindex: key === view.tab ? "0" : "-1", dataset: { tab: key },
        onclick: () => { view.tab = key; view.result = null; load(); },
      }, t(`admin.tab.${key}`))));
    let chooser = null;
    if (user.role === "operator" && view.tab !== "facilities") {
      const select = h("select", { onchange: (e) => { view.facility = Number(e.target.value) || null; load(); } },
        h("option", { value: "" }, view.tab === "audit" ? t("admin.whole_network") : t("admin.pick_facility")),
        view.facilities.filter((f) => f.status !== "applied" && f.status !== "rejected").map((f) =>
          h("option", { value: f.id, selected: f.id === view.facility }, f.name)));
      chooser = field(t("admin.facility"), select);
    }
    const result = view.result ? h("div", { class: "result", role: "status" }, view.result) : null;
    $("admin-view").replaceChildren(...[
      h("h2", { class: "visually-hidden" }, t("admin.heading")), nav, chooser, result,
      h("p", { id: "admin-error", class: "error", role: "alert" }),
      h("section", { id: "admin-panel", class: "admin-panel", role: "tabpanel", "aria-labelledby": `admin-tab-${view.tab}` }, content),
    ].filter(Boolean));
  }

  async function load() {
    const needsFacility = ["staff", "groups", "moderation"].includes(view.tab);
    if (needsFacility && !view.facility) { frame(h("p", { class: "muted" }, t("admin.pick_facility"))); return; }
    const mine = ++view.loading;
    const was = view;
    let content = null;
    let failure = null;
    try {
      content = await PANELS[view.tab]();
    } catch (error) {
      failure = error;
      if (!error.code) console.error(error); // a fault of the client itself, not an API answer
    }
    if (view !== was || mine !== view.loading) return; // another tab, facility or account since
    frame(content);
    if (failure) $("admin-error").textContent = explain(failure);
  }

  // A one-time setup code, to hand to its owner (printed or in person).
  function setupResult(setup) {
    return h("div", { class: "setup" },
      h("p", {}, t("admin.setup_code", { name: setup.user.name, login: setup.user.email ?? "" })),
      h("p", { class: "secret" }, setup.setup_code),
      h("p", { class: "muted" }, t("admin.setup_expires", { time: formatTime(setup.expires_at) })));
  }

  // A form that creates something, folded under its title so that the list comes first.
  function creating(title, form, open = false) {
    return h("details", { class: "creating", open }, h("summary", {}, title), form);
  }

  async function loadStaff() {
    const users = await api("GET", `/api/v1/facilities/${view.facility}/users`);
    view.staff = new Map(users.map((u) => [u.id, u]));
    view.staffOf = view.facility;
    return users;
  }

  // ---- staff (art. 9): register, edit, role, restrict, ban, deactivate, reset ----------
  const PANELS = {};

  PANELS.staff = async () => {
    const users = await loadStaff();
    const me = shell.user();
    const form = h("form", { class: "admin-form", onsubmit: async (e) => {
      e.preventDefault();
      const data = Object.fromEntries(new FormData(e.target));
      const setup = await act(() => api("POST", `/api/v1/facilities/${view.facility}/users`, {
        name: data.name.trim(), kana: data.kana.trim(), email: data.email.trim(),
        profession: data.profession.trim(), pledge_received_on: data.pledge || null,
      }), { reload: false });
      if (setup) { view.result = setupResult(setup); await load(); }
    } },
    field(t("staff.name"), h("input", { name: "name", required: true, autocomplete: "off" })),
    field(t("staff.kana"), h("input", { name: "kana", autocomplete: "off" })),
    field(t("staff.email"), h("input", { name: "email", type: "email", required: true, autocomplete: "off" })),
    field(t("staff.profession"), h("input", { name: "profession", list: "professions", required: true })),
    field(t("staff.pledge"), h("input", { name: "pledge", type: "date" })),
    h("button", { type: "submit", class: "primary" }, t("staff.register_submit")));

    const list = h("ul", { class: "people" }, users.map((u) => staffRow(u, me)));
    return [h("h3", {}, t("staff.heading", { n: users.length })), list,
      creating(t("staff.register"), form, view.result !== null), professionList()];
  };

  function professionList() {
    return h("datalist", { id: "professions" },
      ["doctor", "dentist", "nurse", "pharmacist", "physical_therapist", "occupational_therapist",
        "care_manager", "helper", "dietitian", "medical_social_worker", "city_official"].map((p) =>
        h("option", { value: p }, profession(p))));
  }

  function staffRow(u, me) {
    const self = u.id === me.id;
    // Every row has the same buttons: their accessible names say whose they are.
    const button = (label, onclick, props = {}) => shell.ui.button(label, onclick, { "aria-label": `${label}: ${u.name}`, ...props });
    const status = u.status === "active" ? null
      : tag(`${t(`status.${u.status}`)}${u.status_reason ? `: ${u.status_reason}` : ""}`, "warn");
    // How the server could reach them (Web Push, e-mail): an admin sees whom nothing reaches.
    const reach = u.reachable;
    const unreachable = reach && reach.push === 0 && !reach.email ? tag(t("staff.unreachable"), "warn") : null;
    const bounced = reach?.bounced ? tag(t("staff.bounced"), "warn") : null;
    const actions = [];
    const post = (path, body) => act(() => api("POST", `/api/v1/users/${u.id}/${path}`, body));
    if (u.status !== "deactivated") {
      actions.push(button(t("staff.edit"), (e) => editStaff(u, e.target.closest(".person"))));
      if (u.role !== "operator") {
        actions.push(u.role === "admin"
          ? button(t("staff.make_staff"), () => act(() => api("PUT", `/api/v1/users/${u.id}/role`, { role: "staff" })))
          : button(t("staff.make_admin"), () => act(() => api("PUT", `/api/v1/users/${u.id}/role`, { role: "admin" }))));
      }
      if (!self && u.status === "active") {
        actions.push(button(t("staff.restrict"), async () => {
          const reason = await ask(t("staff.restrict_reason", { name: u.name }));
          if (reason) await post("restrict", { reason });
        }));
      }
      if (!self && u.status !== "banned") {
        actions.push(button(t("staff.ban"), async () => {
          const reason = await ask(t("staff.ban_reason", { name: u.name }));
          if (reason) await post("ban", { reason });
        }));
      }
      if (u.status === "restricted" || u.status === "banned") actions.push(button(t("staff.reinstate"), () => post("reinstate")));
      if (!u.pledge_received_on) {
        actions.push(button(t("staff.record_pledge"), async () => {
          const on = await ask(t("staff.pledge_on", { name: u.name }), { type: "date" });
          if (on) await act(() => api("PUT", `/api/v1/users/${u.id}/pledge`, { received_on: on }));
        }));
      }
      if (!self) {
        actions.push(button(t("staff.reset"), async () => {
          if (!window.confirm(t("staff.reset_confirm", { name: u.name }))) return;
          const setup = await act(() => api("POST", `/api/v1/users/${u.id}/password-reset`), { reload: false });
          if (setup) { view.result = setupResult(setup); await load(); }
        }));
        actions.push(button(t("staff.deactivate"), async () => {
          if (!window.confirm(t("staff.deactivate_confirm", { name: u.name }))) return;
          await post("deactivate");
        }, { class: "danger" }));
      }
    }
    return h("li", { class: "person", dataset: { user: u.id } },
      avatar(u),
      h("div", {},
        h("p", {}, h("strong", {}, u.name), u.kana ? ` （${u.kana}）` : "", " ",
          tag(t(`role.${u.role}`)), " ", status, " ", unreachable, " ", bounced),
        h("p", { class: "muted" }, [profession(u.profession), u.email,
          u.pledge_received_on ? t("staff.pledged", { date: u.pledge_received_on }) : t("staff.no_pledge")]
          .filter(Boolean).join(" ・ ")),
        h("div", { class: "row-actions" }, actions)));
  }

  // Edits a profile in place: the row's actions give way to a form with what it holds.
  function editStaff(u, row) {
    const form = h("form", { class: "inline-form", onsubmit: async (e) => {
      e.preventDefault();
      const d = Object.fromEntries(new FormData(form));
      await act(() => api("PATCH", `/api/v1/users/${u.id}`, {
        name: d.name.trim(), kana: d.kana.trim(), profession: d.profession.trim(),
      }));
    } },
    field(t("staff.name"), h("input", { name: "name", required: true, value: u.name, autocomplete: "off" })),
    field(t("staff.kana"), h("input", { name: "kana", value: u.kana, autocomplete: "off" })),
    field(t("staff.profession"), h("input", { name: "profession", list: "professions", required: true, value: u.profession })),
    h("button", { type: "submit", class: "primary" }, t("staff.save")),
    button(t("ask.cancel"), () => load()));
    row.querySelector(".row-actions").replaceWith(form);
    form.elements.name.focus();
  }

  // Initials stand in for a face until the photo loads (and when there is none).
  function avatar(u) {
    const initials = h("span", { class: "avatar", "aria-hidden": "true" }, [...u.name][0] ?? "?");
    if (u.has_photo) {
      initials.append(h("img", { src: `/api/v1/users/${u.id}/photo`, alt: "" }));
    }
    return initials;
  }

  // ---- groups: create, consent, invite, the membership review (定期的に精査) ------------
  PANELS.groups = async () => {
    const days = view.inactiveDays ?? "";
    const [review, invitations, facilities] = await Promise.all([
      api("GET", `/api/v1/facilities/${view.facility}/review${query({ inactive_days: days })}`),
      api("GET", "/api/v1/invitations"),
      api("GET", "/api/v1/facilities"),
    ]);
    const sent = invitations.sent.filter((i) => i.state === "pending");
    const reviewForm = h("form", { class: "inline-form", onsubmit: (e) => {
      e.preventDefault();
      view.inactiveDays = e.target.elements.days.value;
      load();
    } },
    field(t("review.days"), h("input", { name: "days", type: "number", min: 1, value: review.inactive_days })),
    h("button", { type: "submit" }, t("review.apply")));
    const groups = review.groups.filter((g) => !g.group.archived);
    // The operator reviews a facility's groups; only the facility's own admins change them.
    const manage = shell.user().role !== "operator";
    return [
      manage ? creating(t("group.create"), newGroupForm()) : h("p", { class: "muted" }, t("review.operator")),
      h("h3", {}, t("review.heading", { n: groups.length })),
      h("p", { class: "muted" }, t("review.hint")),
      reviewForm,
      groups.map((g) => groupCard(g, manage, sent.filter((i) => i.group === g.group.id), facilities, review.inactive_days)),
    ];
  };

  // A patient group (with its patient) or a free group, owned by the admin's facility.
  function newGroupForm() {
    const kind = h("select", { name: "kind", onchange: (e) => {
      const patient = e.target.value === "patient";
      form.querySelector(".patient-fields").hidden = !patient;
      form.querySelector(".free-fields").hidden = patient;
      for (const input of form.querySelectorAll(".patient-fields [data-required]")) input.required = patient;
      form.elements.name.required = !patient;
    } },
    h("option", { value: "patient" }, t("group.kind_patient")),
    h("option", { value: "free" }, t("group.kind_free")));
    const form = h("form", { class: "admin-form", onsubmit: async (e) => {
      e.preventDefault();
      const d = Object.fromEntries(new FormData(form));
      const body = d.kind === "patient"
        ? { kind: "patient", patient: { name: d.patient.trim(), kana: d.patient_kana.trim(), birth_date: d.birth_date, notes: d.notes.trim() } }
        : { kind: "free", name: d.name.trim() };
      const created = await act(() => api("POST", "/api/v1/groups", body), { reload: false });
      if (created) {
        view.result = h("p", {}, t("group.created", { name: created.summary.name }));
        await load();
      }
    } },
    field(t("group.kind"), kind),
    h("div", { class: "patient-fields" },
      field(t("group.patient_name"), h("input", { name: "patient", required: true, "data-required": true, autocomplete: "off" })),
      field(t("group.patient_kana"), h("input", { name: "patient_kana", autocomplete: "off" })),
      field(t("group.birth_date"), h("input", { name: "birth_date", type: "date", required: true, "data-required": true })),
      field(t("group.notes"), h("input", { name: "notes", autocomplete: "off" }))),
    h("div", { class: "free-fields", hidden: true },
      field(t("group.name"), h("input", { name: "name", autocomplete: "off" }))),
    h("p", { class: "muted" }, t("group.consent_later")),
    h("button", { type: "submit", class: "primary" }, t("group.create_submit")));
    return form;
  }

  function groupCard(g, manage, sent, facilities, days) {
    const s = g.group;
    const title = groupLabel(s);
    const parts = [h("h4", {}, title, " ", s.kind === "free" ? tag(t("group.kind_free")) : null,
      s.needs_consent ? tag(t("group.needs_consent"), "warn") : null)];
    if (g.archive_after) parts.push(h("p", { class: "notice" }, t("review.archive_notice", { date: date(g.archive_after) })));
    if (s.needs_consent && manage) parts.push(consentForm(s));

    const boxes = [];
    const rows = g.members.map((m) => {
      const box = h("input", { type: "checkbox", value: m.user.id, "aria-label": t("review.select", { name: m.user.name }) });
      const selectable = manage && !s.admins_room;
      if (selectable) boxes.push(box);
      const flags = m.flags.map((f) => tag(t(`flag.${f}`, { days }), "warn"));
      return h("tr", { dataset: { user: m.user.id } },
        h("td", {}, selectable ? box : null),
        h("td", {}, h("strong", {}, m.user.name), " ", flags),
        h("td", {}, m.user.facility?.name ?? ""),
        h("td", {}, profession(m.user.profession)),
        h("td", {}, m.last_post_at ? formatTime(m.last_post_at) : "—"),
        h("td", {}, m.last_read_at ? formatTime(m.last_read_at) : "—"));
    });
    parts.push(scrollTable(t("review.members_table", { group: title }), h("table", { class: "members" },
      h("thead", {}, h("tr", {}, ["", "member", "facility", "profession", "last_post", "last_read"].map((k) =>
        h("th", { scope: "col" }, k ? t(`review.${k}`) : h("span", { class: "visually-hidden" }, t("review.select_column")))))),
      h("tbody", {}, rows))));

    if (manage && !s.admins_room) {
      parts.push(h("div", { class: "row-actions" },
        button(t("review.remove"), async () => {
          const users = boxes.filter((b) => b.checked).map((b) => Number(b.value));
          if (users.length === 0) { $("admin-error").textContent = t("review.none_selected"); return; }
          if (!window.confirm(t("review.remove_confirm", { n: users.length, group: title }))) return;
          const result = await act(() => api("POST", `/api/v1/groups/${s.id}/members/remove`, { users }), { reload: false });
          if (!result) return;
          // Who could not be removed, and why (the server's words).
          const names = new Map(g.members.map((m) => [m.user.id, m.user.name]));
          view.result = result.skipped.length === 0 ? null : h("ul", {}, result.skipped.map((k) =>
            h("li", {}, t("review.skipped", { name: names.get(k.user) ?? `#${k.user}`, reason: k.reason }))));
          await load();
        }, { class: "danger" }),
        s.kind === "free" ? button(t("group.rename"), async () => {
          const name = await ask(t("group.rename_to"));
          if (name) await act(() => api("PATCH", `/api/v1/groups/${s.id}`, { name }));
        }) : null,
        // Only patient groups retire to the archive.
        s.kind === "patient" ? button(t("group.archive"), async () => {
          if (!window.confirm(t("group.archive_confirm", { group: title }))) return;
          await act(() => api("POST", `/api/v1/groups/${s.id}/archive`));
        }) : null));
      parts.push(inviteForm(s, facilities));
      if (sent.length > 0) {
        parts.push(h("ul", { class: "sent" }, sent.map((i) => h("li", {},
          t("group.invited", { name: person(i.invitee), state: t(i.accepted ? "group.awaiting_approval" : "group.awaiting_answer") }), " ",
          button(t("group.cancel_invitation"), () => act(() => api("POST", `/api/v1/invitations/${i.id}/cancel`)))))));
      }
    }
    parts.push(exportLinks(s));
    return h("article", { class: "card group-card", dataset: { group: s.id } }, parts);
  }

  // The group's whole timeline for continuity of care (art. 13(16)): a document to keep
  // or print, and the same as JSON. The server audits every export.
  function exportLinks(s) {
    const link = (format) => h("a", { href: `/api/v1/groups/${s.id}/export?format=${format}`, download: "", class: "export" },
      t(`export.${format}`));
    return h("p", { class: "row-actions" }, link("html"), " ", link("json"));
  }

  function consentForm(s) {
    const form = h("form", { class: "inline-form", onsubmit: async (e) => {
      e.preventDefault();
      const d = Object.fromEntries(new FormData(form));
      // Recorded: the banner says so (and no longer what an earlier action did).
      const recorded = await act(() => api("PUT", `/api/v1/groups/${s.id}/consent`, {
        signed_by: d.signed_by, signed_on: d.signed_on, copy_sent_on: d.copy_sent_on || null,
      }).then(() => true), { reload: false });
      if (recorded) {
        view.result = h("p", {}, t("consent.recorded", { group: groupLabel(s) }));
        await load();
      }
    } },
    field(t("consent.signed_by"), h("select", { name: "signed_by" },
      ["patient", "family", "patient_and_family"].map((v) => h("option", { value: v }, t(`consent.${v}`))))),
    field(t("consent.signed_on"), h("input", { name: "signed_on", type: "date", required: true, max: today() })),
    field(t("consent.copy_sent_on"), h("input", { name: "copy_sent_on", type: "date" })),
    h("button", { type: "submit", class: "primary" }, t("consent.record")));
    return form;
  }

  // Invite: a facility, then one of its active staff (the directory).
  function inviteForm(s, facilities) {
    const people = h("select", { name: "user", required: true, disabled: true }, h("option", { value: "" }, "—"));
    let asked = 0; // only the directory of the facility chosen last fills the list
    const facility = h("select", { name: "facility", onchange: async (e) => {
      const mine = ++asked;
      people.replaceChildren(h("option", { value: "" }, "—"));
      people.disabled = true;
      if (!e.target.value) return;
      const staff = await act(() => api("GET", `/api/v1/facilities/${e.target.value}/directory`), { reload: false });
      if (mine !== asked || !staff) return;
      for (const u of staff) people.append(h("option", { value: u.id }, `${u.name}（${profession(u.profession)}）`));
      people.disabled = false;
    } },
    h("option", { value: "" }, "—"), facilities.map((f) => h("option", { value: f.id }, f.name)));
    const form = h("form", { class: "inline-form", onsubmit: async (e) => {
      e.preventDefault();
      if (!people.value) return;
      await act(() => api("POST", `/api/v1/groups/${s.id}/invitations`, { user: Number(people.value) }));
    } },
    field(t("invite.facility"), facility), field(t("invite.person"), people),
    h("button", { type: "submit" }, t("invite.submit")));
    return form;
  }

  // ---- moderation: the report queue and the monitoring view (削除) ----------------------
  PANELS.moderation = async () => {
    const search = view.search ?? {};
    const [reports, posts] = await Promise.all([
      api("GET", `/api/v1/facilities/${view.facility}/reports?state=open`),
      api("GET", `/api/v1/facilities/${view.facility}/posts${query({ q: search.q, since: dayStart(search.since), limit: 100 })}`),
    ]);
    const removeWithReason = async (group, seq) => {
      const reason = await ask(t("moderation.delete_reason"));
      if (reason) await act(() => api("POST", `/api/v1/groups/${group}/posts/${seq}/delete`, { reason }));
    };
    const reportList = reports.length === 0 ? h("p", { class: "muted" }, t("moderation.no_reports"))
      : h("ul", { class: "reports" }, reports.map((r) => h("li", { class: "card", dataset: { report: r.id } },
        h("p", { class: "meta" }, h("strong", {}, r.group_name), " ", formatTime(r.created_at)),
        h("p", {}, t("moderation.reported", { reporter: person(r.reporter), reason: r.reason })),
        h("blockquote", {}, h("p", { class: "meta" }, person(r.author)), h("p", { class: "text" }, r.text ?? t("moderation.gone"))),
        h("div", { class: "row-actions" },
          r.text != null ? button(t("moderation.delete"), () => removeWithReason(r.group, r.seq), { class: "danger" }) : null,
          button(t("moderation.dismiss"), () => act(() => api("POST", `/api/v1/reports/${r.id}/dismiss`)))))));
    const form = h("form", { class: "inline-form", onsubmit: (e) => {
      e.preventDefault();
      view.search = { q: e.target.elements.q.value.trim(), since: e.target.elements.since.value };
      load();
    } },
    field(t("moderation.search"), h("input", { name: "q", type: "search", value: search.q ?? "" })),
    field(t("moderation.since"), h("input", { name: "since", type: "date", value: search.since ?? "" })),
    h("button", { type: "submit" }, t("moderation.search_submit")));
    const postList = h("ul", { class: "monitor" }, posts.map((p) => h("li", { class: "post", dataset: { group: p.group, seq: p.seq } },
      h("p", { class: "meta" }, h("strong", {}, person(p.author)), " → ", p.group_name, " ", formatTime(p.at)),
      h("p", { class: "text" }, p.text),
      button(t("moderation.delete"), () => removeWithReason(p.group, p.seq), { class: "link-button delete" }))));
    return [h("h3", {}, t("moderation.reports", { n: reports.length })), reportList,
      h("h3", {}, t("moderation.monitor")), form,
      posts.length === 0 ? h("p", { class: "muted" }, t("moderation.no_posts")) : postList];
  };

  // ---- the archive (保管庫): what was archived, read it, restore -----------------------
  PANELS.archive = async () => {
    const [groups, review] = await Promise.all([
      api("GET", "/api/v1/archive"),
      view.facility ? api("GET", `/api/v1/facilities/${view.facility}/review`).catch(() => null) : null,
    ]);
    // The inactive candidates: groups the archive process has given notice to.
    const noticed = (review?.groups ?? []).filter((g) => g.archive_after && !g.group.archived);
    // Only the owning facility's admins restore (the review lists exactly its groups).
    const owned = new Set(shell.user().role === "operator" ? [] : (review?.groups ?? []).map((g) => g.group.id));
    const candidates = noticed.length === 0 ? h("p", { class: "muted" }, t("archive.no_candidates"))
      : h("ul", {}, noticed.map((g) => h("li", {}, t("archive.candidate", {
        group: groupLabel(g.group), date: date(g.archive_after),
      }))));
    const list = groups.length === 0 ? h("p", { class: "muted" }, t("archive.empty"))
      : h("ul", { class: "archived" }, groups.map((s) => {
        const history = h("ol", { class: "timeline history", hidden: true });
        return h("li", { class: "card", dataset: { group: s.id } },
          h("p", {}, h("strong", {}, groupLabel(s)), " ", tag(t("groups.archived"))),
          h("div", { class: "row-actions" },
            button(t("archive.read"), () => readHistory(s.id, history)),
            owned.has(s.id) ? button(t("archive.restore"), async () => {
              if (!window.confirm(t("archive.restore_confirm", { group: groupLabel(s) }))) return;
              await act(() => api("POST", `/api/v1/groups/${s.id}/restore`));
            }) : null),
          owned.has(s.id) ? exportLinks(s) : null,
          history);
      }));
    return [h("h3", {}, t("archive.candidates")), candidates, h("h3", {}, t("archive.heading", { n: groups.length })), list];
  };

  // The latest page first (again, when asked again), older pages on request. A deletion
  // shows at the deleted post's place, as in the timeline.
  async function readHistory(group, list, before) {
    const page = await act(() => api("GET", `/api/v1/groups/${group}/history${query({ before, limit: 50 })}`), { reload: false });
    if (!page) return;
    list.hidden = false;
    const items = page.events.filter((e) => e.data.kind !== "post_deleted").map((e) =>
      h("li", { class: e.data.kind === "post" ? "post" : "system" }, `${formatTime(e.at)} ${shell.describe(e.data)}`));
    if (before === undefined) list.replaceChildren();
    list.querySelector(".older")?.remove();
    list.prepend(...items);
    if (page.has_more && page.events.length > 0) {
      list.prepend(h("li", { class: "older" }, button(t("timeline.older"), () => readHistory(group, list, page.events[0].seq), { class: "link-button" })));
    }
  }

  // ---- the audit trail (監査証跡): search, and CSV for the city's inspections ------------
  PANELS.audit = async () => {
    const f = view.audit ?? {};
    const params = { since: dayStart(f.since), until: f.until ? dayStart(f.until) + 86400000 : undefined, actor: f.actor, group: f.group, limit: 200 };
    const base = view.facility ? `/api/v1/facilities/${view.facility}/audit` : "/api/v1/audit";
    if (view.staffOf !== view.facility) {
      view.staff = new Map();
      if (view.facility) await loadStaff().catch(() => {});
    }
    // The groups' names for the records: the user's own groups, and (an admin) the groups
    // of the facility in view.
    if (view.facility && view.labelsOf !== view.facility) {
      const review = await api("GET", `/api/v1/facilities/${view.facility}/review`).catch(() => null);
      view.labels = new Map((review?.groups ?? []).map((g) => [g.group.id, groupLabel(g.group)]));
      view.labelsOf = view.facility;
    }
    const records = await api("GET", base + query(params));
    const form = h("form", { class: "inline-form", onsubmit: (e) => {
      e.preventDefault();
      const el = e.target.elements;
      view.audit = { since: el.since.value, until: el.until.value, actor: el.actor.value, group: el.group.value };
      load();
    } },
    field(t("audit.since"), h("input", { name: "since", type: "date", value: f.since ?? "" })),
    field(t("audit.until"), h("input", { name: "until", type: "date", value: f.until ?? "" })),
    field(t("audit.actor"), view.staff.size > 0
      ? h("select", { name: "actor" }, h("option", { value: "" }, t("audit.anyone")),
        [...view.staff.values()].map((u) => h("option", { value: u.id, selected: String(u.id) === f.actor }, u.name)))
      : h("input", { name: "actor", type: "number", min: 1, value: f.actor ?? "" })),
    field(t("audit.group"), h("input", { name: "group", type: "number", min: 1, value: f.group ?? "" })),
    h("button", { type: "submit" }, t("audit.search")));
    const csv = h("a", { class: "button", href: base + query({ ...params, limit: 10000, format: "csv" }), download: "renkei-audit.csv" }, t("audit.csv"));
    const who = (id) => (id === null ? t("audit.system") : view.staff.get(id)?.name ?? `#${id}`);
    const row = (r, hidden = false) => h("tr", { class: ok(r) ? "" : "failed", hidden, title: r.action },
      h("td", {}, formatTime(r.at)), h("td", {}, who(r.actor)), h("td", {}, auditAction(r)),
      h("td", {}, r.target), h("td", {}, r.source), h("td", {}, r.result));
    const rows = [];
    for (const run of auditRuns(records)) {
      if (run.length === 1) { rows.push(row(run[0])); continue; }
      // A run of routine reads: one line saying how many, the records behind it on demand.
      const members = run.map((r) => row(r, true));
      const [newest, oldest] = [run[0], run[run.length - 1]];
      const toggle = h("button", { type: "button", class: "link-button", "aria-expanded": "false", onclick: (e) => {
        const open = e.currentTarget.getAttribute("aria-expanded") !== "true";
        e.currentTarget.setAttribute("aria-expanded", String(open));
        for (const member of members) member.hidden = !open;
      } }, t("audit.routine", { n: run.length }));
      rows.push(h("tr", { class: "routine" },
        h("td", {}, `${formatTime(oldest.at)} – ${formatTime(newest.at)}`), h("td", {}, who(newest.actor)),
        h("td", { colspan: 4 }, toggle)), ...members);
    }
    const table = scrollTable(t("audit.table"), h("table", { class: "audit" },
      h("thead", {}, h("tr", {}, ["at", "who", "action", "target", "source", "result"].map((k) => h("th", { scope: "col" }, t(`audit.${k}`))))),
      h("tbody", {}, rows)));
    return [form, h("p", {}, csv, " ", h("span", { class: "muted" }, t("audit.count", { n: records.length }))), table];
  };

  const ok = (r) => r.result === "ok" || /^2\d\d$/.test(r.result);

  // Every audited action in words: the text's key (audit.do.*) and whether it is a routine
  // read (a list a screen loads; no patient's posts), which the table folds into one line
  // per run. The CSV keeps the raw records.
  const AUDIT_ACTIONS = {
    "GET /api/v1/archive": ["archive_list", true],
    "GET /api/v1/audit": ["audit", true],
    "GET /api/v1/facilities": ["facilities", true],
    "GET /api/v1/facilities/applications": ["applications", true],
    "POST /api/v1/facilities/applications": ["apply", false],
    "GET /api/v1/facilities/{id}": ["facility", true],
    "POST /api/v1/facilities/{id}/approve": ["facility_approve", false],
    "GET /api/v1/facilities/{id}/audit": ["audit", true],
    "GET /api/v1/facilities/{id}/directory": ["directory", true],
    "PUT /api/v1/facilities/{id}/pledge": ["facility_pledge", false],
    "GET /api/v1/facilities/{id}/posts": ["monitoring", false],
    "POST /api/v1/facilities/{id}/reinstate": ["facility_reinstate", false],
    "POST /api/v1/facilities/{id}/reject": ["facility_reject", false],
    "GET /api/v1/facilities/{id}/reports": ["reports", true],
    "GET /api/v1/facilities/{id}/review": ["review", true],
    "POST /api/v1/facilities/{id}/suspend": ["facility_suspend", false],
    "GET /api/v1/facilities/{id}/users": ["staff", true],
    "POST /api/v1/facilities/{id}/users": ["staff_add", false],
    "POST /api/v1/facilities/{id}/withdraw": ["facility_withdraw", false],
    "GET /api/v1/files/{id}": ["file", false],
    "GET /api/v1/files/{id}/thumbnail": ["thumbnail", false],
    "POST /api/v1/groups": ["group_create", false],
    "GET /api/v1/groups/{id}": ["group", false],
    "PATCH /api/v1/groups/{id}": ["group_rename", false],
    "POST /api/v1/groups/{id}/archive": ["group_archive", false],
    "PUT /api/v1/groups/{id}/consent": ["consent", false],
    "GET /api/v1/groups/{id}/export": ["export", false],
    "POST /api/v1/groups/{id}/files": ["upload", false],
    "GET /api/v1/groups/{id}/history": ["history", false],
    "POST /api/v1/groups/{id}/invitations": ["invite", false],
    "POST /api/v1/groups/{id}/members/remove": ["members_remove", false],
    "DELETE /api/v1/groups/{id}/members/{user}": ["member_remove", false],
    "PUT /api/v1/groups/{id}/mute": ["mute", false],
    "POST /api/v1/groups/{id}/posts/{seq}/confirm": ["confirm", false],
    "POST /api/v1/groups/{id}/posts/{seq}/delete": ["post_delete", false],
    "POST /api/v1/groups/{id}/posts/{seq}/report": ["report", false],
    "GET /api/v1/groups/{id}/reads": ["reads", false],
    "POST /api/v1/groups/{id}/restore": ["group_restore", false],
    "GET /api/v1/invitations": ["invitations", true],
    "POST /api/v1/invitations/{id}/accept": ["invitation_accept", false],
    "POST /api/v1/invitations/{id}/approve": ["invitation_approve", false],
    "POST /api/v1/invitations/{id}/cancel": ["invitation_cancel", false],
    "POST /api/v1/invitations/{id}/decline": ["invitation_decline", false],
    "POST /api/v1/invitations/{id}/refuse": ["invitation_refuse", false],
    "GET /api/v1/mentions": ["mentions", true],
    "GET /api/v1/notifications/settings": ["notify_settings", true],
    "PUT /api/v1/notifications/settings": ["notify_change", false],
    "POST /api/v1/notifications/test": ["notify_test", false],
    "GET /api/v1/password-policy": ["password_policy", true],
    "POST /api/v1/password-setup": ["password_setup", false],
    "GET /api/v1/push/key": ["push_key", true],
    "POST /api/v1/push/subscriptions": ["push_on", false],
    "DELETE /api/v1/push/subscriptions/{id}": ["push_off", false],
    "POST /api/v1/reports/{id}/dismiss": ["report_dismiss", false],
    "GET /api/v1/search": ["search", false],
    "DELETE /api/v1/session": ["logout", false],
    "GET /api/v1/session": ["session", true],
    "GET /api/v1/session/key": ["session_key", true],
    "POST /api/v1/session": ["login", false],
    "PUT /api/v1/session/password": ["password_change", false],
    "DELETE /api/v1/session/two-factor": ["two_factor_off", false],
    "GET /api/v1/session/two-factor": ["two_factor", true],
    "POST /api/v1/session/two-factor": ["two_factor_start", false],
    "PUT /api/v1/session/two-factor": ["two_factor_confirm", false],
    "DELETE /api/v1/sessions": ["logout_all", false],
    "GET /api/v1/sessions": ["sessions", true],
    "DELETE /api/v1/sessions/{session}": ["session_end", false],
    "GET /api/v1/users/{id}": ["user", true],
    "PATCH /api/v1/users/{id}": ["user_edit", false],
    "POST /api/v1/users/{id}/ban": ["user_ban", false],
    "POST /api/v1/users/{id}/deactivate": ["user_deactivate", false],
    "POST /api/v1/users/{id}/password-reset": ["user_password_reset", false],
    "GET /api/v1/users/{id}/photo": ["photo", true],
    "PUT /api/v1/users/{id}/photo": ["photo_upload", false],
    "PUT /api/v1/users/{id}/pledge": ["user_pledge", false],
    "POST /api/v1/users/{id}/reinstate": ["user_reinstate", false],
    "POST /api/v1/users/{id}/restrict": ["user_restrict", false],
    "PUT /api/v1/users/{id}/role": ["user_role", false],
    // The connection catching up on each of the user's groups: automatic, at every connect.
    "ws sync": ["sync", true],
    "ws history": ["history", false],
    "account locked": ["account_locked", false],
  };

  function groupName(id) {
    if (id === null || id === undefined) return "";
    return shell.groupName(id) ?? view.labels?.get(id) ?? t("audit.group_n", { id });
  }

  // "閲覧: 佐藤 ハナ 様のグループ"; an action this client does not know, as recorded.
  function auditAction(r) {
    const known = AUDIT_ACTIONS[r.action];
    return known ? t(`audit.do.${known[0]}`, { group: groupName(r.group) }) : r.action;
  }

  // The records (newest first) in runs: consecutive successful routine reads by the same
  // person form one run, every other record is a run of its own.
  function auditRuns(records) {
    const runs = [];
    for (const r of records) {
      const routine = AUDIT_ACTIONS[r.action]?.[1] === true && ok(r);
      const last = runs[runs.length - 1];
      if (routine && last?.routine && last.actor === r.actor) last.records.push(r);
      else runs.push({ routine, actor: r.actor, records: [r] });
    }
    return runs.map((run) => run.records);
  }

  // A table wider than the screen scrolls inside a region the keyboard can reach.
  function scrollTable(label, table) {
    return h("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-label": label }, table);
  }

  // ---- facilities (the operator): applications, approval, suspension, withdrawal --------
  PANELS.facilities = async () => {
    view.facilities = await api("GET", "/api/v1/facilities/applications");
    const order = ["applied", "approved", "suspended", "rejected", "withdrawn"];
    const sorted = [...view.facilities].sort((a, b) => order.indexOf(a.status) - order.indexOf(b.status) || a.name.localeCompare(b.name));
    return [h("p", {}, h("a", { href: "/facilities", target: "_blank", rel: "noopener" }, t("facilities.public"))),
      h("ul", { class: "facility-list" }, sorted.map(facilityCard))];
  };

  function facilityCard(f) {
    const post = (step, body) => act(() => api("POST", `/api/v1/facilities/${f.id}/${step}`, body));
    const withReason = (step, question) => async () => {
      const reason = await ask(t(question, { name: f.name }));
      if (reason) await post(step, { reason });
    };
    const actions = [];
    if (f.status === "applied") {
      actions.push(button(t("facilities.approve"), async () => {
        const result = await act(() => api("POST", `/api/v1/facilities/${f.id}/approve`, { pledge_received_on: f.pledge_received_on ?? null }), { reload: false });
        if (result) { view.result = h("div", {}, h("p", {}, t("facilities.approved", { name: f.name })), result.admins.map(setupResult)); await load(); }
      }, { class: "primary" }));
      actions.push(button(t("facilities.reject"), withReason("reject", "facilities.reject_reason"), { class: "danger" }));
    }
    if (f.status === "approved") actions.push(button(t("facilities.suspend"), withReason("suspend", "facilities.suspend_reason")));
    if (f.status === "suspended") actions.push(button(t("facilities.reinstate"), () => post("reinstate")));
    if (f.status === "approved" || f.status === "suspended") {
      actions.push(button(t("facilities.withdraw"), withReason("withdraw", "facilities.withdraw_reason"), { class: "danger" }));
    }
    if (!f.pledge_received_on && f.status !== "rejected" && f.status !== "withdrawn") {
      actions.push(button(t("staff.record_pledge"), async () => {
        const on = await ask(t("facilities.pledge_on", { name: f.name }), { type: "date" });
        if (on) await act(() => api("PUT", `/api/v1/facilities/${f.id}/pledge`, { received_on: on }));
      }));
    }
    const a = f.application;
    return h("li", { class: "card", dataset: { facility: f.id } },
      h("p", {}, h("strong", {}, f.name), " ", tag(t(`facility.status.${f.status}`), f.status === "approved" ? "" : "warn")),
      h("p", { class: "muted" }, [t(`facility.kind.${f.kind}`), f.address, t("facilities.applied_on", { date: date(f.applied_at) })]
        .filter(Boolean).join(" ・ ")),
      f.status_reason ? h("p", {}, t("facilities.reason", { reason: f.status_reason })) : null,
      a.contact.name ? h("p", {}, t("facilities.contact", { name: a.contact.name, email: a.contact.email, phone: a.contact.phone })) : null,
      a.admins.length > 0 ? h("p", {}, t("facilities.admins", {
        names: a.admins.map((p) => `${p.name}（${profession(p.profession)}・${p.email}）`).join("、"),
      })) : null,
      a.roster.length > 0 ? h("p", { class: "muted" }, t("facilities.roster", { n: a.roster.length })) : null,
      h("p", { class: "muted" }, f.pledge_received_on ? t("facilities.pledged", { date: f.pledge_received_on }) : t("staff.no_pledge")),
      h("div", { class: "row-actions" }, actions));
  }

  return { open, reset, clear, refresh: () => (view.tab ? load() : undefined) };
};
