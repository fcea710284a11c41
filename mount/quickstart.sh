#!/usr/bin/env bash
# Quick start: installs what is missing, builds Quloud, creates a vault key if there is none,
# and runs a one-machine fabric (nats-server with JetStream + 3 storage nodes) checked with a
# store/retrieve/audit round trip. Ctrl-C stops everything.
#
#   ./mount/quickstart.sh            # state under ~/.local/share/quloud
#   QULOUD_HOME=/tmp/q ./mount/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source mount/deps.sh
quloud_install_deps
echo "==> building quloud (release)"
cargo build --release --quiet
exec ./target/release/quloud up "$@"
