// Element hiding in one document, run by the server's connection in an
// isolated world of its own (out of the page's reach; the page cannot call
// the binding either, which exists in this world only). Defines
// `__anchorage` once per document: `hide(css)` adds CSS that hides what the
// lists name; `watch()` reports the classes and ids of the document (each
// once, as they appear) through the binding `__anchorage_cosmetics`, whose
// answers come back as `hide` calls.
"use strict";
(() => {
  if (globalThis.__anchorage) return;
  const report = globalThis.__anchorage_cosmetics;
  const seen = new Set();
  let classes = [];
  let ids = [];
  let queued = false;
  let watching = false;
  let sheet = null;
  const place = () => {
    const root = document.head || document.documentElement;
    if (!root) {
      document.addEventListener("readystatechange", place, { once: true });
      return;
    }
    if (sheet.parentNode !== root) root.appendChild(sheet);
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
  const send = () => {
    queued = false;
    if (classes.length === 0 && ids.length === 0) return;
    if (typeof report === "function") {
      report(JSON.stringify({ url: location.href, classes: classes.splice(0, 2000), ids: ids.splice(0, 2000) }));
    }
    later();
  };
  const later = () => {
    if (!queued && (classes.length || ids.length)) {
      queued = true;
      setTimeout(send, 20);
    }
  };
  const observer = new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === "attributes") note(record.target);
      else for (const node of record.addedNodes) scan(node);
    }
    later();
  });
  globalThis.__anchorage = {
    hide(css) {
      if (typeof css !== "string" || !css) return;
      if (!sheet) sheet = document.createElement("style");
      sheet.textContent += css;
      place();
    },
    watch() {
      if (watching) return;
      watching = true;
      observer.observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ["class", "id"] });
      if (document.documentElement) scan(document.documentElement);
      later();
    },
  };
})();
