#!/usr/bin/env bash
# Bounded soak: `walcast demo` with its built-in writer at a steady rate, clients that connect,
# take some events and reconnect in a loop, and walcast's RSS sampled over time. Memory must be
# flat: the script fails when RSS after warm-up grows by more than SOAK_MAX_GROWTH_PCT.
#
#   scripts/soak.sh                      # 3 minutes, 100 writes/s, 8 reconnecting clients
#   SOAK_SECONDS=600 SOAK_RATE=500 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TOTAL=${SOAK_SECONDS:-180}
RATE=${SOAK_RATE:-100}
CLIENTS=${SOAK_CLIENTS:-8}
MAX_GROWTH=${SOAK_MAX_GROWTH_PCT:-20}
PORT=${SOAK_PORT:-18181}
BIN=${WALCAST_BIN:-target/release/walcast}

[[ -x $BIN ]] || cargo build --release -p walcast
[[ -d tests/js/node_modules ]] || (cd tests/js && npm ci --no-audit --no-fund)

work=$(mktemp -d)
cleanup() {
    jobs -p | xargs -r kill 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

WALCAST_RETENTION=${SOAK_RETENTION:-30s} "$BIN" demo --listen "127.0.0.1:$PORT" --writes-per-second "$RATE" >"$work/demo.out" 2>"$work/demo.err" &
demo=$!
for _ in $(seq 1 120); do
    grep -q '^  Token:' "$work/demo.out" 2>/dev/null && break
    sleep 0.5
done
token=$(awk '/^  Token:/ {print $2}' "$work/demo.out")
[[ -n $token ]] || { echo "walcast demo did not start:"; tail -20 "$work/demo.err"; exit 1; }

client_loop() {
    while true; do
        timeout 20 node tests/js/client.mjs --protocol transport --url "ws://127.0.0.1:$PORT/graphql" \
            --token "$token" --count $((50 + RANDOM % 200)) \
            --query 'subscription { messages_mutated { key event data { text date_created } } }' \
            >/dev/null 2>&1 || true
    done
}
for _ in $(seq 1 "$CLIENTS"); do client_loop & done

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$demo/status"; }
echo "seconds,rss_kib,events_decoded,messages_sent" | tee "$work/rss.csv"
start=$(date +%s)
warm=""
while (( $(date +%s) - start < SECONDS_TOTAL )); do
    sleep 10
    kill -0 "$demo" 2>/dev/null || { echo "walcast exited"; tail -20 "$work/demo.err"; exit 1; }
    metrics=$(curl -s "http://127.0.0.1:$PORT/metrics" || true)
    decoded=$(awk '/^walcast_events_decoded_total\{/ {s += $2} END {print s + 0}' <<<"$metrics")
    sent=$(awk '/^walcast_messages_sent_total / {print $2}' <<<"$metrics")
    now=$(( $(date +%s) - start ))
    r=$(rss)
    echo "$now,$r,$decoded,${sent:-0}" | tee -a "$work/rss.csv"
    # Warm-up: the first minute fills the retention window and the allocator's pools.
    if [[ -z $warm ]] && (( now >= 60 )); then warm=$r; fi
done
final=$(rss)
if [[ -n $warm ]]; then
    growth=$(( (final - warm) * 100 / warm ))
    echo "RSS after warm-up ${warm} KiB, at the end ${final} KiB: ${growth}% growth (limit ${MAX_GROWTH}%)"
    (( growth <= MAX_GROWTH )) || { echo "memory is not flat"; exit 1; }
else
    echo "run shorter than the warm-up; RSS at the end ${final} KiB"
fi
