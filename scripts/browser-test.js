// browser-test.js: drives headless Chromium through `bulkassign serve`'s
// page as a supervisor would. Run by scripts/browser-test, which sets
// BASE, TOKEN, API_KEY, FILE, LEGACY, CRM, SHOTS, PW (playwright-core) and
// DOWNLOADS.
"use strict";

const fs = require("fs");
const path = require("path");
const { chromium } = require(process.env.PW);

const { BASE, TOKEN, API_KEY, FILE, LEGACY, CRM, SHOTS, DOWNLOADS } = process.env;

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.error("  ok: " + what);
}

function parseCSV(text) {
  const rows = [];
  let row = [], cell = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(cell); cell = ""; } else if (c === "\n") { row.push(cell); rows.push(row); row = []; cell = ""; } else if (c !== "\r") cell += c;
  }
  if (cell || row.length) { row.push(cell); rows.push(row); }
  const [head, ...rest] = rows;
  return rest.map((r) => Object.fromEntries(head.map((h, i) => [h, r[i]])));
}

// crmAgents reads a contact's agents from the CRM.
async function crmAgents(contact) {
  const res = await fetch(CRM + "/api/public/contact/" + contact + "/info", { headers: { "x-api-key": API_KEY } });
  if (!res.ok) throw new Error("CRM info of " + contact + ": " + res.status);
  const j = await res.json();
  return ((j.data || j).agents || []).map((a) => a.id).sort();
}

// wantCRM checks that the CRM holds, for every contact of the batch, the
// agents its succeeded rows give it, in line order, and nothing else.
async function wantCRM(succeeded, failed, what) {
  const want = {};
  for (const r of [...succeeded, ...failed]) if (r.aiContactId) want[r.aiContactId] = want[r.aiContactId] || [];
  for (const r of succeeded.sort((a, b) => a.line - b.line)) {
    if (r.removeExistingAgents === "true") want[r.aiContactId] = [r.teamMemberId];
    else if (!want[r.aiContactId].includes(r.teamMemberId)) want[r.aiContactId].push(r.teamMemberId);
  }
  for (const [contact, agents] of Object.entries(want)) {
    if (!/^[0-9a-f-]{36}$/.test(contact)) continue; // an invalid id: never sent
    const got = await crmAgents(contact);
    if (got.join(",") !== agents.sort().join(",")) throw new Error(`${what}: CRM has ${contact} -> [${got}], the reports say [${agents}]`);
  }
  check(true, `${what}: the CRM holds exactly what succeeded.csv says (${Object.keys(want).length} contacts)`);
}

async function download(page, link, name) {
  const [d] = await Promise.all([page.waitForEvent("download"), page.locator("#" + link).click()]);
  const saved = path.join(DOWNLOADS, name);
  await d.saveAs(saved);
  return fs.readFileSync(saved, "utf8");
}

async function main() {
  // The API answers a request without the token with a JSON 401.
  const anon = await fetch(BASE + "/api/v1/batches");
  check(anon.status === 401 && (await anon.json()).error, "API without the token: 401 with a JSON error");

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
    timeout: 30000,
  });
  const problems = [];
  const shot = async (page, name) => {
    await page.screenshot({ path: path.join(SHOTS, name), fullPage: true });
    check(true, "screenshot " + name);
  };
  try {
    const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 900 } });
    // Loopback only: any request elsewhere fails the test.
    await context.route(/^(?!http:\/\/127\.0\.0\.1[:/])/, (route) => {
      problems.push("request off loopback: " + route.request().url());
      return route.abort();
    });
    const page = await context.newPage();
    page.setDefaultTimeout(15000);
    page.on("pageerror", (e) => problems.push("page error: " + e.message));
    page.on("console", (m) => { if (m.type() === "error") problems.push("console error: " + m.text()); });

    // --- sign in ---------------------------------------------------------
    await page.goto(BASE + "/");
    check(new URL(page.url()).pathname === "/login", "the page without a session goes to /login");
    await page.getByLabel("Access token").fill("not-the-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").waitFor();
    check(/not right/.test(await page.getByRole("alert").textContent()), "a wrong token is refused with a message");
    await shot(page, "serve-login.png");
    problems.length = 0; // the 401 of the wrong token shows up as a console error
    await page.getByLabel("Access token").fill(TOKEN);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL(BASE + "/");
    check(/supervisor/.test(await page.locator(".who").textContent()), "signed in, as the token's name (supervisor)");

    // --- a legacy export: map its columns ----------------------------------
    await page.getByLabel(/^File/).setInputFiles(LEGACY);
    await page.getByLabel("Batch name (optional)").fill("legacy migration");
    await page.getByRole("button", { name: "Check file" }).click();
    await page.locator("#mapping").waitFor({ state: "visible" });
    check(await page.locator("#raw-rows tr").count() === 10 && /Contact Ref/.test(await page.locator("#raw-head").textContent()),
      "foreign headers: the page shows the headers and the first 10 rows");
    check(await page.getByLabel("Member email column").inputValue() === "Owner E-mail", "a header it knows (Owner E-mail) is chosen already");
    await page.getByLabel("Contact id column").selectOption("Contact Ref");
    await page.getByLabel("Replace flag column (optional)").selectOption("Replace Owner?");
    await page.getByRole("button", { name: "Preview" }).click();
    await page.locator("#mapped").waitFor({ state: "visible" });
    check(await page.locator("#mapped-rows tr").count() === 10 && await page.locator("#mapped-rows tr.bad").count() >= 1,
      "preview: the rows as they will be read, bad ones marked");
    await page.getByLabel("Save this mapping as").fill("Legacy CRM");
    await page.getByRole("button", { name: "Save mapping" }).click();
    await page.locator("#mapping-note", { hasText: "Saved as Legacy CRM" }).waitFor();
    const saved = await (await page.request.get(BASE + "/api/v1/mappings")).json();
    check(saved.mappings.length === 1 && saved.mappings[0].yaml.includes('aiContactId: Contact Ref'), "the mapping is saved, as a --map file");
    await shot(page, "serve-mapping.png");
    await page.getByRole("button", { name: "Check file with this mapping" }).click();
    await page.locator("#validation").waitFor({ state: "visible" });
    const legacyRows = await page.locator("#v-rows").textContent();
    const legacyInvalid = await page.locator("#v-invalid").textContent();
    check(legacyRows === "12" && Number(legacyInvalid) >= 3, `the mapped file checks: 12 rows, ${legacyInvalid} invalid (bad emails, unknown members, no contact)`);

    // --- run it against the flaky CRM ---------------------------------------
    await page.getByRole("button", { name: "Queue it" }).click();
    await page.locator("#batch").waitFor({ state: "visible" });
    await page.locator("#failure-rows tr").first().waitFor();
    await page.waitForFunction(() => Number(document.querySelector("#b-succeeded").textContent) >= 2, null, { timeout: 60000 });
    await page.locator("#rate-chart polyline").waitFor({ timeout: 60000 });
    await page.waitForTimeout(3500); // one more refresh of the table and charts
    const status = await page.locator("#batch-status").textContent();
    await shot(page, "serve-running.png");
    check(true, "the failed rows and the charts show while the batch is " + status);
    await page.locator("#batch-status", { hasText: /^done$/ }).waitFor({ timeout: 90000 });
    await page.waitForTimeout(500); // the last refresh of the table and charts
    const reasons = await page.locator("#reason-chart .reason").count();
    check(reasons >= 2, `the bar chart shows ${reasons} reasons`);
    const failedCount = Number(await page.locator("#b-failed").textContent()) + Number(await page.locator("#b-invalid").textContent());
    check(await page.locator("#failure-rows tr").count() === failedCount, `the table lists all ${failedCount} failed and invalid rows`);
    const first = await page.locator("#reason-chart .reason button").first().textContent();
    await page.getByLabel("Reason", { exact: true }).selectOption(first);
    await page.locator("#failures-note").waitFor();
    await page.waitForFunction((r) => [...document.querySelectorAll("#failure-rows tr td:nth-child(4)")].every((td) => td.textContent === r), first);
    check(true, "the table filters by reason (" + first + ")");
    await shot(page, "serve-errors.png");

    const succeeded = parseCSV(await download(page, "dl-succeeded", "legacy-succeeded.csv"));
    const failed = parseCSV(await download(page, "dl-failed", "legacy-failed.csv"));
    check(succeeded.length + failed.length === 12, `the reports account for every row (${succeeded.length} succeeded, ${failed.length} failed)`);
    check(failed.some((r) => /^5\d\d$/.test(r.httpStatus)) || failed.every((r) => r.status === "invalid"),
      "rows the flaky CRM refused three times are in failed.csv with their 5xx");
    await wantCRM(succeeded, failed, "legacy migration");
    const again = await download(page, "dl-failed", "legacy-failed-2.csv");
    check(parseCSV(again).length === failed.length, "a second download serves the same report");
    const legacyBatch = await (await page.request.get(BASE + "/api/v1/batches?name=legacy")).json();
    check(legacyBatch.batches[0].uploadedBy === "supervisor" && legacyBatch.batches[0].mapping === "Legacy CRM",
      "the batch records who uploaded it and the mapping used");

    // --- a file with the usual headers --------------------------------------
    await page.evaluate(() => { location.hash = ""; });
    await page.getByLabel(/^File/).setInputFiles(FILE);
    await page.getByLabel("Batch name (optional)").fill("browser test");
    await page.getByRole("button", { name: "Check file" }).click();
    await page.locator("#validation").waitFor({ state: "visible" });
    const rows = await page.locator("#v-rows").textContent();
    const invalid = await page.locator("#v-invalid").textContent();
    check(rows === "11" && invalid === "2", `usual headers go straight to the check: 11 rows, 2 invalid (got ${rows}, ${invalid})`);
    check(await page.locator("#v-invalid-rows tr").count() === 2, "the first invalid rows are listed");
    await page.getByRole("button", { name: "Queue it" }).click();
    await page.locator("#batch-status", { hasText: /^done$/ }).waitFor({ timeout: 90000 });
    check(await page.getByRole("progressbar").getAttribute("aria-valuenow") === "100", "the batch is done and the progress bar at 100%");
    const s2 = parseCSV(await download(page, "dl-succeeded", "succeeded.csv"));
    const f2 = parseCSV(await download(page, "dl-failed", "failed.csv"));
    check(s2.length + f2.length === 11 && f2.some((r) => r.httpStatus === "404"), "failed.csv has the 404 row and the invalid rows");
    await wantCRM(s2, f2, "browser test");

    // --- verify it against the CRM, then change a contact behind its back ----
    const contacts = new Set(s2.map((r) => r.aiContactId));
    await page.getByRole("button", { name: "Verify" }).click();
    await page.locator("#verify-status", { hasText: "No drift: " + contacts.size + " contacts match" }).waitFor({ timeout: 60000 });
    check(true, `Verify: no drift, ${contacts.size} contacts match`);
    const changed = s2[0].aiContactId;
    const put = await fetch(CRM + "/_control/contacts/" + changed + "/agents", {
      method: "PUT", headers: { "x-api-key": API_KEY }, body: JSON.stringify(["a0000000-0000-8000-8000-000000000005"]),
    });
    check(put.ok, "the simulator's control endpoint changes contact " + changed);
    await page.getByRole("button", { name: "Verify" }).click();
    await page.locator("#verify-status", { hasText: "1 of " + contacts.size + " contacts drifted" }).waitFor({ timeout: 60000 });
    check(await page.locator("#drift-rows tr").count() === 1 && (await page.locator("#drift-rows tr").textContent()).includes(changed),
      "Verify after the change: the drift table lists exactly that contact");
    await shot(page, "serve-verify.png");
    const drift = parseCSV(await download(page, "dl-drift", "drift.csv"));
    check(drift.length === 1 && drift[0].aiContactId === changed && drift[0].actual === "a0000000-0000-8000-8000-000000000005",
      "drift.csv has that contact, with its agent now");
    await page.getByRole("button", { name: "Retry failed rows" }).click();
    await page.locator("#batch-note", { hasText: /queued again|No row ran out of attempts/ }).waitFor();
    check(true, "retry failed rows answers");

    // --- the batch list and the schedules -----------------------------------
    await page.getByLabel("Name or id contains").fill("legacy");
    await page.locator("#recent tr", { hasText: "legacy migration" }).waitFor();
    await page.waitForFunction(() => document.querySelectorAll("#recent tr").length === 1);
    check(true, "the batch list filters by name");
    await page.getByLabel("Name or id contains").fill("");
    await page.locator("#recent tr", { hasText: "browser test" }).waitFor();
    await shot(page, "serve.png");
    await page.getByRole("link", { name: "Schedules" }).click();
    await page.locator("#schedules tr", { hasText: "nightly-rebalance" }).waitFor({ timeout: 30000 }).catch(async () => {
      await page.reload(); // the scheduler's first heartbeat may come after the first load
      await page.locator("#schedules tr", { hasText: "nightly-rebalance" }).waitFor({ timeout: 20000 });
    });
    check(/0 2 \* \* \*/.test(await page.locator("#schedules").textContent()), "the schedules page shows the entry and its cron");
    await shot(page, "serve-schedules.png");

    const html = await page.content();
    check(!html.includes(API_KEY), "the CRM API key is nowhere in the page");
    check(problems.length === 0, "no page errors, console errors or requests off loopback" + (problems.length ? ": " + problems.join("; ") : ""));

    // --- sign out: the old cookie is dead ------------------------------------
    const cookie = (await context.cookies()).find((c) => c.name === "bulkassign_session");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(/\/login/);
    const replay = await fetch(BASE + "/api/v1/batches", { headers: { Cookie: cookie.name + "=" + cookie.value } });
    check(replay.status === 401, "after sign out, the old cookie replayed is refused (401)");

    // --- guessing tokens gets throttled --------------------------------------
    let status429 = 0;
    for (let i = 0; i < 12 && !status429; i++) {
      const r = await fetch(BASE + "/api/v1/batches", { headers: { Authorization: "Bearer guess-" + i } });
      if (r.status === 429) status429 = i + 1;
    }
    check(status429 > 0, `wrong tokens are throttled (429 at attempt ${status429})`);
    await page.getByLabel("Access token").fill(TOKEN);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").waitFor();
    check(/Too many wrong tokens/.test(await page.getByRole("alert").textContent()), "while throttled even the right token is refused, with a message");
    await shot(page, "serve-throttled.png");
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error("browser-test.js: " + (e && e.stack || e));
  process.exit(1);
});
