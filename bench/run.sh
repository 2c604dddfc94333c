#!/usr/bin/env bash
# Swarmdrop benchmarks: run the selected rows, print the table, write BENCHMARKS.md.
#
#   bench/run.sh [--runs N] [--no-build] [row...]
#
# A row is selected by its name or number (`tracker` or `6`); none selects
# every row. Each row is one script, bench/rows/NN-name.{mjs,sh}, that takes
# the median of at least three runs and writes its result as JSON (see
# bench/lib/common.mjs); a line `bench-needs: ...` in it names what must be
# built first:
#   npm     the npm packages of bench/ (npm ci from bench/package-lock.json)
#   server  the release build of swarmdrop-server
#   loadgen the release build of the tracker load generator (the example
#           tracker_load of swarmdrop-server, next to the server binary)
#   dist    the extension packages (./build.sh, once the repository has it)
# --no-build uses what is already built. Results and logs of each invocation
# are kept in bench/out/<date>/. Benchmarks are not tests: nothing here fails
# because the machine is slow.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

RUNS=3
BUILD=1
SELECT=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs)
      [[ ${2:-} =~ ^[0-9]+$ ]] || die "--runs needs a number"
      RUNS=$2
      shift 2
      ;;
    --no-build)
      BUILD=0
      shift
      ;;
    -h | --help)
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      SELECT+=("$1")
      shift
      ;;
  esac
done
[[ $RUNS -ge 3 ]] || die "at least 3 runs: a median of fewer means little"

# ------------------------------------------------------------------ rows

ALL_ROWS=()
for f in "$BENCH"/rows/[0-9][0-9]-*.mjs "$BENCH"/rows/[0-9][0-9]-*.sh; do
  [[ -e $f ]] && ALL_ROWS+=("$f")
done
mapfile -t ALL_ROWS < <(printf '%s\n' "${ALL_ROWS[@]}" | sort)

row_key() { # bench/rows/06-tracker.mjs -> tracker
  local b
  b=$(basename "$1")
  b=${b#[0-9][0-9]-}
  echo "${b%.*}"
}
row_num() { # bench/rows/06-tracker.mjs -> 6
  local b
  b=$(basename "$1")
  echo $((10#${b:0:2}))
}

ROWS=()
if [[ ${#SELECT[@]} -eq 0 ]]; then
  ROWS=("${ALL_ROWS[@]}")
else
  for want in "${SELECT[@]}"; do
    found=
    for f in "${ALL_ROWS[@]}"; do
      if [[ $want == "$(row_key "$f")" ]] || { [[ $want =~ ^[0-9]+$ ]] && [[ $((10#$want)) -eq $(row_num "$f") ]]; }; then
        found=$f
      fi
    done
    [[ -n $found ]] || die "no row '$want'; rows:$(for f in "${ALL_ROWS[@]}"; do printf ' %s' "$(row_num "$f")=$(row_key "$f")"; done)"
    ROWS+=("$found")
  done
fi

needs() { # does any selected row need $1?
  local f
  for f in "${ROWS[@]}"; do
    grep -Eq "bench-needs:.*\b$1\b" "$f" && return 0
  done
  return 1
}

# ------------------------------------------------------------- toolchain

command -v node >/dev/null || die "Node.js 20.11 or newer is needed"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=11)?0:1)' ||
  die "Node.js 20.11 or newer is needed (found $(node --version))"

if needs npm; then
  # npm ci only when the lock file changed since the last install. Install
  # scripts are skipped: bittorrent-tracker's WebRTC client dependency builds
  # a native module the tracker server does not use (ws's optional native
  # helpers load from the prebuilt binaries they ship).
  stamp=$BENCH/node_modules/.swarmdrop-lock.sha256
  want=$(sha256sum "$BENCH/package-lock.json" | cut -d' ' -f1)
  if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    say "npm ci (bench/)"
    (cd "$BENCH" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
fi

SERVER_BIN=
if needs server; then
  target_dir=$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
  SERVER_BIN=$target_dir/release/swarmdrop-server
  if [[ $BUILD -eq 1 ]]; then
    build=(cargo build --release -p swarmdrop-server)
    needs loadgen && build+=(--bins --example tracker_load)
    say "${build[*]}"
    "${build[@]}"
  fi
  [[ -x $SERVER_BIN ]] || die "$SERVER_BIN is missing (run without --no-build)"
fi

if needs dist && [[ $BUILD -eq 1 ]]; then
  if [[ -x $ROOT/build.sh ]]; then
    say "./build.sh (extension packages)"
    "$ROOT/build.sh"
  else
    say "no build.sh yet: the extension package cannot be built"
  fi
fi

# ------------------------------------------------------------------- run

# Browsers are sensitive to load: one browser test or benchmark at a time.
BROWSER_LOCK=${SWARMDROP_BROWSER_LOCK:-/tmp/swarmdrop-browsers.lock}

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$BENCH/out/$STAMP
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/swarmdrop-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

COMMAND="bench/run.sh"
[[ $RUNS -ne 3 ]] && COMMAND+=" --runs $RUNS"
[[ $BUILD -eq 0 ]] && COMMAND+=" --no-build"
[[ ${#SELECT[@]} -gt 0 ]] && COMMAND+=" ${SELECT[*]}"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_BEFORE=$(head -n 1 /proc/stat)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
for f in "${ROWS[@]}"; do
  key=$(row_key "$f")
  result=$OUT/$(basename "${f%.*}").json
  say "row $(row_num "$f"): $key"
  case $f in
    *.mjs) runner=(node "$f") ;;
    *.sh) runner=(bash "$f") ;;
  esac
  # Rows that start browsers hold the shared browser lock while they run (and
  # only then): browser tests and other benchmarks on the machine wait.
  if grep -Eq 'bench-needs:.*\bdist\b' "$f" && command -v flock >/dev/null; then
    runner=(flock "$BROWSER_LOCK" "${runner[@]}")
  fi
  # A row that fails leaves no result; the report says so and points at its log.
  BENCH_ROOT=$ROOT BENCH_RESULT=$result BENCH_RUNS=$RUNS BENCH_WORK=$WORK \
    BENCH_SERVER_BIN=$SERVER_BIN \
    "${runner[@]}" 2> >(tee "$OUT/$key.log" >&2) ||
    say "row $key failed (log: ${OUT#"$ROOT"/}/$key.log)"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_AFTER=$(head -n 1 /proc/stat)

node "$BENCH/lib/report.mjs" \
  --results "$OUT" \
  --out "$ROOT/BENCHMARKS.md" \
  --command "$COMMAND" \
  --started "$STARTED" \
  --load "$LOAD_BEFORE" --load "$LOAD_AFTER" \
  --cpu-stat "$CPU_BEFORE" --cpu-stat "$CPU_AFTER" \
  --rows "$(for f in "${ALL_ROWS[@]}"; do printf '%s ' "$(basename "${f%.*}")"; done)" \
  --selected "$(for f in "${ROWS[@]}"; do printf '%s ' "$(basename "${f%.*}")"; done)"
say "wrote BENCHMARKS.md (results and logs: ${OUT#"$ROOT"/})"
