#!/usr/bin/env bash
# Installs Browserless 2.42.0 from the npm registry into a directory of its
# own (default /tmp/browserless-2.42.0) and runs it against Debian's Chromium,
# for the side-by-side figures in BENCHMARKS.md. Nothing of it is committed.
#
#   bench/browserless.sh install          # once (safe to repeat)
#   PORT=3000 TOKEN=bench bench/browserless.sh run
#
# Then Playwright connects with connect_over_cdp("ws://127.0.0.1:PORT/chromium?token=TOKEN");
# each connection gets a fresh browser.
set -euo pipefail

VERSION=2.42.0
DIR="${BROWSERLESS_DIR:-/tmp/browserless-$VERSION}"
PACKAGE="$DIR/node_modules/@browserless.io/browserless"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install() {
    mkdir -p "$DIR"
    if [ ! -f "$PACKAGE/build/index.js" ]; then
        (cd "$DIR" && npm install --no-audit --no-fund --loglevel=error "@browserless.io/browserless@$VERSION")
    fi
    # It looks for node_modules inside its own package directory.
    [ -e "$PACKAGE/node_modules" ] || ln -s "$DIR/node_modules" "$PACKAGE/node_modules"
    # It checks that the browsers playwright-core would use exist.
    local paths
    paths=$(cd "$PACKAGE" && node -e '
        const { chromium, firefox, webkit } = require("playwright-core");
        console.log([chromium, firefox, webkit].map((b) => b.executablePath()).join("\n"));')
    local index=0
    while IFS= read -r path; do
        if [ ! -e "$path" ]; then
            mkdir -p "$(dirname "$path")"
            if [ "$index" = 0 ]; then ln -s "$CHROMIUM" "$path"; else ln -s /bin/true "$path"; fi
        fi
        index=$((index + 1))
    done <<< "$paths"
    for path in /usr/bin/google-chrome-stable /usr/bin/microsoft-edge-stable; do
        [ -e "$path" ] || as_root ln -s "$CHROMIUM" "$path"
    done
    echo "Browserless $VERSION is ready in $DIR"
}

run() {
    cd "$PACKAGE"
    exec env PORT="${PORT:-3000}" TOKEN="${TOKEN:-bench}" node build/index.js
}

case "${1:-}" in
    install) install ;;
    run) run ;;
    *) echo "usage: $0 install|run" >&2; exit 2 ;;
esac
