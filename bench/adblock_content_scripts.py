"""What an extension's content scripts cost a page load (issue 26): the measurement behind element hiding
running no script in a page before its `load`.

    python3 bench/adblock_content_scripts.py --copies 12 --runs 16

Debian's Chromium launched by Playwright (no server), --copies browsers of each kind, loading
`bench/adblock.py`'s page without ads (30 first-party resources) with every load of every browser in one
shuffled order per run. The kinds:

- none: no extension;
- worker: an extension with only a service worker;
- script at start: the same with an empty script content script at `document_start` in every http(s)
  document and frame (what element hiding was until 2026-12-07, without its work);
- script at idle: the same at `document_idle`;
- stylesheet: an extension with only a stylesheet content script, the lists' generic rules that are not
  a bare class or id (`--sheet`, default: the compile of Debian's lists, as a node writes it).

Each figure is the mean of the browsers' means without each one's slowest and fastest tenth, over that of
the browsers without an extension. Browsers of one kind differ from each other by up to ±8 % here, so
use many copies. Nothing is asserted.
"""

import argparse
import http.server
import json
import pathlib
import statistics
import sys
import tempfile
import threading

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import adblock  # noqa: E402
import harness  # noqa: E402

from playwright.sync_api import sync_playwright  # noqa: E402

FLAGS = ["--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-gpu",
         "--host-resolver-rules=MAP * 127.0.0.1", "--no-sandbox",
         # Chromium 137 and later ignore --load-extension unless this feature is off.
         "--disable-features=DisableLoadExtensionCommandLineSwitch"]
MATCHES = ["http://*/*", "https://*/*"]


def write_extension(root, name, scripts, files):
    folder = root / name
    folder.mkdir()
    manifest = {"manifest_version": 3, "name": name, "version": "1.0",
                "background": {"service_worker": "worker.js"}, "content_scripts": scripts}
    if not files.get("worker.js"):
        del manifest["background"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for file, text in files.items():
        (folder / file).write_text(text)
    return str(folder)


def kinds(root, sheet):
    worker = {"worker.js": "chrome.runtime.onStartup.addListener(() => {});"}
    script = dict(worker, **{"empty.js": ""})
    return {
        "none": None,
        "worker": write_extension(root, "worker", [], worker),
        "script at start": write_extension(root, "start", [
            {"matches": MATCHES, "js": ["empty.js"], "run_at": "document_start", "all_frames": True}], script),
        "script at idle": write_extension(root, "idle", [
            {"matches": MATCHES, "js": ["empty.js"], "run_at": "document_idle", "all_frames": True}], script),
        "stylesheet": write_extension(root, "sheet", [
            {"matches": MATCHES, "css": ["sheet.css"], "all_frames": True}], {"sheet.css": sheet}),
    }


def node_sheet():
    """The generic sheet a node writes for Debian's lists (its extension's `generic.css`)."""
    server = harness.Server(harness.REPO / "target" / "release" / "anchorage", pool_size=0)
    try:
        found = sorted(pathlib.Path(server.data_dir).glob("adblock/extension-*/generic.css"))
        return found[-1].read_text() if found else ""
    finally:
        server.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=12)
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--sheet", help="a stylesheet file (default: a node's compile of the lists)")
    args = parser.parse_args()
    sheet = pathlib.Path(args.sheet).read_text() if args.sheet else node_sheet()

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), adblock.Site)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    port = site.server_address[1]
    with tempfile.TemporaryDirectory(prefix="anchorage-content-scripts-") as folder:
        root = pathlib.Path(folder)
        extensions = kinds(root, sheet)
        loads = {}
        with sync_playwright() as playwright:
            pages, contexts = {}, []
            for copy in range(args.copies):
                for kind, extension in extensions.items():
                    flags = list(FLAGS)
                    if extension:
                        flags += [f"--load-extension={extension}", f"--disable-extensions-except={extension}"]
                    context = playwright.chromium.launch_persistent_context(
                        str(root / f"profile-{len(contexts)}"), executable_path=harness.CHROMIUM, headless=True,
                        args=flags, ignore_default_args=["--disable-extensions"])
                    contexts.append(context)
                    pages[(kind, copy)] = context.pages[0] if context.pages else context.new_page()
            try:
                names = list(pages)
                for name in names:
                    adblock.load_ms(pages[name], f"http://site.test:{port}/plain?r=warm-{name[1]}")
                for run, order in enumerate(adblock.load_order(names, args.runs)):
                    for name in order:
                        url = f"http://site.test:{port}/plain?r={run}-{name[0]}-{name[1]}"
                        loads.setdefault(name, []).append(adblock.load_ms(pages[name], url))
            finally:
                for context in contexts:
                    context.close()
    means = {name: adblock.trimmed_mean(values) for name, values in loads.items()}
    base = statistics.mean(means[("none", copy)] for copy in range(args.copies))
    print(f"page load without ads, {args.copies} browsers a kind, {args.runs} loads each "
          f"(no extension: {base:.1f} ms, trimmed mean)")
    for kind in extensions:
        each = [means[(kind, copy)] / base for copy in range(args.copies)]
        print(f"  {kind}: {statistics.mean(each):.3f}x (browsers from {min(each):.3f} to {max(each):.3f})")


if __name__ == "__main__":
    main()
