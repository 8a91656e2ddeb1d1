// The ad blocking extension's service worker (written into the extension by
// `adblock::extension::write_extension`). The server's connection attaches
// to it and adds the binding `__anchorage_cosmetics` (a page's report,
// answered by `__anchorage_answer`). Nothing here is reachable from a page.
"use strict";

// Whether the server wants this browser's elements hidden (set by
// `__anchorage_set`).
let on = false;
// Reports sent to the server, by number, to the content script waiting.
const waiting = new Map();
let last = 0;

// Chromium starts the worker of an extension a profile already had (a
// saved profile's) only for an event it listens to: this one comes at every
// start of the browser, so the server finds the worker to attach to. A new
// profile starts it anyway (the extension is installed there).
chrome.runtime.onStartup.addListener(() => {});

// A content script's report: passed on to the server, whose answer (CSS, or
// null for "stop reporting") goes back as the reply.
chrome.runtime.onMessage.addListener((message, sender, reply) => {
  const ask = globalThis.__anchorage_cosmetics;
  if (!on || typeof ask !== "function" || typeof message !== "string" || !sender.tab) {
    reply(null);
    return false;
  }
  last += 1;
  waiting.set(last, reply);
  ask(last + " " + message);
  return true;
});

globalThis.__anchorage_answer = (number, css) => {
  const reply = waiting.get(number);
  if (reply) {
    waiting.delete(number);
    reply(css);
  }
};

globalThis.__anchorage_set = (value) => {
  on = value === true;
  if (!on) {
    for (const reply of waiting.values()) reply(null);
    waiting.clear();
  }
};
