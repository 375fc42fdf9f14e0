// bulkassign serve: the page's behaviour. Plain JavaScript, no build step,
// no third-party code: upload → (map columns) → check → queue → follow the
// batch, its failed rows and its charts → verify it against the CRM.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const api = "/api/v1/batches";
  let pending = null; // the checked file, waiting for "Queue it"
  let mapping = null; // {field: header} for a file with foreign headers
  let mappingName = ""; // the saved mapping in use, if unchanged
  let preview = null; // the last preview of the file's start
  let current = null; // id of the batch on screen
  let timer = null;
  let lastAnnounced = "";

  function show(el, on) { el.hidden = !on; }
  function fail(el, msg) { el.textContent = msg; show(el, !!msg); }

  async function call(method, url, body) {
    const res = await fetch(url, { method, body, credentials: "same-origin", headers: { Accept: "application/json" } });
    if (res.status === 401) { location.href = "/login?next=/"; throw new Error("signed out"); }
    let data = null;
    try { data = await res.json(); } catch (e) { data = { error: res.status + " " + res.statusText }; }
    if (!res.ok) {
      const err = new Error(data && data.error ? data.error : res.status + " " + res.statusText);
      err.status = res.status;
      err.data = data;
      throw err;
    }
    return data;
  }

  function addMapping(fd) {
    if (mappingName) fd.append("mappingName", mappingName);
    else if (mapping) fd.append("mapping", JSON.stringify(mapping));
  }

  function form(dryRun) {
    const fd = new FormData();
    fd.append("name", $("name").value);
    fd.append("dryRun", dryRun ? "true" : "false");
    fd.append("recordPrevious", $("record-previous").checked ? "true" : "false");
    if ($("preflight")) fd.append("preflight", $("preflight").checked ? "true" : "false");
    if ($("notify").value.trim()) {
      fd.append("notify", $("notify").value.trim());
      fd.append("notifyFormat", $("notify-format").value);
    }
    fd.append("again", $("send-again").checked ? "true" : "false");
    addMapping(fd);
    fd.append("file", pending); // last: the server streams it
    return fd;
  }

  // The page sends only the file's first 256 KiB for a preview.
  async function previewFile() {
    const fd = new FormData();
    addMapping(fd);
    fd.append("file", pending.slice(0, 256 * 1024), pending.name);
    return call("POST", "/api/v1/preview", fd);
  }

  async function check() {
    $("check").disabled = true;
    $("check").textContent = "Checking…";
    try {
      const r = await call("POST", api + "?dryRun=true", form(true));
      showValidation(r.summary, r.invalidRows);
      showDuplicate(r.duplicateOf, "");
    } catch (e) {
      fail($("upload-error"), "The file cannot be used: " + e.message);
    } finally {
      $("check").disabled = false;
      $("check").textContent = "Check file";
    }
  }

  $("upload-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fail($("upload-error"), "");
    show($("validation"), false);
    const f = $("file").files[0];
    if (!f) { fail($("upload-error"), "Choose a file first."); return; }
    if (f !== pending) { mapping = null; mappingName = ""; show($("mapping"), false); }
    pending = f;
    if (!mapping && !mappingName) {
      try {
        preview = await previewFile();
      } catch (e) {
        fail($("upload-error"), "The file cannot be read: " + e.message);
        return;
      }
      if (!preview.recognised) { showMapping(preview); return; }
    }
    check();
  });

  // --- column mapping ---------------------------------------------------
  const fieldSelects = { aiContactId: "map-contact", teamMemberId: "map-member", teamMemberEmail: "map-email", removeExistingAgents: "map-replace" };

  function cells(tr, values, tag) {
    for (const v of values) {
      const c = document.createElement(tag || "td");
      if (tag === "th") c.scope = "col";
      c.textContent = v == null ? "" : String(v);
      tr.append(c);
    }
  }

  function showMapping(p) {
    $("mapping-why").textContent = p.error
      ? "This file's headers are not the usual ones (" + p.error + "). Say which column holds what."
      : "Say which column holds what.";
    const head = $("raw-head");
    head.replaceChildren();
    cells(head, p.headers, "th");
    const body = $("raw-rows");
    body.replaceChildren();
    for (const row of p.sample) { const tr = document.createElement("tr"); cells(tr, row); body.append(tr); }
    for (const [field, id] of Object.entries(fieldSelects)) {
      const sel = $(id);
      const keep = sel.value;
      sel.replaceChildren(new Option("(none)", ""));
      p.headers.forEach((h, i) => {
        const o = new Option(h, h);
        // A header the importer knows already is chosen for its field.
        if (!keep && p.known[i] === field) o.selected = true;
        sel.append(o);
      });
      if (keep && p.headers.includes(keep)) sel.value = keep;
    }
    show($("mapped"), false);
    show($("mapping"), true);
    loadSaved();
    $("map-contact").focus();
  }

  function chosenMapping() {
    const m = {};
    for (const [field, id] of Object.entries(fieldSelects)) if ($(id).value) m[field] = $(id).value;
    return m;
  }

  function mappingProblem(m) {
    if (!m.aiContactId) return "Choose the contact id column.";
    if (!m.teamMemberId && !m.teamMemberEmail) return "Choose the member id or the member email column.";
    return "";
  }

  for (const id of Object.values(fieldSelects)) {
    $(id).addEventListener("change", () => { mappingName = ""; $("saved").value = ""; });
  }

  async function loadSaved() {
    try {
      const r = await call("GET", "/api/v1/mappings");
      const sel = $("saved");
      const keep = sel.value;
      sel.replaceChildren(new Option("(none)", ""));
      for (const m of r.mappings) {
        const o = new Option(m.name, m.name);
        o.dataset.mapping = JSON.stringify(m.mapping);
        sel.append(o);
      }
      sel.value = keep;
    } catch (e) { fail($("mapping-error"), e.message); }
  }

  $("saved").addEventListener("change", () => {
    const o = $("saved").selectedOptions[0];
    if (!o || !o.value) { mappingName = ""; return; }
    const m = JSON.parse(o.dataset.mapping);
    for (const [field, id] of Object.entries(fieldSelects)) $(id).value = m[field] || "";
    mappingName = o.value;
    $("mapping-note").textContent = "Using the saved mapping " + o.value + ".";
  });

  async function previewMapped() {
    fail($("mapping-error"), "");
    const m = chosenMapping();
    const problem = mappingProblem(m);
    if (problem) { fail($("mapping-error"), problem); return false; }
    mapping = m;
    try {
      const p = await previewFile();
      if (p.error) { fail($("mapping-error"), p.error); return false; }
      const body = $("mapped-rows");
      body.replaceChildren();
      for (const r of p.rows) {
        const tr = document.createElement("tr");
        if (!r.valid) tr.className = "bad";
        cells(tr, [r.line, r.aiContactId, r.teamMemberId, r.teamMemberEmail, r.removeExistingAgents, r.valid ? "" : r.error || r.reason]);
        body.append(tr);
      }
      show($("mapped"), true);
      const bad = p.rows.filter((r) => !r.valid).length;
      $("mapping-note").textContent = p.rows.length + " rows read, " + bad + " with a problem (members named by email are looked up when you check the file).";
      return true;
    } catch (e) { fail($("mapping-error"), e.message); return false; }
  }

  $("map-preview").addEventListener("click", previewMapped);
  $("map-save").addEventListener("click", async () => {
    fail($("mapping-error"), "");
    const name = $("save-name").value.trim();
    if (!name) { fail($("mapping-error"), "Give the mapping a name to save it under."); $("save-name").focus(); return; }
    const m = chosenMapping();
    const problem = mappingProblem(m);
    if (problem) { fail($("mapping-error"), problem); return; }
    try {
      const r = await call("PUT", "/api/v1/mappings/" + encodeURIComponent(name), JSON.stringify(m));
      mapping = r.mapping;
      await loadSaved();
      $("saved").value = r.name;
      mappingName = r.name;
      $("mapping-note").textContent = "Saved as " + r.name + ". It is a --map file too:\n" + r.yaml;
    } catch (e) { fail($("mapping-error"), e.message); }
  });
  $("map-check").addEventListener("click", async () => {
    if (await previewMapped()) { show($("mapping"), false); check(); }
  });

  function showValidation(s, rows) {
    $("v-rows").textContent = s.rows;
    $("v-valid").textContent = s.valid;
    $("v-invalid").textContent = s.invalid;
    $("v-merged").textContent = s.duplicatesMerged;
    $("v-contacts").textContent = s.contacts;
    $("v-calls").textContent = s.calls;
    $("validation-summary").textContent = s.file + ": " + s.rows + " rows, " + s.valid + " valid, " + s.invalid +
      " invalid. " + (s.valid > 0 ? "Check the numbers, then queue it." : "No valid row: nothing to send.");
    const reasons = $("v-reasons");
    reasons.replaceChildren();
    for (const [k, v] of Object.entries(s.invalidReasons || {})) {
      const li = document.createElement("li");
      li.textContent = k + ": " + v + (v === 1 ? " row" : " rows");
      reasons.append(li);
    }
    const body = $("v-invalid-rows");
    body.replaceChildren();
    for (const r of rows || []) {
      const tr = document.createElement("tr");
      for (const v of [r.line, r.aiContactId, r.teamMemberId, r.error || r.reason]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      body.append(tr);
    }
    show($("v-reasons-box"), s.invalid > 0);
    $("confirm").disabled = s.valid === 0 && s.invalid === 0;
    show($("validation"), true);
    $("confirm").focus();
  }

  // A file queued already (the same content, for the same CRM) is sent
  // again only when "Queue it again" is ticked.
  function showDuplicate(b, msg) {
    $("send-again").checked = false;
    show($("duplicate"), !!b);
    if (!b) return;
    $("duplicate-text").textContent = msg || ("This file was queued already: batch " + b.batchId +
      (b.name ? " (" + b.name + ")" : "") + ", " + b.status + ", " + b.done + " of " + b.rows + " rows done, queued " +
      new Date(b.createdAt).toLocaleString() + (b.startedBy ? " by " + b.startedBy : "") +
      ". Queueing it sends every row again: tick the box below if that is meant, or follow the earlier batch from the list.");
  }

  $("confirm").addEventListener("click", async () => {
    if (!pending) return;
    $("confirm").disabled = true;
    $("confirm").textContent = "Queueing…";
    try {
      const r = await call("POST", api, form(false));
      show($("validation"), false);
      show($("duplicate"), false);
      $("upload-form").reset();
      pending = null; mapping = null; mappingName = "";
      noteAfterRoute = r.notify ? "When it ends, the batch's summary is posted to " + r.notify + "."
        : r.notifyError ? "Queued, but its end will not be announced: " + r.notifyError : "";
      location.hash = "batch=" + r.batchId;
    } catch (e) {
      if (e.status === 409 && e.data && e.data.duplicateOf) {
        showDuplicate(e.data.duplicateOf, "Not queued: " + e.message);
        $("send-again").focus();
        return;
      }
      fail($("upload-error"), "Not queued: " + e.message);
    } finally {
      $("confirm").disabled = false;
      $("confirm").textContent = "Queue it";
    }
  });

  $("again").addEventListener("click", () => {
    show($("validation"), false);
    show($("duplicate"), false);
    show($("mapping"), false);
    pending = null; mapping = null; mappingName = "";
    $("upload-form").reset();
    $("file").focus();
  });

  function duration(sec) {
    if (sec == null) return "–";
    sec = Math.round(sec);
    if (sec < 60) return sec + " s";
    if (sec < 3600) return Math.floor(sec / 60) + " min " + (sec % 60) + " s";
    return Math.floor(sec / 3600) + " h " + Math.floor((sec % 3600) / 60) + " min";
  }

  function showBatch(b) {
    $("batch-title").textContent = "Batch " + b.batchId + (b.name ? " — " + b.name : "");
    $("batch-status").textContent = b.status;
    $("batch-reason").textContent = b.pauseReason ? "(" + b.pauseReason + ")" : "";
    $("batch-origin").textContent = b.startedBy ? "Started by " + b.startedBy + "." : "";
    show($("batch-origin"), !!b.startedBy);
    const pct = Math.floor(b.percent);
    const bar = $("progress");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.setAttribute("aria-valuetext", pct + "% (" + b.done + " of " + b.rows + " rows)");
    $("progress-bar").style.width = pct + "%";
    bar.dataset.status = b.status;
    // Announce status changes and every tenth, not every poll.
    const say = b.status + " " + Math.floor(pct / 10);
    if (say !== lastAnnounced) {
      lastAnnounced = say;
      $("progress-text").textContent = pct + "% done: " + b.done + " of " + b.rows + " rows, status " + b.status + ".";
    }
    $("b-succeeded").textContent = b.succeeded;
    $("b-failed").textContent = b.failed;
    $("b-invalid").textContent = b.invalid;
    $("b-pending").textContent = b.pending;
    $("b-rate").textContent = b.rowsPerSecond.toFixed(1);
    $("b-eta").textContent = b.status === "done" ? "finished" : duration(b.etaSeconds);
    $("dl-succeeded").href = b.links["succeeded.csv"];
    $("dl-failed").href = b.links["failed.csv"];
    $("dl-summary").href = b.links["summary.json"];
    $("dl-rollback-item").hidden = !b.links["rollback.csv"];
    if (b.links["rollback.csv"]) $("dl-rollback").href = b.links["rollback.csv"];
    const finished = b.status === "done" || b.status === "cancelled";
    $("pause").disabled = b.status !== "running";
    $("resume").disabled = b.status !== "paused";
    $("cancel").disabled = finished || b.status === "importing";
    $("retry").disabled = b.failed === 0 || b.status === "cancelled" || b.status === "importing";
    show($("verify-box"), finished);
    if (!finished) verifyFor = null;
    else if (verifyFor !== b.batchId) { verifyFor = b.batchId; clearVerification(); pollVerify(); }
    show($("batch"), true);
    return finished;
  }

  // --- verify: read the CRM back -------------------------------------------
  const verifyOff = $("verify").dataset.off === "true"; // no CRM API key
  let verifyFor = null; // the batch whose verification is on screen
  let verifyTimer = null;

  function clearVerification() {
    clearTimeout(verifyTimer);
    $("verify").disabled = verifyOff;
    $("verify").textContent = "Verify";
    $("verify-status").textContent = "";
    fail($("verify-error"), "");
    $("drift-rows").replaceChildren();
    show($("drift-box"), false);
    $("drift-note").textContent = "";
    show($("dl-drift-item"), false);
  }

  // showVerification draws a verification; true while it runs.
  function showVerification(v) {
    const running = v.status === "running";
    $("verify").disabled = verifyOff || running;
    $("verify").textContent = running ? "Verifying…" : "Verify";
    fail($("verify-error"), v.status === "failed" ? "Verify failed: " + v.error : "");
    let text = "";
    if (running) {
      text = v.contacts ? "Verifying: " + v.read + " of " + v.contacts + " contacts read, " + v.drifted + " drifted so far." : "Verifying: reading the batch's contacts…";
    } else if (v.status === "done") {
      text = v.drifted === 0 && v.unknown === 0
        ? "No drift: " + v.matching + " contacts match."
        : v.drifted + " of " + v.contacts + " contacts drifted" + (v.notFound ? " (" + v.notFound + " no longer in the CRM)" : "") + ", " + v.matching + " match.";
      if (v.unknown) text += " " + v.unknown + " could not be read (see the error column): verify again.";
      text += " Verified " + new Date(v.finishedAt).toLocaleString() + (v.by ? " by " + v.by : "") + ".";
    }
    $("verify-status").textContent = text;
    const body = $("drift-rows");
    body.replaceChildren();
    const list = (ids, none) => (ids.length ? ids.join("; ") : none);
    for (const d of v.drift) {
      const tr = document.createElement("tr");
      cells(tr, [d.aiContactId, list(d.expected, "(none)") + (d.match === "contains" ? " (at least)" : ""), list(d.actual, d.error ? "" : "(none)"),
        list(d.missing, ""), list(d.unexpected, ""), d.error || ""]);
      body.append(tr);
    }
    show($("drift-box"), v.drift.length > 0);
    const listed = v.drifted + v.unknown;
    $("drift-note").textContent = v.drift.length < listed ? "The first " + v.drift.length + " of " + listed + " contacts; drift.csv has them all." : "";
    show($("dl-drift-item"), !!v.driftFile);
    if (v.driftFile) $("dl-drift").href = v.driftFile;
    return running;
  }

  async function pollVerify() {
    clearTimeout(verifyTimer);
    const id = current;
    if (!id) return;
    try {
      const v = await call("GET", api + "/" + encodeURIComponent(id) + "/verify");
      if (id !== current) return;
      if (showVerification(v)) verifyTimer = setTimeout(pollVerify, 1000);
    } catch (e) {
      if (id === current) fail($("verify-error"), e.message);
    }
  }

  $("verify").addEventListener("click", async () => {
    const id = current;
    $("verify").disabled = true;
    fail($("verify-error"), "");
    try {
      const v = await call("POST", api + "/" + encodeURIComponent(id) + "/verify");
      if (id !== current) return;
      if (showVerification(v)) verifyTimer = setTimeout(pollVerify, 1000);
    } catch (e) {
      fail($("verify-error"), "Not verified: " + e.message);
      $("verify").disabled = verifyOff;
    }
  });

  // --- errors at a glance ------------------------------------------------
  const svgNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const el = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text != null) el.textContent = text;
    return el;
  }

  function drawRate(p) {
    const chart = $("rate-chart");
    chart.replaceChildren();
    const W = 400, H = 140, L = 36, B = 18, T = 8;
    chart.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }), svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
    const rates = p.rates || [];
    if (rates.length === 0) {
      chart.append(svg("text", { x: L + 8, y: H / 2 }, "No rows sent yet."));
    } else {
      const t0 = new Date(p.samples[0].t).getTime();
      const t1 = new Date(rates[rates.length - 1].t).getTime();
      const top = Math.max(1, ...rates.map((r) => r.rowsPerSecond));
      const x = (t) => L + (W - L - 4) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
      const y = (v) => H - B - (H - B - T) * (v / top);
      let pts = x(t0) + "," + y(0);
      for (const r of rates) pts += " " + x(new Date(r.t).getTime()) + "," + y(r.rowsPerSecond);
      chart.append(svg("polyline", { class: "line", points: pts }));
      chart.append(svg("text", { x: 2, y: T + 8 }, top.toFixed(top < 10 ? 1 : 0)), svg("text", { x: 2, y: H - B }, "0"));
      chart.append(svg("text", { x: L, y: H - 4 }, new Date(t0).toLocaleTimeString()),
        svg("text", { x: W - 2, y: H - 4, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()));
    }
    $("pace").textContent = p.etaSeconds != null
      ? "— now " + p.rowsPerSecond.toFixed(1) + " rows/s, about " + duration(p.etaSeconds) + " left"
      : "";
  }

  let reasonFilter = "";
  function drawReasons(f) {
    const box = $("reason-chart");
    box.replaceChildren();
    const entries = Object.entries(f.reasons).sort((a, b) => b[1] - a[1]);
    if (entries.length === 0) { box.textContent = "No failed or invalid row."; }
    const top = Math.max(1, ...entries.map((e) => e[1]));
    for (const [reason, n] of entries) {
      const row = document.createElement("div");
      row.className = "reason";
      row.setAttribute("role", "listitem");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = reason;
      b.title = "Show the " + reason + " rows";
      b.addEventListener("click", () => { $("reason-filter").value = reason; reasonFilter = reason; refreshInsight(); });
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = (100 * n / top) + "%";
      track.append(fill);
      const count = document.createElement("span");
      count.textContent = n;
      row.append(b, track, count);
      box.append(row);
    }
    const sel = $("reason-filter");
    const keep = reasonFilter;
    sel.replaceChildren(new Option("All reasons", ""));
    for (const [reason, n] of entries) sel.append(new Option(reason + " (" + n + ")", reason));
    if (keep && !f.reasons[keep]) sel.append(new Option(keep + " (0)", keep));
    sel.value = keep;
  }

  function drawFailures(f) {
    const body = $("failure-rows");
    body.replaceChildren();
    for (const r of f.rows) {
      const tr = document.createElement("tr");
      cells(tr, [r.line, r.aiContactId, r.teamMemberId || r.teamMemberEmail || "", r.reason, r.httpStatus || "", r.attempts || "", r.error]);
      body.append(tr);
    }
    if (f.rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 7;
      td.textContent = f.reason ? "No " + f.reason + " row." : "No failed or invalid row.";
      tr.append(td);
      body.append(tr);
    }
    $("failures-note").textContent = (f.matching > f.rows.length ? "The first " + f.rows.length + " of " + f.matching + " rows; failed.csv has them all. " : "") +
      "Read at " + new Date(f.asOf).toLocaleTimeString() + ".";
  }

  $("reason-filter").addEventListener("change", () => { reasonFilter = $("reason-filter").value; refreshInsight(); });

  let insightAt = 0;
  async function refreshInsight() {
    if (!current) return;
    const id = current;
    insightAt = Date.now();
    try {
      const base = api + "/" + encodeURIComponent(id);
      const [f, p] = await Promise.all([
        call("GET", base + "/failures" + (reasonFilter ? "?reason=" + encodeURIComponent(reasonFilter) : "")),
        call("GET", base + "/progress"),
      ]);
      if (id !== current) return;
      drawReasons(f);
      drawFailures(f);
      drawRate(p);
    } catch (e) { fail($("batch-error"), e.message); }
  }

  async function poll() {
    clearTimeout(timer);
    if (!current) return;
    const id = current;
    try {
      const b = await call("GET", api + "/" + encodeURIComponent(id));
      if (id !== current) return;
      fail($("batch-error"), "");
      const finished = showBatch(b);
      if (finished || Date.now() - insightAt > 3000) await refreshInsight();
      if (finished) { refreshRecent(); return; }
    } catch (e) {
      fail($("batch-error"), e.message);
      if (e.status === 404 || e.status === 400) return;
    }
    timer = setTimeout(poll, 1000);
  }

  async function act(action, question) {
    if (question && !confirm(question)) return;
    try {
      const r = await call("POST", api + "/" + encodeURIComponent(current) + "/" + action);
      fail($("batch-error"), "");
      if (action === "retry-failed") {
        $("batch-note").textContent = r.requeued > 0
          ? r.requeued + " rows that ran out of attempts are queued again."
          : "No row ran out of attempts. Rows the CRM refused for good (for example 404) are not retried: fix them in failed.csv and upload it again.";
      }
      showBatch(r.batch);
      poll();
    } catch (e) {
      fail($("batch-error"), e.message);
    }
  }
  $("pause").addEventListener("click", () => act("pause"));
  $("resume").addEventListener("click", () => act("resume"));
  $("retry").addEventListener("click", () => act("retry-failed"));
  let noteAfterRoute = ""; // said once the page shows the batch just queued
  window.addEventListener("hashchange", () => { $("batch-note").textContent = noteAfterRoute; noteAfterRoute = ""; });
  $("cancel").addEventListener("click", () => act("cancel", "Cancel this batch for good? Rows not yet sent will never be sent."));

  async function refreshRecent() {
    try {
      const q = new URLSearchParams({ limit: "20" });
      if ($("filter-status").value) q.set("status", $("filter-status").value);
      if ($("filter-name").value.trim()) q.set("name", $("filter-name").value.trim());
      const r = await call("GET", api + "?" + q);
      const body = $("recent");
      body.replaceChildren();
      for (const b of r.batches) {
        const tr = document.createElement("tr");
        const a = document.createElement("a");
        a.href = "#batch=" + b.batchId;
        a.textContent = b.batchId;
        const row = [a, b.name, b.status, b.done + "/" + b.rows, b.succeeded, b.failed, b.invalid, b.startedBy || b.uploadedBy || "",
          new Date(b.createdAt).toLocaleString()];
        for (const c of row) {
          const td = document.createElement("td");
          if (c instanceof Node) td.append(c); else td.textContent = c;
          tr.append(td);
        }
        body.append(tr);
      }
      if (r.batches.length === 0) {
        const tr = document.createElement("tr");
        const td = document.createElement("td");
        td.colSpan = 9;
        td.textContent = "No batch matches.";
        tr.append(td);
        body.append(tr);
      }
    } catch (e) { /* the list is a convenience; the batch view shows errors */ }
  }
  $("filter").addEventListener("submit", (ev) => { ev.preventDefault(); refreshRecent(); });
  $("filter-status").addEventListener("change", refreshRecent);
  let typing = null;
  $("filter-name").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refreshRecent, 300); });

  function route() {
    const m = /^#batch=([A-Za-z0-9_-]{1,128})$/.exec(location.hash);
    current = m ? m[1] : null;
    lastAnnounced = "";
    reasonFilter = "";
    insightAt = 0;
    verifyFor = null;
    clearVerification();
    if (current) { poll(); refreshRecent(); $("batch").scrollIntoView(); } else { show($("batch"), false); }
  }
  window.addEventListener("hashchange", route);
  route();
})();
