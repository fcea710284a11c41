#!/usr/bin/env bash
# Quick start: installs what is missing, builds Quloud, creates a vault key if there is none
# (printing the paper key once), runs a one-machine fabric (nats-server with JetStream + 3
# storage nodes) checked with a store/retrieve/audit round trip, and mounts the vault at
# ~/vault (or the directory given). Ctrl-C unmounts and stops everything.
#
#   ./mount/quickstart.sh                 # vault at ~/vault, state under ~/.local/share/quloud
#   ./mount/quickstart.sh /mnt/vault      # elsewhere
#   QULOUD_HOME=/tmp/q ./mount/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source mount/deps.sh
quloud_install_deps
echo "==> building quloud (release)"
cargo build --release --quiet
if [ "$#" -eq 0 ]; then
  set -- "${QULOUD_VAULT:-$HOME/vault}"
fi
mkdir -p "$1"
exec ./target/release/quloud up "$@"
