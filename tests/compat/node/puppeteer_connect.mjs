// Connects Puppeteer to an anchorage session by its cdp_url, opens the page
// given, and prints its title as JSON. Used by test_clients.py.
import puppeteer from "puppeteer-core";

const [cdpUrl, pageUrl] = process.argv.slice(2);
const browser = await puppeteer.connect({ browserWSEndpoint: cdpUrl, defaultViewport: null });
const page = await browser.newPage();
await page.goto(pageUrl, { waitUntil: "load" });
const title = await page.title();
await page.close();
await browser.disconnect();
console.log(JSON.stringify({ title }));
