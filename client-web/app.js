// Renkei web client. Plain JavaScript served by the renkei binary itself: no build step,
// no CDN, so it works on a closed hospital network. Protocol: docs/protocol.md.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const messages = window.RENKEI_MESSAGES;
  const state = {
    lang: localStorage.getItem("renkei.lang") || "ja",
    user: null,          // UserProfile from the welcome
    status: "active",    // the account's status (restricted: read-only)
    role: "staff",       // the account's role (admins and the operator see 管理)
    invitations: { received: [], to_approve: [] },
    login: sessionStorage.getItem("renkei.login") || "",
    // id -> {summary, events: Map(seq -> event), hasOlder, readSeq, counted: {unread, upto},
    //        reads: Map(user id -> {user, seq}) once the group was opened}
    groups: new Map(),
    selected: null,      // group id
    socket: null,
    connected: false,
    retry: 0,
    pending: new Map(),  // client_id -> {group, text, state, error}
    idleLimitMs: 15 * 60 * 1000,
    idleTimer: null,
    locked: false,
    name: "",            // the user's display name (a password may not contain it)
    mustChange: false,   // the password expired: it must be changed before anything else
    mustEnroll: false,   // a required second factor is not set up: that comes first
    secondFactor: false, // the account has one (the mfa policy then asks fewer characters)
    policy: { min_length: 13 },
    notices: [],         // admins: accounts locked after wrong passwords
    mentionsNew: 0,      // mention notices since the list was last opened
    thumbnails: new Map(), // file id -> object URL of its fetched thumbnail
    wanted: null,        // a group to open once connected (?group=, a notification's click)
    offlineRetry: 0,     // tries since the start found no server (the offline screen)
    offlineTimer: null,
    renewPush: false,    // a new session: this device's push subscription is registered again
    scroll: null,        // where the next rendering puts the timeline: "open" (a group just opened) or "bottom"
    unreadFrom: null,    // {group, seq}: the read position when the group was opened (ここから未読)
    badgeTotal: -1,      // the unread total last shown in the title and the app badge
    drafts: new Map(),   // group id -> {id, text}: the composer's unsent text per group
    draftTimer: null,
    beat: { timer: null, n: 0, lastPing: 0, awaitingSince: null },
    reconnectTimer: null,
    attempting: false,   // a reconnect attempt (session check, then the socket) is under way
  };

  const ui = window.RenkeiUI(t);
  // 管理 (admin.js) is fetched when first opened: most users never open it.
  let admin = null;
  async function adminScreens() {
    await window.RenkeiLater.load("admin");
    admin ??= window.RenkeiAdmin({
      ui, t, formatTime, describe, groupLabel, user: () => state.user, lang: () => state.lang,
      groupName: (id) => { const g = state.groups.get(id); return g ? groupLabel(g.summary) : null; },
    });
    return admin;
  }
  const notify = window.RenkeiNotify({ ui, t, user: () => state.user, openGroup: openWanted });
  const drafts = window.RenkeiDrafts;

  // ---- text ----------------------------------------------------------------------------
  function t(key, params = {}) {
    const table = messages[state.lang] || messages.ja;
    const text = table[key] ?? messages.ja[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
  }

  function applyLanguage() {
    document.documentElement.lang = state.lang;
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.placeholder = t(el.dataset.i18nPlaceholder);
    });
    renderTitle();
    renderConnection();
    if (state.user) { renderGroups(); renderTimeline(); renderMentions(); }
    if (!$("admin-view").hidden) { show("admin"); admin?.refresh(); } else if (state.user) show("chat");
    renderNotices();
    if ($("account").open) { renderRules(); notify.refresh(); }
  }

  // Shows the chosen language, fetching its catalogue first; Japanese (always there)
  // meanwhile, and instead if the catalogue cannot be fetched.
  async function useLanguage() {
    try { await window.RenkeiLater.language(state.lang); } catch { /* Japanese texts stay */ }
    applyLanguage();
  }

  function formatTime(ms) {
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, "0");
    return t("time.format", { m: d.getMonth() + 1, d: d.getDate(), hh: pad(d.getHours()), mm: pad(d.getMinutes()) });
  }

  // ---- views ---------------------------------------------------------------------------
  // "login", "chat", "admin" (管理: admins and the operator) or "offline" (no server).
  function show(view) {
    const inside = view === "chat" || view === "admin";
    // The chat is laid out as an app (the page holds still, its parts scroll); the others scroll as pages.
    document.body.dataset.view = view;
    $("login-view").hidden = view !== "login";
    $("offline-view").hidden = view !== "offline";
    $("chat-view").hidden = view !== "chat";
    $("admin-view").hidden = view !== "admin";
    $("logout").hidden = !inside;
    $("account-open").hidden = !inside;
    const manages = inside && ["admin", "operator"].includes(state.user?.role ?? state.role);
    $("admin-open").hidden = !manages;
    $("admin-open").textContent = t(view === "admin" ? "nav.chat" : "nav.admin");
    $("admin-open").dataset.view = view;
  }

  async function toggleAdmin() {
    if ($("admin-view").hidden) {
      show("admin");
      try {
        (await adminScreens()).open();
      } catch {
        $("admin-view").replaceChildren(Object.assign(document.createElement("p"), {
          className: "error", role: "alert", textContent: t("admin.unavailable"),
        }));
      }
    } else {
      show("chat");
      renderTimeline();
    }
  }

  function renderConnection() {
    const el = $("connection");
    if (!state.user) { el.textContent = ""; return; }
    const key = state.connected ? "conn.online" : (state.retry > 0 ? "conn.offline" : "conn.connecting");
    el.textContent = t(key);
    el.dataset.state = state.connected ? "online" : "offline";
    el.dataset.retry = String(state.retry); // failed tries since the last welcome
  }

  function groupLabel(summary) {
    return summary.patient_name ? t("patient.label", { name: summary.patient_name }) : summary.name;
  }

  // Invitations waiting for this user's answer, or (admins) their approval. The invitee
  // sees the group, the patient, the inviting facility and who invited them.
  function renderInvitations() {
    const box = $("invitations");
    box.replaceChildren();
    const pending = (i) => i.state === "pending";
    const mine = state.invitations.received.filter(pending);
    const approvals = state.invitations.to_approve.filter((i) => pending(i) && !i.approved);
    if (mine.length === 0 && approvals.length === 0) { box.hidden = true; return; }
    box.hidden = false;
    const heading = document.createElement("h3");
    heading.textContent = t("invitations.heading");
    const ul = document.createElement("ul");
    const item = (i, key, actions) => {
      const li = document.createElement("li");
      li.className = actions.length > 0 ? "invitation" : "invitation waiting";
      li.dataset.invitation = i.id;
      const what = document.createElement("p");
      what.textContent = t(key, {
        group: groupLabel({ patient_name: i.patient_name, name: i.group_name }),
        facility: i.owner ? i.owner.name : "",
        inviter: i.inviter.name,
        invitee: i.invitee.name,
      });
      li.append(what);
      for (const [label, step] of actions) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = t(label);
        button.dataset.step = step;
        button.addEventListener("click", () => answerInvitation(i.id, step));
        li.append(button);
      }
      ul.append(li);
    };
    for (const i of mine) {
      // Accepted: it waits for the approval of the invitee's own facility, and says so.
      if (i.accepted) item(i, "invitations.waiting", []);
      else item(i, "invitations.received", [["invitations.accept", "accept"], ["invitations.decline", "decline"]]);
    }
    for (const i of approvals) item(i, "invitations.approval", [["invitations.approve", "approve"], ["invitations.refuse", "refuse"]]);
    box.append(heading, ul);
  }

  async function loadInvitations() {
    try {
      state.invitations = await ui.api("GET", "/api/v1/invitations");
    } catch { /* shown again on the next notice */ }
    renderInvitations();
  }

  async function answerInvitation(id, step) {
    await ui.api("POST", `/api/v1/invitations/${id}/${step}`).catch(() => {});
    await loadInvitations();
  }

  // One line for what happened in a group other than a post.
  function describe(data) {
    const who = (u) => (u ? `${u.name}${u.facility ? `（${u.facility.name}）` : ""}` : "");
    switch (data.kind) {
      case "post": return `${data.author.name}: ${data.text}`;
      case "member_joined": return t("event.joined", { name: who(data.member) });
      case "member_left": return t("event.left", { name: who(data.member) });
      case "member_removed": return t("event.removed", { name: who(data.member), by: data.by.name });
      case "group_renamed": return t("event.renamed", { name: data.name, by: data.by.name });
      case "consent_recorded": return t("event.consent", { by: data.by.name });
      case "deleted_post": return t("post.deleted", { by: data.deleted_by.name });
      case "group_archived": return t("event.archived", { by: data.by ? data.by.name : t("event.process") });
      case "archive_notice": return t("event.notice", { date: new Date(data.archive_after).toLocaleDateString(state.lang) });
      case "group_restored": return t("event.restored", { by: data.by.name });
      case "post_confirmed": return t("event.confirmed", { name: data.by.name });
      default: return "";
    }
  }

  function renderGroups() {
    renderInvitations();
    renderTitle();
    const list = $("group-list");
    list.replaceChildren();
    const all = [...state.groups.values()];
    if (all.length === 0) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = t("groups.none");
      list.append(p);
      return;
    }
    // Archived groups (保管庫) leave the active lists for a section of their own.
    const sections = [
      ["groups.patient", (g) => g.summary.kind === "patient" && !g.summary.archived],
      ["groups.free", (g) => g.summary.kind === "free" && !g.summary.archived],
      ["groups.archive", (g) => g.summary.archived],
    ];
    for (const [key, belongs] of sections) {
      const groups = all.filter(belongs);
      if (groups.length === 0) continue;
      const heading = document.createElement("h3");
      heading.textContent = t(key);
      const ul = document.createElement("ul");
      for (const g of groups) {
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "group";
        button.dataset.group = g.summary.id;
        if (g.summary.id === state.selected) button.setAttribute("aria-current", "true");
        // First line: the name with its unread pill right after it, then its tags.
        const title = ui.h("span", { class: "group-title" });
        const name = document.createElement("span");
        name.className = "group-name";
        name.textContent = groupLabel(g.summary);
        title.append(name);
        const unread = unreadCount(g);
        if (unread > 0) {
          const badge = document.createElement("span");
          badge.className = "badge";
          badge.textContent = String(unread);
          badge.setAttribute("aria-label", t("groups.unread", { n: unread }));
          title.append(badge);
        }
        if (g.summary.archived) {
          const tag = document.createElement("span");
          tag.className = "tag";
          tag.textContent = t("groups.archived");
          title.append(tag);
        }
        if (notify.isMuted(g.summary.id)) title.append(ui.h("span", { class: "tag muted-mark" }, t("mute.mark")));
        button.append(title);
        const last = lastEvent(g);
        if (last) {
          const preview = document.createElement("span");
          preview.className = "preview";
          preview.textContent = `${formatTime(last.at)} ${describe(last.data)}`;
          button.append(preview);
        }
        button.addEventListener("click", () => select(g.summary.id));
        li.append(button);
        ul.append(li);
      }
      list.append(heading, ul);
    }
  }

  // The unread total in the tab's title ("(3) 連携 Renkei") and, where the platform has one,
  // on the installed app's icon. Only a number: nothing of a group or a patient.
  function renderTitle() {
    let total = 0;
    if (state.user) for (const g of state.groups.values()) if (!g.summary.archived) total += unreadCount(g);
    const name = [...new Set([t("app.title"), "Renkei"])].join(" "); // 連携 Renkei; Renkei
    document.title = `${total > 0 ? `(${total}) ` : ""}${name}`;
    if (total === state.badgeTotal) return;
    state.badgeTotal = total;
    if (total > 0 && "setAppBadge" in navigator) navigator.setAppBadge(total).catch(() => {});
    else if (total === 0 && "clearAppBadge" in navigator) navigator.clearAppBadge().catch(() => {});
  }

  // The server counts unread posts up to `counted.upto` (at the welcome, or when this user
  // last read the group on any device); posts by others that arrived after it are counted
  // here.
  function unreadCount(g) {
    let n = g.counted.unread;
    for (const e of g.events.values()) {
      if (e.seq > g.counted.upto && e.seq > g.readSeq && e.data.kind === "post" && e.data.author.id !== state.user.id) n += 1;
    }
    return n;
  }

  function newGroup(summary) {
    return {
      summary, events: new Map(), hasOlder: summary.last_seq > 50,
      readSeq: summary.read_seq ?? 0, counted: { unread: summary.unread ?? 0, upto: summary.last_seq },
    };
  }

  function lastEvent(g) {
    let best = null;
    for (const e of g.events.values()) if (!best || e.seq > best.seq) best = e;
    return best;
  }

  // Opens a group at its first unread post (marked ここから未読) or at its newest. The
  // composer is not focused: on a phone the keyboard would cover the timeline.
  function select(id) {
    showDraft(id);
    const g = state.groups.get(id);
    state.unreadFrom = g ? { group: id, seq: g.readSeq } : null;
    state.selected = id;
    state.scroll = "open";
    if (g && !g.reads) loadReads(g);
    document.body.dataset.pane = "timeline";
    renderGroups();
    renderTimeline();
    // Keyboard and screen-reader users continue in the timeline (the clicked entry is redrawn).
    $("timeline").focus({ preventScroll: true });
  }

  // Text with links marked as external, never opened without a warning (art. 13(11)(12)).
  function postBody(text, author) {
    const body = document.createElement("p");
    body.className = "text";
    const parts = text.split(/(https?:\/\/[^\s<>"]+)/g);
    parts.forEach((part, i) => {
      if (i % 2 === 0) { body.append(part); return; }
      const link = document.createElement("button");
      link.type = "button";
      link.className = "external";
      link.textContent = part;
      link.title = t("post.external");
      link.setAttribute("aria-label", `${t("post.external")}: ${part}`);
      link.addEventListener("click", () => warnLink(part, author));
      body.append(link);
    });
    return body;
  }

  function renderTimeline() {
    const list = $("timeline");
    const keep = scrollPlace(list);
    list.replaceChildren();
    const g = state.groups.get(state.selected);
    $("timeline-view").hidden = false;
    if (!g) {
      $("timeline-title").textContent = t("timeline.pick");
      $("timeline-patient").textContent = "";
      $("composer").hidden = true;
      $("members-open").hidden = true;
      $("jump-new").hidden = true;
      return;
    }
    $("composer").hidden = false;
    $("members-open").hidden = false;
    // The patient once, as the title; the group's own name below only when it says more.
    const title = groupLabel(g.summary);
    $("timeline-title").textContent = title;
    const patient = g.summary.patient_name;
    $("timeline-patient").textContent = patient && !g.summary.name.includes(patient) ? g.summary.name : "";
    if (g.hasOlder) {
      list.append(ui.h("li", { class: "older", dataset: { key: "older" } },
        ui.button(t("timeline.older"), () => loadOlder(), { class: "link-button" })));
    }
    // Why nobody (or this user) cannot post here, if so.
    const closed = g.summary.archived ? "composer.archived"
      : g.summary.needs_consent ? "composer.consent"
        : state.status === "restricted" ? "composer.restricted" : null;
    $("composer-text").disabled = closed !== null;
    $("composer-file").disabled = closed !== null;
    $("composer").querySelector("button[type=submit]").disabled = closed !== null;
    $("composer-note").textContent = closed ? t(closed) : "";
    const events = [...g.events.values()].sort((a, b) => a.seq - b.seq);
    // 確認しました, by post.
    const confirmations = new Map();
    for (const e of events) {
      if (e.data.kind !== "post_confirmed") continue;
      if (!confirmations.has(e.data.seq)) confirmations.set(e.data.seq, []);
      confirmations.get(e.data.seq).push(e.data.by);
    }
    const open = !g.summary.archived && state.status !== "restricted";
    // ここから未読: above the first post by others after where the user had read on opening.
    const from = state.unreadFrom?.group === g.summary.id ? state.unreadFrom.seq : Infinity;
    const firstUnread = events.find((e) => e.seq > from && e.data.kind === "post" && e.data.author.id !== state.user.id);
    if (events.length === 0) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = t("timeline.empty");
      list.append(li);
    }
    for (const e of events) {
      if (e === firstUnread) {
        list.append(ui.h("li", { class: "unread-marker", id: "unread-marker", role: "separator", dataset: { key: "unread" } },
          ui.h("span", {}, t("timeline.unread_here"))));
      }
      if (e.data.kind === "post") {
        const mine = e.data.author.id === state.user.id;
        const li = renderPost(e.data.author, e.data.text, e.at, mine, null);
        li.dataset.seq = e.seq;
        li.dataset.key = `e${e.seq}`;
        if (!mine && mentionsMe(e.data.text)) li.classList.add("mentioned");
        if (e.data.file) li.append(attachmentView(e.data.file));
        const confirmedBy = confirmations.get(e.seq) ?? [];
        if (confirmedBy.length > 0) {
          li.append(ui.h("p", { class: "confirmations" },
            t("post.confirmed", { n: confirmedBy.length, names: confirmedBy.map((u) => u.name).join("、") })));
        }
        // The post's actions in one row: 確認しました first, 管理者に報告 apart at the far end.
        const actions = ui.h("div", { class: "post-actions" });
        if (mine) actions.append(readByButton(g, e.seq));
        if (mine && !g.summary.archived) actions.append(deleteButton(g.summary.id, e.seq));
        if (!mine && open && !confirmedBy.some((u) => u.id === state.user.id)) actions.append(confirmButton(g.summary.id, e.seq));
        if (!mine) actions.append(reportButton(g.summary.id, e.seq));
        if (actions.childElementCount > 0) li.append(actions);
        list.append(li);
      } else if (e.data.kind === "deleted_post") {
        const li = renderPost(e.data.author, "", e.at, false, t("post.deleted", { by: e.data.deleted_by.name }));
        li.classList.add("deleted");
        li.dataset.key = `e${e.seq}`;
        list.append(li);
      } else if (e.data.kind === "post_deleted" || e.data.kind === "post_confirmed") {
        // Shown at the post's own place.
      } else {
        const li = document.createElement("li");
        li.className = "system";
        li.dataset.key = `e${e.seq}`;
        li.textContent = `${formatTime(e.at)} ${describe(e.data)}`;
        list.append(li);
      }
    }
    for (const [clientId, p] of state.pending) {
      if (p.group !== g.summary.id || p.state === "sent") continue;
      const note = p.state === "failed" ? t("post.failed", { reason: p.error }) : t("post.pending");
      const li = renderPost(state.user, p.text, null, true, note, clientId);
      li.dataset.key = `c${clientId}`;
      list.append(li);
    }
    placeScroll(list, g, keep);
    reportRead(g);
  }

  // ---- the timeline's own scrolling -----------------------------------------------------
  // Before a rendering: whether the user is at the newest post, else which item is at the
  // top of the view and where, so that the same item stays there (older posts loaded above,
  // new ones arriving below, a confirmation added: nothing under the reader's eyes moves).
  function scrollPlace(list) {
    const bottom = list.scrollHeight - list.scrollTop - list.clientHeight <= 8;
    const newest = Number(list.dataset.newest ?? 0);
    const place = { bottom, newest, group: list.dataset.group, anchor: null };
    if (bottom) return place;
    for (const item of list.children) {
      if (item.offsetTop + item.offsetHeight > list.scrollTop && item.dataset.key && item.dataset.key !== "older") {
        place.anchor = { key: item.dataset.key, offset: item.offsetTop - list.scrollTop };
        break;
      }
    }
    return place;
  }

  function placeScroll(list, g, keep) {
    const newest = g.events.size > 0 ? Math.max(...g.events.keys()) : 0;
    list.dataset.newest = String(newest);
    list.dataset.group = String(g.summary.id);
    let intent = state.scroll;
    if (intent !== "open" && intent !== "bottom" && keep.group !== String(g.summary.id)) intent = "open";
    if (intent === "bottom") state.scroll = null;
    const marker = $("unread-marker");
    if (intent === "open") {
      // Opened before its posts arrived: while its catch-up streams in (a post at a time)
      // or the page of its first unread posts is on its way, placed again as they come.
      // Let go earlier, a short timeline would count as "at the newest" and stick there.
      const arriving = g.events.size === 0 || fetchUnread(g) || g.catchingUp || g.fetchingUnread;
      state.scroll = arriving ? "open" : null;
      if (marker) list.scrollTop = Math.max(0, marker.offsetTop - 8);
      else toBottom();
      return;
    }
    if (intent === "bottom" || keep.bottom) { toBottom(); return; }
    const item = keep.anchor && [...list.children].find((li) => li.dataset.key === keep.anchor.key);
    if (item) list.scrollTop = item.offsetTop - keep.anchor.offset;
    // Scrolled up while something new came: a button says so instead of a jump.
    if (newest > keep.newest && keep.newest > 0) $("jump-new").hidden = false;
  }

  // The unread posts older than those held are fetched in one page (at most 256), so that
  // the group opens at its first unread post. Whether a page was asked for.
  function fetchUnread(g) {
    const from = state.unreadFrom?.group === g.summary.id ? state.unreadFrom.seq : Infinity;
    const oldest = Math.min(...g.events.keys());
    if (!g.hasOlder || !state.connected || from >= oldest - 1 || g.askedBefore === oldest) return false;
    if (state.unreadFrom.fetched) return false; // one page per opening; beyond it, the marker tops what is held
    let held = 0; // unread posts already here: none missing, nothing to fetch
    for (const e of g.events.values()) if (e.seq > from && e.data.kind === "post" && e.data.author.id !== state.user.id) held += 1;
    if (held >= unreadCount(g)) return false;
    state.unreadFrom.fetched = true;
    g.fetchingUnread = true;
    g.askedBefore = oldest;
    loadOlder(Math.min(256, oldest - from));
    return true;
  }

  function toBottom() {
    const list = $("timeline");
    list.scrollTop = list.scrollHeight;
    $("jump-new").hidden = true;
  }

  // Scrolling: near the top, the page before is asked for (once per oldest post held);
  // at the bottom, the "new posts" button goes.
  function timelineScrolled() {
    const list = $("timeline");
    if (list.scrollHeight - list.scrollTop - list.clientHeight <= 8) $("jump-new").hidden = true;
    const g = state.groups.get(state.selected);
    if (!g || !g.hasOlder || list.scrollTop > 200 || g.events.size === 0) return;
    const oldest = Math.min(...g.events.keys());
    if (g.askedBefore === oldest) return;
    g.askedBefore = oldest;
    loadOlder();
  }

  // The timeline is in front of the user: the page is visible and the timeline is laid
  // out (not the admin screens, and on a phone not the group list).
  function onScreen() {
    return !document.hidden && $("timeline").getClientRects().length > 0;
  }

  // Tells the server how far this member has read the group on screen (既読: the other
  // members see it, the user's other devices clear their count), once per new position.
  function reportRead(g) {
    if (!state.connected || !onScreen() || g.events.size === 0) return;
    const seq = Math.max(...g.events.keys());
    if (seq <= (g.reported ?? 0)) return;
    g.reported = seq;
    state.socket.send(JSON.stringify({ type: "read", group: g.summary.id, seq }));
  }

  // The author deletes their own post, after confirming (art. 13(9)): its text leaves
  // the system and every member sees its place marked as deleted.
  function deleteButton(group, seq) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link-button delete";
    button.textContent = t("post.delete");
    button.addEventListener("click", async () => {
      if (!window.confirm(t("post.delete_confirm"))) return;
      await ui.api("POST", `/api/v1/groups/${group}/posts/${seq}/delete`, {})
        .catch(() => window.alert(t("post.delete_failed")));
    });
    return button;
  }

  // 既読 n on one's own post: how many other members have read up to it; the names on click.
  function readByButton(g, seq) {
    const readers = [...(g.reads?.values() ?? [])].filter((r) => r.user.id !== state.user.id);
    const read = readers.filter((r) => r.seq >= seq);
    return ui.button(t("post.read_by", { n: read.length }), () => {
      const list = $("reader-list");
      list.replaceChildren();
      $("readers-heading").textContent = t("readers.heading", { group: groupLabel(g.summary) });
      for (const r of readers) {
        const done = r.seq >= seq;
        list.append(ui.h("li", { class: done ? "person read" : "person unread" },
          ui.h("strong", {}, r.user.name), " ",
          ui.h("span", { class: "tag" }, t(done ? "readers.read" : "readers.unread")), " ",
          ui.h("span", { class: "muted" }, r.user.facility ? r.user.facility.name : "")));
      }
      $("readers").showModal();
    }, { class: "link-button read-by" });
  }

  async function loadReads(g) {
    try {
      const list = await ui.api("GET", `/api/v1/groups/${g.summary.id}/reads`);
      g.reads = new Map(list.members.map((m) => [m.user.id, m]));
    } catch { return; } // shown without read counts; tried again on the next opening
    if (state.selected === g.summary.id) renderTimeline();
  }

  // 確認しました: the member confirms they have read and acted on the post.
  function confirmButton(group, seq) {
    return ui.button(t("post.confirm"), async () => {
      try {
        await ui.api("POST", `/api/v1/groups/${group}/posts/${seq}/confirm`);
      } catch (error) { window.alert(t("post.confirm_failed", { reason: ui.explain(error) })); }
    }, { class: "confirm-post" });
  }

  // A member asks the admins to look at a post (別紙(2)), with a reason.
  function reportButton(group, seq) {
    return ui.button(t("post.report"), async () => {
      const reason = await ui.ask(t("post.report_reason"));
      if (!reason) return;
      try {
        await ui.api("POST", `/api/v1/groups/${group}/posts/${seq}/report`, { reason });
        window.alert(t("post.reported"));
      } catch (error) { window.alert(ui.explain(error)); }
    }, { class: "link-button report" });
  }

  // Who is in the group: faces, names, facility, profession.
  async function openMembers() {
    const g = state.groups.get(state.selected);
    if (!g) return;
    const list = $("member-list");
    list.replaceChildren();
    $("members-heading").textContent = t("members.heading", { group: groupLabel(g.summary) });
    $("mute").checked = notify.isMuted(g.summary.id);
    $("mute").dataset.group = g.summary.id;
    $("mute-row").hidden = false;
    $("mute-error").textContent = "";
    $("members").showModal();
    try {
      const details = await ui.api("GET", `/api/v1/groups/${g.summary.id}`);
      if (!$("members").open || state.selected !== g.summary.id) return; // closed meanwhile
      $("members-heading").textContent = t("members.heading_n", { group: groupLabel(g.summary), n: details.members.length });
      for (const m of details.members) {
        const face = ui.h("span", { class: "avatar", "aria-hidden": "true" }, [...m.user.name][0] ?? "?");
        const photo = ui.h("img", { src: `/api/v1/users/${m.user.id}/photo`, alt: "" });
        photo.addEventListener("error", () => photo.remove());
        face.append(photo);
        // "@": name them in the post being written (a mention).
        const name = m.user.id === state.user.id ? null : ui.button("@", () => {
          const box = $("composer-text");
          box.value = `${box.value}${box.value && !box.value.endsWith(" ") ? " " : ""}@${m.user.name} `;
          $("members").close();
          box.focus();
        }, { class: "link-button mention", "aria-label": t("members.mention", { name: m.user.name }) });
        list.append(ui.h("li", { class: "person" }, face, ui.h("div", {},
          ui.h("p", {}, ui.h("strong", {}, m.user.name), " ", ui.h("span", { class: "tag" }, professionLabel(m.user.profession)), " ", name),
          ui.h("p", { class: "muted" }, m.user.facility ? m.user.facility.name : t("members.city")))));
      }
    } catch (error) {
      list.append(ui.h("li", { class: "error" }, ui.explain(error)));
    }
  }

  // 「このグループの通知をオフ」: the group's posts no longer notify this user.
  async function toggleMute(e) {
    const box = e.target;
    const group = Number(box.dataset.group);
    $("mute-error").textContent = "";
    box.disabled = true;
    try {
      await notify.setMuted(group, box.checked);
    } catch (error) {
      box.checked = !box.checked;
      $("mute-error").textContent = ui.explain(error);
    }
    box.disabled = false;
    renderGroups();
  }

  function professionLabel(p) {
    const label = t(`profession.${p}`);
    return label === `profession.${p}` ? p : label;
  }

  function renderPost(author, text, at, mine, note, clientId) {
    const li = document.createElement("li");
    li.className = mine ? "post mine" : "post";
    if (clientId) li.dataset.clientId = clientId;
    const head = document.createElement("p");
    head.className = "meta";
    const name = document.createElement("strong");
    name.textContent = author.name;
    const facility = document.createElement("span");
    facility.className = "facility";
    facility.textContent = [author.profession ? professionLabel(author.profession) : "", author.facility ? author.facility.name : ""]
      .filter(Boolean).join("・");
    head.append(name, " ", facility);
    if (at) {
      const time = document.createElement("time");
      time.dateTime = new Date(at).toISOString();
      time.textContent = formatTime(at);
      head.append(" ", time);
    }
    li.append(head, postBody(text, author));
    if (note) {
      const n = document.createElement("p");
      n.className = "note";
      n.textContent = note;
      li.append(n);
    }
    return li;
  }

  // ---- search (検索) and mentions: lists of posts that open their group ----------------
  // `load(before)` gives {hits, more}; `before` pages back from the last hit's time.
  async function showPosts(heading, load, before) {
    const list = $("search-results");
    if (!before) list.replaceChildren();
    $("search-heading").textContent = heading;
    if (!$("search").open) $("search").showModal();
    const more = $("search-more");
    more.hidden = true;
    let page;
    try {
      page = await load(before);
    } catch (error) {
      list.append(ui.h("li", { class: "error" }, ui.explain(error)));
      return;
    }
    if (page.hits.length === 0 && !before) list.append(ui.h("li", { class: "muted" }, t("search.none")));
    for (const hit of page.hits) {
      const li = renderPost(hit.author, hit.text, hit.at, hit.author.id === state.user.id, null);
      const group = state.groups.get(hit.group)?.summary ?? { patient_name: hit.patient_name, name: hit.group_name };
      li.prepend(ui.h("p", { class: "group-name" }, groupLabel(group)));
      li.classList.add("hit");
      li.tabIndex = 0;
      li.addEventListener("click", () => openHit(hit));
      list.append(li);
    }
    more.hidden = !page.more || page.hits.length === 0;
    more.onclick = () => showPosts(heading, load, page.hits[page.hits.length - 1].at);
  }

  // Posts containing the text, in the groups this user may read, any part of a word.
  function search(event) {
    event.preventDefault();
    const q = $("search-q").value.trim();
    if (q === "") return;
    showPosts(t("search.heading", { q }), async (before) => {
      const result = await ui.api("GET", `/api/v1/search?${new URLSearchParams({ q, ...(before ? { before } : {}) })}`);
      return { hits: result.hits, more: result.has_more };
    });
  }

  // Posts that name this user (@name).
  function openMentions() {
    state.mentionsNew = 0;
    renderMentions();
    showPosts(t("mentions.heading"), async (before) => {
      const hits = await ui.api("GET", `/api/v1/mentions?limit=50${before ? `&before=${before}` : ""}`);
      return { hits, more: hits.length === 50 };
    });
  }

  function renderMentions() {
    const button = $("mentions-open");
    button.textContent = state.mentionsNew > 0 ? t("mentions.new", { n: state.mentionsNew }) : t("mentions.open");
    button.classList.toggle("has-new", state.mentionsNew > 0);
  }

  // Whether a post names this user, by the server's rule (docs/protocol.md, mention).
  function mentionsMe(text) {
    const fold = (x) => x.normalize("NFKC").toLowerCase();
    const name = fold(state.user.name.trim());
    if (name === "") return false;
    const folded = fold(text);
    return folded.includes(`@${name}`) || folded.includes(`@${name.replace(/\s/g, "")}`);
  }

  // Opens the group of a hit, with the history around the post loaded.
  function openHit(hit) {
    $("search").close();
    const g = state.groups.get(hit.group);
    if (!g) return;
    select(hit.group);
    if (!g.events.has(hit.seq) && state.connected) {
      state.socket.send(JSON.stringify({ type: "history", group: hit.group, before: hit.seq + 25, limit: 50 }));
    }
  }

  // ---- dialogs -------------------------------------------------------------------------
  function warnLink(url, author) {
    $("link-sender").textContent = t("link.sender", {
      name: author.name, facility: author.facility ? author.facility.name : "",
    });
    $("link-url").textContent = url;
    const dialog = $("link-warning");
    dialog.onclose = () => {
      if (dialog.returnValue === "open") window.open(url, "_blank", "noopener,noreferrer");
    };
    dialog.showModal();
  }

  // Professions whose word for the person cared for is 利用者 (long-term care), not 患者.
  const CLIENT_WORD_PROFESSIONS = ["care_manager", "helper"];

  // 確定操作 (art. 13(9)): the author confirms the text and, unmistakably, the patient.
    function review(event) {
    event.preventDefault();
    const g = state.groups.get(state.selected);
    const text = $("composer-text").value;
    const file = chosenFile();
    if (!g || (text.trim() === "" && !file)) return;
    // Care managers and helpers speak of 利用者, the medical professions of 患者.
    const client = CLIENT_WORD_PROFESSIONS.includes(state.user?.profession);
    $("confirm-patient-label").textContent = t(client ? "confirm.client" : "confirm.patient");
    $("confirm-patient").textContent = g.summary.patient_name ? groupLabel(g.summary) : t(client ? "confirm.free_client" : "confirm.free");
    $("confirm-group").textContent = g.summary.name;
    $("confirm-text").textContent = text;
    $("confirm-file").textContent = file ? t("post.file", { name: file.name, size: formatSize(file.size) }) : "";
    $("confirm-file").hidden = !file;
    $("confirm-file-label").hidden = !file;
    $("confirm-send").textContent = g.summary.patient_name ? t(client ? "confirm.send_client" : "confirm.send") : t("confirm.send_free");
    const dialog = $("confirm");
    dialog.onclose = () => {
      if (dialog.returnValue !== "send") { $("composer-text").focus(); return; }
            $("composer-text").value = "";
      $("composer-file").value = "";
      renderAttachment();
      const clientId = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random()).slice(0, 64);
      // A file goes with its name as the caption when nothing else was written.
      const caption = text.trim() === "" ? file.name : text;
      state.scroll = "bottom"; // one's own post is shown where it was sent
      state.pending.set(clientId, { group: g.summary.id, text: caption, state: file ? "uploading" : "pending", error: "", file: null, created: Date.now() });
      keepPending(clientId);
      forgetDraft(g.summary.id);
      if (file) uploadThenPost(clientId, file); else sendPost(clientId);
      renderTimeline();
    };
    dialog.returnValue = "";
    dialog.showModal();
  }

    function sendPost(clientId) {
    const p = state.pending.get(clientId);
    if (!p || !state.connected || p.state === "uploading") return; // sent again after the next sync
    state.socket.send(JSON.stringify({ type: "post", group: p.group, client_id: clientId, text: p.text, file: p.file ?? undefined }));
    // A post into a socket that went silent is found out now, not at the next beat.
    ping();
  }

    // ---- files (添付ファイル) ---------------------------------------------------------------
  function chosenFile() {
    return $("composer-file").files[0] ?? null;
  }

  function renderAttachment() {
    const file = chosenFile();
    $("composer-file-name").textContent = file ? t("post.file", { name: file.name, size: formatSize(file.size) }) : "";
    $("composer-file-clear").hidden = !file;
  }

  function formatSize(bytes) {
    if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
    return bytes >= 1024 ? `${Math.round(bytes / 1024)} KB` : `${bytes} B`;
  }

  // The file is uploaded once the post is confirmed, then posted with it (its id).
  async function uploadThenPost(clientId, file) {
    const p = state.pending.get(clientId);
    try {
      const uploaded = await ui.api("POST", `/api/v1/groups/${p.group}/files?name=${encodeURIComponent(file.name)}`, file);
      p.file = uploaded.id;
      p.state = "pending";
      keepPending(clientId);
      sendPost(clientId);
    } catch (error) {
      p.state = "failed";
      p.error = t("post.upload_failed", { reason: ui.explain(error) });
    }
    if (p.group === state.selected) renderTimeline();
  }

  // A posted file: an image's preview opens the image; other files download.
  function attachmentView(file) {
    const label = t("post.file", { name: file.name, size: formatSize(file.size) });
    if (!file.thumbnail) {
      return ui.h("p", { class: "file" }, ui.h("a", { href: `/api/v1/files/${file.id}`, download: file.name }, label));
    }
    const image = ui.h("img", { alt: label, class: "thumbnail" });
    showThumbnail(file.id, image);
    return ui.h("p", { class: "file" },
      ui.h("a", { href: `/api/v1/files/${file.id}?inline=true`, target: "_blank", rel: "noopener", title: label }, image));
  }

  // Thumbnails are fetched once per page and kept as object URLs (the server sends files
  // with no-store: nothing of them stays in the browser's cache after logout).
  async function showThumbnail(id, image) {
    let src = state.thumbnails.get(id);
    if (!src) {
      const response = await fetch(`/api/v1/files/${id}/thumbnail`, { credentials: "same-origin" }).catch(() => null);
      if (!response?.ok) return;
      src = URL.createObjectURL(await response.blob());
      state.thumbnails.set(id, src);
    }
    image.src = src;
  }

  function forgetThumbnails() {
    for (const src of state.thumbnails.values()) URL.revokeObjectURL(src);
    state.thumbnails.clear();
  }

  // ---- the connection ------------------------------------------------------------------
  // Whether this page is in front of the user: the server pushes only to users with no
  // visible page, so a nurse looking at the app is not also buzzed in her pocket.
  function sendVisibility() {
    if (!state.connected) return;
    state.socket.send(JSON.stringify({ type: "visibility", visible: document.visibilityState === "visible" }));
  }

  function connect() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
    const socket = new WebSocket(url);
    state.socket = socket;
    // Until the welcome the socket is on probation like a ping: a connect that hangs (a
    // silent network accepts nothing and refuses nothing) is given up at the deadline.
    watch(socket);
    socket.onmessage = (m) => {
      heard();
      let message;
      try { message = JSON.parse(m.data); } catch { return; }
      receive(message);
    };
    socket.onclose = (e) => {
      if (state.socket !== socket) return;
      state.connected = false;
      stopBeat();
      if (state.locked) { renderConnection(); return; }
      // The session ended elsewhere (logout everywhere, a password change or reset).
      if (e.code === 4001) { enterLogin(); return; }
      if (e.code === 4002) { // the account can no longer be used: never reconnect
        enterLogin();
        $("login-error").textContent = t("login.ended");
        return;
      }
      lost(socket);
    };
  }

  // The socket is gone (closed, or given up as silent): say so, and try again.
  function lost(socket) {
    state.connected = false;
    state.retry += 1;
    renderConnection();
    reconnectLater(socket);
  }

  // Backs off (1 s doubling to 30 s, with jitter) and tries again; only a session the
  // server no longer knows sends the user back to the login screen.
  function reconnectLater(socket) {
    const delay = Math.min(30000, 1000 * 2 ** Math.min(state.retry - 1, 5)) * (0.5 + Math.random() / 2);
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(() => attempt(socket), delay);
  }

  async function attempt(socket) {
    if (state.socket !== socket || state.locked || state.attempting) return;
    state.attempting = true;
    let session;
    try {
      session = await whoAmI(RECONNECT_CHECK_MS);
    } finally {
      state.attempting = false;
    }
    if (state.socket !== socket || state.locked) return;
    if (session === "ok") { connect(); openUnsent(); } else if (session === "none") enterLogin();
    else { state.retry += 1; renderConnection(); reconnectLater(socket); }
  }

  // The device says its network is back, or the app is in front of the user again: a
  // socket that is down is tried again now, its backoff reset, instead of waiting out a
  // delay that may have grown to 30 s; a socket that seems up is checked with a ping.
  function reconnectNow() {
    const socket = state.socket;
    if (!socket || state.locked || !state.user) return;
    if (state.connected) { ping(); return; }
    if (socket.readyState === WebSocket.CONNECTING || state.attempting) return;
    clearTimeout(state.reconnectTimer);
    state.retry = Math.min(state.retry, 1);
    attempt(socket);
  }

  // ---- the heartbeat: browsers cannot send ping frames, so the protocol has its own ----
  // Every BEAT_MS a `ping` goes out (and at once after a post); when no frame at all has
  // arrived DEADLINE_MS after a ping (or after opening the socket), the connection is
  // silent — packets dropped, no reset, which the browser would not notice for minutes:
  // it is given up, オフライン is shown, and the client reconnects.
  const BEAT_MS = 4000;
  const DEADLINE_MS = 9000;
  const RECONNECT_CHECK_MS = 8000;

  function watch(socket) {
    stopBeat();
    state.beat.awaitingSince = Date.now();
    state.beat.lastPing = Date.now();
    state.beat.timer = setInterval(() => beat(socket), 500);
  }

  function stopBeat() {
    clearInterval(state.beat.timer);
    state.beat.timer = null;
    state.beat.awaitingSince = null;
  }

  function heard() {
    state.beat.awaitingSince = null;
  }

  function ping() {
    if (!state.connected || state.socket?.readyState !== WebSocket.OPEN) return;
    state.beat.n += 1;
    state.beat.lastPing = Date.now();
    if (state.beat.awaitingSince === null) state.beat.awaitingSince = Date.now();
    state.socket.send(JSON.stringify({ type: "ping", n: state.beat.n }));
  }

  function beat(socket) {
    if (state.socket !== socket) { clearInterval(state.beat.timer); return; }
    const now = Date.now();
    if (state.beat.awaitingSince !== null && now - state.beat.awaitingSince > DEADLINE_MS) {
      stopBeat();
      // Given up: its late close (the closing handshake cannot pass either) changes nothing.
      socket.onclose = null;
      socket.onmessage = null;
      socket.close();
      lost(socket);
      return;
    }
    if (now - state.beat.lastPing >= BEAT_MS) ping();
  }

  // ---- what survives a reload: unsent posts and drafts, encrypted (drafts.js) -------------
  // The session's key is fetched after each login or resumed session; posts and drafts
  // kept under an ended session's key cannot be read and are deleted.
  async function openUnsent() {
    if (!drafts.available() || drafts.hasKey()) return;
    let answer;
    try {
      answer = await ui.api("GET", "/api/v1/session/key", undefined, { timeoutMs: RECONNECT_CHECK_MS });
    } catch (error) {
      // No session: nobody can read them anymore. Unreachable: the next connect tries.
      if (error.status === 401) await drafts.clear().catch(() => {});
      return;
    }
    if (!state.user && !state.socket) return; // logged out meanwhile
    try {
      await drafts.setKey(answer.key);
      for (const record of await drafts.readAll()) {
        const v = record.value;
        if (record.kind === "post" && !state.pending.has(v.clientId)) {
          // A file never uploaded is not kept on the device: it must be attached again.
          const lostFile = v.uploading === true;
          state.pending.set(v.clientId, {
            group: v.group, text: v.text, file: v.file ?? null, created: v.created,
            state: lostFile ? "failed" : "pending", error: lostFile ? t("unsent.reattach") : "",
          });
          if (lostFile) drafts.remove(record.id).catch(() => {});
        } else if (record.kind === "draft" && !state.drafts.has(v.group)) {
          state.drafts.set(v.group, { id: record.id, text: v.text });
        }
      }
      // Kept again under this session's key (after the idle lock the old records went).
      for (const clientId of state.pending.keys()) keepPending(clientId);
      for (const group of state.drafts.keys()) keepDraft(group);
    } catch {
      return; // IndexedDB unavailable (private mode): only this page holds them
    }
    if (state.selected !== null && $("composer-text").value === "") showDraft(state.selected);
    for (const [clientId, p] of state.pending) if (p.state === "pending") sendPost(clientId);
    if (state.user) renderTimeline();
  }

  function keepPending(clientId) {
    const p = state.pending.get(clientId);
    if (!p || !drafts.hasKey() || p.state === "failed" || p.state === "sent") return;
    const value = { clientId, group: p.group, text: p.text, file: p.file, created: p.created ?? Date.now(), uploading: p.state === "uploading" };
    drafts.put(`post-${clientId}`, "post", value).catch(() => {});
  }

  function forgetPending(clientId) {
    drafts.remove(`post-${clientId}`).catch(() => {});
  }

  function unsentPosts() {
    return [...state.pending.values()].filter((p) => p.state !== "sent" && p.state !== "failed").length;
  }

  // The composer's text per group: kept as typed, shown again when the group is opened.
  function showDraft(id) {
    if (state.selected === id) return;
    $("composer-text").value = state.drafts.get(id)?.text ?? "";
  }

  function keepDraft(group) {
    const draft = state.drafts.get(group);
    if (!draft || !drafts.hasKey()) return;
    drafts.put(draft.id, "draft", { group, text: draft.text }).catch(() => {});
  }

  function forgetDraft(group) {
    const draft = state.drafts.get(group);
    state.drafts.delete(group);
    if (draft) drafts.remove(draft.id).catch(() => {});
  }

  function draftTyped() {
    const group = state.selected;
    if (group === null) return;
    const text = $("composer-text").value;
    if (text === "") { forgetDraft(group); return; }
    const draft = state.drafts.get(group) ?? { id: `draft-${crypto.randomUUID()}` };
    draft.text = text;
    state.drafts.set(group, draft);
    clearTimeout(state.draftTimer);
    state.draftTimer = setTimeout(() => keepDraft(group), 300);
  }

  // Everything kept goes: the session (and with it the key) has ended.
  function forgetUnsent() {
    clearTimeout(state.draftTimer);
    state.drafts.clear();
    drafts.clear().catch(() => {});
  }

  // Offline at the start (no key without the server): how many posts wait, not what.
  async function showUnsentCount() {
    const n = await drafts.count("post").catch(() => 0);
    const el = $("offline-unsent");
    el.hidden = n === 0;
    el.textContent = n > 0 ? t("unsent.offline", { n }) : "";
  }

  function receive(m) {
    switch (m.type) {
      case "welcome": return welcome(m);
      case "event": return event(m);
      case "synced": return synced(m);
      case "page": return page(m);
      case "ack": return ack(m);
      case "error": return failure(m);
      case "group_joined": return joined(m.group);
      case "group_left": return left(m.group);
      case "invitation": return loadInvitations();
      case "account": return account(m);
      case "account_locked": return locked(m);
      case "facility_applied": return facilityApplied(m);
      case "read_position": return readPosition(m);
      case "receipt": return receipt(m);
      case "mention": return mentioned(m);
    }
  }

  // This user read a group up to m.seq, here or on another device.
  function readPosition(m) {
    const g = state.groups.get(m.group);
    if (!g) return;
    g.readSeq = Math.max(g.readSeq, m.seq);
    g.reported = Math.max(g.reported ?? 0, m.seq);
    g.counted = { unread: m.unread, upto: m.last_seq };
    renderGroups();
  }

  // A member read the group up to m.seq: the 既読 counts of the posts up to it grow.
  function receipt(m) {
    const g = state.groups.get(m.group);
    if (!g || !g.reads) return;
    const known = g.reads.get(m.user);
    if (!known) { loadReads(g); return; } // a member this page has not seen yet
    known.seq = Math.max(known.seq, m.seq);
    if (m.group === state.selected) renderTimeline();
  }

  // A post named this user: counted until the list is opened, unless it is on screen.
  function mentioned(m) {
    if (m.group === state.selected && onScreen()) return;
    state.mentionsNew += 1;
    renderMentions();
  }

  // A group appeared (an invitation completed): read it from the start.
  function joined(summary) {
    if (!state.groups.has(summary.id)) state.groups.set(summary.id, newGroup(summary));
    state.groups.get(summary.id).catchingUp = true;
    state.socket.send(JSON.stringify({ type: "sync", groups: [{ group: summary.id, after: Math.max(0, summary.last_seq - 50) }] }));
    loadInvitations();
    renderGroups();
  }

  // No longer a member: the group and what was shown of it go.
  function left(id) {
    state.groups.delete(id);
    if (state.selected === id) state.selected = null;
    renderGroups();
    renderTimeline();
  }

  function account(m) {
    state.user = m.user;
    state.status = m.status;
    renderTimeline();
  }

  function welcome(m) {
    state.user = m.user;
    state.connected = true;
    state.retry = 0;
    const cursors = [];
    const seen = new Set();
    for (const summary of m.groups) {
      seen.add(summary.id);
      let g = state.groups.get(summary.id);
      if (!g) {
        g = newGroup(summary);
        state.groups.set(summary.id, g);
      }
      g.summary = summary;
      g.readSeq = summary.read_seq;
      g.counted = { unread: summary.unread, upto: summary.last_seq };
      // Catch up from what we hold; a group new to this page starts with its last 50 posts.
      const held = g.events.size > 0 ? Math.max(...g.events.keys()) : Math.max(0, summary.last_seq - 50);
      cursors.push({ group: summary.id, after: held });
      g.catchingUp = true; // until its `synced`
      g.fetchingUnread = false; // a page asked for on the connection before never comes
    }
    for (const id of [...state.groups.keys()]) if (!seen.has(id)) state.groups.delete(id);
    // Posts waiting for a group no longer held (no catch-up will come): sent once, for the
    // server to say why.
    for (const [clientId, p] of state.pending) if (p.state !== "sent" && !seen.has(p.group)) sendPost(clientId);
    // Mentions in posts not read yet, received while logged out or offline, count in
    // 自分宛て as the live ones do.
    const away = m.groups.reduce((sum, summary) => sum + (summary.unread_mentions ?? 0), 0);
    state.mentionsNew = Math.max(state.mentionsNew, away);
    renderMentions();
    if (cursors.length > 0) state.socket.send(JSON.stringify({ type: "sync", groups: cursors }));
    sendVisibility();
    show($("admin-view").hidden ? "chat" : "admin");
    if (state.focusAfterLogin) {
      state.focusAfterLogin = false;
      if (!$("chat-view").hidden) $("groups-heading").focus();
    }
    renderConnection();
    renderGroups();
    renderTimeline();
    loadInvitations();
    notify.loadMuted().then(renderGroups);
    if (state.renewPush) { state.renewPush = false; notify.renew(); }
    if (state.wanted !== null) openWanted(state.wanted);
  }

  // Opens a group asked for from outside the page (?group=, a notification's click), once
  // the groups are known; a group this user is not a member of is ignored.
  function openWanted(id) {
    state.wanted = id;
    if (!state.user || !state.connected) return; // after the welcome
    state.wanted = null;
    if (!state.groups.has(id)) return;
    if (!$("admin-view").hidden) show("chat");
    select(id);
  }

  function event(m) {
    const g = state.groups.get(m.group);
    if (!g || g.events.has(m.seq)) return;
    g.events.set(m.seq, m);
    g.summary.last_seq = Math.max(g.summary.last_seq, m.seq);
    if (m.data.kind === "group_renamed") g.summary.name = m.data.name;
    if (m.data.kind === "consent_recorded") g.summary.needs_consent = false;
    if (m.data.kind === "group_archived") g.summary.archived = true;
    if (m.data.kind === "group_restored") g.summary.archived = false;
    if (m.data.kind === "post_deleted") {
      const deleted = g.events.get(m.data.seq);
      if (deleted && deleted.data.kind === "post") {
        deleted.data = { kind: "deleted_post", author: deleted.data.author, deleted_by: m.data.by, deleted_at: m.at };
      }
    }
    if (m.data.kind === "post" && m.data.author.id === state.user.id) {
      const p = state.pending.get(m.data.client_id);
      if (p) { p.state = "sent"; forgetPending(m.data.client_id); }
    }
    renderGroups();
    if (m.group === state.selected) renderTimeline();
  }

  function synced(m) {
    // The group's posts waiting from before the reconnect go again with their ids (never
    // stored twice).
    for (const [clientId, p] of state.pending) {
      if (p.state !== "sent" && p.group === m.group) sendPost(clientId);
    }
    const g = state.groups.get(m.group);
    if (!g) return;
    g.catchingUp = false;
    // A group opened during its catch-up is placed now that all of it is here.
    if (m.group === state.selected && state.scroll === "open") renderTimeline();
  }

  function page(m) {
    const g = state.groups.get(m.group);
    if (!g) return;
    for (const e of m.events) g.events.set(e.seq, e);
    g.hasOlder = m.has_more;
    g.fetchingUnread = false;
    if (m.group === state.selected) renderTimeline();
  }

  function ack(m) {
    const p = state.pending.get(m.client_id);
    if (p) { p.state = "sent"; state.pending.delete(m.client_id); }
    forgetPending(m.client_id);
    if (m.group === state.selected) renderTimeline();
  }

  function failure(m) {
    if (!m.client_id) return;
    const p = state.pending.get(m.client_id);
    if (!p) return;
    const retry = ["rate_limited", "unavailable", "shutting_down", "internal"].includes(m.code);
    p.state = retry ? "pending" : "failed";
    // Refused for good: shown on this page, not sent again after a reload.
    if (!retry) forgetPending(m.client_id);
    p.error = messages[state.lang][`error.${m.code}`] ? t(`error.${m.code}`) : t("error.generic", { code: m.code });
    if (retry) setTimeout(() => sendPost(m.client_id), 2000);
    if (p.group === state.selected) renderTimeline();
  }

  function loadOlder(limit = 50) {
    const g = state.groups.get(state.selected);
    if (!g || !state.connected) return;
    const oldest = g.events.size > 0 ? Math.min(...g.events.keys()) : undefined;
    state.socket.send(JSON.stringify({ type: "history", group: g.summary.id, before: oldest, limit }));
  }

  // ---- sessions ------------------------------------------------------------------------
  // Whether this browser had a session when last seen (shared by its tabs). Only a hint,
  // "1" or absent: the cookie (out of reach of scripts) decides; a stale hint costs one 401.
  const SIGNED_IN = "renkei.signed-in";
  // "ok", "none" (no valid session: 401) or "unreachable" (network, server down).
  async function whoAmI(timeoutMs) {
    let info;
    try {
      info = await ui.api("GET", "/api/v1/session", undefined, { timeoutMs });
    } catch (error) {
      if (error.status === 401) localStorage.removeItem(SIGNED_IN);
      return error.status === 401 ? "none" : "unreachable";
    }
    if (!info) return "unreachable"; // the answer's body did not arrive in time
    localStorage.setItem(SIGNED_IN, "1");
    state.login = info.login;
    state.name = info.user?.name || "";
    state.mustChange = !!info.password_change_required;
    state.mustEnroll = !!info.second_factor_enrollment_required;
    state.status = info.status || "active";
    state.role = info.user?.role || "staff";
    sessionStorage.setItem("renkei.login", info.login);
    if (info.idle_lock_seconds) state.idleLimitMs = info.idle_lock_seconds * 1000;
    return "ok";
  }

  async function logIn(login, password, code) {
    try {
      await ui.api("POST", "/api/v1/session", code ? { login, password, code } : { login, password });
    } catch (error) {
      if (error.code === "second_factor_required") return "code";
      if (error.status === 401) return t("login.failed");
      if (error.status === 429) return t(error.code === "rate_limited" ? "login.wait" : "login.busy");
      return t("login.error");
    }
    state.login = login;
    sessionStorage.setItem("renkei.login", login);
    return null;
  }

  async function submitLogin(e) {
    e.preventDefault();
    const codeRow = $("login-code-row");
    const code = codeRow.hidden ? "" : $("login-code").value.trim();
    const error = await logIn($("login-id").value.trim(), $("login-password").value, code);
    if (error === "code") {
      // The password was right: ask for the second factor, keeping what was typed.
      codeRow.hidden = false;
      $("login-error").textContent = "";
      $("login-code").focus();
      return;
    }
    $("login-password").value = "";
    $("login-code").value = "";
    codeRow.hidden = true;
    $("login-note").textContent = "";
    $("login-error").textContent = error || "";
    if (!error && await whoAmI() === "ok") {
      // The form disappears with the focus in it; the group list's heading takes it (welcome).
      state.focusAfterLogin = true;
      start();
    }
  }

  // A new account (or one an admin reset) sets its password with the one-time code
  // the admin handed over, then logs in with it.
  // The setup code in four boxes of five characters of Crockford's base32. Read as the
  // server reads it: any case, O as 0, I and L as 1, other characters dropped. Typing
  // five moves to the next box; a whole code pasted (or typed) into one box is spread.
  const SETUP_BOXES = ["setup-code-1", "setup-code-2", "setup-code-3", "setup-code-4"];

  function setupCodeChars(text) {
    return text.normalize("NFKC").toUpperCase().replace(/O/g, "0").replace(/[IL]/g, "1")
      .replace(/[^0-9A-HJKMNP-TV-Z]/g, "");
  }

  function spreadSetupCode(from, chars) {
    let index = from;
    for (let rest = chars; rest && index < SETUP_BOXES.length; index += 1, rest = rest.slice(5)) {
      $(SETUP_BOXES[index]).value = rest.slice(0, 5);
    }
    const full = $(SETUP_BOXES[index - 1])?.value.length === 5;
    if (full) $(index < SETUP_BOXES.length ? SETUP_BOXES[index] : "setup-password").focus();
  }

  function typeSetupCode(e) {
    const from = SETUP_BOXES.indexOf(e.target.id);
    const chars = setupCodeChars(e.target.value);
    if (chars.length > 5) { spreadSetupCode(from, chars); return; }
    if (e.target.value !== chars) e.target.value = chars;
    if (chars.length === 5) $(SETUP_BOXES[from + 1] ?? "setup-password").focus();
  }

  function pasteSetupCode(e) {
    const text = e.clipboardData?.getData("text") ?? "";
    const chars = setupCodeChars(text);
    if (chars.length <= 5) return;
    e.preventDefault();
    spreadSetupCode(SETUP_BOXES.indexOf(e.target.id), chars);
  }

  function backSetupCode(e) {
    const from = SETUP_BOXES.indexOf(e.target.id);
    if (e.key === "Backspace" && e.target.value === "" && from > 0) $(SETUP_BOXES[from - 1]).focus();
  }

  // The password rules, shown from the start and checked as the user types; the login
  // typed above counts for the rule against personal words.
  function renderSetupRules(serverBroken = []) {
    renderRules(serverBroken, { input: "setup-password", list: "setup-rules", login: $("setup-login").value.trim(), name: "" });
  }

  async function setUpPassword(e) {
    e.preventDefault();
    $("setup-error").textContent = "";
    const login = $("setup-login").value.trim();
    const password = $("setup-password").value;
    try {
      await ui.api("POST", "/api/v1/password-setup", { code: SETUP_BOXES.map((id) => $(id).value).join("-"), password });
    } catch (error) {
      const rules = error.code === "weak_password" ? error.rules.map((r) => t(`rule.${r}`, { n: state.policy.min_length })) : [];
      if (rules.length > 0) renderSetupRules(error.rules);
      $("setup-error").textContent = rules.length > 0 ? t("setup.weak", { rules: rules.join(" / ") })
        : error.code === "bad_request" ? t("setup.invalid_code") : ui.explain(error);
      return;
    }
    $("setup-password").value = "";
    for (const id of SETUP_BOXES) $(id).value = "";
    $("setup-form").hidden = true;
    $("login-form").hidden = false;
    $("login-id").value = login;
    $("login-error").textContent = "";
    $("login-note").textContent = t("setup.done");
    $("login-password").focus();
  }

  function enterLogin() {
    localStorage.removeItem(SIGNED_IN);
    state.user = null;
    state.socket = null;
    stopBeat();
    state.groups.clear();
    state.pending.clear();
    forgetUnsent();
    state.selected = null;
    state.invitations = { received: [], to_approve: [], sent: [] };
    state.notices = [];
    // Nothing of the last account stays in the page, even hidden.
    for (const id of ["group-list", "timeline", "invitations", "notices", "member-list", "reader-list", "search-results"]) $(id).replaceChildren();
        $("search-q").value = "";
    $("composer-file").value = "";
    renderAttachment();
    forgetThumbnails();
    state.mentionsNew = 0;
    renderTitle(); // no count left in the title or on the icon
    $("invitations").hidden = true;
    $("notices").hidden = true;
    admin?.reset();
    notify.reset();
    show("login");
    renderConnection();
    $("login-id").value = state.login;
    (state.login ? $("login-password") : $("login-id")).focus();
  }

  async function logOut() {
    state.wanted = null;
    const socket = state.socket;
    state.socket = null;
    await ui.api("DELETE", "/api/v1/session").catch(() => {});
    socket?.close();
    await drafts.clear().catch(() => {});
    sessionStorage.removeItem("renkei.login");
    state.login = "";
    enterLogin();
  }

  // ---- idle lock (art. 14(1)): the session ends and the screen hides everything --------
  function resetIdle() {
    clearTimeout(state.idleTimer);
    if (state.user || state.socket) state.idleTimer = setTimeout(lock, state.idleLimitMs);
  }

  async function lock() {
    if (state.locked) return;
    state.locked = true;
    const socket = state.socket;
    state.socket = null;
    stopBeat();
    await ui.api("DELETE", "/api/v1/session").catch(() => {});
    socket?.close();
    // The session's key is gone with it; the unsent posts stay in this page's memory and
    // are kept again under the next session's key after unlocking.
    clearTimeout(state.draftTimer);
    drafts.clear().catch(() => {});
        state.groups.forEach((g) => g.events.clear());
    forgetThumbnails();
    $("timeline").replaceChildren();
    // Nothing stays on an unattended screen: open dialogs close, the admin screens empty.
    document.querySelectorAll("dialog[open]").forEach((dialog) => dialog.close());
    $("member-list").replaceChildren();
    admin?.clear();
    $("lock-login").value = state.login;
    $("lock").hidden = false;
    $("lock-password").focus();
  }

  async function unlock(e) {
    e.preventDefault();
    const codeRow = $("lock-code-row");
    const code = codeRow.hidden ? "" : $("lock-code").value.trim();
    const error = await logIn(state.login, $("lock-password").value, code);
    if (error === "code") { codeRow.hidden = false; $("lock-code").focus(); return; }
    $("lock-password").value = "";
    $("lock-code").value = "";
    codeRow.hidden = true;
    $("lock-error").textContent = error || "";
    if (error) return;
    state.locked = false;
    $("lock").hidden = true;
    await whoAmI();
    start();
    if (!$("admin-view").hidden) admin?.refresh();
  }

  // After logging in: an expired password is changed first, then the socket opens.
  function start() {
    if (state.mustChange || state.mustEnroll) { show("chat"); openAccount(); return; }
    state.renewPush = true;
    connect();
    openUnsent();
    resetIdle();
  }

  // ---- account: password change with its rules shown live, open sessions -------------
  // The rules a client can check as the user types; the server checks them again, and
  // the ones only it can (common, reused, similar), listing every rule broken.
  const LIVE_RULES = ["too_short", "needs_letters_digits_symbols", "repetitive", "personal"];
  const SERVER_RULES = ["common", "reused", "similar"];

  function brokenRules(password, login = state.login, name = state.name) {
    const broken = new Set();
    const chars = [...password];
    if (chars.length < minLength()) broken.add("too_short");
    const letters = /\p{L}/u.test(password), digits = /[0-9]/.test(password);
    const symbols = chars.some((c) => !/[\p{L}\p{N}\s]/u.test(c));
    if (!(letters && digits && symbols)) broken.add("needs_letters_digits_symbols");
    if (/(.)\1\1\1/u.test(password)) broken.add("repetitive");
    const squeeze = (s) => s.replace(/\s+/g, "").toLowerCase();
    const parts = [login.toLowerCase(), login.toLowerCase().split("@")[0], ...name.split(/[\s・]+/), name].map(squeeze);
    const longEnough = (p) => [...p].length >= 4 || ([...p].length >= 2 && /[^\x00-\x7f]/.test(p));
    if (parts.filter(longEnough).some((p) => squeeze(password).includes(p))) broken.add("personal");
    return broken;
  }

  function minLength() {
    const policy = state.policy;
    return state.secondFactor ? (policy.min_length_with_second_factor ?? policy.min_length) : policy.min_length;
  }

  function renderRules(serverBroken = [], where = { input: "password-new", list: "password-rules", login: state.login, name: state.name }) {
    const password = $(where.input).value;
    const live = brokenRules(password, where.login, where.name);
    const list = $(where.list);
    list.replaceChildren();
    for (const rule of [...LIVE_RULES, ...SERVER_RULES]) {
      const li = document.createElement("li");
      li.dataset.rule = rule;
      li.textContent = t(`rule.${rule}`, { n: minLength() });
      if (LIVE_RULES.includes(rule) && password) li.dataset.met = String(!live.has(rule));
      if (serverBroken.includes(rule)) li.dataset.met = "false";
      list.append(li);
    }
  }

  async function openAccount() {
    const dialog = $("account");
    const unfinished = state.mustChange || state.mustEnroll;
    $("account-expired").hidden = !state.mustChange;
    $("account-enroll").hidden = !state.mustEnroll || state.mustChange;
    $("account-close").hidden = unfinished;
    $("sessions-section").hidden = unfinished;
    $("notify-section").hidden = unfinished;
    $("password-form").hidden = state.mustEnroll && !state.mustChange;
    $("two-factor-section").hidden = state.mustChange;
    $("two-factor-setup").hidden = true;
    $("two-factor-codes").hidden = true;
    $("password-login").value = state.login;
    $("password-error").textContent = "";
    $("password-done").textContent = "";
    state.policy = await ui.api("GET", "/api/v1/password-policy").catch(() => state.policy);
    await loadTwoFactor();
    renderRules();
    if (!dialog.open) dialog.showModal();
    (state.mustEnroll && !state.mustChange ? $("two-factor-start") : $("password-current")).focus();
    if (!unfinished) { loadSessions(); notify.open(); }
  }

  // ---- second factor (TOTP) ------------------------------------------------------------
  async function loadTwoFactor() {
    const status = await ui.api("GET", "/api/v1/session/two-factor").catch(() => null);
    if (!status) return;
    state.secondFactor = status.enabled;
    $("two-factor-state").textContent = (status.enabled
      ? t("twofactor.on", { n: status.recovery_codes_left })
      : t("twofactor.off_state")) + (status.required ? ` ${t("twofactor.required")}` : "");
    $("two-factor-start").hidden = status.enabled;
    $("two-factor-off").hidden = !status.enabled || status.required;
    $("two-factor-error").textContent = "";
  }

  async function startTwoFactor() {
    const setup = await ui.api("POST", "/api/v1/session/two-factor").catch(() => null);
    if (!setup) { $("two-factor-error").textContent = t("password.failed"); return; }
    // The server draws the QR code as SVG; shown through an <img> from a data: URL, so the
    // document is an image and nothing in it can reach this page's DOM.
    const qr = $("two-factor-qr");
    qr.src = `data:image/svg+xml;base64,${btoa(setup.qr_svg)}`;
    qr.alt = t("twofactor.qr_alt");
    $("two-factor-secret").textContent = setup.secret.replace(/(.{4})/g, "$1 ").trim();
    $("two-factor-uri").textContent = setup.uri;
    $("two-factor-setup").hidden = false;
    $("two-factor-start").hidden = true;
    $("two-factor-code").focus();
  }

  async function confirmTwoFactor(e) {
    e.preventDefault();
    const confirmed = await ui.api("PUT", "/api/v1/session/two-factor", { code: $("two-factor-code").value.trim() })
      .catch(() => null);
    if (!confirmed) { $("two-factor-error").textContent = t("twofactor.wrong"); return; }
    const { codes } = confirmed;
    $("two-factor-code").value = "";
    $("two-factor-setup").hidden = true;
    const list = $("two-factor-code-list");
    list.replaceChildren(...codes.map((c) => Object.assign(document.createElement("li"), { textContent: c })));
    $("two-factor-codes").hidden = false;
    await loadTwoFactor();
    if (state.mustEnroll) {
      // The session may do everything now; the codes stay on screen until closed.
      state.mustEnroll = false;
      $("account-enroll").hidden = true;
      $("account-close").hidden = false;
      $("account").addEventListener("close", () => start(), { once: true });
    }
  }

  async function disableTwoFactor(e) {
    e.preventDefault();
    const password = $("two-factor-password").value;
    $("two-factor-password").value = "";
    try {
      await ui.api("DELETE", "/api/v1/session/two-factor", { password });
    } catch {
      $("two-factor-error").textContent = t("password.wrong");
      return;
    }
    await loadTwoFactor();
  }

  async function changePassword(e) {
    e.preventDefault();
    $("password-error").textContent = "";
    $("password-done").textContent = "";
    const body = { current: $("password-current").value, new: $("password-new").value };
    try {
      await ui.api("PUT", "/api/v1/session/password", body);
    } catch (error) {
      if (error.code === "weak_password") { renderRules(error.rules); return; }
      $("password-error").textContent = t(error.code === "invalid_credentials" ? "password.wrong" : "password.failed");
      return;
    }
    $("password-current").value = "";
    $("password-new").value = "";
    renderRules();
    $("password-done").textContent = t("password.done");
    if (state.mustChange) {
      state.mustChange = false;
      $("account").close();
      start();
    } else {
      loadSessions();
    }
  }

  async function loadSessions() {
    const list = $("sessions");
    list.replaceChildren();
    const sessions = await ui.api("GET", "/api/v1/sessions").catch(() => []);
    for (const session of sessions) {
      const li = document.createElement("li");
      const what = document.createElement("span");
      const time = formatTime(session.last_used_at);
      what.textContent = `${session.current ? `${t("sessions.current")}: ` : ""}${session.device || "?"} — ${t("sessions.last_used", { time, source: session.source })}`;
      li.append(what);
      if (!session.current) {
        const end = document.createElement("button");
        end.type = "button";
        end.textContent = t("sessions.end");
        end.addEventListener("click", async () => {
          await ui.api("DELETE", `/api/v1/sessions/${session.id}`).catch(() => {});
          loadSessions();
        });
        li.append(end);
      }
      list.append(li);
    }
  }

  async function endAllSessions() {
    await ui.api("DELETE", "/api/v1/sessions").catch(() => {});
    $("account").close();
    const socket = state.socket;
    state.socket = null;
    socket?.close();
    enterLogin();
  }

  // Admins: an account of their facility was locked after repeated wrong passwords.
  function locked(m) {
    state.notices.push(m);
    renderNotices();
  }

  // The operator's page: a facility applied; the open admin screen shows it at once.
  function facilityApplied(m) {
    state.notices.push(m);
    renderNotices();
    if (!$("admin-view").hidden) admin?.refresh();
  }

  function renderNotices() {
    const box = $("notices");
    box.replaceChildren();
    box.hidden = state.notices.length === 0;
    for (const m of state.notices) {
      const p = document.createElement("p");
      p.className = "notice";
      if (m.type === "facility_applied") { p.textContent = t("notice.facility_applied"); box.append(p); continue; }
      p.textContent = t("notice.locked", {
        name: m.user.name,
        facility: m.user.facility ? m.user.facility.name : "",
        time: formatTime(m.until),
      });
      box.append(p);
    }
  }

  // Started without reaching the server (the service worker's cached shell, or a server
  // down): the page says so instead of a login that cannot work, and tries again, sooner
  // when the device says its network is back.
  function enterOffline() {
    show("offline");
    showUnsentCount();
    clearTimeout(state.offlineTimer);
    state.offlineRetry = Math.min(state.offlineRetry + 1, 5);
    state.offlineTimer = setTimeout(resume, 1000 * 2 ** state.offlineRetry); // 2 s to 32 s
  }

  async function resume() {
    clearTimeout(state.offlineTimer);
    if ($("offline-view").hidden) return;
    const session = await whoAmI();
    if (session === "unreachable") { enterOffline(); return; }
    state.offlineRetry = 0;
    if (session === "ok") { $("offline-view").hidden = true; start(); } else enterLogin();
  }

  // ?group=<id> (a notification's link): opened once connected; the address is cleaned
  // so that a reload or a bookmark does not carry it.
  function takeWantedGroup() {
    const params = new URLSearchParams(location.search);
    if (!params.has("group")) return;
    const id = params.get("group");
    if (/^[1-9][0-9]{0,15}$/.test(id) && Number.isSafeInteger(Number(id))) state.wanted = Number(id);
    params.delete("group");
    const rest = params.toString();
    history.replaceState(null, "", `${location.pathname}${rest ? `?${rest}` : ""}${location.hash}`);
  }

  // The chat fills what the phone shows above its keyboard: the visual viewport's height
  // (and offset, where the browser scrolled the page under it) in CSS variables.
  function fitViewport() {
    const view = window.visualViewport;
    const root = document.documentElement.style;
    root.setProperty("--app-height", `${Math.round(view ? view.height : window.innerHeight)}px`);
    root.setProperty("--app-top", `${Math.round(view ? view.offsetTop : 0)}px`);
  }

  // ---- start ---------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", async () => {
    $("language").addEventListener("click", () => {
      state.lang = state.lang === "ja" ? "en" : "ja";
      localStorage.setItem("renkei.lang", state.lang);
      notify.saveLanguage(state.lang);
      useLanguage();
    });
    $("login-form").addEventListener("submit", submitLogin);
    $("lock-form").addEventListener("submit", unlock);
    $("logout").addEventListener("click", logOut);
    $("account-open").addEventListener("click", openAccount);
    $("password-form").addEventListener("submit", changePassword);
    $("password-new").addEventListener("input", () => renderRules());
    $("sessions-end-all").addEventListener("click", endAllSessions);
    $("two-factor-start").addEventListener("click", startTwoFactor);
    $("two-factor-confirm").addEventListener("submit", confirmTwoFactor);
    $("two-factor-off").addEventListener("submit", disableTwoFactor);
    // An expired password must be changed: Escape does not close the dialog then.
    $("account").addEventListener("cancel", (e) => { if (state.mustChange || state.mustEnroll) e.preventDefault(); });
    $("composer").addEventListener("submit", review);
    $("admin-open").addEventListener("click", toggleAdmin);
    $("members-open").addEventListener("click", openMembers);
    $("mute").addEventListener("change", toggleMute);
    $("offline-retry").addEventListener("click", resume);
    window.addEventListener("online", resume);
    document.addEventListener("visibilitychange", sendVisibility);
    // Back online or in front of the user: reconnect now, not after the backoff.
    window.addEventListener("online", reconnectNow);
    window.addEventListener("pageshow", reconnectNow);
    window.addEventListener("focus", reconnectNow);
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") reconnectNow(); });
    $("composer-text").addEventListener("input", draftTyped);
    // Leaving with posts not yet acknowledged asks first (they are kept, but may wait).
    window.addEventListener("beforeunload", (e) => {
      if (unsentPosts() === 0) return;
      e.preventDefault();
      e.returnValue = "";
    });
    notify.bind();
    $("setup-open").addEventListener("click", async () => {
      ui.api("GET", "/api/v1/password-policy").then((policy) => { state.policy = policy; renderSetupRules(); }, () => {});
      renderSetupRules();
      $("login-form").hidden = true;
      $("setup-form").hidden = false;
      $("setup-login").focus();
    });
    for (const id of SETUP_BOXES) {
      $(id).addEventListener("input", typeSetupCode);
      $(id).addEventListener("paste", pasteSetupCode);
      $(id).addEventListener("keydown", backSetupCode);
    }
    $("setup-password").addEventListener("input", () => renderSetupRules());
    $("setup-login").addEventListener("input", () => renderSetupRules());
    $("setup-back").addEventListener("click", () => { $("setup-form").hidden = true; $("login-form").hidden = false; });
    $("setup-form").addEventListener("submit", setUpPassword);
    $("timeline").addEventListener("scroll", timelineScrolled, { passive: true });
    $("jump-new").addEventListener("click", toBottom);
    fitViewport();
    window.visualViewport?.addEventListener("resize", fitViewport);
    window.visualViewport?.addEventListener("scroll", fitViewport);
    window.addEventListener("resize", fitViewport);
        $("search-form").addEventListener("submit", search);
    $("composer-file").addEventListener("change", renderAttachment);
    $("composer-file-clear").addEventListener("click", () => { $("composer-file").value = ""; renderAttachment(); });
    $("mentions-open").addEventListener("click", openMentions);
    $("back").addEventListener("click", () => { document.body.dataset.pane = "groups"; });
    for (const kind of ["keydown", "pointerdown", "touchstart"]) {
      document.addEventListener(kind, resetIdle, { passive: true });
    }
    document.body.dataset.pane = "groups";
    takeWantedGroup();
    notify.register();
    notify.saveLanguage(state.lang);
    await useLanguage();
    // A browser that never logged in (or logged out) goes straight to the login form: no
    // session check whose 401 the console would report as an error.
    const session = localStorage.getItem(SIGNED_IN) ? await whoAmI() : "none";
    if (session === "ok") start(); else if (session === "none") enterLogin(); else enterOffline();
  });
})();
