#!/usr/bin/env bash
# Run zerotrust's whole test suite: every target of every workspace crate
# (unit, integration, examples, benches in test mode), then the doc tests,
# with every feature on (the Cedar policies of zerotrust-stepup included).
#
#   ./scripts/test.sh
#
# Works from any directory and on a fresh machine with the Rust toolchain.
# Also needs Node.js (18 or later; installed from Debian's packages when missing) with npm: tests/oidc_provider.rs runs a real
# OpenID Provider installed into tests/idp/ with `npm ci` (done here when needed).
# Needs the shared conformance corpora at ../shared/conformance, beside the
# repository. Ends with one summary line, `N passed, N failed`, summed over
# every `test result:` line of both cargo runs. Exits non-zero if any cargo
# command fails.
set -euo pipefail

# --- Repository root, from this script's own location ----------------------
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"
cd "${repo_root}"

say() { printf '\n==> %s\n' "$*"; }

say "zerotrust test suite in ${repo_root}"

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found on PATH; install the Rust toolchain first." >&2
    exit 1
fi

# --- Shared conformance corpora --------------------------------------------
# The tests read them from ../shared/conformance relative to the repo root.
# They are required: a missing corpus is an error, never a skip.
conformance_dir="${repo_root}/../shared/conformance"
if [[ ! -d "${conformance_dir}" ]]; then
    echo "error: conformance corpora not found at ${conformance_dir}" >&2
    echo "       The tests need the shared/ folder checked out beside this repository" >&2
    echo "       (../shared/conformance relative to ${repo_root})." >&2
    exit 1
fi
echo "conformance corpora: $(cd "${conformance_dir}" && pwd)"

# --- Temporary output log and cleanup --------------------------------------
log="$(mktemp "${TMPDIR:-/tmp}/zerotrust-test.XXXXXX")"

# shellcheck disable=SC2317  # invoked indirectly, by the EXIT trap
cleanup() {
    # No external services to stop: the tests start and stop their own redis-server and
    # oidc-provider (node) processes.
    rm -f "${log}"
}
trap cleanup EXIT

# --- External services -------------------------------------------------------
# zerotrust-redis's tests (and its bench) run against a real redis-server: each
# test starts its own on 127.0.0.1 and a free port and kills it when done, so
# only the binary has to be here. Installed from Debian's package when missing;
# a test without it fails, it never skips.
if ! command -v redis-server >/dev/null 2>&1; then
    say "redis-server not found; installing Debian's redis-server package"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: redis-server is missing and apt-get is not available;" >&2
        echo "       install redis-server (6.2 or later) and run this script again." >&2
        exit 1
    fi
    sudo_cmd=()
    if [[ "$(id -u)" -ne 0 ]]; then
        sudo_cmd=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update
    "${sudo_cmd[@]}" apt-get install -y --no-install-recommends redis-server
    # The package may start a system service on 6379; the tests do not use it.
fi
echo "redis-server: $(command -v redis-server) ($(redis-server --version | head -n 1))"

# The root package's tests/oidc_provider.rs runs a real OpenID Provider (panva's
# oidc-provider, on Node.js) from tests/idp/. It is installed exactly as the
# committed lockfile says, with `npm ci`, when node_modules is missing or older
# than the lockfile. A missing node or npm is an error: the test fails, it
# never skips.
idp_dir="${repo_root}/tests/idp"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "node or npm not found; installing Debian's nodejs and npm packages"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: node and npm are needed for tests/oidc_provider.rs (a real OpenID Provider)" >&2
        echo "       and apt-get is not available; install Node.js 18 or later with npm." >&2
        exit 1
    fi
    node_sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        node_sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${node_sudo[@]}" apt-get update
    "${node_sudo[@]}" apt-get install -y --no-install-recommends nodejs npm
fi
if [[ ! -d "${idp_dir}/node_modules" || "${idp_dir}/package-lock.json" -nt "${idp_dir}/node_modules" ]]; then
    say "npm ci --prefix tests/idp (oidc-provider, from the lockfile)"
    if ! npm ci --prefix "${idp_dir}" --no-audit --no-fund; then
        echo "error: npm ci --prefix tests/idp failed; the OpenID Provider tests cannot run." >&2
        exit 1
    fi
    # npm ci recreates node_modules; mark it newer than the lockfile it came from.
    touch "${idp_dir}/node_modules"
fi
echo "node: $(command -v node) ($(node --version)); oidc-provider in ${idp_dir}/node_modules"

# --- Test runs ---------------------------------------------------------------
status=0

say "cargo test --workspace --all-features --all-targets --locked"
if ! cargo test --workspace --all-features --all-targets --locked 2>&1 | tee -a "${log}"; then
    echo "error: cargo test --workspace --all-features --all-targets --locked failed" >&2
    status=1
fi

say "cargo test --workspace --all-features --doc --locked"
if ! cargo test --workspace --all-features --doc --locked 2>&1 | tee -a "${log}"; then
    echo "error: cargo test --workspace --all-features --doc --locked failed" >&2
    status=1
fi

# --- Summary -----------------------------------------------------------------
# Sum every `test result: ... N passed; N failed; N ignored; ...` line.
read -r passed failed ignored < <(
    sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "${log}" | awk '
        /^test result: / {
            for (i = 1; i < NF; i++) {
                if ($i !~ /^[0-9]+$/) continue
                word = $(i + 1)
                sub(/[;,.]+$/, "", word)
                if (word == "passed") p += $i
                else if (word == "failed") f += $i
                else if (word == "ignored") g += $i
            }
        }
        END { printf "%d %d %d\n", p, f, g }'
)

say "Summary of all cargo test runs (${ignored} ignored)"
if [[ "${status}" -ne 0 ]]; then
    echo "FAILED: at least one cargo command exited non-zero (see above)."
fi
echo "${passed} passed, ${failed} failed"

if [[ "${status}" -eq 0 && "${failed}" -ne 0 ]]; then
    status=1
fi
exit "${status}"
