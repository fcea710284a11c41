#!/usr/bin/env bash
# Installs what Quloud needs on Debian/Ubuntu when it is missing: nats-server, fuse3, and the
# tools the tests use. Sourced by quickstart.sh and tests/run.sh.
set -euo pipefail

quloud_install_deps() {
  local need=()
  command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
  command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
  command -v rsync >/dev/null 2>&1 || need+=(rsync)
  command -v setfattr >/dev/null 2>&1 || need+=(attr)
  for tool in "$@"; do
    case "$tool" in
      acl) command -v setfacl >/dev/null 2>&1 || need+=(acl) ;;  # setfacl/getfacl
      *) command -v "$tool" >/dev/null 2>&1 || need+=("$tool") ;;
    esac
  done
  if ((${#need[@]})); then
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "==> installing ${need[*]} (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Install Rust (1.85 or newer) with rustup: https://rustup.rs" >&2
    exit 1
  fi
}
