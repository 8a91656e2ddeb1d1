"""Ad blocking inside the browser (issue 26): what an MV3 `declarativeNetRequest` extension would cost and give.

    python3 bench/adblock_inside.py --runs 20

The measurement behind anchorage's design (ARCHITECTURE.md, "Ad blocking:
where the engine runs"; the shipped translation is `adblock::dnr`, this
one is rougher), kept to compare with Chromium's own figures.
Straight against Debian's Chromium, no server:

- rules: the network lines of EasyList and EasyPrivacy turned into
  `declarativeNetRequest` rules by a rough translation (the ABP pattern is
  the `urlFilter`; `third-party`, `domain=` and the resource types become
  conditions; a line with any other option, a regex, or non-ASCII text is
  left out), written as an unpacked extension in a temp dir;
- page load: the `load` event of a local page of 30 first-party resources
  and no ad, in a browser with the extension and one without (runs
  interleaved; each URL fresh);
- launch: the time from starting Chromium to its first page answering, with
  the whole rule set, with smaller cuts of it, with the whole set but its
  host-only rules merged into `requestDomains` lists, and without the
  extension;
  and whether a tracker request made right then was blocked (a name
  EasyPrivacy lists, mapped to 127.0.0.1, counted at the local server);
- contexts: with the merged rules and without, the same check in the
  browser's default context and in a new browser context
  (`Target.createBrowserContext`, what a context session is made of), the
  browser started as anchorage starts its own and reached over CDP; and with
  the merged rules again, the extension allowed in off-the-record contexts
  by the new profile's preferences.
Nothing is asserted.
"""

import argparse
import hashlib
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
import adblock  # noqa: E402  (its fixture site: the plain page, and a count of requests to other names)

from playwright.sync_api import sync_playwright  # noqa: E402

LISTS = pathlib.Path("/usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist")
TYPES = {"script": "script", "image": "image", "stylesheet": "stylesheet", "xmlhttprequest": "xmlhttprequest",
         "media": "media", "font": "font", "ping": "ping", "websocket": "websocket", "other": "other",
         "subdocument": "sub_frame"}


def rules_from_lists():
    """The lists' network lines as DNR rules (see the docstring for what is left out)."""
    rules = []
    for name in ("easylist.txt", "easyprivacy.txt"):
        for line in (LISTS / name).read_text().splitlines():
            if not line or line[0] in "![" or "#" in line.split("$")[0]:
                continue
            allow = line.startswith("@@")
            pattern, _, options = (line[2:] if allow else line).partition("$")
            if (pattern.startswith("/") and pattern.endswith("/") and len(pattern) > 1) or not pattern.isascii():
                continue
            condition = {"urlFilter": pattern} if pattern else {}
            kept = True
            for option in filter(None, options.split(",")):
                if option == "third-party":
                    condition["domainType"] = "thirdParty"
                elif option == "~third-party":
                    condition["domainType"] = "firstParty"
                elif option.startswith("domain="):
                    names = option[len("domain="):].split("|")
                    if included := [n for n in names if not n.startswith("~")]:
                        condition["initiatorDomains"] = included
                    if excluded := [n[1:] for n in names if n.startswith("~")]:
                        condition["excludedInitiatorDomains"] = excluded
                elif option in TYPES:
                    condition.setdefault("resourceTypes", []).append(TYPES[option])
                else:
                    kept = False
            if kept and condition:
                rules.append({"id": len(rules) + 1, "priority": 2 if allow else 1,
                              "action": {"type": "allow" if allow else "block"}, "condition": condition})
    return rules


def merge_hosts(rules):
    """The same rules with those that name only a host (`||host^`) merged: one rule per action and
    other conditions, its hosts in `requestDomains` (which matches a host and its subdomains, as `||` does)."""
    merged, kept = {}, []
    for rule in rules:
        condition = dict(rule["condition"])
        pattern = condition.pop("urlFilter", "")
        host = pattern[2:-1] if pattern.startswith("||") and pattern.endswith("^") else ""
        if not host or any(mark in host for mark in "/*^|?=&:"):
            kept.append(rule)
            continue
        key = (rule["action"]["type"], rule["priority"], json.dumps(condition, sort_keys=True))
        merged.setdefault(key, []).append(host)
    for (action, priority, condition), hosts in merged.items():
        kept.append({"id": 0, "priority": priority, "action": {"type": action},
                     "condition": dict(json.loads(condition), requestDomains=hosts)})
    return kept


def write_extension(directory, rules):
    directory.mkdir(parents=True, exist_ok=True)
    for index, rule in enumerate(rules):
        rule["id"] = index + 1
    (directory / "rules.json").write_text(json.dumps(rules))
    (directory / "manifest.json").write_text(json.dumps({
        "manifest_version": 3, "name": "lists", "version": "1.0", "permissions": ["declarativeNetRequest"],
        "declarative_net_request": {"rule_resources": [{"id": "lists", "enabled": True, "path": "rules.json"}]}}))
    shutil.rmtree(directory / "_metadata", ignore_errors=True)


def launch(playwright, profile, extension):
    args = ["--headless=new", "--host-resolver-rules=MAP * 127.0.0.1"]
    if extension:
        args += [f"--load-extension={extension}", f"--disable-extensions-except={extension}"]
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=shutil.which("chromium"), headless=True, args=args,
        ignore_default_args=["--disable-extensions"])


def allow_in_new_contexts(profile, extension):
    """Writes the profile's preferences before its first launch so that the unpacked extension at
    `extension` also runs in off-the-record contexts (Chromium names an unpacked extension by the
    SHA-256 of its path, its first 32 hex digits spelt with the letters a to p)."""
    digest = hashlib.sha256(str(extension).encode()).hexdigest()[:32]
    extension_id = "".join(chr(ord("a") + int(digit, 16)) for digit in digest)
    (profile / "Default").mkdir(parents=True, exist_ok=True)
    (profile / "Default" / "Preferences").write_text(
        json.dumps({"extensions": {"settings": {extension_id: {"incognito": True}}}}))


def tracker_blocked_in_contexts(playwright, profile, extension, port):
    """Whether the tracker is kept away in the browser's default context and in a new browser context
    (`Target.createBrowserContext`, which is what a context session is made of), the browser reached
    over CDP as anchorage reaches its own."""
    args = [shutil.which("chromium"), "--headless=new", "--no-sandbox", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", "--host-resolver-rules=MAP * 127.0.0.1", "about:blank"]
    if extension:
        args += [f"--load-extension={extension}", f"--disable-extensions-except={extension}"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        endpoint = next(line.split(" on ", 1)[1].strip() for line in process.stderr if "DevTools listening on" in line)
        browser = playwright.chromium.connect_over_cdp(endpoint)
        default = tracker_blocked(browser.contexts[0].pages[0], port)
        fresh = tracker_blocked(browser.new_context().new_page(), port)
        browser.close()
        return default, fresh
    finally:
        process.kill()
        process.wait()


def tracker_blocked(page, port):
    """Whether an image from a name EasyPrivacy lists (`||hbiq.net^`) was kept from the site."""
    page.goto(f"http://site.test:{port}/plain?r=first")
    before = adblock.SEEN["ads"]
    page.evaluate(f"new Promise((done) => {{ const image = new Image(); image.onload = image.onerror = done; "
                  f"image.src = 'http://px.hbiq.net:{port}/p.gif'; }})")
    return adblock.SEEN["ads"] == before


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--launches", type=int, default=4)
    args = parser.parse_args()
    adblock.SLOW["ms"] = 0
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), adblock.Site)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    port = site.server_address[1]
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="anchorage-dnr-"))
    rules = rules_from_lists()
    print(f"rules: {len(rules)} from EasyList and EasyPrivacy")
    try:
        with sync_playwright() as playwright:
            write_extension(scratch / "extension", list(rules))
            browsers = {name: launch(playwright, scratch / f"profile-{name}", extension)
                        for name, extension in (("with", scratch / "extension"), ("without", None))}
            pages = {name: browser.pages[0] for name, browser in browsers.items()}
            times = {name: [] for name in pages}
            for name, page in pages.items():
                adblock.load_ms(page, f"http://site.test:{port}/plain?r=warm-{name}")
            for run in range(args.runs):
                for name in (("with", "without") if run % 2 == 0 else ("without", "with")):
                    times[name].append(adblock.load_ms(pages[name], f"http://site.test:{port}/plain?r={run}-{name}"))
            for browser in browsers.values():
                browser.close()
            with_ext, without = statistics.median(times["with"]), statistics.median(times["without"])
            print(f"page of 30 resources, no ad, load p50: with the rules {with_ext:.0f} ms, without {without:.0f} ms "
                  f"({with_ext / without:.3f}x)")

            # The tracker rule stays in every cut.
            tracker = next(rule for rule in rules if rule["condition"].get("urlFilter") == "||hbiq.net^")
            others = [rule for rule in rules if rule is not tracker]
            merged = merge_hosts([dict(rule) for rule in rules])
            print(f"the same with host rules merged: {len(merged)} rules")
            for count in (1_000, 30_000, len(rules), -len(merged), 0):
                extension = None
                if count > 0:
                    extension = scratch / f"extension-{count}"
                    write_extension(extension, [dict(tracker)] + [dict(rule) for rule in others[:count - 1]])
                elif count < 0:
                    extension = scratch / "extension-merged"
                    write_extension(extension, merged)
                launches, blocked = [], []
                for attempt in range(args.launches):
                    profile = scratch / f"launch-{count}-{attempt}"
                    started = time.perf_counter()
                    browser = launch(playwright, profile, extension)
                    launches.append((time.perf_counter() - started) * 1000)
                    blocked.append(tracker_blocked(browser.pages[0], port))
                    browser.close()
                label = (f"{count} rules" if count > 0 else f"{-count} merged rules" if count < 0
                         else "no extension")
                if count <= 0:
                    default, fresh = tracker_blocked_in_contexts(playwright, scratch / f"cdp-{count}", extension, port)
                    print(f"with {label}, over CDP: tracker blocked in the default context {default}, "
                          f"in a new browser context {fresh}")
                if count < 0:
                    allow_in_new_contexts(scratch / "cdp-allowed", extension)
                    default, fresh = tracker_blocked_in_contexts(playwright, scratch / "cdp-allowed", extension, port)
                    print(f"the same, the extension allowed in off-the-record contexts by the profile's preferences: "
                          f"default context {default}, new browser context {fresh}")
                print(f"launch p50 with {label}: {statistics.median(launches):.0f} ms; tracker blocked right after "
                      f"the launch in {sum(blocked)} of {len(blocked)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        subprocess.run(["pkill", "-f", str(scratch)], check=False)


if __name__ == "__main__":
    main()
