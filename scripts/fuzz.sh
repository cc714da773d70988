#!/usr/bin/env bash
# Bounded fuzzing of what walcast parses from outside: pgoutput messages from the server, filters
# and socket frames from clients.
#
#   scripts/fuzz.sh [TARGET...]     targets: pgoutput filter protocol (default: all)
#   FUZZ_SECONDS=60                 time per target
#
# Uses cargo-fuzz (libFuzzer) on the nightly toolchain, installing both when missing. The corpus
# grows in fuzz/corpus/<target> (not committed), seeded from fuzz/seeds/<target>, the captured
# pgoutput messages of crates/walcast-wal/tests/data, and fuzz/regressions/<target>.
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the run: commit that file to
# fuzz/regressions/<target>/, where the regression tests of `cargo test` replay it on stable.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly ALL_TARGETS=(pgoutput filter protocol)
readonly SECONDS_EACH=${FUZZ_SECONDS:-60}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "==> installing the nightly toolchain (cargo-fuzz needs it)"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Captured pgoutput messages, one file each.
seed_pgoutput() {
    local dir=$1 file line n=0
    for file in crates/walcast-wal/tests/data/pgoutput_*.txt; do
        while read -r line; do
            [[ -z $line || $line == \#* ]] && continue
            n=$((n + 1))
            # line: <number> <lsn> <hex payload>
            # shellcheck disable=SC2059 # the format is the payload as \x escapes
            printf "$(sed 's/../\\x&/g' <<<"${line##* }")" >"$dir/captured-$(basename "$file" .txt)-$n"
        done <"$file"
    done
}

status=0
for target in "${targets[@]}"; do
    case $target in
        pgoutput | filter | protocol) ;;
        *) echo "unknown target $target (pgoutput, filter, protocol)" >&2; exit 2 ;;
    esac
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    if [[ $target == pgoutput ]]; then
        seed_pgoutput "$corpus"
    else
        cp fuzz/seeds/"$target"/* "$corpus"/
    fi
    dict=()
    [[ $target == pgoutput ]] || dict=(-dict=fuzz/json.dict)
    echo "==> fuzzing $target for ${SECONDS_EACH}s"
    # The regressions directory is read as a second corpus: every known crash is replayed first.
    if ! cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus" "fuzz/regressions/$target" \
        -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 "${dict[@]}"; then
        echo "!! $target failed: the input is in fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
