#!/usr/bin/env bash
# Runs every Quloud test on a fresh Debian machine: installs what is missing (nats-server,
# fuse3), builds once in release mode, and runs unit and integration tests against a real
# nats-server with JetStream and real storage node processes.
set -euo pipefail
cd "$(dirname "$0")/.."
source mount/deps.sh
quloud_install_deps openssl acl sqlite3 git   # the secured-bus test makes its own CA; tests/tools.rs
echo "==> building (release, reused by every test)"
cargo build --release --quiet
echo "==> running tests"
# A hung test fails the run after QULOUD_TEST_MINUTES (default 30; the tests take about 6 minutes on
# 2 cores) instead of blocking it: timeout signals cargo's whole process group, test binaries too.
limit=${QULOUD_TEST_MINUTES:-30}
status=0
# cargo-nextest runs every test in its own process, four at a time across all test binaries
# (.config/nextest.toml), so one slow binary does not hold up the rest; without it, plain
# `cargo test` runs the same tests one binary after another.
if cargo nextest --version >/dev/null 2>&1; then
  run=(cargo nextest run --release --lib --bins --tests --no-fail-fast)
else
  echo "cargo-nextest not found: running with cargo test, one test binary at a time" \
    "(cargo install cargo-nextest --locked for a faster run)" >&2
  run=(cargo test --release --lib --bins --tests --no-fail-fast -- --test-threads=4)
fi
# timeout runs cargo in a process group of its own, away from the terminal's Ctrl-C: on Ctrl-C or
# TERM, signal timeout (it hands TERM to its whole group: cargo and the test binaries) and wait.
timeout --kill-after=30s "${limit}m" "${run[@]}" &
tests=$!
stopped=""
trap 'stopped=1; kill -TERM "$tests" 2>/dev/null' INT TERM
while :; do
  wait "$tests" && status=0 || status=$?
  kill -0 "$tests" 2>/dev/null || break
done
trap - INT TERM
if [ -n "$stopped" ]; then
  echo "tests stopped by a signal" >&2
  exit 130
fi
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "tests did not finish within ${limit} minutes: a test hangs (the SLOW lines, or 'has been running for over 60 seconds' lines, name it)" >&2
fi
exit "$status"
