// Connects Puppeteer to an anchorage session by its cdp_url, tells the
// browser to save downloads into a folder of its own (as a Puppeteer user
// does), clicks the actions page's download link itself, and prints as
// JSON what landed in that folder. Used by test_actions.py.
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

const [cdpUrl, pageUrl] = process.argv.slice(2);
const folder = mkdtempSync(join(tmpdir(), "puppeteer-downloads-"));
const browser = await puppeteer.connect({ browserWSEndpoint: cdpUrl, defaultViewport: null });
const cdp = await browser.target().createCDPSession();
await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: folder, eventsEnabled: true });
const page = (await browser.pages())[0];
await page.goto(pageUrl, { waitUntil: "load" });
await page.click("#dl");
const deadline = Date.now() + 10000;
let names = [];
while (Date.now() < deadline) {
  names = readdirSync(folder).filter((name) => !name.endsWith(".crdownload"));
  if (names.length > 0) break;
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const content = names.length > 0 ? readFileSync(join(folder, names[0]), "utf8") : null;
await browser.disconnect();
console.log(JSON.stringify({ names, content }));
