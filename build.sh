#!/usr/bin/env bash
# Swarmdrop: build the engine to wasm, assemble the Chrome and Firefox
# extensions, run the demo, run every check.
#
#   ./build.sh          build dist/chrome, dist/firefox and their store zips
#   ./build.sh demo     build, start the server on loopback, open Chromium with the extension
#   ./build.sh test     every check: fmt, clippy (host and wasm32), cargo test,
#                       the wasm build, and the browser end-to-end tests
#   ./build.sh bench    the benchmarks (bench/run.sh; arguments go to it)
#
# Each command installs what it needs when it is missing (the wasm32 target,
# wasm-bindgen-cli at the version in Cargo.lock, the npm build and test
# tools, Chromium, Firefox ESR, transmission-cli, geckodriver) and says so.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$PWD
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-auto}
export DEBIAN_FRONTEND=noninteractive
export PATH="$HOME/.cargo/bin:$PATH"

DEMO_SERVER_ADDR=127.0.0.1:8750
DEMO_PAGE_PORT=8751

if [[ -t 2 ]]; then
  BOLD=$'\033[1m' BLUE=$'\033[1;34m' GREEN=$'\033[1;32m' RED=$'\033[1;31m' RESET=$'\033[0m'
else
  BOLD='' BLUE='' GREEN='' RED='' RESET=''
fi
say() { printf '%s==>%s %s\n' "$BLUE" "$RESET" "$*" >&2; }
ok() { printf '%s ok%s %s\n' "$GREEN" "$RESET" "$*" >&2; }
die() {
  printf '%serror:%s %s\n' "$RED" "$RESET" "$*" >&2
  exit 1
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root to run: $* (no sudo here)"
  fi
}

# ---------------------------------------------------------------- installs

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
  if [[ $APT_UPDATED -eq 0 ]]; then
    say "apt-get update"
    as_root apt-get update -q
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  as_root apt-get install -y -q --no-install-recommends "$@"
}

ensure_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "Node.js is missing: installing it"
    apt_install nodejs npm
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [[ $major -ge 20 ]] || die "Node.js 20 or newer is needed (found $(node --version))"
}

ensure_rust() {
  command -v cargo >/dev/null || die "Rust is missing: install it from https://rustup.rs"
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "adding the Rust target wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
}

# wasm-bindgen-cli must be exactly the version of the wasm-bindgen crate in
# Cargo.lock, or the generated JS and the wasm disagree.
ensure_wasm_bindgen() {
  local want have=""
  want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
  [[ -n $want ]] || die "wasm-bindgen is not in Cargo.lock"
  if command -v wasm-bindgen >/dev/null; then
    have=$(wasm-bindgen --version | awk '{ print $2 }')
  fi
  if [[ $have != "$want" ]]; then
    say "installing wasm-bindgen-cli $want (found: ${have:-none}); this compiles for a few minutes"
    cargo install wasm-bindgen-cli --version "$want"
  fi
}

# The npm tools for building and testing: binaryen (wasm-opt; Debian's
# binaryen is too old and emits broken wasm), esbuild (minifies the
# package's JavaScript; its platform binary comes as an optional dependency,
# so it needs no install script either), web-ext, playwright-core, and
# webtorrent (its browser bundle, for the interop tests). None of them needs
# an install script, and one of webtorrent's dependencies has a preinstall
# that insists on pnpm: install with --ignore-scripts. webtorrent's engines
# field asks for Node 22; npm only warns, and only its prebuilt browser
# bundle is used.
ensure_npm() {
  ensure_node
  # npm ci rewrites node_modules/.package-lock.json: older than the lock file
  # (or missing) means the installed tools are not the locked ones.
  if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
    say "npm ci (binaryen, esbuild, web-ext, playwright-core, webtorrent)"
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  fi
}

# advzip (advancecomp) recompresses the store zips with zopfli: the same
# deflate format every store and browser reads, about 4 % smaller than
# zlib's level 9 (BENCHMARKS.md row 7: the package must stay under 400 kB).
ensure_advzip() {
  command -v advzip >/dev/null || apt_install advancecomp
}

ensure_browsers() {
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v firefox-esr >/dev/null || missing+=(firefox-esr)
  command -v transmission-show >/dev/null || missing+=(transmission-cli)
  command -v python3 >/dev/null || missing+=(python3)
  if [[ ${#missing[@]} -gt 0 ]]; then
    say "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  if ! command -v geckodriver >/dev/null; then
    say "installing geckodriver (cargo install geckodriver)"
    cargo install geckodriver
  fi
}

# ---------------------------------------------------------------- build

WASM_OUT=target/wasm-bindgen

build_wasm() {
  ensure_rust
  ensure_wasm_bindgen
  ensure_npm
  # The wasm-release profile (Cargo.toml): release, optimised for size.
  say "building the engine for wasm32 (profile wasm-release)"
  cargo build --lib --profile wasm-release --target wasm32-unknown-unknown
  say "wasm-bindgen --target web"
  rm -rf "$WASM_OUT"
  wasm-bindgen --target web --no-typescript --out-dir "$WASM_OUT" --out-name swarmdrop \
    target/wasm32-unknown-unknown/wasm-release/swarmdrop.wasm
  say "wasm-opt -O3 --converge (binaryen from npm)"
  # The features rustc enables by default for wasm32-unknown-unknown.
  # --converge runs the -O3 passes again until the module stops shrinking:
  # the same optimisations, 1.7 KB less zipped (measured on 2026-11-22).
  node_modules/.bin/wasm-opt -O3 --converge \
    --enable-bulk-memory --enable-mutable-globals --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-reference-types --enable-multivalue \
    "$WASM_OUT/swarmdrop_bg.wasm" -o "$WASM_OUT/swarmdrop_bg.wasm"
  check_wasm_imports
}

# The module must import nothing from `env`: such an import means some code
# expected a C runtime or a host function that no browser provides.
check_wasm_imports() {
  node --input-type=module -e '
    import { readFileSync } from "node:fs";
    const m = new WebAssembly.Module(readFileSync(process.argv[1]));
    const env = WebAssembly.Module.imports(m).filter((i) => i.module === "env");
    if (env.length) {
      console.error("the wasm imports from env: " + env.map((i) => i.name).join(", "));
      process.exit(1);
    }
    const kb = (readFileSync(process.argv[1]).length / 1024).toFixed(0);
    console.error(`wasm: ${kb} KiB, ${WebAssembly.Module.imports(m).length} imports, none from env`);
  ' "$WASM_OUT/swarmdrop_bg.wasm"
}

# dist/<browser>: the shared extension files, the browser's own platform
# files (same names, same exports), the wasm, and the derived manifest.
assemble() {
  local browser=$1 out=dist/$1
  say "assembling $out"
  rm -rf "$out"
  mkdir -p "$out/wasm" "$out/js/platform"
  tar -C extension --exclude=./platform --exclude='*.py' -cf - . | tar -C "$out" -xf -
  cp extension/platform/"$browser"/*.js "$out/js/platform/"
  cp "$WASM_OUT/swarmdrop.js" "$WASM_OUT/swarmdrop_bg.wasm" "$out/wasm/"
  node --input-type=module - "$browser" "$out/manifest.json" <<'EOF'
import { readFileSync, writeFileSync } from "node:fs";
const [browser, dest] = process.argv.slice(2);
const m = JSON.parse(readFileSync("manifest.json", "utf8"));
const { service_worker, scripts, type } = m.background;
if (browser === "chrome") {
  // Chrome: a module service worker; the offscreen document hosts the engine.
  m.background = { service_worker, type };
  delete m.browser_specific_settings;
} else {
  // Firefox: an event page (it has the DOM and hosts the engine itself).
  m.background = { scripts, type };
  m.permissions = m.permissions.filter((p) => p !== "offscreen");
}
writeFileSync(dest, JSON.stringify(m, null, 2) + "\n");
EOF
  minify_js "$out"
  local zip
  zip=dist/swarmdrop-$browser-$(node -p 'require("./manifest.json").version').zip
  python3 - "$out" "$zip" <<'EOF'
import os, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for base, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            info = zipfile.ZipInfo(os.path.relpath(path, src), date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(path, "rb") as f:
                z.writestr(info, f.read())
EOF
  advzip --recompress --shrink-insane --quiet "$zip"
  ok "$zip ($(($(stat -c %s "$zip") / 1024)) KiB)"
}

# The package's JavaScript, minified in place with esbuild (from npm): each
# file on its own, no bundling, so every module keeps its path, imports and
# exports; about 25 kB off the zipped package (BENCHMARKS.md row 7: it must
# stay under 400 kB). Extension pages, workers and the service worker load
# ES modules; the content script is a classic script, whose top-level names
# esbuild leaves alone when no module format is given.
minify_js() {
  local out=$1 f args
  say "esbuild --minify $out/**/*.js"
  while IFS= read -r -d '' f; do
    args=(--minify --log-level=warning --allow-overwrite --outfile="$f")
    [[ $f == "$out"/content/* ]] || args+=(--format=esm)
    node_modules/.bin/esbuild "$f" "${args[@]}"
  done < <(find "$out" -name '*.js' -print0)
}

lint_firefox() {
  say "web-ext lint dist/firefox"
  node_modules/.bin/web-ext lint --source-dir dist/firefox --no-config-discovery --output text
}

cmd_build() {
  build_wasm
  ensure_advzip
  mkdir -p dist
  rm -f dist/*.zip
  assemble chrome
  assemble firefox
  lint_firefox
  ok "built dist/chrome and dist/firefox"
}

# ---------------------------------------------------------------- demo

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }

cmd_demo() {
  ensure_browsers
  cmd_build
  local server=""
  # Globals, so that the exit trap still sees them after this function returns.
  pids=()
  profile=$(mktemp -d -t swarmdrop-demo-XXXXXX)
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$profile"' EXIT INT TERM
  say "building the server"
  if cargo build -q -p swarmdrop-server; then
    say "starting the server on $DEMO_SERVER_ADDR"
    cargo run -q -p swarmdrop-server -- --listen "$DEMO_SERVER_ADDR" --data-dir target/demo-data &
    pids+=($!)
    for _ in $(seq 50); do
      port_open "$DEMO_SERVER_ADDR" && break
      kill -0 "${pids[-1]}" 2>/dev/null || break
      sleep 0.2
    done
    if port_open "$DEMO_SERVER_ADDR"; then
      server=http://$DEMO_SERVER_ADDR
      ok "server (tracker, bundle store, web seed) at $server"
    else
      say "the server did not start; the extension works without it, sharing waits for it"
    fi
  else
    say "the server does not build; the extension works without it, sharing waits for it"
  fi
  local page=http://127.0.0.1:$DEMO_PAGE_PORT/
  python3 -m http.server --bind 127.0.0.1 --directory tests/e2e/site "$DEMO_PAGE_PORT" >/dev/null 2>&1 &
  pids+=($!)
  ok "a page to drop files on at $page"

  if [[ -z ${DISPLAY:-}${WAYLAND_DISPLAY:-} ]]; then
    cat >&2 <<EOF

${BOLD}No display here (\$DISPLAY is not set), so no browser window can open.${RESET}
To try Swarmdrop on a machine with a display:
  - run ./build.sh demo there, or
  - open chrome://extensions, turn on Developer mode, "Load unpacked" and pick
    $ROOT/dist/chrome  (Firefox: about:debugging, "Load Temporary Add-on",
    pick dist/firefox/manifest.json).
The drop page ($page)${server:+ and the server ($server)} keep running until you press Ctrl-C.
EOF
    wait
    return
  fi
  say "opening Chromium with the extension (fresh profile in $profile)"
  chromium --user-data-dir="$profile" --no-first-run --no-default-browser-check \
    --disable-extensions-except="$ROOT/dist/chrome" --load-extension="$ROOT/dist/chrome" \
    --disable-features=DisableLoadExtensionCommandLineSwitch,WebRtcHideLocalIpsWithMdns \
    "$page" &
  pids+=($!)
  ok "Chromium is open: drag files onto the page, or use the Swarmdrop button in the toolbar. Ctrl-C stops the demo."
  wait "${pids[-1]}" || true
}

# ---------------------------------------------------------------- test

TIMINGS=()
step() {
  local name=$1 start=$SECONDS
  shift
  say "$name"
  "$@"
  TIMINGS+=("$(printf '%5ss  %s' $((SECONDS - start)) "$name")")
}

# The end-to-end tests write browser profiles, servers' data and files of
# up to 1 GiB (one test file at a time: each deletes its own when it ends).
# Chromium refuses storage well before a disk is full (IndexedDB and OPFS
# quota, its Blob storage), and then tests fail for that alone.
E2E_DISK_GIB=6
check_disk() {
  local free_kib
  free_kib=$(df -Pk "$ROOT/target" | awk 'NR == 2 { print $4 }')
  if ((free_kib < E2E_DISK_GIB * 1024 * 1024)); then
    die "only $((free_kib / 1024 / 1024)) GiB free on the disk of $ROOT/target: the end-to-end tests need ${E2E_DISK_GIB} GiB (browser profiles, a 1 GiB file saved several ways). Free some space and run again."
  fi
  ok "$((free_kib / 1024 / 1024)) GiB free for the end-to-end tests (they need ${E2E_DISK_GIB})"
}

cmd_test() {
  local start=$SECONDS
  ensure_rust
  ensure_wasm_bindgen
  ensure_npm
  ensure_browsers
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  step "cargo fmt --check" cargo fmt --all --check
  step "cargo clippy (host)" cargo clippy --workspace --all-targets -- -D warnings
  step "cargo clippy (wasm32)" cargo clippy --all-targets --target wasm32-unknown-unknown -- -D warnings
  step "cargo test" cargo test --workspace
  step "build (wasm, dist, web-ext lint)" cmd_build
  step "build the server for the network tests" cargo build --release -p swarmdrop-server
  rm -rf target/e2e target/e2e-net # what earlier runs left (each test file deletes its own when it ends)
  check_disk
  step "extension and network tests (pure modules in Node, then Chromium and Firefox end-to-end)" \
    node --test --test-concurrency=1 tests/e2e/
  printf '\n%sTimings%s\n' "$BOLD" "$RESET" >&2
  printf '  %s\n' "${TIMINGS[@]}" >&2
  ok "all checks passed in $((SECONDS - start))s"
}

cmd_bench() {
  if [[ -x bench/run.sh ]]; then
    exec bench/run.sh "$@"
  fi
  say "benchmarks are not written yet (they come with their own issue)"
}

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}

case ${1:-build} in
build) cmd_build ;;
demo) cmd_demo ;;
test) cmd_test ;;
bench)
  shift
  cmd_bench "$@"
  ;;
-h | --help | help) usage ;;
*)
  usage
  die "unknown command: $1"
  ;;
esac
