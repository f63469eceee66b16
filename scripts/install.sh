#!/usr/bin/env bash
# Builds and installs audit_db into the PostgreSQL of pg_config (default
# /usr/bin/pg_config), then installs the frozen scripts of earlier releases
# (sql/audit_db--X.Y.Z.sql) that cargo pgrx does not copy, so that
# CREATE EXTENSION audit_db VERSION 'X.Y.Z' keeps working. Extra arguments go to
# cargo pgrx install (e.g. --release).
set -euo pipefail
cd "$(dirname "$0")/.."
pg_config=${PG_CONFIG:-/usr/bin/pg_config}
current=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -1)
ext="$("$pg_config" --sharedir)/extension"
# Scripts left by another checkout (a newer branch's step, say) would offer update
# paths this one does not have: install exactly this checkout's set.
rm -f "$ext"/audit_db--*.sql
cargo pgrx install --pg-config "$pg_config" "$@"
for f in sql/audit_db--*.sql; do
    base=$(basename "$f")
    # Upgrade scripts (A--B) are copied by cargo pgrx; the current version's install
    # script is the one it generated.
    [[ "$base" =~ ^audit_db--[^-]+--[^-]+\.sql$ ]] && continue
    [ "$base" = "audit_db--$current.sql" ] && continue
    install -m 644 "$f" "$ext/$base"
done
