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
    if [ "${#missing[@]}" = 0 ]; then
        return
    fi
    say "installing ${missing[*]} from Debian's packages"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# The tests make certificates and serve HTTPS with openssl.
ensure_openssl() {
    if command -v openssl >/dev/null 2>&1; then
        return
    fi
    say "installing openssl from Debian's packages"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl
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
}

ensure_node_packages() {
    local dir="$REPO/tests/compat/node"
    if [ -d "$dir/node_modules/puppeteer-core" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
        return
    fi
    say "installing the Node packages of the compatibility tests"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}
