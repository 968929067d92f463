// Drives the service's /docs page in headless Chromium: the page loads with no internet, lists
// the customer operations, and shows the PATCH operation's policy fields.
// usage: node docs.mjs http://127.0.0.1:PORT   (exit 0 = pass)
import { chromium } from "playwright-core";

const base = process.argv[2];
if (!base) {
  console.error("usage: node docs.mjs BASE_URL");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const failures = [];
try {
  const page = await browser.newPage();
  // Any request that leaves the service (a CDN, say) fails the test: the page must work offline.
  const external = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(base)) external.push(r.url());
  });
  const response = await page.goto(`${base}/docs`, { waitUntil: "networkidle" });
  if (response.status() !== 200) failures.push(`GET /docs answered ${response.status()}`);
  await page.waitForSelector(".opblock", { timeout: 20000 });
  const operations = await page.$$eval(".opblock-summary", (els) =>
    els.map((e) => e.textContent.replace(/\s+/g, " ").trim()));
  for (const [method, path] of [
    ["POST", "/v1/customers"], ["GET", "/v1/customers"], ["GET", "/v1/customers/{id}"],
    ["PATCH", "/v1/customers/{id}"], ["DELETE", "/v1/customers/{id}"],
    ["POST", "/v1/customers/{id}/activate"],
  ]) {
    if (!operations.some((o) => o.startsWith(method) && o.includes(path))) {
      failures.push(`operation ${method} ${path} not listed (saw: ${operations.join(" | ")})`);
    }
  }
  // Open the PATCH operation and look for the policy fields in its request body.
  await page.click(".opblock-patch .opblock-summary");
  await page.waitForSelector(".opblock-patch .opblock-body", { timeout: 10000 });
  // The request body's "Example Value" shows the whole PATCH body, nested policy included.
  const exampleTab = await page.$(".opblock-patch .opblock-section-request-body button[data-name='example']");
  if (exampleTab) await exampleTab.click();
  await page.waitForSelector(".opblock-patch .opblock-section-request-body .highlight-code, .opblock-patch .opblock-section-request-body .body-param__example", { timeout: 10000 });
  const text = (await page.textContent(".opblock-patch .opblock-section-request-body")) || "";
  for (const field of ["policy", "limits", "perDay", "requireIntent", "allowedMccs", "cooldownMinutes"]) {
    if (!text.includes(field)) failures.push(`PATCH operation does not show ${field}`);
  }
  if (external.length) failures.push(`requests left the service: ${external.join(", ")}`);
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("docs page ok");
