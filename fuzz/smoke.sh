#!/usr/bin/env bash
# Fuzz smoke test, on the stable toolchain (no nightly needed).
#
#   bash fuzz/smoke.sh [SECONDS]     # SECONDS per target, default 30
#
# 1. Installs cargo-fuzz if it is missing (`cargo install cargo-fuzz --locked`).
# 2. Builds every target with `--sanitizer none` (stable rustc refuses the
#    `-Zsanitizer=address` cargo-fuzz passes by default).
# 3. Replays every saved crash in tests/fuzz_regressions/<target>-<name>.
# 4. Runs each target, one at a time, for SECONDS from the committed seeds
#    (fuzz/seeds/<target>), growing the git-ignored fuzz/corpus/<target>.
#
# Exits non-zero if any regression input or any fuzzing run crashes; the
# crashing input is left in fuzz/artifacts/<target>/ and its panic printed.
set -euo pipefail

secs="${1:-30}"
case "$secs" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS]" >&2
    exit 2
    ;;
esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

targets=(review_bytes review_structured config_yaml)
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

echo "== building fuzz targets (sanitizer none)"
cargo fuzz build --sanitizer none

failed=()

# Prints why a run failed: the panic and the first frames of its backtrace,
# or libFuzzer's own reason (timeout, out of memory).
report() {
    local log="$1"
    grep -E -m1 -A12 "panicked at|ERROR: libFuzzer" "$log" || tail -n 20 "$log"
    grep -E "Test unit written to|^Running: " "$log" || true
}

shopt -s nullglob
for t in "${targets[@]}"; do
    saved=(tests/fuzz_regressions/"$t"-*)
    if [ "${#saved[@]}" -eq 0 ]; then
        continue
    fi
    echo "== $t: replaying ${#saved[@]} saved input(s) from tests/fuzz_regressions"
    for input in "${saved[@]}"; do
        log="$logs/$t-regression.log"
        if cargo fuzz run --sanitizer none "$t" "$input" >"$log" 2>&1; then
            echo "   ok $input"
        else
            echo "   CRASH $input"
            report "$log"
            failed+=("$t regression $input")
        fi
    done
done

for t in "${targets[@]}"; do
    dict=()
    case "$t" in
    review_bytes) dict=(-dict=fuzz/dicts/review.dict) ;;
    config_yaml) dict=(-dict=fuzz/dicts/config_yaml.dict) ;;
    esac
    corpus="fuzz/corpus/$t"
    mkdir -p "$corpus"
    log="$logs/$t.log"
    echo "== $t: fuzzing for ${secs}s"
    # The working corpus comes first: libFuzzer writes new inputs only there,
    # never into the committed seeds.
    if cargo fuzz run --sanitizer none "$t" "$corpus" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 "${dict[@]}" \
        >"$log" 2>&1; then
        grep -E "^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs" "$log" || tail -n 3 "$log"
    else
        echo "   CRASH in $t"
        report "$log"
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "== FAILED: ${failed[*]}"
    exit 1
fi
echo "== all fuzz targets ran ${secs}s without a crash"
