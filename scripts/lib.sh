# Shared set-up steps for scripts/serve and scripts/test. Each step checks
# first and installs only what is missing, so running twice is cheap.

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_browser_packages() {
    local missing=()
    if ! command -v chromium >/dev/null 2>&1 && [ -z "${ANCHORAGE_CHROMIUM:-}" ]; then
        missing+=(chromium)
    fi
    # certutil puts the CA certificates a session trusts into its browser's NSS database.
    command -v certutil >/dev/null 2>&1 || missing+=(libnss3-tools)
    # Headful sessions run on a virtual display; recordings are encoded by ffmpeg.
    command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
    command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
    # Ad blocking's filter lists (EasyList, EasyPrivacy, the public suffix
    # list), kept current by Debian; the extension itself is not loaded.
    [ -f /usr/share/chromium/extensions/ublock-origin/assets/thirdparties/easylist/easylist.txt ] \
        || missing+=(webext-ublock-origin-chromium)
    if [ "${#missing[@]}" = 0 ]; then
        return
    fi
    say "installing ${missing[*]} from Debian's packages"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# The tests make certificates and serve HTTPS with openssl; the leak check
# at the end of the test command finds leftover processes with pgrep.
ensure_test_tools() {
    local missing=()
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v pgrep >/dev/null 2>&1 || missing+=(procps)
    if [ "${#missing[@]}" = 0 ]; then
        return
    fi
    say "installing ${missing[*]} from Debian's packages"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo is not installed: install Rust from https://rustup.rs first" >&2
        exit 1
    fi
}

ensure_python_packages() {
    say "checking the Python packages of the compatibility tests"
    python3 -m pip install -q --disable-pip-version-check -r "$REPO/tests/compat/requirements.txt"
    # LangChain's tools pin an older SDK: they get a virtual environment of their own.
    local venv="$REPO/target/compat-langchain"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" 2>/dev/null || {
            as_root apt-get update -q
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
            python3 -m venv "$venv"
        }
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$REPO/tests/compat/langchain/requirements.txt"
}

ensure_node_packages() {
    local dir="$REPO/tests/compat/node"
    if [ -d "$dir/node_modules/puppeteer-core" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
        return
    fi
    say "installing the Node packages of the compatibility tests"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

# Users' code (execute_code, code tasks) runs on Node with the packages of
# runtime/ (Playwright, the anchorbrowser SDK, esbuild), installed from its
# lock file; Node and npm come from Debian's packages when missing.
ensure_code_runtime() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        say "installing nodejs and npm from Debian's packages"
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
    fi
    local dir="$REPO/runtime"
    if ! [ -d "$dir/node_modules/playwright-core" ] || ! [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
        say "installing the code runtime's Node packages (runtime/)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
    # The zygote's addon (runs are forked from a Node that loaded the
    # runtime once), built against the headers of the Node that runs it.
    if ! [ -f "$dir/zygote.node" ] || [ "$dir/zygote.cc" -nt "$dir/zygote.node" ] || [ "$(command -v node)" -nt "$dir/zygote.node" ]; then
        if ! command -v c++ >/dev/null 2>&1 || ! [ -f /usr/include/node/node.h ]; then
            say "installing a C++ compiler and Node's headers for the code zygote"
            as_root apt-get update -q
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++ libc6-dev nodejs
        fi
        say "building the code zygote's addon (runtime/zygote.node)"
        c++ -std=c++17 -O2 -Wall -Wextra -shared -fPIC -isystem /usr/include/node -o "$dir/zygote.node.partial" "$dir/zygote.cc"
        mv "$dir/zygote.node.partial" "$dir/zygote.node"
    fi
}

# The newest PostgreSQL server programs Debian installed, if any.
postgres_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# The tests run the store's contract suite and a cluster of nodes on a real
# PostgreSQL; Debian's package brings the server programs.
ensure_postgres() {
    if [ -n "$(postgres_bin)" ] && [ -x "$(postgres_bin)/initdb" ]; then
        return
    fi
    say "installing postgresql from Debian's packages"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
}

# Starts a throwaway PostgreSQL cluster in $1 (a new dir) on a free loopback
# port, as an unprivileged user (the server refuses to run as root), with
# durability off (nothing in it outlives the run), and exports its URL as
# ANCHORAGE_TEST_POSTGRES_URL. stop_test_postgres ends it.
start_test_postgres() {
    local dir="$1" bin run=() port
    bin="$(postgres_bin)"
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        local user=postgres
        id -u "$user" >/dev/null 2>&1 || user=nobody
        chown "$user" "$dir"
        run=(runuser -u "$user" --)
    fi
    "${run[@]}" "$bin/initdb" -D "$dir/data" -U anchorage --auth=trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; return 1; }
    # A port picked free can be taken before the server binds it: try again then.
    for _ in 1 2 3 4 5; do
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        if "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=500 -c fsync=off \
                -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=128MB" >/dev/null; then
            TEST_POSTGRES_DIR="$dir"
            export ANCHORAGE_TEST_POSTGRES_URL="postgres://anchorage@127.0.0.1:$port/postgres"
            say "PostgreSQL for the tests at $ANCHORAGE_TEST_POSTGRES_URL"
            return
        fi
    done
    cat "$dir/server.log" >&2
    return 1
}

stop_test_postgres() {
    if [ -n "${TEST_POSTGRES_DIR:-}" ]; then
        stop_postgres_in "$TEST_POSTGRES_DIR"
        TEST_POSTGRES_DIR=
    fi
}

# Stops the cluster start_test_postgres started in $1 (as the user it runs as).
stop_postgres_in() {
    local dir="$1" run=()
    if [ "$(id -u)" = 0 ]; then
        run=(runuser -u "$(stat -c %U "$dir")" --)
    fi
    "${run[@]}" "$(postgres_bin)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}
