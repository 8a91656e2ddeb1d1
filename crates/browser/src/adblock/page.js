// The ad blocking extension's content script: runs at the start of every
// http(s) document and frame, in the extension's isolated world (out of the
// page's reach). It reports the document's URL, then the classes and ids it
// meets (each once, as they appear), to the extension's worker, which asks
// the server; the answers are CSS that hides what the lists name. An answer
// of null (the browser's session wants no blocking) ends the reports.
"use strict";
(() => {
  const seen = new Set();
  let classes = [];
  let ids = [];
  let queued = false;
  let stopped = false;
  let sheet = null;
  const place = () => {
    const root = document.head || document.documentElement;
    if (!root) {
      document.addEventListener("readystatechange", place, { once: true });
      return;
    }
    if (sheet.parentNode !== root) root.appendChild(sheet);
  };
  const observer = new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === "attributes") note(record.target);
      else for (const node of record.addedNodes) scan(node);
    }
    later();
  });
  const stop = () => {
    stopped = true;
    observer.disconnect();
  };
  const hide = (css) => {
    if (typeof css !== "string") {
      stop();
      return;
    }
    if (!css) return;
    if (!sheet) sheet = document.createElement("style");
    sheet.textContent += css;
    place();
  };
  const report = (first) => {
    const message = JSON.stringify({
      url: location.href,
      first,
      classes: classes.splice(0, 2000),
      ids: ids.splice(0, 2000),
    });
    chrome.runtime.sendMessage(message).then(hide, stop);
  };
  const send = () => {
    queued = false;
    if (stopped || (classes.length === 0 && ids.length === 0)) return;
    report(false);
    if (classes.length || ids.length) {
      queued = true;
      setTimeout(send, 20);
    }
  };
  const note = (element) => {
    const id = element.id;
    if (typeof id === "string" && id && !seen.has("#" + id)) {
      seen.add("#" + id);
      ids.push(id);
    }
    const list = element.classList;
    if (list) {
      for (let i = 0; i < list.length; i++) {
        if (!seen.has("." + list[i])) {
          seen.add("." + list[i]);
          classes.push(list[i]);
        }
      }
    }
  };
  const scan = (node) => {
    if (node.nodeType !== 1) return;
    note(node);
    for (const element of node.querySelectorAll("[id],[class]")) note(element);
  };
  const later = () => {
    if (!stopped && !queued && (classes.length || ids.length)) {
      queued = true;
      setTimeout(send, 20);
    }
  };
  report(true);
  observer.observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ["class", "id"] });
  if (document.documentElement) {
    scan(document.documentElement);
    later();
  }
})();
