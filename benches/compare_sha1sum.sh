#!/usr/bin/env bash
# Anchors the hashing bench to `sha1sum` on the same machine, file and run:
# writes a 256 MiB file of random bytes, times `sha1sum` on it (median of 3,
# after one run that warms the page cache), runs `cargo bench --bench hashing`
# on that same file (SWARMDROP_BENCH_FILE), and prints both throughputs in
# MB/s (10^6 bytes per second) with the ratio ours / sha1sum.
#
# Needs: bash, coreutils, cargo.   Usage: benches/compare_sha1sum.sh
# Set KEEP_LOG=path to keep criterion's full output.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

size=$((256 * 1024 * 1024))
file="$work/bench-256MiB.bin"
head -c "$size" /dev/urandom > "$file"

echo "machine: $(nproc) cores; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- sha1sum: median of three timed runs on a warm page cache.
sha1sum "$file" > /dev/null
TIMEFORMAT=%R
times=()
for _ in 1 2 3; do
    t=$( { time sha1sum "$file" > /dev/null; } 2>&1 )
    times+=("$t")
done
median=$(printf '%s\n' "${times[@]}" | sort -g | sed -n 2p)
sha1sum_mbs=$(awk -v b="$size" -v s="$median" 'BEGIN { printf "%.1f", b / s / 1e6 }')

# --- our hashing bench on the same file.
log="${KEEP_LOG:-$work/bench.log}"
(cd "$root" && SWARMDROP_BENCH_FILE="$file" cargo bench --bench hashing -- --noplot) > "$log" 2>&1 || {
    echo "cargo bench failed; its output:" >&2
    cat "$log" >&2
    exit 1
}

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "$(sha1sum --version | head -n 1), 256 MiB file, runs ${times[*]} s"
printf '%-34s %10s MB/s\n' "sha1sum (median of 3)" "$sha1sum_mbs"
# Criterion prints the benchmark id, then `time:` and `thrpt:` lines whose
# middle figure is the estimate; convert it to MB/s.
awk -v ref="$sha1sum_mbs" '
    /^hashing\// { id = $1 }
    /thrpt:/ && id != "" {
        gsub(/[\[\]]/, "")
        for (i = 1; i <= NF; i++) if ($i == "thrpt:") { v = $(i + 3); u = $(i + 4) }
        if (u == "GB/s") v *= 1000; else if (u == "kB/s") v /= 1000; else if (u == "B/s") v /= 1e6
        printf "%-34s %10.1f MB/s   ours/sha1sum = %.2f\n", id, v, v / ref
        id = ""  # a later `thrpt:` is the change against a saved baseline
    }
' "$log"
