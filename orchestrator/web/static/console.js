// The saga console: one page, routed by the URL's fragment, drawn from the console's
// JSON API (the gRPC API's own messages). Everything shown is user data: it enters the
// page only as text nodes or attribute values, never as HTML.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const REFRESH_MS = 5000;
  const SAGA_STATUSES = ["RUNNING", "COMPENSATING", "COMPLETED", "FAILED"];

  // --- building the page from data ---------------------------------------------------

  function append(parent, ...children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return parent;
  }

  function setAttributes(element, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") {
        element.addEventListener(key.slice(2), value);
      } else {
        element.setAttribute(key === "className" ? "class" : key, value === true ? "" : String(value));
      }
    }
    return element;
  }

  function h(tag, attrs, ...children) {
    return append(setAttributes(document.createElement(tag), attrs), children);
  }

  function s(tag, attrs, ...children) {
    return append(setAttributes(document.createElementNS(SVG_NS, tag), attrs), children);
  }

  function clear(element) {
    while (element.firstChild) element.firstChild.remove();
    return element;
  }

  // --- names, times, ids ----------------------------------------------------------------

  const sagaStatus = (saga) => (saga.status || "").replace("SAGA_STATUS_", "");
  const stepStatus = (step) => (step.status || "STEP_STATUS_PENDING").replace("STEP_STATUS_", "");
  const eventName = (row) => (row.event || "").replace("TRANSITION_EVENT_", "");
  const shortId = (id) => id.slice(-8);
  const timeOf = (text) => (text ? new Date(text) : null);

  function two(n) {
    return String(n).padStart(2, "0");
  }

  // Times carry their zone: UTC unless the reader chose local time (remembered).
  const ZONE_KEY = "saga-console-zone";
  const localZone = () => localStorage.getItem(ZONE_KEY) === "local";

  function zoneName(d) {
    if (!localZone()) return "UTC";
    const minutes = -d.getTimezoneOffset();
    const sign = minutes < 0 ? "-" : "+";
    return `UTC${sign}${two(Math.floor(Math.abs(minutes) / 60))}:${two(Math.abs(minutes) % 60)}`;
  }

  function formatTime(text, withMillis) {
    const d = timeOf(text);
    if (!d) return "";
    const utc = !localZone();
    const part = (local, universal) => (utc ? d[universal]() : d[local]());
    const millis = withMillis ? `.${String(part("getMilliseconds", "getUTCMilliseconds")).padStart(3, "0")}` : "";
    return `${part("getFullYear", "getUTCFullYear")}-${two(part("getMonth", "getUTCMonth") + 1)}-${two(part("getDate", "getUTCDate"))} ` +
      `${two(part("getHours", "getUTCHours"))}:${two(part("getMinutes", "getUTCMinutes"))}:${two(part("getSeconds", "getUTCSeconds"))}${millis} ${zoneName(d)}`;
  }

  function formatSeconds(seconds) {
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  }

  function localInputValue(iso) {
    const d = timeOf(iso);
    if (!d) return "";
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T` +
      `${two(d.getHours())}:${two(d.getMinutes())}`;
  }

  function statusBadge(status) {
    return h("span", { class: `badge status-${status}` }, status);
  }

  // What a saga's state means for a person: a FAILED saga that compensated cleanly is a
  // business outcome (nothing to do), one that needs intervention waits for a person.
  function outcomeBadges(saga) {
    const status = sagaStatus(saga);
    if (saga.needs_intervention) return [statusBadge(status), h("span", { class: "badge stuck" }, "needs intervention")];
    if (status === "FAILED") return [h("span", { class: "badge status-FAILED compensated" }, "FAILED"), h("span", { class: "badge compensated" }, "compensated")];
    return [statusBadge(status)];
  }

  // A tracked (choreographed) saga: its steps are events its services publish.
  function trackedBadge(saga) {
    return saga.tracked ? [" ", h("span", { class: "badge tracked", title: "Tracked: its services drive it through events; the orchestrator watches" }, "tracked")] : null;
  }

  // What a tracked saga's waiting step expects next, from whom, and by when.
  function expectation(step) {
    const types = (step.expected_event_types || []).join(" or ");
    const from = step.participant ? ` from ${step.participant}` : "";
    const undo = step.expecting_undo ? " (undoing it)" : "";
    const parts = [`${step.name}: expecting ${types}${from}${undo}`];
    if (step.wait_deadline) {
      const left = (timeOf(step.wait_deadline).getTime() - Date.now()) / 1000;
      parts.push(` by ${formatTime(step.wait_deadline)} `,
        left > 0 ? h("span", { class: "due" }, `(in ${formatSeconds(left)})`) : h("span", { class: "overdue" }, "(overdue)"));
    }
    return h("li", { class: "expecting", "data-step": step.name }, parts);
  }

  function expectations(saga) {
    const waiting = (saga.steps || []).filter((step) => (step.expected_event_types || []).length);
    return waiting.length ? h("ul", { class: "expectations" }, waiting.map(expectation)) : null;
  }

  function settledLabel(saga) {
    if (saga.needs_intervention) return ["needs intervention", "live attention"];
    if (sagaStatus(saga) === "FAILED") return ["finished: compensated, nothing to do", "live off"];
    return ["finished", "live off"];
  }

  function durationOf(saga) {
    const start = timeOf(saga.create_time);
    if (!start) return "";
    const running = ["RUNNING", "COMPENSATING"].includes(sagaStatus(saga));
    const end = running ? new Date() : timeOf(saga.update_time) || start;
    const text = formatSeconds(Math.max(end - start, 0) / 1000);
    return running ? `${text} so far` : text;
  }

  // A JSON value as text, cut at CAP characters with a note saying so.
  const JSON_CAP = 4096;
  function jsonBlock(value, id) {
    const text = JSON.stringify(value === undefined ? null : value, null, 2);
    const cut = text.length > JSON_CAP;
    return [
      h("pre", { class: "json", id }, cut ? text.slice(0, JSON_CAP) : text),
      cut ? h("p", { class: "muted cut-note" }, `Cut: showing the first ${JSON_CAP} of ${text.length} characters.`) : null,
    ];
  }

  // --- talking to the server -----------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body.error && body.error.message) || `HTTP ${status}`);
      this.status = status;
      this.code = body.error ? body.error.code : "";
    }
  }

  async function api(path, body, extra) {
    const options = { credentials: "same-origin", headers: { Accept: "application/json" }, ...(extra || {}) };
    options.headers = { Accept: "application/json", ...((extra && extra.headers) || {}) };
    if (body !== undefined) {
      options.method = options.method || "POST";
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      if (response.status === 401 && !path.startsWith("/api/session")) {
        location.hash = "#/signin";
      }
      throw new ApiError(response.status, answer);
    }
    return answer;
  }

  // --- page state ------------------------------------------------------------------------

  const view = document.getElementById("view");
  let me = null;
  let cleanups = [];
  let knownTypes = null;

  function onLeave(fn) {
    cleanups.push(fn);
  }

  function toast(text) {
    const element = document.getElementById("toast");
    element.textContent = text;
    element.classList.add("shown");
    setTimeout(() => element.classList.remove("shown"), 4000);
  }

  function failureBox(error) {
    return h("p", { class: "error", role: "alert" }, `Could not load: ${error.message}`);
  }

  async function copyText(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      const area = h("textarea", { "aria-hidden": "true", class: "offscreen" });
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  function copyButton(id) {
    const button = h("button", { type: "button", class: "copy", "aria-label": `Copy full id ${id}`, title: "Copy the full id" }, "Copy");
    button.addEventListener("click", () => copyText(id, button));
    return button;
  }

  async function sagaTypes() {
    if (knownTypes === null) {
      const answer = await api("/api/definitions");
      knownTypes = [...new Set(answer.definitions.map((d) => d.saga_type))].sort();
    }
    return knownTypes;
  }

  // --- identity and sign-in ------------------------------------------------------------

  async function loadIdentity() {
    const box = clear(document.getElementById("identity"));
    try {
      me = await api("/api/whoami");
    } catch (error) {
      me = null;
      return;
    }
    if (!me.authenticated) {
      append(box, h("span", { class: "muted" }, "Laptop mode: no sign-in"));
      return;
    }
    const signOut = h("button", { type: "button", class: "link" }, "Sign out");
    signOut.addEventListener("click", async () => {
      await api("/api/session", {}, { method: "DELETE" });
      me = null;
      location.hash = "#/signin";
    });
    append(box, h("span", { id: "whoami" }, `Signed in as ${me.name} (${me.roles.join(", ")})`), " ", signOut);
  }

  function signInView() {
    const input = h("input", { id: "signin-token", type: "password", autocomplete: "current-password", required: true });
    const problem = h("p", { class: "error", role: "alert" });
    const form = h("form", { class: "signin" },
      h("h1", {}, "Sign in"),
      h("div", { class: "field" }, h("label", { for: "signin-token" }, "Console token"), input),
      problem,
      h("button", { type: "submit", class: "primary" }, "Sign in"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await api("/api/session", {}, { headers: { Authorization: `Bearer ${input.value}` } });
        await loadIdentity();
        location.hash = "#/sagas";
      } catch (error) {
        problem.textContent = error.message;
      }
    });
    return form;
  }

  // --- saga list ---------------------------------------------------------------------------

  const FULL_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const FILTERS = ["id_prefix", "status", "saga_type", "correlation_id", "lock_key", "needs_intervention", "created_after", "created_before", "page_size"];
  let pageStack = [];

  function listHash(params) {
    const query = new URLSearchParams();
    for (const name of [...FILTERS, "page_token"]) {
      if (params.get(name)) query.set(name, params.get(name));
    }
    const text = query.toString();
    return text ? `#/sagas?${text}` : "#/sagas";
  }

  function filterQuery(params, withStatus) {
    const query = new URLSearchParams();
    for (const name of FILTERS) {
      if ((name === "status" || name === "page_size") && !withStatus) continue;
      if (params.get(name)) query.set(name, params.get(name));
    }
    return query;
  }

  function field(id, label, control) {
    control.id = id;
    return h("div", { class: "field" }, h("label", { for: id }, label), control);
  }

  function select(name, options, value) {
    const element = h("select", { name });
    if (value && !options.some(([optionValue]) => optionValue === value)) options = [...options, [value, value]];
    for (const [optionValue, text] of options) {
      const option = h("option", { value: optionValue }, text);
      if (optionValue === (value || "")) option.selected = true;
      element.append(option);
    }
    return element;
  }

  async function listView(params) {
    const types = await sagaTypes().catch(() => []);
    const form = h("form", { class: "filters", role: "search", "aria-label": "Filter sagas" },
      field("filter-status", "Status", select("status", [["", "Any"], ...SAGA_STATUSES.map((v) => [v, v])], params.get("status"))),
      field("filter-type", "Type", select("saga_type", [["", "Any"], ...types.map((t) => [t, t])], params.get("saga_type"))),
      field("filter-id", "Saga id", h("input", { name: "id_prefix", value: params.get("id_prefix") || "", autocomplete: "off", placeholder: "full id or its start" })),
      field("filter-correlation", "Correlation id", h("input", { name: "correlation_id", value: params.get("correlation_id") || "", autocomplete: "off" })),
      field("filter-lock", "Lock key", h("input", { name: "lock_key", value: params.get("lock_key") || "", autocomplete: "off", placeholder: "customer:42" })),
      field("filter-intervention", "Needs intervention", select("needs_intervention", [["", "Any"], ["true", "Yes"], ["false", "No"]], params.get("needs_intervention"))),
      field("filter-after", "Created from", h("input", { name: "created_after", type: "datetime-local", value: localInputValue(params.get("created_after")) })),
      field("filter-before", "Created before", h("input", { name: "created_before", type: "datetime-local", value: localInputValue(params.get("created_before")) })),
      field("filter-page-size", "Per page", select("page_size", [["", "50"], ["10", "10"], ["25", "25"], ["100", "100"]], params.get("page_size"))),
      h("div", { class: "buttons" },
        h("button", { type: "submit", class: "primary" }, "Apply filters"),
        h("button", { type: "button", id: "filter-clear" }, "Clear")));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const wanted = String(data.get("id_prefix") || "").trim();
      if (FULL_ID.test(wanted)) {
        location.hash = `#/saga/${encodeURIComponent(wanted)}`;
        return;
      }
      const next = new URLSearchParams();
      for (const name of FILTERS) {
        let value = String(data.get(name) || "").trim();
        if (value && name.startsWith("created_")) value = new Date(value).toISOString();
        if (value) next.set(name, value);
      }
      pageStack = [];
      location.hash = listHash(next);
    });
    form.querySelector("#filter-clear").addEventListener("click", () => {
      pageStack = [];
      location.hash = "#/sagas";
    });

    const counts = h("div", { class: "counts", role: "group", "aria-label": "Sagas per status" });
    const table = h("table", { class: "sagas" },
      h("caption", { class: "offscreen" }, "Sagas, newest first"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Saga"), h("th", { scope: "col" }, "Type"),
        h("th", { scope: "col" }, "Correlation id"), h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col" }, "Failed step"), h("th", { scope: "col" }, "Duration"),
        h("th", { scope: "col", class: "wide" }, "Created"), h("th", { scope: "col", class: "wide" }, "Updated"),
        h("th", { scope: "col", class: "wide" }, "Failure"))),
      h("tbody", { id: "saga-rows" }));
    const updated = h("span", { class: "muted", id: "list-updated" });
    const auto = h("input", { type: "checkbox", id: "auto-refresh", checked: true });
    const newer = h("button", { type: "button", id: "page-newer" }, "Newer");
    const older = h("button", { type: "button", id: "page-older" }, "Older");
    const first = h("button", { type: "button", id: "page-first" }, "Newest page");
    const problem = h("div", { id: "list-problem" });
    const prefixNote = h("p", { class: "muted", id: "prefix-note", role: "status" });
    const pageToken = params.get("page_token") || "";
    let nextToken = "";

    newer.addEventListener("click", () => {
      const previous = new URLSearchParams(params);
      const token = pageStack.pop() || "";
      if (token) previous.set("page_token", token); else previous.delete("page_token");
      location.hash = listHash(previous);
    });
    older.addEventListener("click", () => {
      const next = new URLSearchParams(params);
      pageStack.push(pageToken);
      next.set("page_token", nextToken);
      location.hash = listHash(next);
    });
    first.addEventListener("click", () => {
      pageStack = [];
      const next = new URLSearchParams(params);
      next.delete("page_token");
      location.hash = listHash(next);
    });
    table.querySelector("tbody").addEventListener("keydown", (event) => {
      if (!["ArrowDown", "ArrowUp", "j", "k"].includes(event.key)) return;
      const links = [...table.querySelectorAll("a.saga-link")];
      const at = links.indexOf(document.activeElement);
      if (at < 0) return;
      const to = event.key === "ArrowDown" || event.key === "j" ? at + 1 : at - 1;
      if (to >= 0 && to < links.length) {
        event.preventDefault();
        links[to].focus();
      }
    });

    async function refresh() {
      const query = filterQuery(params, true);
      if (pageToken) query.set("page_token", pageToken);
      const countQuery = filterQuery(params, false);
      let page;
      let tally;
      try {
        [page, tally] = await Promise.all([api(`/api/sagas?${query}`), api(`/api/counts?${countQuery}`)]);
      } catch (error) {
        clear(problem).append(failureBox(error));
        return;
      }
      clear(problem);
      // A refresh redraws the rows: keep the keyboard where it was.
      const active = document.activeElement;
      const focusedRow = table.contains(active) ? active.closest("tr[data-saga-id]") : null;
      const focusedId = focusedRow ? focusedRow.dataset.sagaId : null;
      const focusedKind = focusedRow ? (active.matches("button.copy") ? "button.copy" : "a.saga-link") : null;
      const body = clear(table.querySelector("tbody"));
      const shownSagas = page.sagas || [];
      const prefix = params.get("id_prefix") || "";
      prefixNote.textContent = prefix ? `Sagas whose id starts with "${prefix}"; a full id opens its saga.` : "";
      for (const saga of shownSagas) {
        const status = sagaStatus(saga);
        body.append(h("tr", { "data-saga-id": saga.saga_id, class: saga.needs_intervention ? "stuck" : null },
          h("td", { class: "id" },
            h("a", { href: `#/saga/${encodeURIComponent(saga.saga_id)}`, class: "saga-link", title: saga.saga_id, "aria-label": `Saga ${saga.saga_id}` }, shortId(saga.saga_id)),
            " ", copyButton(saga.saga_id)),
          h("td", {}, `${saga.saga_type} v${saga.definition_version}`, trackedBadge(saga)),
          h("td", { class: "correlation" }, saga.correlation_id),
          h("td", { class: "outcome" }, outcomeBadges(saga)),
          h("td", { class: "failed-step" }, saga.failed_step || ""),
          h("td", { class: "duration" }, durationOf(saga)),
          h("td", { class: "wide" }, formatTime(saga.create_time)),
          h("td", { class: "wide" }, formatTime(saga.update_time)),
          h("td", { class: "wide failure" }, saga.failure_reason || "")));
      }
      if (!shownSagas.length) {
        body.append(h("tr", {}, h("td", { colspan: "9", class: "muted" }, "No sagas match these filters.")));
      }
      if (focusedId) {
        const row = [...body.querySelectorAll("tr[data-saga-id]")].find((r) => r.dataset.sagaId === focusedId);
        if (row) row.querySelector(focusedKind).focus();
      }
      nextToken = page.next_page_token || "";
      older.disabled = !nextToken;
      newer.disabled = !pageToken;
      first.disabled = !pageToken;
      clear(counts);
      for (const status of SAGA_STATUSES) {
        const n = tally.counts[status] || 0;
        const shown = n >= tally.cap ? `${tally.cap}+` : String(n);
        const chip = h("button", { type: "button", class: `chip status-${status}`, "aria-pressed": params.get("status") === status ? "true" : "false", "aria-label": `${status}: ${shown} sagas`, "data-status": status },
          h("span", {}, status), " ", h("strong", {}, shown));
        chip.addEventListener("click", () => {
          const next = new URLSearchParams(params);
          if (params.get("status") === status) next.delete("status"); else next.set("status", status);
          next.delete("page_token");
          pageStack = [];
          location.hash = listHash(next);
        });
        counts.append(chip);
      }
      updated.textContent = `Updated ${formatTime(new Date().toISOString())}`;
    }

    const timer = setInterval(() => { if (auto.checked) refresh(); }, REFRESH_MS);
    onLeave(() => clearInterval(timer));
    await refresh();
    return h("section", { "aria-labelledby": "list-title" },
      h("h1", { id: "list-title" }, "Sagas"),
      form, counts,
      h("div", { class: "toolbar" },
        h("label", { for: "auto-refresh", class: "inline" }, auto, " Auto-refresh"), updated),
      bulkControls(Object.fromEntries(filterQuery(params, true).entries()), () => refresh()),
      problem, prefixNote,
      h("div", { class: "scroll" }, table),
      h("nav", { class: "pager", "aria-label": "Pages" }, first, newer, older));
  }

  // --- bulk actions --------------------------------------------------------------------------

  // "Select matching": a dry run counts the sagas the filter matches and shows a sample;
  // the operator confirms that count with a reason, then the page sends RetrySagas or
  // AbortSagas a page at a time until the server gives no further page.
  function bulkControls(filter, after) {
    if (!me || !me.may_act) return null;
    const panel = h("div", { id: "bulk-panel", class: "bulk", role: "region", "aria-label": "Bulk action" });
    const start = (kind) => async () => {
      clear(panel);
      let dry;
      try {
        dry = await api(`/api/bulk/${kind}`, { filter, dry_run: true });
      } catch (error) {
        append(panel, h("p", { class: "error", role: "alert" }, error.message));
        return;
      }
      const count = Number(dry.matched_count || 0);
      if (!count) {
        append(panel, h("p", { id: "bulk-count" }, "No saga matches this filter."));
        return;
      }
      const reason = h("input", { id: "bulk-reason", required: true, autocomplete: "off" });
      const operator = h("input", { id: "bulk-operator", autocomplete: "name", value: localStorage.getItem("saga-console-operator") || "" });
      const problem = h("p", { class: "error", role: "alert", id: "bulk-error" });
      const progress = h("p", { id: "bulk-progress", role: "status" });
      const verb = kind === "retry" ? "Retry" : "Abort";
      const confirm = h("button", { type: "submit", class: kind === "abort" ? "danger" : "primary", id: "bulk-confirm" }, `${verb} ${count} sagas`);
      const form = h("form", {},
        h("p", { id: "bulk-count" }, `${count} sagas match this filter. `, kind === "retry" ? "Retry gives each stuck step a fresh budget of attempts." : "Abort compensates each running saga."),
        h("p", { class: "muted" }, "Sample: ", h("span", { id: "bulk-sample" }, (dry.saga_ids || []).slice(0, 5).join(", "))),
        me.authenticated ? null : h("div", { class: "field" }, h("label", { for: "bulk-operator" }, "Your name (recorded as the operator)"), operator),
        h("div", { class: "field" }, h("label", { for: "bulk-reason" }, "Reason (goes into each saga's log)"), reason),
        problem, progress,
        h("div", { class: "buttons" }, confirm, h("button", { type: "button", onclick: () => clear(panel) }, "Cancel")));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        if (!reason.value.trim()) { problem.textContent = "A reason is required."; return; }
        if (!me.authenticated) localStorage.setItem("saga-console-operator", operator.value.trim());
        confirm.disabled = true;
        let token = "";
        let done = 0;
        let refused = 0;
        // Bounded: never more pages than the count could fill, plus one.
        for (let pages = 0; pages <= Math.ceil(count / 50) + 1; pages += 1) {
          let answer;
          try {
            answer = await api(`/api/bulk/${kind}`, { filter, reason: reason.value, requested_by: operator.value.trim(), page_token: token });
          } catch (error) {
            problem.textContent = error.message;
            break;
          }
          for (const result of answer.results || []) {
            if (result.error) refused += 1; else done += 1;
          }
          progress.textContent = `${verb}: ${done} done${refused ? `, ${refused} refused (no longer matching or changed meanwhile)` : ""}.`;
          token = answer.next_page_token || "";
          if (!token) break;
        }
        toast(`${kind} of ${done} sagas recorded`);
        if (after) after();
      });
      append(panel, form);
      reason.focus();
    };
    return h("div", { class: "bulk-bar" },
      h("div", { class: "actions", role: "group", "aria-label": "Act on every saga matching the filter" },
        h("button", { type: "button", id: "bulk-retry", onclick: start("retry") }, "Retry matching…"),
        h("button", { type: "button", id: "bulk-abort", class: "danger", onclick: start("abort") }, "Abort matching…")),
      panel);
  }

  // --- saga detail -----------------------------------------------------------------------

  function stuckStep(saga) {
    const steps = saga.steps || [];
    const failed = steps.find((step) => stepStatus(step) === "COMPENSATION_FAILED");
    if (failed) return failed;
    return steps.find((step) => stepStatus(step) === "FAILED" && step.name === saga.failed_step) || null;
  }

  function actionButtons(saga, after) {
    if (!me || !me.may_act) return null;
    const buttons = [];
    const status = sagaStatus(saga);
    if (status === "RUNNING") {
      buttons.push(h("button", { type: "button", class: "danger", "data-action": "abort", onclick: () => openAction("abort", saga, null, after) }, "Abort"));
    }
    if (saga.needs_intervention) {
      const stuck = stuckStep(saga);
      buttons.push(h("button", { type: "button", "data-action": "retry", onclick: () => openAction("retry", saga, stuck, after) }, "Retry"));
      if (stuck) {
        buttons.push(h("button", { type: "button", "data-action": "resolve", onclick: () => openAction("resolve", saga, stuck, after), "aria-label": `Resolve step ${stuck.name} of saga ${saga.saga_id}` }, `Resolve ${stuck.name}`));
      }
    }
    return buttons.length ? h("div", { class: "actions", role: "group", "aria-label": "Operator actions" }, buttons) : null;
  }

  function summary(saga) {
    const status = sagaStatus(saga);
    const rows = [
      ["Type", `${saga.saga_type} v${saga.definition_version}`],
      ["Status", outcomeBadges(saga)],
      ["Correlation id", saga.correlation_id],
      ["Idempotency key", saga.idempotency_key || "none"],
      ["Created", formatTime(saga.create_time)],
      ["Updated", formatTime(saga.update_time)],
    ];
    if (saga.namespace && saga.namespace !== "default") rows.splice(1, 0, ["Namespace", saga.namespace]);
    if (saga.deadline_time) rows.push(["Deadline", formatTime(saga.deadline_time)]);
    if (saga.tracked) rows.push(["Tracked", "yes: its steps are events its services publish; the orchestrator watches"]);
    const expected = expectations(saga);
    if (expected) rows.push(["Expecting", expected]);
    if ((saga.locks || []).length) {
      rows.push(["Locks", h("ul", { class: "locks" }, saga.locks.map((lock) =>
        h("li", {},
          h("a", { href: listHash(new URLSearchParams({ lock_key: lock.key })) }, lock.key),
          lock.held ? " held" : ` waiting, place ${lock.queue_position} in the queue`)))]);
    }
    return h("dl", { class: "summary" }, rows.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  }

  function outcome(saga) {
    const status = sagaStatus(saga);
    const parts = [h("h2", {}, "Outcome")];
    if (status === "COMPLETED") {
      parts.push(h("p", { class: "ok" }, "Completed."));
      if (saga.output) parts.push(h("pre", { class: "json" }, JSON.stringify(saga.output, null, 2)));
    } else if (saga.failure_reason || saga.failed_step) {
      if (saga.failed_step) parts.push(h("p", {}, "Failed at step ", h("strong", {}, saga.failed_step)));
      parts.push(h("pre", { class: "failure", id: "failure-reason" }, saga.failure_reason));
    } else {
      parts.push(h("p", { class: "muted" }, `${status.toLowerCase()}: no outcome yet.`));
    }
    return h("section", { id: "outcome" }, parts);
  }

  // The timeline: one lane per step, a bar per attempt and per compensation attempt,
  // placed by the times in the transition log.
  function timelineBars(saga, transitions) {
    const bars = [];
    const marks = [];
    const open = new Map();
    const close = (step, time, outcome, error) => {
      const bar = open.get(step);
      if (!bar) return;
      bar.end = time;
      bar.outcome = outcome;
      bar.error = error || "";
      open.delete(step);
    };
    const start = (step, kind, attempt, time, note) => {
      const bar = { step, kind, attempt, start: time, end: null, outcome: "running", error: "", note: note || "" };
      open.set(step, bar);
      bars.push(bar);
    };
    for (const row of transitions) {
      const time = timeOf(row.time).getTime();
      const step = row.step || "";
      const attempt = row.attempt || 1;
      switch (eventName(row)) {
        case "STEP_STARTED": start(step, "action", attempt, time); break;
        case "STEP_RETRY_SCHEDULED": close(step, time, "retry", row.error); start(step, "action", attempt, time, "retry after backoff"); break;
        case "STEP_COMPLETED": close(step, time, "ok"); break;
        case "STEP_FAILED": close(step, time, "failed", row.error); break;
        case "COMPENSATION_STARTED": start(step, "compensation", attempt, time); break;
        case "COMPENSATION_RETRY_SCHEDULED": close(step, time, "retry", row.error); start(step, "compensation", attempt, time, "retry after backoff"); break;
        case "COMPENSATION_COMPLETED": close(step, time, "ok"); break;
        case "COMPENSATION_FAILED": close(step, time, "failed", row.error); break;
        case "SAGA_RETRIED":
          marks.push({ step, time, text: `retried by ${row.actor}` });
          if (step) start(step, (row.step_status || "").includes("COMPENSATING") ? "compensation" : "action", attempt, time, "operator retry");
          break;
        case "STEP_RESOLVED": close(step, time, "resolved"); marks.push({ step, time, text: `resolved by ${row.actor}` }); break;
        case "STEP_NOTHING_TO_UNDO": marks.push({ step, time, text: "read-only: nothing to undo" }); break;
        case "STEP_WAITING": marks.push({ step, time, text: (row.reason || "").startsWith("expecting ") ? row.reason : "accepted: waiting for its completion" }); break;
        case "EVENT_ANOMALY": marks.push({ step, time, text: `event anomaly: ${row.reason}` }); break;
        case "STEP_TIMED_OUT": close(step, time, "failed", row.error); break;
        case "STEP_COMPLETED_LATE": marks.push({ step, time, text: `late completion by ${row.actor}, refused` }); break;
        default:
          if (row.actor && row.actor !== "engine") marks.push({ step, time, text: `${eventName(row)} by ${row.actor}` });
      }
    }
    return { bars, marks };
  }

  function pivotSteps(definition) {
    if (!definition || !definition.pivot_stage) return new Set();
    return new Set(definition.steps.filter((step) => step.stage === definition.pivot_stage && !step.compensation && !step.read_only).map((step) => step.name));
  }

  function timeline(saga, transitions, definition) {
    const steps = saga.steps || [];
    const { bars, marks } = timelineBars(saga, transitions);
    const terminal = ["COMPLETED", "FAILED"].includes(sagaStatus(saga));
    const times = transitions.map((row) => timeOf(row.time).getTime());
    const t0 = times.length ? Math.min(...times) : timeOf(saga.create_time).getTime();
    let t1 = times.length ? Math.max(...times) : t0;
    if (!terminal) t1 = Math.max(t1, Date.now());
    for (const step of steps) {
      if (step.next_attempt_time) t1 = Math.max(t1, timeOf(step.next_attempt_time).getTime());
    }
    const span = Math.max(t1 - t0, 1);
    const left = 200;
    const width = 1000;
    const lane = 34;
    const top = 26;
    const x = (t) => left + ((t - t0) / span) * (width - left - 10);
    const height = top + steps.length * lane + 10;
    const pivots = pivotSteps(definition);
    const chart = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "timeline", role: "img", "aria-label": `Timeline of ${steps.length} steps over ${formatSeconds(span / 1000)}` });
    for (let i = 0; i <= 4; i += 1) {
      const at = left + (i / 4) * (width - left - 10);
      chart.append(s("line", { x1: at, x2: at, y1: top - 6, y2: height - 6, class: "grid" }),
        s("text", { x: at, y: 14, class: "axis", "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, `+${formatSeconds((span / 4) * i / 1000)}`));
    }
    const laneOf = new Map(steps.map((step, index) => [step.name, index]));
    steps.forEach((step, index) => {
      chart.append(s("rect", { x: 0, y: top + index * lane, width, height: lane, class: index % 2 ? "lane odd" : "lane" }));
    });
    let previousGroup = "";
    steps.forEach((step, index) => {
      const y = top + index * lane;
      const pivot = pivots.has(step.name);
      if (step.group && step.group !== previousGroup) {
        const members = steps.filter((other) => other.group === step.group).length;
        chart.append(s("rect", { x: 2, y: y + 2, width: 6, height: members * lane - 4, class: "group-bracket" },
          s("title", {}, `parallel group ${step.group}`)));
      }
      previousGroup = step.group || "";
      const label = s("text", { x: 14, y: y + lane / 2 + 5, class: "lane-label" }, step.name);
      if (step.group) label.append(s("tspan", { class: "muted-text" }, ` ‖ ${step.group}`));
      if (pivot) label.append(s("tspan", { class: "pivot-text" }, " ◆ pivot"));
      chart.append(label);
      if (step.next_attempt_time && !terminal) {
        const due = timeOf(step.next_attempt_time).getTime();
        const from = x(Math.min(Date.now(), due));
        chart.append(s("rect", { x: from, y: y + 12, width: Math.max(x(due) - from, 2), height: lane - 24, class: "wait", "data-step": step.name },
          s("title", {}, `${step.name}: waiting, next attempt at ${formatTime(step.next_attempt_time)}`)));
      }
    });
    for (const bar of bars) {
      const index = laneOf.get(bar.step);
      if (index === undefined) continue;
      const end = bar.end === null ? (terminal ? t1 : Date.now()) : bar.end;
      const y = top + index * lane + (bar.kind === "compensation" ? lane / 2 : 4);
      const x0 = x(bar.start);
      const w = Math.max(x(end) - x0, 3);
      const title = `${bar.step}: ${bar.kind === "compensation" ? "compensation" : "action"} attempt ${bar.attempt}` +
        `${bar.note ? ` (${bar.note})` : ""}, ${bar.outcome}, ${formatSeconds((end - bar.start) / 1000)}` +
        `${bar.error ? `: ${bar.error}` : ""}`;
      const rect = s("rect", { x: x0, y, width: w, height: lane / 2 - 5, rx: 2, class: `bar ${bar.kind} ${bar.outcome}`, "data-step": bar.step, "data-kind": bar.kind, "data-attempt": bar.attempt, "data-outcome": bar.outcome, "data-start": bar.start }, s("title", {}, title));
      chart.append(rect);
      if (w > 26) chart.append(s("text", { x: x0 + 4, y: y + lane / 2 - 9, class: "bar-text" }, `#${bar.attempt}`));
    }
    for (const mark of marks) {
      const index = laneOf.get(mark.step);
      const y = index === undefined ? top : top + index * lane;
      chart.append(s("path", { d: `M ${x(mark.time)} ${y + 2} l 5 -8 l -10 0 z`, class: "mark", "data-step": mark.step }, s("title", {}, mark.text)));
    }
    const legend = h("ul", { class: "legend", "aria-label": "Timeline legend" },
      h("li", {}, h("span", { class: "key action ok" }), "action"),
      h("li", {}, h("span", { class: "key action retry" }), "attempt that will be retried"),
      h("li", {}, h("span", { class: "key failed" }), "failed"),
      h("li", {}, h("span", { class: "key compensation ok" }), "compensation"),
      h("li", {}, h("span", { class: "key running" }), "in flight"),
      h("li", {}, h("span", { class: "key wait" }), "waiting for the next attempt"));
    return h("section", { id: "timeline" }, h("h2", {}, "Timeline"), h("div", { class: "scroll" }, chart), legend);
  }

  // The definition's diagram: stages left to right, a parallel group's steps stacked in
  // one column, each step coloured by its state in this saga (if a saga is given).
  function diagram(definition, saga) {
    const statusOf = new Map((saga ? saga.steps || [] : []).map((step) => [step.name, stepStatus(step)]));
    const stages = [];
    for (const step of definition.steps) {
      (stages[step.stage - 1] = stages[step.stage - 1] || []).push(step);
    }
    const boxW = 170;
    const boxH = 48;
    const gapX = 46;
    const gapY = 14;
    const rows = Math.max(1, ...stages.map((stage) => stage.length));
    const height = rows * (boxH + gapY) + 40;
    const width = 90 + stages.length * (boxW + gapX) + 90;
    const mid = height / 2;
    const chart = s("svg", { viewBox: `0 0 ${width} ${height}`, width, class: "diagram", role: "img", "aria-label": `Diagram of ${definition.saga_type} v${definition.version}` },
      s("defs", {}, s("marker", { id: `arrow-${definition.saga_type}-${definition.version}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow-head" }))));
    const marker = `url(#arrow-${definition.saga_type}-${definition.version})`;
    const endpoint = (cx, text) => [s("ellipse", { cx, cy: mid, rx: 34, ry: 16, class: "endpoint" }), s("text", { x: cx, y: mid + 4, "text-anchor": "middle", class: "node-text" }, text)];
    chart.append(...endpoint(40, "start"));
    let previous = [[74, mid]];
    stages.forEach((stage, position) => {
      const x0 = 90 + position * (boxW + gapX);
      const total = stage.length * (boxH + gapY) - gapY;
      const y0 = mid - total / 2;
      if (stage.length > 1 || stage[0].group) {
        chart.append(s("rect", { x: x0 - 6, y: y0 - 16, width: boxW + 12, height: total + 24, rx: 8, class: "group-box" }),
          s("text", { x: x0, y: y0 - 5, class: "group-text" }, `parallel: ${stage[0].group}`));
      }
      const current = [];
      stage.forEach((step, row) => {
        const y = y0 + row * (boxH + gapY);
        const state = statusOf.get(step.name) || (saga ? "PENDING" : "DEFINED");
        const pivot = definition.pivot_stage === step.stage && !step.compensation && !step.read_only;
        const undo = step.compensation ? `, undone by ${step.compensation}` : step.read_only ? ", read-only: nothing to undo" : ", no compensation";
        for (const [px, py] of previous) {
          chart.append(s("line", { x1: px, y1: py, x2: x0 - 2, y2: y + boxH / 2, class: "edge", "marker-end": marker }));
        }
        const node = s("g", { class: `node state-${state}${pivot ? " pivot" : ""}${step.read_only ? " read-only" : ""}`, "data-step": step.name, "data-state": state },
          s("title", {}, `${step.name}: ${state.toLowerCase()}; ${step.action}${undo}`),
          s("rect", { x: x0, y, width: boxW, height: boxH, rx: 6 }),
          s("text", { x: x0 + 8, y: y + 19, class: "node-text" }, step.name + (pivot ? " ◆" : "")),
          s("text", { x: x0 + 8, y: y + 37, class: "node-sub" }, `${step.participant}${step.read_only ? " · read-only" : ""} · ${state.toLowerCase().replaceAll("_", " ")}`));
        chart.append(node);
        current.push([x0 + boxW, y + boxH / 2]);
      });
      previous = current;
    });
    const endX = 90 + stages.length * (boxW + gapX) + 40;
    for (const [px, py] of previous) {
      chart.append(s("line", { x1: px, y1: py, x2: endX - 36, y2: mid, class: "edge", "marker-end": marker }));
    }
    chart.append(...endpoint(endX, "done"));
    return chart;
  }

  function stepsTable(saga) {
    return h("table", { class: "steps" },
      h("caption", { class: "offscreen" }, "Steps"),
      h("thead", {}, h("tr", {}, ["Step", "Group", "Status", "Attempts", "Compensation attempts", "Started", "Updated", "Next attempt", "Error"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, (saga.steps || []).map((step) => h("tr", { "data-step": step.name },
        h("td", {}, step.name), h("td", {}, step.group || ""),
        h("td", { class: "step-status" }, h("span", { class: `badge step-${stepStatus(step)}` }, stepStatus(step))),
        h("td", {}, String(step.attempts || 0)), h("td", {}, String(step.compensation_attempts || 0)),
        h("td", {}, formatTime(step.start_time)), h("td", {}, formatTime(step.update_time)),
        h("td", {}, formatTime(step.next_attempt_time)), h("td", { class: "failure" }, step.error || "")))));
  }

  // Each step's reply, collapsed. The request a step sent is not stored: the engine
  // builds it from the saga's input and earlier replies, so the page says so.
  function exchanges(saga) {
    const open = new Set([...document.querySelectorAll("#exchanges details[open]")].map((d) => d.dataset.step));
    return h("section", { id: "exchanges" }, h("h2", {}, "Requests and replies"),
      h("p", { class: "muted", id: "request-note" }, "The request a step sent is not stored: it was built from the saga's input (above) and the replies of earlier steps. Each step's reply is shown as stored."),
      (saga.steps || []).map((step) => h("details", { "data-step": step.name, open: open.has(step.name) },
        h("summary", {}, `${step.name}: `, step.reply ? "reply" : "no reply stored"),
        step.reply ? jsonBlock(step.reply) : h("p", { class: "muted" }, "This step has no stored reply (it has not completed, or its action answers nothing)."))));
  }

  // An EVENT_ANOMALY row's reason reads "<event type> <event id>: <why>".
  function anomalyText(reason) {
    const at = (reason || "").indexOf(": ");
    if (at < 0) return reason || "";
    const [type, id] = reason.slice(0, at).split(" ");
    return [h("span", { class: "anomaly-event" }, `event ${type}`, id ? ` (id ${id})` : ""), h("br"), h("span", { class: "anomaly-why" }, reason.slice(at + 2))];
  }

  function logRow(row) {
    const anomaly = eventName(row) === "EVENT_ANOMALY";
    return h("tr", { "data-seq": row.seq, class: anomaly ? "anomaly" : null },
      h("td", {}, String(row.seq)), h("td", { class: "time" }, formatTime(row.time, true)),
      h("td", {}, anomaly ? "EVENT_ANOMALY (event not applied)" : eventName(row)), h("td", {}, row.step || ""), h("td", {}, row.attempt ? String(row.attempt) : ""),
      h("td", { class: "actor" }, row.actor || ""), h("td", { class: "reason" }, anomaly ? anomalyText(row.reason) : row.reason || ""),
      h("td", { class: "failure" }, row.error || ""));
  }

  async function sagaView(sagaId) {
    let data = await api(`/api/sagas/${encodeURIComponent(sagaId)}`);
    const transitions = (await api(`/api/sagas/${encodeURIComponent(sagaId)}/history`)).transitions;
    const header = h("div", { id: "saga-header" });
    const body = h("div", { id: "saga-body" });
    const live = h("span", { id: "live", class: "live", role: "status" });
    const logBody = h("tbody", { id: "log-rows" }, transitions.map(logRow));
    const log = h("section", { id: "log" }, h("h2", {}, "Transition log"),
      h("div", { class: "scroll" }, h("table", { class: "log" },
        h("caption", { class: "offscreen" }, "Transition log"),
        h("thead", {}, h("tr", {}, ["#", "Time", "Event", "Step", "Attempt", "Actor", "Reason", "Error"].map((t) => h("th", { scope: "col" }, t)))),
        logBody)));

    function render() {
      const saga = data.saga;
      append(clear(header),
        h("h1", {}, "Saga ", h("code", { class: "short", title: saga.saga_id }, shortId(saga.saga_id))),
        h("p", { class: "full-id" }, h("code", { id: "full-id" }, saga.saga_id), " ", copyButton(saga.saga_id), " ", live),
        summary(saga),
        actionButtons(saga, refresh));
      append(clear(body),
        outcome(saga),
        h("section", { id: "input" }, h("h2", {}, "Input"), jsonBlock(saga.payload || {}, "input-json")),
        timeline(saga, transitions, data.definition),
        data.definition ? h("section", { id: "diagram" }, h("h2", {}, "Definition"), h("div", { class: "scroll" }, diagram(data.definition, saga))) : null,
        h("section", { id: "steps" }, h("h2", {}, "Steps"), h("div", { class: "scroll" }, stepsTable(saga))),
        exchanges(saga));
    }

    async function refresh() {
      data = await api(`/api/sagas/${encodeURIComponent(sagaId)}`);
      render();
    }

    let pending = null;
    function refreshSoon() {
      if (pending) return;
      pending = setTimeout(async () => {
        pending = null;
        try { await refresh(); } catch (error) { toast(error.message); }
      }, 120);
    }

    function follow() {
      const lastSeq = transitions.length ? transitions[transitions.length - 1].seq : 0;
      const stream = new EventSource(`/api/sagas/${encodeURIComponent(sagaId)}/events?after_seq=${lastSeq}`);
      live.textContent = "● live";
      live.className = "live on";
      stream.addEventListener("transition", (event) => {
        const row = JSON.parse(event.data);
        const last = transitions.length ? transitions[transitions.length - 1].seq : 0;
        if (row.seq <= last) return;
        transitions.push(row);
        logBody.append(logRow(row));
        refreshSoon();
      });
      stream.addEventListener("end", async () => {
        stream.close();
        live.className = "live off";
        try { await refresh(); } catch (error) { toast(error.message); }
        settle();
      });
      stream.addEventListener("failure", (event) => {
        stream.close();
        live.textContent = `live updates stopped: ${JSON.parse(event.data).message}`;
      });
      onLeave(() => stream.close());
    }

    function settle() {
      [live.textContent, live.className] = settledLabel(data.saga);
    }

    render();
    const terminal = ["COMPLETED", "FAILED"].includes(sagaStatus(data.saga));
    const reopened = data.saga.needs_intervention;
    if (!terminal || reopened) {
      follow();
    } else {
      settle();
    }
    // An operator's retry or resolve reopens a finished saga: follow it again.
    reopenFollow = () => { if (!live.classList.contains("on")) follow(); };
    onLeave(() => { reopenFollow = null; });
    return h("article", {}, header, body, log);
  }

  let reopenFollow = null;

  // --- needs intervention --------------------------------------------------------------------

  async function interventionView() {
    const answer = await api("/api/intervention");
    const rows = answer.sagas.map((saga) => {
      const stuck = stuckStep(saga);
      return h("tr", { "data-saga-id": saga.saga_id },
        h("td", { class: "id" }, h("a", { href: `#/saga/${encodeURIComponent(saga.saga_id)}`, class: "saga-link", "aria-label": `Saga ${saga.saga_id}`, title: saga.saga_id }, shortId(saga.saga_id)), " ", copyButton(saga.saga_id)),
        h("td", {}, `${saga.saga_type} v${saga.definition_version}`, trackedBadge(saga)),
        h("td", { class: "correlation" }, saga.correlation_id),
        h("td", { class: "failed-step" }, saga.failed_step || ""),
        h("td", { class: "stuck-step" }, stuck ? stuck.name : "?"),
        h("td", {}, stuck ? h("span", { class: `badge step-${stepStatus(stuck)}` }, stepStatus(stuck)) : ""),
        h("td", { class: "failure" }, stuck ? stuck.error : ""),
        h("td", { class: "failure wide" }, saga.failure_reason),
        h("td", {}, formatTime(saga.update_time)),
        h("td", {}, actionButtons(saga, () => route())));
    });
    const table = h("table", { class: "intervention" },
      h("caption", { class: "offscreen" }, "Sagas that need an operator"),
      h("thead", {}, h("tr", {}, ["Saga", "Type", "Correlation id", "Failed step", "Stuck step", "Step status", "Last error", "Why", "Since", "Actions"].map((t) => h("th", { scope: "col", class: t === "Why" ? "wide" : null }, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: "10", class: "muted" }, "Nothing needs an operator."))));
    return h("section", { "aria-labelledby": "intervention-title" },
      h("h1", { id: "intervention-title" }, "Needs intervention"),
      h("p", { class: "muted" }, me && me.may_act
        ? "Retry gives the stuck step a fresh budget of attempts; resolve declares it done by hand. Both need a reason, recorded in the saga's log."
        : "You may read these sagas; operator actions need the operator role."),
      bulkControls({ needs_intervention: "true" }, () => route()),
      h("div", { class: "scroll" }, table),
      await anomaliesPanel());
  }

  // Tracked sagas' events no saga could record (their instance never started in time):
  // ListEventAnomalies, newest first. Absent when the orchestrator tracks no saga type.
  async function anomaliesPanel() {
    let answer;
    try {
      answer = await api("/api/event-anomalies?page_size=50");
    } catch (error) {
      if (error.status === 501 || error.status === 403) return null;
      throw error;
    }
    const rows = (answer.anomalies || []).map((anomaly) => h("tr", { "data-event-id": anomaly.event_id },
      h("td", {}, formatTime(anomaly.create_time)),
      h("td", {}, anomaly.saga_type),
      h("td", { class: "correlation" }, anomaly.correlation),
      h("td", { class: "event-type" }, anomaly.event_type),
      h("td", { class: "wide" }, anomaly.source),
      h("td", { class: "wide" }, anomaly.event_id),
      h("td", { class: "reason" }, anomaly.reason)));
    const table = h("table", { class: "anomalies" },
      h("caption", { class: "offscreen" }, "Event anomalies"),
      h("thead", {}, h("tr", {}, ["Recorded", "Saga type", "Correlation", "Event type", "Source", "Event id", "Why"].map((t) => h("th", { scope: "col", class: ["Source", "Event id"].includes(t) ? "wide" : null }, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No event anomalies."))));
    return h("section", { id: "event-anomalies", "aria-labelledby": "anomalies-title" },
      h("h2", { id: "anomalies-title" }, "Event anomalies"),
      h("p", { class: "muted" }, "Events of tracked sagas whose instance never started within the wait (saga serve --tracked-wait-for-start). Anomalies of a saga that exists are EVENT_ANOMALY rows of its log."),
      answer.next_page_token ? h("p", { class: "muted" }, "Newest 50 shown; list the rest with `saga events anomalies --all`.") : null,
      h("div", { class: "scroll" }, table));
  }

  // --- human tasks ---------------------------------------------------------------------------

  function taskButtons(task, after) {
    if (!me || !me.may_decide) return null;
    const label = `step ${task.step} of saga ${task.saga_id}`;
    return h("div", { class: "actions", role: "group", "aria-label": "Decide the task" },
      h("button", { type: "button", class: "primary", "data-action": "complete", "aria-label": `Complete ${label}`, onclick: () => openTask("complete", task, after) }, "Complete"),
      h("button", { type: "button", class: "danger", "data-action": "reject", "aria-label": `Reject ${label}`, onclick: () => openTask("reject", task, after) }, "Reject"));
  }

  async function tasksView() {
    const answer = await api("/api/tasks");
    const sagaLink = (task) => me && me.may_read_sagas
      ? h("a", { href: `#/saga/${encodeURIComponent(task.saga_id)}`, class: "saga-link", "aria-label": `Saga ${task.saga_id}`, title: task.saga_id }, shortId(task.saga_id))
      : h("span", { title: task.saga_id }, shortId(task.saga_id));
    const rows = answer.tasks.map((task) => h("tr", { "data-saga-id": task.saga_id, "data-step": task.step },
      h("td", { class: "id" }, sagaLink(task), " ", copyButton(task.saga_id)),
      h("td", {}, task.saga_type),
      h("td", { class: "task-step" }, task.step),
      h("td", { class: "correlation" }, task.correlation_id),
      h("td", {}, formatTime(task.waiting_since)),
      h("td", {}, formatTime(task.wait_deadline)),
      h("td", {}, h("code", {}, task.result_type)),
      h("td", {}, taskButtons(task, () => route()))));
    const table = h("table", { class: "tasks" },
      h("caption", { class: "offscreen" }, "Steps waiting for a person's decision"),
      h("thead", {}, h("tr", {}, ["Saga", "Type", "Step", "Correlation id", "Waiting since", "Deadline", "Result type", "Decide"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: "8", class: "muted" }, "No step is waiting for a decision."))));
    return h("section", { "aria-labelledby": "tasks-title" },
      h("h1", { id: "tasks-title" }, "Tasks"),
      h("p", { class: "muted" }, me && me.may_decide
        ? "Complete approves a waiting step (with its result, if it has one); reject fails it and the saga compensates. Both need a reason, recorded in the saga's log with your name."
        : "You may see these tasks; deciding them needs the approver or operator role."),
      h("div", { class: "scroll" }, table));
  }

  // --- definitions ---------------------------------------------------------------------------

  async function definitionsView() {
    const answer = await api("/api/definitions");
    return h("section", { "aria-labelledby": "definitions-title" },
      h("h1", { id: "definitions-title" }, "Definitions"),
      answer.definitions.map((definition) => h("article", { class: "definition", "data-saga-type": definition.saga_type },
        h("h2", {}, `${definition.saga_type} v${definition.version}`),
        definition.description ? h("p", {}, definition.description) : null,
        h("dl", { class: "summary" },
          h("dt", {}, "Input"), h("dd", {}, h("code", {}, definition.input)),
          h("dt", {}, "Pivot"), h("dd", {}, definition.pivot_stage ? `stage ${definition.pivot_stage}` : "none: every step can be undone"),
          h("dt", {}, "Deadline"), h("dd", {}, definition.deadline_seconds ? formatSeconds(definition.deadline_seconds) : "none")),
        h("div", { class: "scroll" }, diagram(definition, null)),
        h("div", { class: "scroll" }, h("table", { class: "steps" },
          h("caption", { class: "offscreen" }, `Steps of ${definition.saga_type} v${definition.version}`),
          h("thead", {}, h("tr", {}, ["Stage", "Step", "Participant", "Action", "Compensation", "Attempts", "Timeout"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, definition.steps.map((step) => h("tr", {},
            h("td", {}, step.group ? `${step.stage} (${step.group})` : String(step.stage)),
            h("td", {}, step.name), h("td", {}, step.participant), h("td", {}, h("code", {}, step.action)),
            h("td", {}, step.compensation ? h("code", {}, step.compensation) : step.read_only ? "none (read-only: nothing to undo)" : (step.forward_only ? "forward only" : "none (pivot)")),
            h("td", {}, String(step.retry.max_attempts)), h("td", {}, formatSeconds(step.timeout_seconds))))))))));
  }

  // --- event sinks ---------------------------------------------------------------------------

  function partitionOwners(sink) {
    const counts = new Map();
    for (const partition of sink.partition_owners) {
      const owner = partition.owner || "(free)";
      counts.set(owner, (counts.get(owner) || 0) + 1);
    }
    return [...counts].sort().map(([owner, n]) => `${owner}: ${n}`).join(", ") || "none";
  }

  async function sinksView() {
    const answer = await api("/api/event-sinks");
    const rows = answer.sinks.map((sink) => h("tr", { "data-sink": sink.name, class: Number(sink.dead) > 0 ? "stuck" : null },
      h("td", {}, sink.name),
      h("td", {}, sink.configured ? sink.kind.replace("EVENT_SINK_KIND_", "").toLowerCase() : "not configured here"),
      h("td", { class: "wide" }, sink.target),
      h("td", { class: "pending" }, String(sink.pending)),
      h("td", { class: "oldest" }, sink.oldest_pending_time ? `${sink.oldest_pending_age} (since ${formatTime(sink.oldest_pending_time)})` : "none"),
      h("td", { class: "dead" }, String(sink.dead)),
      h("td", { class: "owners" }, partitionOwners(sink))));
    const table = h("table", { class: "sinks" },
      h("caption", { class: "offscreen" }, "Event sinks and their health"),
      h("thead", {}, h("tr", {}, ["Sink", "Kind", "Target", "Pending", "Oldest pending", "Dead", "Partition owners"].map((t) => h("th", { scope: "col", class: t === "Target" ? "wide" : null }, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No event sinks."))));
    return h("section", { "aria-labelledby": "sinks-title" },
      h("h1", { id: "sinks-title" }, "Event sinks"),
      h("p", { class: "muted" }, `Relays running: ${answer.relay_replicas.join(", ") || "none"}. Replay and requeue with \`saga events\`.`),
      h("div", { class: "scroll" }, table));
  }

  // --- operator actions ----------------------------------------------------------------------

  const dialog = document.getElementById("action-dialog");
  const actionForm = document.getElementById("action-form");
  let pendingAction = null;

  function openTask(kind, task, after) {
    openAction(kind, { saga_id: task.saga_id, saga_type: task.saga_type }, null, after);
    pendingAction.task = task;
    document.getElementById("action-target").textContent = `step ${task.step} of ${task.saga_type} saga ${task.saga_id}`;
  }

  function openAction(kind, saga, stuck, after) {
    pendingAction = { kind, saga, after };
    const titles = {
      abort: "Abort saga", retry: "Retry the stuck step", resolve: "Resolve the stuck step by hand",
      complete: "Complete the task", reject: "Reject the task: the saga compensates",
    };
    document.getElementById("action-title").textContent = titles[kind];
    document.getElementById("action-target").textContent = `${saga.saga_type} v${saga.definition_version}, saga ${saga.saga_id}`;
    document.getElementById("action-result-field").hidden = kind !== "complete";
    document.getElementById("action-result").value = "";
    const stepField = document.getElementById("action-step-field");
    const stepSelect = clear(document.getElementById("action-step"));
    stepField.hidden = kind !== "resolve";
    if (stuck) stepSelect.append(h("option", { value: stuck.name }, stuck.name));
    const operatorField = document.getElementById("action-operator-field");
    const operator = document.getElementById("action-operator");
    operatorField.hidden = Boolean(me && me.authenticated);
    operator.required = !operatorField.hidden;
    operator.value = localStorage.getItem("saga-console-operator") || "";
    document.getElementById("action-reason").value = "";
    document.getElementById("action-error").textContent = "";
    dialog.showModal();
    (operator.required && !operator.value ? operator : document.getElementById("action-reason")).focus();
  }

  document.getElementById("action-cancel").addEventListener("click", () => dialog.close());

  actionForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!pendingAction) return;
    const { kind, saga, after, task } = pendingAction;
    const operator = document.getElementById("action-operator").value.trim();
    const body = { reason: document.getElementById("action-reason").value };
    if (!(me && me.authenticated)) {
      body.requested_by = operator;
      localStorage.setItem("saga-console-operator", operator);
    }
    if (kind === "resolve") body.step = document.getElementById("action-step").value;
    if (kind === "complete") body.result_json = document.getElementById("action-result").value.trim();
    const path = task
      ? `/api/tasks/${encodeURIComponent(task.saga_id)}/${encodeURIComponent(task.step)}/${kind}`
      : `/api/sagas/${encodeURIComponent(saga.saga_id)}/${kind}`;
    try {
      await api(path, body);
    } catch (error) {
      document.getElementById("action-error").textContent = error.message;
      return;
    }
    dialog.close();
    pendingAction = null;
    toast(`${kind} of saga ${shortId(saga.saga_id)} recorded`);
    if (reopenFollow) reopenFollow();
    if (after) await after();
  });

  // --- routing -------------------------------------------------------------------------------

  // A view that finishes loading after the user (or a test) went elsewhere must not
  // replace the newer one: each route() call knows whether it is still the latest.
  let routeGeneration = 0;

  async function route() {
    const generation = ++routeGeneration;
    for (const fn of cleanups) fn();
    cleanups = [];
    const hash = location.hash || "#/sagas";
    const [path, query] = hash.slice(1).split("?");
    const params = new URLSearchParams(query || "");
    const section = path.split("/")[1] || "sagas";
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === section || (section === "saga" && link.dataset.nav === "sagas")) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (me === null && section !== "signin") await loadIdentity();
    if (me === null && section !== "signin") return;
    if (generation !== routeGeneration) return;
    let content;
    try {
      if (section === "signin") content = signInView();
      else if (section === "saga") content = await sagaView(decodeURIComponent(path.split("/")[2] || ""));
      else if (section === "intervention") content = await interventionView();
      else if (section === "tasks" || (me && me.may_read_sagas === false && section !== "sinks")) content = await tasksView();
      else if (section === "definitions") content = await definitionsView();
      else if (section === "sinks") content = await sinksView();
      else content = await listView(params);
    } catch (error) {
      if (error.status === 401) return;
      content = failureBox(error);
    }
    if (generation !== routeGeneration) return;
    clear(view).append(content);
    document.title = `${(view.querySelector("h1") || { textContent: "Saga console" }).textContent} · Saga console`;
  }

  const zoneToggle = document.getElementById("zone-toggle");
  function showZone() {
    zoneToggle.textContent = localZone() ? "Times: local" : "Times: UTC";
    zoneToggle.setAttribute("aria-pressed", localZone() ? "true" : "false");
  }
  zoneToggle.addEventListener("click", () => {
    localStorage.setItem(ZONE_KEY, localZone() ? "utc" : "local");
    showZone();
    route();
  });
  showZone();

  window.addEventListener("hashchange", route);
  route();
})();
