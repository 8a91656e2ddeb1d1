// One run of a user's code beside a browser session (execute_code, or a
// code task). anchorage starts this file in a sandbox of its own for each
// run: as a user id of its own, in a network namespace whose only way out
// is anchorage's socket, with private temp dirs and resource limits. The
// sandbox is anchorage's job; this file only runs the code.
//
// Protocol: the modules load first (a runtime kept warm has done that
// already), then one job is read from stdin as JSON:
//   { kind: "snippet" | "task", code, sessionId, cdpUrl, apiKey, origin,
//     socket, inputs }
// and the result is written to fd 3 as one JSON line:
//   { ok: true, output? } or { ok: false, error }.
// What the code prints goes to stdout and stderr, which anchorage reads
// with a cap and keeps out of the result.
"use strict";

const fs = require("node:fs");
const net = require("node:net");
const dns = require("node:dns");
const path = require("node:path");
const Module = require("node:module");

const modules = path.join(__dirname, "node_modules");
const esbuild = require(path.join(modules, "esbuild"));
const { chromium } = require(path.join(modules, "playwright-core"));
const Anchorbrowser = require(path.join(modules, "anchorbrowser")).default;

// esbuild's service process starts on first use: start it now, before a job.
esbuild.transformSync("", { loader: "ts" });

/**
 * A runner kept warm has loaded its modules, but V8 has not yet compiled
 * what a first CDP connection runs, which made up most of a warm run's
 * overhead. So before its job, the runner connects Playwright once to a
 * stand-in browser of its own on loopback (a handful of CDP answers: one
 * page, one frame, one context). Best effort: a stand-in Playwright does
 * not accept is left after a moment.
 */
async function warmUp() {
  const { WebSocketServer } = require(path.join(modules, "ws"));
  const standIn = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve, reject) => {
    standIn.once("listening", resolve);
    standIn.once("error", reject);
  });
  standIn.on("connection", (socket) => {
    const send = (message) => socket.send(JSON.stringify(message));
    const frame = {
      id: "F", loaderId: "L", url: "about:blank", domainAndRegistry: "", securityOrigin: "://",
      mimeType: "text/html", secureContextType: "InsecureScheme",
      crossOriginIsolatedContextType: "NotIsolated", gatedAPIFeatures: [],
    };
    socket.on("message", (data) => {
      let message;
      try {
        message = JSON.parse(String(data));
      } catch {
        return;
      }
      const { id, method, sessionId, params = {} } = message;
      const reply = (result) => send({ id, sessionId, result });
      const page = sessionId === "S";
      if (method === "Browser.getVersion") {
        reply({ protocolVersion: "1.3", product: "Chrome/140.0.0.0", revision: "", userAgent: "Chrome/140.0.0.0", jsVersion: "14" });
      } else if (method === "Target.setAutoAttach" && !sessionId) {
        reply({});
        send({
          method: "Target.attachedToTarget",
          params: {
            sessionId: "S", waitingForDebugger: false,
            targetInfo: { targetId: "T", type: "page", title: "", url: "about:blank", attached: true, canAccessOpener: false, browserContextId: "C" },
          },
        });
      } else if (method === "Target.getTargetInfo" && !sessionId) {
        reply({ targetInfo: { targetId: "B", type: "browser", title: "", url: "", attached: true, canAccessOpener: false } });
      } else if (method === "Target.getBrowserContexts") {
        reply({ browserContextIds: [] });
      } else if (page && method === "Page.getFrameTree") {
        reply({ frameTree: { frame, childFrames: [] } });
      } else if (page && method === "Runtime.enable") {
        reply({});
        send({ sessionId, method: "Runtime.executionContextCreated", params: { context: { id: 1, origin: "://", name: "", uniqueId: "U1", auxData: { isDefault: true, type: "default", frameId: "F" } } } });
      } else if (page && method === "Page.addScriptToEvaluateOnNewDocument" && params.worldName) {
        reply({ identifier: "1" });
        send({ sessionId, method: "Runtime.executionContextCreated", params: { context: { id: 2, origin: "://", name: params.worldName, uniqueId: "U2", auxData: { isDefault: false, type: "isolated", frameId: "F" } } } });
      } else if (page && method === "Page.createIsolatedWorld") {
        reply({ executionContextId: 2 });
        send({ sessionId, method: "Runtime.executionContextCreated", params: { context: { id: 2, origin: "://", name: params.worldName || "", uniqueId: "U2", auxData: { isDefault: false, type: "isolated", frameId: "F" } } } });
      } else {
        reply({});
      }
    });
  });
  const port = standIn.address().port;
  let browser;
  try {
    browser = await chromium.connectOverCDP(`ws://127.0.0.1:${port}/`, { timeout: 3000 });
  } finally {
    const closing = browser ? browser.close().catch(() => {}) : Promise.resolve();
    await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 500))]);
    for (const client of standIn.clients) client.terminate();
    standIn.close();
  }
}

/** The lines of the snippet's wrapper before the user's first line. */
const SNIPPET_PREFIX = "module.exports = async function snippet({ page, browser, context, sessionId, anchorClient }) {\n";

function answer(result) {
  answered = true;
  // fd 3 is the result pipe; writeSync so that nothing is lost at exit.
  fs.writeSync(3, JSON.stringify(result) + "\n");
}

function messageOf(error) {
  if (error instanceof Error) {
    return error.stack || `${error.name}: ${error.message}`;
  }
  return String(error);
}

async function readJob() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

/**
 * Inside the run's network namespace, anchorage's public address is served
 * by a relay on loopback that passes each connection to anchorage's socket,
 * and the public host name resolves to loopback. So the URLs the API gives
 * (cdp_url, the SDK's base URL) work unchanged.
 */
async function relayTo(job) {
  const origin = new URL(job.origin);
  const port = Number(origin.port || (origin.protocol === "https:" ? 443 : 80));
  const server = net.createServer((inbound) => {
    const outbound = net.connect(job.socket);
    // CDP is many small messages both ways: no Nagle delay on loopback.
    inbound.setNoDelay(true);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    const close = () => {
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on("error", close);
    outbound.on("error", close);
    inbound.on("close", close);
    outbound.on("close", close);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  server.unref();
  const host = origin.hostname.replace(/^\[|\]$/g, "");
  const lookup = dns.lookup;
  dns.lookup = function (name, options, callback) {
    if (name === host) {
      const cb = typeof options === "function" ? options : callback;
      const all = typeof options === "object" && options !== null && options.all;
      return process.nextTick(() =>
        all ? cb(null, [{ address: "127.0.0.1", family: 4 }]) : cb(null, "127.0.0.1", 4),
      );
    }
    return lookup.call(dns, name, options, callback);
  };
  return `http://127.0.0.1:${port}`;
}

/** Compiles TypeScript (or JavaScript) to a CommonJS module and loads it. */
function load(source, filename) {
  const compiled = esbuild.transformSync(source, {
    loader: "ts",
    format: "cjs",
    target: "node20",
    sourcefile: filename,
  });
  const loaded = new Module(filename, null);
  loaded.filename = filename;
  // The code's imports (playwright-core, anchorbrowser) come from the runtime.
  loaded.paths = [modules];
  loaded._compile(compiled.code, filename);
  return loaded.exports;
}

function outputOf(value) {
  if (value === undefined) {
    return undefined;
  }
  const text = JSON.stringify(value);
  return text === undefined ? undefined : text;
}

/** Milliseconds since the job arrived, by phase (logged by the server). */
const timings = {};
let jobArrived = 0;
const mark = (phase) => {
  timings[phase] = Math.round((performance.now() - jobArrived) * 10) / 10;
};

async function main() {
  // Started ahead (warm), a runner has the time; started for a job at once,
  // the job is waiting and does not wait for this. The job's bytes wait in
  // the pipe meanwhile.
  if (process.argv.includes("--warm-up")) {
    await Promise.race([warmUp().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
  }
  let job;
  try {
    job = await readJob();
    jobArrived = performance.now();
  } catch (error) {
    answer({ ok: false, error: `the job could not be read: ${messageOf(error)}` });
    return;
  }
  for (const [name, value] of Object.entries(job.inputs || {})) {
    process.env[name] = String(value);
  }
  let browser;
  try {
    const baseURL = job.socket ? await relayTo(job) : job.origin;
    mark("relay");
    process.env.ANCHORBROWSER_BASE_URL = baseURL;
    process.env.ANCHORBROWSER_API_KEY = job.apiKey;
    process.env.ANCHOR_API_KEY = job.apiKey;
    if (job.sessionId) {
      process.env.ANCHOR_SESSION_ID = job.sessionId;
    }
    const anchorClient = new Anchorbrowser({ apiKey: job.apiKey, baseURL });
    let run;
    if (job.kind === "snippet") {
      run = load(SNIPPET_PREFIX + job.code + "\n};\n", "snippet.ts");
    } else {
      const exported = load(job.code, "task.ts");
      run = typeof exported === "function" ? exported : exported && exported.default;
      if (typeof run !== "function") {
        throw new Error("the task's code has no default export that is a function (export default async function () { ... })");
      }
    }
    mark("compiled");
    let page;
    let context;
    // Connecting is most of a short run's time: code that never names the
    // browser objects (it only uses anchorClient, say) is not connected.
    const named = /\b(page|browser|context)\b/.test(job.code);
    if (job.cdpUrl && named) {
      browser = await chromium.connectOverCDP(job.cdpUrl);
      context = browser.contexts()[0] || (await browser.newContext());
      page = context.pages()[0] || (await context.newPage());
    }
    mark("connected");
    const value = await run({ page, browser, context, sessionId: job.sessionId, anchorClient });
    mark("ran");
    answer({ ok: true, output: outputOf(value), timings });
  } catch (error) {
    answer({ ok: false, error: messageOf(error), timings });
  }
}

// Node ends when nothing is left to wait for: code whose promise can no
// longer settle (awaiting a promise nobody resolves) ends here.
let answered = false;
process.on("beforeExit", () => {
  if (!answered) {
    answer({ ok: false, error: "the code never finished: it awaits a promise that nothing is left to settle", timings });
  }
});

main().then(
  () => process.exit(0),
  (error) => {
    try {
      answer({ ok: false, error: messageOf(error) });
    } finally {
      process.exit(1);
    }
  },
);
