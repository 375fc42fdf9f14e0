// browser-test.js: drives headless Chromium through `bulkassign serve`'s
// page as a supervisor would. Run by scripts/browser-test, which sets
// BASE, TOKEN, API_KEY, FILE, SHOT, PW (playwright-core) and DOWNLOADS.
"use strict";

const fs = require("fs");
const path = require("path");
const { chromium } = require(process.env.PW);

const { BASE, TOKEN, API_KEY, FILE, SHOT, DOWNLOADS } = process.env;

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.error("  ok: " + what);
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

    await page.goto(BASE + "/");
    check(new URL(page.url()).pathname === "/login", "the page without a session goes to /login");
    await page.getByLabel("Access token").fill("not-the-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").waitFor();
    check(/not right/.test(await page.getByRole("alert").textContent()), "a wrong token is refused with a message");
    problems.length = 0; // the 401 of the wrong token shows up as a console error
    await page.getByLabel("Access token").fill(TOKEN);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL(BASE + "/");
    check(true, "signed in with the token");

    await page.getByLabel(/^File/).setInputFiles(FILE);
    await page.getByLabel("Batch name (optional)").fill("browser test");
    await page.getByRole("button", { name: "Check file" }).click();
    await page.locator("#validation").waitFor({ state: "visible" });
    const rows = await page.locator("#v-rows").textContent();
    const invalid = await page.locator("#v-invalid").textContent();
    check(rows === "11" && invalid === "2", `validation shows 11 rows, 2 invalid (got ${rows}, ${invalid})`);
    check(await page.locator("#v-invalid-rows tr").count() === 2, "the first invalid rows are listed");
    const before = await (await page.request.get(BASE + "/api/v1/batches")).json();
    check(before.batches.length === 0, "checking the file queued nothing");

    await page.getByRole("button", { name: "Queue it" }).click();
    await page.locator("#batch").waitFor({ state: "visible" });
    await page.locator("#batch-status", { hasText: /^done$/ }).waitFor({ timeout: 60000 });
    const bar = page.getByRole("progressbar");
    check(await bar.getAttribute("aria-valuenow") === "100", "the batch is done and the progress bar at 100%");
    const counts = await page.locator("#b-succeeded, #b-failed, #b-invalid").allTextContents();
    check(counts.join(",") === "8,1,2", `counters succeeded 8, failed 1, invalid 2 (got ${counts})`);

    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("link", { name: "failed.csv" }).click(),
    ]);
    const saved = path.join(DOWNLOADS, "failed.csv");
    await download.saveAs(saved);
    const csv = fs.readFileSync(saved, "utf8");
    check(csv.startsWith("line,aiContactId,teamMemberId") && csv.trim().split("\n").length === 4 && /404/.test(csv),
      "failed.csv downloads with the 404 row and the 2 invalid rows");

    await page.getByRole("button", { name: "Retry failed rows" }).click();
    await page.locator("#batch-note", { hasText: "No row ran out of attempts" }).waitFor();
    check(true, "retry failed rows explains that a 404 is not retried");

    await page.locator("#recent tr", { hasText: "browser test" }).waitFor();
    await page.screenshot({ path: SHOT, fullPage: true });
    check(true, "screenshot saved to " + SHOT);

    const html = await page.content();
    check(!html.includes(API_KEY) && !csv.includes(API_KEY), "the CRM API key is nowhere in the page or the download");
    check(problems.length === 0, "no page errors, console errors or requests off loopback" + (problems.length ? ": " + problems.join("; ") : ""));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error("browser-test.js: " + (e && e.stack || e));
  process.exit(1);
});
