"""Chromium's own subresource filter as the network side of ad blocking (issue 26): a measurement.

    python3 bench/adblock_subresource_filter.py --runs 40 --copies 3

Chromium ships a filter that matches a page's subresource requests in the
renderer, against an indexed ruleset it memory-maps, before they leave the
page (Chrome uses it for its "abusive ads" intervention; the ruleset comes
from the component updater). This script tries it with the lists' rules
instead, straight against Debian's Chromium, no server:

- ruleset: the network lines of EasyList and EasyPrivacy turned into the
  filter's rule format (a stream of length-prefixed `FilteringRules`
  protocol buffer messages, each holding `UrlRule`s; written by hand below,
  no protobuf library) by a rough translation: the ABP pattern and its
  anchors, `third-party`, `domain=` and the request types; a line with any
  other option, a regex, or non-ASCII text is left out;
- indexing: the ruleset placed where the component updater would have put
  it (`Subresource Filter/Unindexed Rules/<version>/` in the user data
  dir); Chromium indexes it at start-up; the time from launch to the
  indexed file, and whether a second profile given the indexed file and the
  first one's `Local State` entry blocks without indexing again;
- activation: in headless mode, not turned on, forced per page through
  DevTools (`Page.setAdBlockingEnabled`, which needs the `Page` domain
  enabled on a session that stays attached), and after that session
  detached; then, in profiles given the indexed file, forced and by the
  feature's own parameters (`activation_scope/all_sites`), each in the
  default context and in a new browser context (`Target.createBrowserContext`,
  what a context session is made of); each time, how many of the ad page's
  40 requests reached the site;
- page load: the `load` event of the plain page (30 first-party resources,
  no ad; `bench/adblock.py`'s fixture) in browsers without blocking, with
  the lists as a `declarativeNetRequest` extension (`bench/adblock_inside.py`'s
  rough translation, host rules merged: what anchorage ships today, without
  element hiding), with the subresource filter forced through a held
  DevTools session, and with it on for every page by the feature's
  parameters (the indexed ruleset given, component updates off, no DevTools
  session); --copies browsers of each kind (one browser of a kind
  against one of another differs by up to 5 % here for no reason of its
  own), all loads interleaved; each figure is the mean without each
  browser's slowest and fastest tenth, over the mean of the browsers
  without blocking.
Nothing is asserted.
"""

import argparse
import http.server
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import adblock  # noqa: E402  (its fixture site)
import adblock_inside  # noqa: E402  (the lists, their rough DNR translation)

from playwright.sync_api import sync_playwright  # noqa: E402

VERSION = "1.0.0"
# Element types of the filter's rules (a bit mask) for the lists' type options.
ELEMENT_TYPES = {"other": 1, "script": 2, "image": 4, "stylesheet": 8, "object": 16, "xmlhttprequest": 32,
                 "subdocument": 128, "ping": 256, "media": 512, "font": 1024, "websocket": 4096}
ALL_BUT_POPUP = 32767 & ~2048
ACTIVATION = "SubresourceFilter:activation_state/enabled/activation_scope/all_sites/activation_priority/2000"


def varint(value):
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def number_field(field, value):
    return varint(field << 3) + varint(value)


def bytes_field(field, data):
    return varint((field << 3) | 2) + varint(len(data)) + data


def url_rule(line):
    """One network line as an encoded `UrlRule`, or None for a line this translation leaves out."""
    allow = line.startswith("@@")
    pattern, _, options = (line[2:] if allow else line).partition("$")
    if not pattern.isascii() or (len(pattern) > 1 and pattern.startswith("/") and pattern.endswith("/")):
        return None
    left = 1  # anchor: none
    if pattern.startswith("||"):
        pattern, left = pattern[2:], 3  # the host or a subdomain of it
    elif pattern.startswith("|"):
        pattern, left = pattern[1:], 2  # the start of the URL
    right = 1
    if pattern.endswith("|"):
        pattern, right = pattern[:-1], 2
    source, types, domains = 1, 0, b""
    for option in filter(None, options.split(",")):
        if option == "third-party":
            source = 2
        elif option == "~third-party":
            source = 3
        elif option.startswith("domain="):
            for name in option[len("domain="):].split("|"):
                excluded = name.startswith("~")
                item = bytes_field(1, name.lstrip("~").encode()) + number_field(2, int(excluded))
                domains += bytes_field(5, item)
        elif option in ELEMENT_TYPES:
            types |= ELEMENT_TYPES[option]
        else:
            return None
    kind = 2 if any(mark in pattern for mark in "*^") else 1
    return (number_field(1, 2 if allow else 1) + number_field(2, source)
            + number_field(3, types or ALL_BUT_POPUP) + domains + number_field(6, kind)
            + number_field(7, left) + number_field(8, right) + bytes_field(10, pattern.encode()))


def ruleset():
    """The lists as the filter's unindexed ruleset: chunks of at most 1000 rules, each a `FilteringRules`
    message preceded by its length."""
    rules, left_out = [], 0
    for name in ("easylist.txt", "easyprivacy.txt"):
        for line in (adblock_inside.LISTS / name).read_text().splitlines():
            if not line or line[0] in "![" or "#" in line.split("$")[0]:
                continue
            encoded = url_rule(line)
            if encoded is None:
                left_out += 1
            else:
                rules.append(bytes_field(1, encoded))
    data = b""
    for start in range(0, len(rules), 1000):
        chunk = b"".join(rules[start:start + 1000])
        data += varint(len(chunk)) + chunk
    return data, len(rules), left_out


def place_unindexed(profile, data):
    folder = profile / "Subresource Filter" / "Unindexed Rules" / VERSION
    folder.mkdir(parents=True)
    (folder / "Filtering Rules").write_bytes(data)
    (folder / "LICENSE").write_text("EasyList and EasyPrivacy, see their headers")
    (folder / "manifest.json").write_text(json.dumps(
        {"manifest_version": 2, "name": "Subresource Filter Rules", "version": VERSION, "ruleset_format": 1}))


def launch(playwright, profile, args=(), component_update=False):
    ignored = ["--disable-extensions"] + (["--disable-component-update"] if component_update else [])
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=shutil.which("chromium"), headless=True,
        args=["--headless=new", "--host-resolver-rules=MAP * 127.0.0.1", *args], ignore_default_args=ignored)


def force(context, page):
    """Turns the filter on for `page` through a DevTools session, which is returned: it must stay open."""
    session = context.new_cdp_session(page)
    session.send("Page.enable")
    session.send("Page.setAdBlockingEnabled", {"enabled": True})
    return session


def ads_reaching(page, port, run):
    adblock.SEEN["ads"] = 0
    page.goto(f"http://site.test:{port}/ads?r=probe-{run}", wait_until="load", timeout=60_000)
    return adblock.SEEN["ads"]


def indexed_file(profile):
    return next((profile / "Subresource Filter" / "Indexed Rules").glob(f"*/{VERSION}/Ruleset Data"), None)


def give_indexed(indexed, profile, entry):
    """Gives a new profile the ruleset another one indexed, and the `Local State` entry naming it."""
    source = indexed_file(indexed)
    target = profile / source.relative_to(indexed)
    target.parent.mkdir(parents=True)
    shutil.copy(source, target)
    shutil.copy(source.parent / "LICENSE", target.parent / "LICENSE")
    (profile / "Local State").write_text(json.dumps({"subresource_filter": entry}))


class Server(http.server.ThreadingHTTPServer):
    """The fixture site; a request the browser dropped halfway (a page left mid-load) is no error here."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def trimmed_mean(values):
    values = sorted(values)
    cut = len(values) // 10
    return statistics.mean(values[cut:len(values) - cut])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--copies", type=int, default=3)
    args = parser.parse_args()
    adblock.SLOW["ms"] = 0
    site = Server(("127.0.0.1", 0), adblock.Site)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    port = site.server_address[1]
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="anchorage-srf-"))
    try:
        started = time.perf_counter()
        data, kept, left_out = ruleset()
        print(f"ruleset: {kept} rules ({len(data) / 1e6:.1f} MB), {left_out} lines left out, "
              f"{(time.perf_counter() - started) * 1000:.0f} ms to translate")
        with sync_playwright() as playwright:
            # Indexing at start-up; activation forced through DevTools, and after that session ends.
            first = scratch / "indexing"
            place_unindexed(first, data)
            started = time.perf_counter()
            browser = launch(playwright, first, component_update=True)
            while indexed_file(first) is None and time.perf_counter() - started < 60:
                time.sleep(0.02)
            if indexed_file(first) is None:
                print("Chromium did not index the ruleset within 60 s: nothing more to measure")
                browser.close()
                return
            print(f"indexed file there {time.perf_counter() - started:.2f} s after the launch began "
                  f"({indexed_file(first).stat().st_size / 1e6:.1f} MB)")
            time.sleep(1)
            page = browser.pages[0]
            print(f"headless, not turned on: {ads_reaching(page, port, 'off')} of 40 ad requests reached the site")
            held = force(browser, page)
            print(f"headless, forced through DevTools: {ads_reaching(page, port, 'forced')} of 40")
            held.detach()
            print(f"the same page after that session detached: {ads_reaching(page, port, 'detached')} of 40")
            browser.close()
            entry = json.loads((first / "Local State").read_text()).get("subresource_filter")
            print(f"Local State entry: {json.dumps(entry)}")

            # Profiles given the indexed file and the entry (no indexing, component updates off), the
            # browser started as anchorage starts its own and reached over CDP, for new browser contexts.
            for label, extra in (("forced", []), ("the feature's parameters", [f"--enable-features={ACTIVATION}"])):
                profile = scratch / f"given-{len(extra)}"
                give_indexed(first, profile, entry)
                process = subprocess.Popen(
                    [shutil.which("chromium"), "--headless=new", "--no-sandbox", "--remote-debugging-port=0",
                     "--disable-component-update", f"--user-data-dir={profile}",
                     "--host-resolver-rules=MAP * 127.0.0.1", *extra, "about:blank"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                try:
                    endpoint = next(line.split(" on ", 1)[1].strip()
                                    for line in process.stderr if "DevTools listening on" in line)
                    browser = playwright.chromium.connect_over_cdp(endpoint)
                    sessions = []
                    for where, context in (("default context", browser.contexts[0]),
                                           ("new browser context", browser.new_context())):
                        page = context.pages[0] if context.pages else context.new_page()
                        if not extra:
                            sessions.append(force(context, page))
                        print(f"given the indexed file, {label}, {where}: {ads_reaching(page, port, where)} of 40")
                    for session in sessions:
                        session.detach()
                    browser.close()
                finally:
                    process.kill()
                    process.wait()

            # Page loads, no ad: none vs the DNR extension vs the filter forced.
            rules = adblock_inside.merge_hosts(adblock_inside.rules_from_lists())
            extension = scratch / "extension"
            adblock_inside.write_extension(extension, rules)
            kinds = ["none", "dnr", "forced", "feature"]
            names = [f"{kind}-{copy}" for copy in range(args.copies) for kind in kinds]
            browsers, sessions = {}, []
            for name in names:
                profile = scratch / name
                kind = name.split("-")[0]
                extra = []
                if kind == "dnr":
                    extra = [f"--load-extension={extension}", f"--disable-extensions-except={extension}"]
                else:
                    give_indexed(first, profile, entry)
                    if kind == "feature":
                        extra = [f"--enable-features={ACTIVATION}"]
                browsers[name] = launch(playwright, profile, extra)
            pages = {name: browser.pages[0] for name, browser in browsers.items()}
            for name, page in pages.items():
                if name.startswith("forced"):
                    sessions.append(force(browsers[name], page))
            time.sleep(2)
            for name, page in pages.items():
                print(f"{name}: {ads_reaching(page, port, name)} of 40 ad requests reached the site")
                for warm in range(3):
                    adblock.load_ms(page, f"http://site.test:{port}/plain?r=warm-{warm}-{name}")
            times = {name: [] for name in names}
            for run in range(args.runs):
                for name in (names if run % 2 == 0 else names[::-1]):
                    times[name].append(adblock.load_ms(pages[name], f"http://site.test:{port}/plain?r={run}-{name}"))
            for browser in browsers.values():
                browser.close()
            base = statistics.mean(trimmed_mean(times[name]) for name in names if name.startswith("none"))
            for kind in kinds:
                each = [trimmed_mean(times[name]) / base for name in names if name.split("-")[0] == kind]
                print(f"plain page, {kind}: {statistics.mean(each):.3f}x "
                      f"(browsers: {', '.join(f'{value:.3f}' for value in each)}; none = {base:.1f} ms)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
