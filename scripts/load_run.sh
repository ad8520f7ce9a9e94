#!/usr/bin/env bash
# The load run of BENCHMARKS.md ("The whole stack under load, and ztgate"), in one command:
#
#   ./scripts/load_run.sh [SECONDS_PER_TARGET] [ROUNDS]      # defaults: 6 s, 2 rounds
#
# Builds and starts `cargo run --release -p ztgate --example load_targets` (every target on
# 127.0.0.1), then, round after round, runs `wrk -t1 -c32 --latency` against each target with the
# example's token and device headers. Per target and round it prints requests/s, p50, p99, the
# ratio to the bare server of the same round, and the server's CPU time per request, split into
# the tokio workers and the audit writer thread (from /proc, so Linux only). Timings on a shared
# 2-core machine are noisy: read ratios within a round, not absolute figures across runs.
#
# Needs wrk (Debian: `apt-get install wrk`; installed here when missing and apt-get is usable).
set -euo pipefail

seconds="${1:-6}"
rounds="${2:-2}"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "${script_dir}/.."

if ! command -v wrk >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get install -y wrk >/dev/null
    else
        echo "error: wrk not found; install it (Debian: apt-get install wrk)" >&2
        exit 1
    fi
fi

cargo build --release -p ztgate --example load_targets
out="$(mktemp)"
# On exit: stop the targets and wait for them to remove their audit files (gigabytes).
trap 'if [ -n "${pid:-}" ]; then kill "${pid}" 2>/dev/null || true; wait "${pid}" 2>/dev/null || true; fi; rm -f "${out}"' EXIT
# Long enough for every round (up to 40 targets); stopped by the trap at the end.
target/release/examples/load_targets $((seconds * 40 * rounds + 120)) >"${out}" &
pid=$!
for _ in $(seq 1 100); do
    grep -q '^headers:' "${out}" 2>/dev/null && break
    sleep 0.1
done
grep -q '^headers:' "${out}" || { echo "error: load_targets did not start" >&2; cat "${out}" >&2; exit 1; }
token="$(sed -n 's/^TOKEN=//p' "${out}")"
targets="$(awk '/^[a-z_]+ +http:/ {print $1}' "${out}")"

# CPU ticks (user + system) of the server's threads, summed by thread name.
cpu() {
    for task in /proc/"${pid}"/task/*; do
        printf '%s %s\n' "$(cat "${task}/comm")" "$(awk '{print $14 + $15}' "${task}/stat")"
    done | awk '{t[$1] += $2} END {print t["tokio-rt-worker"] + 0, t["zerotrust-audit"] + 0}'
}
hz="$(getconf CLK_TCK)"

printf '%-6s %-16s %10s %9s %9s %6s %14s %14s\n' round target 'req/s' p50 p99 ratio 'workers us/req' 'writer us/req'
for round in $(seq 1 "${rounds}"); do
    bare=""
    for target in ${targets}; do
        url="$(awk -v t="${target}" '$1 == t {print $2}' "${out}")"
        read -r w0 a0 < <(cpu)
        result="$(wrk -t1 -c32 -d"${seconds}"s --latency \
            -H "authorization: Bearer ${token}" \
            -H "x-device-id: d-load" -H "x-device-fingerprint: fp-load" "${url}")"
        read -r w1 a1 < <(cpu)
        rps="$(awk '/^Requests\/sec/ {print $2}' <<<"${result}")"
        requests="$(awk '/requests in/ {print $1}' <<<"${result}")"
        p50="$(awk '$1 == "50%" {print $2}' <<<"${result}")"
        p99="$(awk '$1 == "99%" {print $2}' <<<"${result}")"
        if grep -qE 'Non-2xx|Socket errors' <<<"${result}" || [ -z "${requests}" ] || [ "${requests}" = 0 ]; then
            echo "error: ${target} answered with errors (or not at all):" >&2
            echo "${result}" >&2
            exit 1
        fi
        [ -z "${bare}" ] && bare="${rps}"
        awk -v r="${round}" -v t="${target}" -v rps="${rps}" -v b="${bare}" -v p50="${p50}" \
            -v p99="${p99}" -v n="${requests}" -v hz="${hz}" \
            -v w="$((w1 - w0))" -v a="$((a1 - a0))" 'BEGIN {
                printf "%-6s %-16s %10.0f %9s %9s %6.2f %14.1f %14.1f\n",
                    r, t, rps, p50, p99, rps / b, w * 1e6 / hz / n, a * 1e6 / hz / n }'
    done
done
