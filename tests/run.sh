#!/usr/bin/env bash
# Runs every Quloud test on a fresh Debian machine: installs what is missing (nats-server,
# fuse3), builds once in release mode, and runs unit and integration tests against a real
# nats-server with JetStream and real storage node processes.
set -euo pipefail
cd "$(dirname "$0")/.."
source mount/deps.sh
quloud_install_deps openssl   # the secured-bus test makes its own CA
echo "==> building (release, reused by every test)"
cargo build --release --quiet
echo "==> running tests"
cargo test --release --lib --bins --tests -- --test-threads=4
