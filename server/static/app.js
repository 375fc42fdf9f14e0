// bulkassign serve: the page's behaviour. Plain JavaScript, no build step,
// no third-party code: upload → check → queue → follow the batch.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const api = "/api/v1/batches";
  let pending = null; // the checked file, waiting for "Queue it"
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
      throw err;
    }
    return data;
  }

  function form(dryRun) {
    const fd = new FormData();
    fd.append("name", $("name").value);
    fd.append("dryRun", dryRun ? "true" : "false");
    fd.append("recordPrevious", $("record-previous").checked ? "true" : "false");
    fd.append("file", pending); // last: the server streams it
    return fd;
  }

  $("upload-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fail($("upload-error"), "");
    show($("validation"), false);
    const f = $("file").files[0];
    if (!f) { fail($("upload-error"), "Choose a file first."); return; }
    pending = f;
    $("check").disabled = true;
    $("check").textContent = "Checking…";
    try {
      const r = await call("POST", api + "?dryRun=true", form(true));
      showValidation(r.summary, r.invalidRows);
    } catch (e) {
      fail($("upload-error"), "The file cannot be used: " + e.message);
    } finally {
      $("check").disabled = false;
      $("check").textContent = "Check file";
    }
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

  $("confirm").addEventListener("click", async () => {
    if (!pending) return;
    $("confirm").disabled = true;
    $("confirm").textContent = "Queueing…";
    try {
      const r = await call("POST", api, form(false));
      show($("validation"), false);
      $("upload-form").reset();
      pending = null;
      location.hash = "batch=" + r.batchId;
    } catch (e) {
      fail($("upload-error"), "Not queued: " + e.message);
    } finally {
      $("confirm").disabled = false;
      $("confirm").textContent = "Queue it";
    }
  });

  $("again").addEventListener("click", () => {
    show($("validation"), false);
    pending = null;
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
    show($("batch"), true);
    return finished;
  }

  async function poll() {
    clearTimeout(timer);
    if (!current) return;
    const id = current;
    try {
      const b = await call("GET", api + "/" + encodeURIComponent(id));
      if (id !== current) return;
      fail($("batch-error"), "");
      if (showBatch(b)) { refreshRecent(); return; }
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
  window.addEventListener("hashchange", () => { $("batch-note").textContent = ""; });
  $("cancel").addEventListener("click", () => act("cancel", "Cancel this batch for good? Rows not yet sent will never be sent."));

  async function refreshRecent() {
    try {
      const r = await call("GET", api + "?limit=20");
      const body = $("recent");
      body.replaceChildren();
      for (const b of r.batches) {
        const tr = document.createElement("tr");
        const a = document.createElement("a");
        a.href = "#batch=" + b.batchId;
        a.textContent = b.batchId;
        const cells = [a, b.name, b.status, b.done + "/" + b.rows, b.succeeded, b.failed, b.invalid,
          new Date(b.createdAt).toLocaleString()];
        for (const c of cells) {
          const td = document.createElement("td");
          if (c instanceof Node) td.append(c); else td.textContent = c;
          tr.append(td);
        }
        body.append(tr);
      }
    } catch (e) { /* the list is a convenience; the batch view shows errors */ }
  }

  function route() {
    const m = /^#batch=([A-Za-z0-9_-]{1,128})$/.exec(location.hash);
    current = m ? m[1] : null;
    lastAnnounced = "";
    if (current) { poll(); refreshRecent(); $("batch").scrollIntoView(); } else { show($("batch"), false); }
  }
  window.addEventListener("hashchange", route);
  route();
})();
