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
if [ -x target/release/quloud ]; then
  echo "==> building quloud (release; seconds when little changed)"
else
  echo "==> building quloud (release; a first build takes a few minutes on 2 cores)"
fi
started=$SECONDS
# cargo shows its progress bar on a terminal; elsewhere only errors.
if [ -t 2 ]; then cargo build --release; else cargo build --release --quiet; fi
echo "==> built in $((SECONDS - started)) s"
if [ "$#" -eq 0 ]; then
  set -- "${QULOUD_VAULT:-$HOME/vault}"
fi
mkdir -p "$1"
exec ./target/release/quloud up "$@"
