#!/usr/bin/env bash
# Writes sql/manifest/audit_db--<version>.tsv: the catalog snapshot of a fresh
# CREATE EXTENSION audit_db (audit_schema_snapshot()), which audit_verify_schema()
# compares the live catalog with. Part of cutting a release (docs/releasing.md).
# Assumes the extension is installed (scripts/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -1)
dir=/tmp/audit_db_manifest
port=${AUDIT_DB_MANIFEST_PORT:-55439}
scripts/cluster.sh start "$dir" "$port" >/dev/null
trap 'scripts/cluster.sh stop "$dir"' EXIT
psql=(psql -h "$dir/sock" -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1)
"${psql[@]}" -c "CREATE DATABASE manifest"
out="sql/manifest/audit_db--$version.tsv"
{
    echo "# audit_db $version: catalog of a fresh CREATE EXTENSION (scripts/manifest.sh)."
    echo "# object_type<TAB>object_name<TAB>definition; compared by audit_verify_schema()."
    "${psql[@]}" -d manifest -At -c "CREATE EXTENSION audit_db" -c "
        SELECT object_type || E'\t' || object_name || E'\t' || definition
          FROM audit_schema_snapshot()
         ORDER BY object_type COLLATE \"C\", object_name COLLATE \"C\""
} > "$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out ($(grep -vc '^#' "$out") objects)"
