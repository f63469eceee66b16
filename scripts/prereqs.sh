#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine with Rust and PostgreSQL 15 lacks to build
# and test audit_db. Idempotent: skips whatever is already there. Must run as root.
set -euo pipefail

# The cargo-pgrx version must equal the pgrx crate's (Cargo.toml pins it with =).
PGRX_VERSION=$(sed -nE 's/^pgrx = .*"=([0-9.]+)".*/\1/p' "$(dirname "$0")/../Cargo.toml" | head -1)
[ -n "$PGRX_VERSION" ] || { echo "prereqs: no pgrx = \"=X.Y.Z\" line in Cargo.toml"; exit 1; }
pkgs=(postgresql-server-dev-15 libclang-dev clang sudo postgresql-15-cron postgresql-15-partman python3)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "prereqs: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "$(cargo pgrx --version 2>/dev/null || true)" != "cargo-pgrx $PGRX_VERSION" ]; then
    echo "prereqs: installing cargo-pgrx $PGRX_VERSION (takes several minutes the first time)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
# Every build reads every pg_config of pgrx's config: one that is gone (a fetched
# PostgreSQL 16-18 removed, see scripts/pg_binaries.sh) breaks the build of all.
stale=false
while read -r path; do
    [ -x "$path" ] || stale=true
done < <(sed -nE 's/^pg[0-9]+ *= *"([^"]+)"/\1/p' "$PGRX_HOME/config.toml" 2>/dev/null)
# (cargo pgrx init adds to the config, it never takes an entry away.)
$stale && rm -f "$PGRX_HOME/config.toml"
if ! grep -q '^pg15 *= *"/usr/bin/pg_config"' "$PGRX_HOME/config.toml" 2>/dev/null; then
    echo "prereqs: cargo pgrx init --pg15 /usr/bin/pg_config"
    cargo pgrx init --pg15 /usr/bin/pg_config >/dev/null
fi
