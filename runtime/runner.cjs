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
// A runner started ahead (--warm-up) first writes the line "ready" there
// once it has warmed up, if its job has not come by then.
// What the code prints goes to stdout and stderr, which anchorage reads
// with a cap and keeps out of the result.
"use strict";

const fs = require("node:fs");
const net = require("node:net");
const dns = require("node:dns");
const path = require("node:path");
const Module = require("node:module");
const vm = require("node:vm");

const modules = path.join(__dirname, "node_modules");

/**
 * The V8 code cache of the runtime's large modules (Playwright's two
 * bundles, esbuild's API: megabytes that every run would otherwise parse
 * and compile again). anchorage builds it once per node at start with this
 * file in `--build-cache=DIR` mode, which runs none of a user's code, and
 * gives every run `--code-cache=DIR` read-only. V8 checks each cache
 * against the source and its own flags and ignores one that does not fit,
 * so a stale or missing cache costs time, never correctness.
 */
const CACHED_MIN_BYTES = 32 * 1024;
const option = (name) => {
  const found = process.argv.find((argument) => argument.startsWith(`--${name}=`));
  return found ? found.slice(name.length + 3) : null;
};
const buildCacheDir = option("build-cache");
const cacheDir = buildCacheDir || option("code-cache");
/** The scripts compiled through the cache, by cache file name. */
const cachedScripts = new Map();
/** How many modules came with a cache V8 took, and with one it refused. */
const codeCache = { used: 0, rejected: 0 };
if (cacheDir) {
  const compile = Module.prototype._compile;
  Module.prototype._compile = function compileWithCache(content, filename) {
    const relative = path.relative(modules, filename);
    if (content.length < CACHED_MIN_BYTES || relative.startsWith("..") || path.isAbsolute(relative)) {
      return compile.call(this, content, filename);
    }
    const name = relative.split(path.sep).join("__") + ".v8";
    let cachedData;
    if (!buildCacheDir) {
      try {
        cachedData = fs.readFileSync(path.join(cacheDir, name));
      } catch {
        // No cache for it: compiled as usual.
      }
    }
    const script = new vm.Script(Module.wrap(content), {
      filename,
      cachedData,
      importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    });
    cachedScripts.set(name, script);
    if (cachedData) {
      codeCache[script.cachedDataRejected ? "rejected" : "used"] += 1;
    }
    const wrapper = script.runInThisContext({ displayErrors: true });
    const localRequire = Module.createRequire(filename);
    return wrapper.call(this.exports, this.exports, localRequire, this, filename, path.dirname(filename));
  };
}

const { chromium } = require(path.join(modules, "playwright-core"));
const Anchorbrowser = require(path.join(modules, "anchorbrowser")).default;

/**
 * esbuild, loaded when first needed: only code that is not plain JavaScript
 * needs it, and its service process takes ≈ 40 ms to start. A warm runner
 * (and the cache build) starts it ahead, before any job.
 */
let esbuildModule;
function esbuild() {
  if (!esbuildModule) {
    esbuildModule = require(path.join(modules, "esbuild"));
    esbuildModule.transformSync("", { loader: "ts" });
  }
  return esbuildModule;
}
if (buildCacheDir) {
  esbuild();
}

/**
 * What became of this runner's warm-up, told with its result: "none" (a
 * runner started for its job), "done", or "cut short" (its job arrived
 * first: a runner taken from the pool just after it was started).
 */
let warmUpOutcome = "none";

/** The line a runner started ahead writes to fd 3 once warmed up. */
const READY = "ready\n";

/** How many times the warm-up drives the stand-in. */
const WARM_UP_ROUNDS = 8;
/** … and in a copy of the zygote made ahead of its run. */
const COPY_WARM_UP_ROUNDS = 2;

/**
 * A runner kept warm has loaded its modules, but V8 has not yet compiled
 * what a first CDP connection and its first calls run, which made up most
 * of a warm run's overhead. So before its job (and before the code cache is
 * written), the runner drives Playwright against a stand-in browser of
 * its own on loopback, a few rounds (V8 optimises what it has run many
 * times): it connects, navigates and evaluates, the stand-in
 * giving the few answers and events those need (one page, one frame, its
 * worlds). Best effort: whatever the stand-in does not satisfy is left
 * after a moment.
 */
async function warmUp(jobRead, rounds = WARM_UP_ROUNDS) {
  const { WebSocketServer } = require(path.join(modules, "ws"));
  const standIn = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve, reject) => {
    standIn.once("listening", resolve);
    standIn.once("error", reject);
  });
  standIn.on("connection", (socket) => {
    const send = (message) => socket.send(JSON.stringify(message));
    const frame = {
      id: "T", loaderId: "L0", url: "about:blank", domainAndRegistry: "", securityOrigin: "://",
      mimeType: "text/html", secureContextType: "InsecureScheme",
      crossOriginIsolatedContextType: "NotIsolated", gatedAPIFeatures: [],
    };
    let nextContext = 1;
    let utilityWorld = null;
    let handles = 0;
    const worlds = (sessionId) => {
      send({ sessionId, method: "Runtime.executionContextCreated", params: { context: { id: nextContext, origin: "://", name: "", uniqueId: `U${nextContext}`, auxData: { isDefault: true, type: "default", frameId: "T" } } } });
      nextContext += 1;
      if (utilityWorld) {
        send({ sessionId, method: "Runtime.executionContextCreated", params: { context: { id: nextContext, origin: "://", name: utilityWorld, uniqueId: `U${nextContext}`, auxData: { isDefault: false, type: "isolated", frameId: "T" } } } });
        nextContext += 1;
      }
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
        worlds(sessionId);
      } else if (page && (method === "Page.createIsolatedWorld" || (method === "Page.addScriptToEvaluateOnNewDocument" && params.worldName))) {
        const fresh = utilityWorld === null && Boolean(params.worldName);
        utilityWorld = utilityWorld || params.worldName || null;
        reply(method === "Page.createIsolatedWorld" ? { executionContextId: nextContext } : { identifier: "1" });
        if (fresh) {
          send({ sessionId, method: "Runtime.executionContextCreated", params: { context: { id: nextContext, origin: "://", name: utilityWorld, uniqueId: `U${nextContext}`, auxData: { isDefault: false, type: "isolated", frameId: "T" } } } });
          nextContext += 1;
        }
      } else if (page && method === "Page.navigate") {
        const loaderId = `L${nextContext}`;
        reply({ frameId: "T", loaderId });
        Object.assign(frame, { loaderId, url: params.url });
        send({ sessionId, method: "Runtime.executionContextsCleared", params: {} });
        send({ sessionId, method: "Page.frameNavigated", params: { frame, type: "Navigation" } });
        worlds(sessionId);
        for (const name of ["init", "DOMContentLoaded", "load"]) {
          send({ sessionId, method: "Page.lifecycleEvent", params: { frameId: "T", loaderId, name, timestamp: 1 } });
        }
        send({ sessionId, method: "Page.domContentEventFired", params: { timestamp: 1 } });
        send({ sessionId, method: "Page.loadEventFired", params: { timestamp: 1 } });
      } else if (page && method === "Runtime.evaluate") {
        handles += 1;
        reply({ result: { type: "object", className: "Object", objectId: `H${handles}` } });
      } else if (page && method === "Runtime.callFunctionOn") {
        reply({ result: { type: "number", value: 2, description: "2" } });
      } else {
        reply({});
      }
    });
  });
  const port = standIn.address().port;
  // A job that arrives meanwhile ends the warm-up at once: the stand-in's
  // connections are cut (what the warm-up awaits fails) and nothing waits
  // for a clean close.
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    if (warmUpOutcome === "running") warmUpOutcome = "cut short";
    for (const client of standIn.clients) client.terminate();
    standIn.close();
  };
  jobRead?.then(stop, stop);
  let browser;
  try {
    // A job already in the pipe (read in the turn just given to it) goes
    // first; otherwise esbuild's service is started ahead too.
    await new Promise((resolve) => setImmediate(resolve));
    if (!stopped && !buildCacheDir && !inZygote) {
      esbuild();
    }
    // Several rounds: V8 optimises what it has seen run many times.
    for (let round = 0; round < rounds && !stopped; round++) {
      browser = await chromium.connectOverCDP(`ws://127.0.0.1:${port}/`, { timeout: 3000 });
      const context = browser.contexts()[0];
      const page = context.pages()[0] || (await context.newPage());
      await page.goto("http://stand-in.invalid/", { timeout: 2000 });
      for (let call = 0; call < 20 && !stopped; call++) {
        await page.evaluate((n) => n * 2, call);
      }
      if (round < rounds - 1) {
        await browser.close();
        browser = undefined;
      }
    }
    if (!stopped && warmUpOutcome === "running") warmUpOutcome = "done";
  } finally {
    if (browser && !stopped) {
      await Promise.race([browser.close().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 500))]);
    }
    stop();
  }
}

/** A full garbage collection (V8's `gc`, made reachable for this call only). */
function collectGarbage() {
  try {
    require("node:v8").setFlagsFromString("--expose-gc");
    vm.runInNewContext("gc")();
  } catch {
    // Not collecting is only slower.
  }
}

/** Writes the code cache of every module compiled through it (build mode). */
function writeCodeCache() {
  fs.mkdirSync(buildCacheDir, { recursive: true });
  for (const [name, script] of cachedScripts) {
    const target = path.join(buildCacheDir, name);
    const partial = `${target}.${process.pid}.partial`;
    fs.writeFileSync(partial, script.createCachedData(), { mode: 0o644 });
    fs.renameSync(partial, target);
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

/**
 * The session's CDP URL, reached straight through anchorage's socket when
 * the run has one: every CDP message of the run then skips the relay (a
 * hop through this process's own event loop each way). The code's own
 * connections use the public URL and the relay as before.
 */
function directCdpUrl(job) {
  if (!job.socket) {
    return job.cdpUrl;
  }
  const url = new URL(job.cdpUrl);
  return `ws+unix://${job.socket}:${url.pathname}${url.search}`;
}

/**
 * Compiles TypeScript (or JavaScript) to a CommonJS module and loads it.
 * Source that is already plain CommonJS JavaScript (most snippets) needs
 * nothing stripped and is loaded as it is, which spares esbuild's round
 * trip; anything else (types, `import`, `export`) goes through esbuild.
 */
function load(source, filename) {
  let code = source;
  try {
    new vm.Script(source, { filename });
  } catch {
    code = esbuild().transformSync(source, {
      loader: "ts",
      format: "cjs",
      target: "node20",
      sourcefile: filename,
    }).code;
  }
  const loaded = new Module(filename, null);
  loaded.filename = filename;
  // The code's imports (playwright-core, anchorbrowser) come from the runtime.
  loaded.paths = [modules];
  loaded._compile(code, filename);
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

/** Whether this process is the zygote (not one of its copies). */
let inZygote = false;

/**
 * The zygote (`--zygote`, see `zygote.cc`): loads and warms up the runtime
 * once, then forks a copy of itself for each run that anchorage asks for on
 * the control socket (fd 3). Only the copies come back from `serve`, each
 * already in its run's place (namespaces, user, limits, pipes at 0 to 3),
 * and goes on as a runner whose warm-up is done. The zygote never runs a
 * user's code; what a copy does stays in the copy.
 */
async function zygote() {
  const addon = require(path.join(__dirname, "zygote.node"));
  inZygote = true;
  await Promise.race([warmUp().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
  collectGarbage();
  const { pid, ahead } = addon.serve(3);
  inZygote = false;
  // In the copy. Node kept the zygote's pid, and V8 the zygote's state of
  // Math.random (every copy would draw the same numbers): both are made the
  // copy's own. OpenSSL and libuv's thread pool see the fork themselves.
  Object.defineProperty(process, "pid", { value: pid, enumerable: true, configurable: true, writable: false });
  Math.random = freshRandom();
  // Node's own exit would wait for helper threads a copy does not have.
  process.on("exit", (code) => addon.exit(code ?? 0));
  warmUpOutcome = "forked";
  return ahead;
}

/**
 * Math.random for a forked copy: doubles made of the OS's random bytes,
 * drawn 8 KiB at a time.
 */
function freshRandom() {
  const { randomFillSync } = require("node:crypto");
  const words = new Uint32Array(2048);
  let next = words.length;
  return function random() {
    if (next + 2 > words.length) {
      randomFillSync(words);
      next = 0;
    }
    // 53 random bits: 21 from one word, 32 from the next.
    const high = words[next++] >>> 11;
    const low = words[next++];
    return (high * 2 ** 32 + low) / 2 ** 53;
  };
}

async function main() {
  // A copy of the zygote made ahead of its run warms up like a runner
  // started ahead, for fewer rounds (its code is compiled already: the
  // rounds write the pages its job would otherwise copy from the zygote).
  const copyAhead = process.argv.includes("--zygote") && (await zygote());
  // Started ahead (warm), a runner has the time; started for a job at once,
  // the job is waiting and does not wait for this. The job's bytes wait in
  // the pipe meanwhile.
  if (buildCacheDir) {
    // Build mode: no job; the cache is written after the warm-up so that
    // it holds what a connection and its first calls compiled too.
    let warmed = "warmed up";
    await Promise.race([
      warmUp().catch((error) => {
        warmed = `warm-up failed: ${messageOf(error)}`;
      }),
      new Promise((resolve) => setTimeout(resolve, 5000).unref()),
    ]);
    writeCodeCache();
    answered = true;
    process.stdout.write(`code cache of ${cachedScripts.size} modules written (${warmed})\n`);
    return;
  }
  // The job is read from the start, so that one given to a runner still
  // warming up (taken from the pool right after it was started) does not
  // wait for the warm-up: its arrival ends it.
  let jobWaiting = false;
  const jobRead = readJob();
  jobRead.then(
    () => (jobWaiting = true),
    () => (jobWaiting = true),
  );
  if (process.argv.includes("--warm-up") || copyAhead) {
    warmUpOutcome = copyAhead ? "forked" : "running";
    await Promise.race([
      warmUp(jobRead, copyAhead ? COPY_WARM_UP_ROUNDS : WARM_UP_ROUNDS).catch(() => {}),
      jobRead.catch(() => {}),
      new Promise((resolve) => setTimeout(resolve, 5000).unref()),
    ]);
    // What the warm-up left is collected now, not in the middle of the job
    // (unless the job is here: then it goes first); then anchorage is told
    // that this runner is ready, before any job (see READY).
    if (!jobWaiting) {
      // (Not in a copy: a full collection there would write, and so copy,
      // every page it shares with the zygote.)
      if (!copyAhead) collectGarbage();
      fs.writeSync(3, READY);
    }
  }
  let job;
  try {
    job = await jobRead;
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
    // Connecting is most of a short run's time: code that never names the
    // browser objects (it only uses anchorClient, say) is not connected.
    // The connection is started first and compiling happens while it
    // waits on the network.
    const named = /\b(page|browser|context)\b/.test(job.code);
    const connecting = job.cdpUrl && named ? chromium.connectOverCDP(directCdpUrl(job)) : null;
    // A failed connection is reported where it is awaited, below.
    connecting?.catch(() => {});
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
    if (connecting) {
      browser = await connecting;
      context = browser.contexts()[0] || (await browser.newContext());
      page = context.pages()[0] || (await context.newPage());
    }
    mark("connected");
    const value = await run({ page, browser, context, sessionId: job.sessionId, anchorClient });
    mark("ran");
    answer({ ok: true, output: outputOf(value), timings, codeCache, warmUp: warmUpOutcome });
  } catch (error) {
    answer({ ok: false, error: messageOf(error), timings, codeCache, warmUp: warmUpOutcome });
  }
}

// Node ends when nothing is left to wait for: code whose promise can no
// longer settle (awaiting a promise nobody resolves) ends here.
let answered = false;
process.on("beforeExit", () => {
  if (!answered) {
    answer({
      ok: false,
      error: "the code never finished: it awaits a promise that nothing is left to settle",
      timings,
      codeCache,
      warmUp: warmUpOutcome,
    });
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
