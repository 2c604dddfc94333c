#!/usr/bin/env bash
# Runs one fuzz target for a fixed time on its corpus (seeded by seed.sh if
# it is missing), with its dictionary when there is one, and prints one
# Markdown table row: target, seconds, executions, exec/s, coverage
# (libFuzzer's `cov` edges and `ft` features), corpus size, findings.
#
# Needs: a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Usage: fuzz/run.sh <target> [seconds, default 600]
# The full libFuzzer log goes to fuzz/logs/<target>-<UTC time>.log; a crash
# is saved by libFuzzer under fuzz/artifacts/<target>/.
set -euo pipefail

fuzz="$(cd "$(dirname "$0")" && pwd)"
target="${1:?usage: fuzz/run.sh <target> [seconds]}"
seconds="${2:-600}"

[ -d "$fuzz/corpus/$target" ] || "$fuzz/seed.sh" > /dev/null
mkdir -p "$fuzz/logs"
log="$fuzz/logs/$target-$(date -u +%Y%m%dT%H%M%SZ).log"

args=(-max_total_time="$seconds" -print_final_stats=1)
[ -f "$fuzz/dicts/$target.dict" ] && args+=(-dict="$fuzz/dicts/$target.dict")

status=0
(cd "$fuzz/.." && cargo +nightly fuzz run "$target" -- "${args[@]}") > "$log" 2>&1 || status=$?

stat() { awk -v k="stat::$1:" '$1 == k { print $2; exit }' "$log"; }
last() { grep -Eo "$1: [0-9]+" "$log" | tail -n 1 | awk '{ print $2 }'; }
ran=$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | awk '{ print $5 }' | tail -n 1)
corpus=$(grep -Eo 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1 | cut -d' ' -f2)
if [ "$status" -eq 0 ]; then
    findings="none"
else
    findings="exit $status: $(grep -Eo 'Test unit written to [^ ]+' "$log" | tail -n 1 | sed 's/.* //')"
fi
printf '| %s | %s | %s | %s | %s / %s | %s | %s |\n' \
    "$target" "${ran:-?}" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "$(last cov)" "$(last ft)" "${corpus:-?}" "$findings"
echo "log: $log" >&2
exit "$status"
