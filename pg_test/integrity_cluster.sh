#!/usr/bin/env bash
# Integrity under concurrency and without a key, in a cluster of its own: pgbench
# inserts from 4 sessions into 3 organizations and into one, then verification must
# find every chain whole; with no key configured, inserts still succeed, unsigned, and
# verification reports them. Prints "integrity cluster tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source pg_test/lib.sh
start_cluster "${AUDIT_DB_INTEGRITY_DIR:-/tmp/audit_db_integritytest}" "${AUDIT_DB_INTEGRITY_PORT:-55437}"
psql -c "CREATE EXTENSION audit_db" >/dev/null
cat > "$dir/three_orgs.sql" <<'SQL'
\set org random(1, 3)
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES (now(), 'org-' || :org, 'bench.insert', 'ok');
SQL
cat > "$dir/one_org.sql" <<'SQL'
INSERT INTO audit_log ("timestamp", organization_id, action, status) VALUES (now(), 'org-single', 'bench.insert', 'ok');
SQL
chmod 644 "$dir"/*.sql
pgbench() { "$bindir/pgbench" -h "$dir/sock" -p "$port" -U postgres -n -M prepared "$@" postgres >"$dir/pgbench.log" 2>&1; }
pgbench -c 4 -j 2 -t 250 -f "$dir/three_orgs.sql"
check "pgbench, 4 sessions x 250 inserts over 3 organizations" "0" "$?"
pgbench -c 4 -j 2 -t 250 -f "$dir/one_org.sql"
check "pgbench, 4 sessions x 250 inserts into one organization" "0" "$?"
check "every chain is contiguous (sequence 1..n per organization)" "org-1 true|org-2 true|org-3 true|org-single true" \
    "$(psql -c "SELECT string_agg(o || ' ' || ok::text, '|' ORDER BY o) FROM (SELECT organization_id AS o, min(chain_seq) = 1 AND max(chain_seq) = count(*) AND count(DISTINCT chain_seq) = count(*) AS ok FROM audit_log GROUP BY 1) c")"
check "verification after concurrent inserts: 2000 rows, no mismatch, no break" "2000|0|0|0|" \
    "$(psql -c "SELECT checked || '|' || hash_mismatches || '|' || signature_mismatches || '|' || chain_breaks || '|' || coalesce(first_bad_id::text, '') FROM audit_verify_integrity()")"
# Without a key: inserts succeed unsigned, verification says so.
psql -c "ALTER SYSTEM SET audit_db.key_file = ''" -c "SELECT pg_reload_conf()" >/dev/null
check "without a key an insert succeeds, hashed and chained, signature NULL" "true|true|true" \
    "$(psql -c "INSERT INTO audit_log (\"timestamp\", organization_id, action, status) VALUES (now(), 'org-1', 'no.key', 'ok') RETURNING (signature IS NULL) || '|' || (hash IS NOT NULL) || '|' || (chain_seq IS NOT NULL)")"
out=$(psql -c "SELECT signature_mismatches || '|' || chain_breaks FROM audit_verify_integrity()")
check "verification reports the unsigned row (and, keyless, the signed ones it cannot check); nothing wrong" \
    "NOTICE:  audit_db: 1 of 2001 rows carry no signature (no key was configured when they were written)|NOTICE:  audit_db: 2000 rows could not be fully verified (forgotten subjects or no key)|0|0" \
    "$(echo "$out" | paste -sd'|')"
finish "integrity cluster"
