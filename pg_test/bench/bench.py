#!/usr/bin/env python3
"""audit_db benchmarks, each peer side by side in the same run on the same cluster.

Started by pg_test/bench/run.sh (which starts a throwaway cluster with fsync on and
installs pg_partman); prints a Markdown table of medians and ratios. Comparisons
(numbering of issue 7):

  3a. set up a parent with 12 monthly partitions ahead plus its indexes:
      audit_create_partitions(parent, 12) vs partman.create_parent + run_maintenance
  3b. a maintenance run with nothing to do, on that parent
  4.  retention on 1M rows over 12 months: audit_drop_expired_partitions vs
      DELETE ... WHERE "timestamp" < cutoff (time and WAL bytes)
  5.  audit_convert_to_partitioned on a 1M-row plain table: attach vs copy mode
      (time; the table is locked ACCESS EXCLUSIVE for the whole call in both modes),
      with the backend's peak RSS

  1.  audit_pseudonymize_hash(v) vs pgcrypto encode(hmac(v, key, 'sha256'), 'hex')
      vs md5(v) over a 1M-row table, one process and with parallel workers; token and
      encryption strategies through audit_pseudonymize_batch, new and repeated
      originals (values per second); audit_pseudonymize_subject vs a plain UPDATE

  2.  insert throughput (pgbench, prepared single-row inserts): audit_log with row
      hash, signature and epoch (sealer worker on) vs the same partitioned table with
      no trigger, 1 organization at 1/4/8 clients and 50 at 4; the 1 -> 4 scaling;
      bulk INSERT ... SELECT of 100,000 rows; seal lag under load (p50/p99)
  6.  audit_verify_integrity() rows per second over everything written, sealed
  7.  a data subject with 100,000 events (actor, target, mentioned): export streamed
      and as one jsonb, pseudonymize, delete and forget, time and backend memory, each
      against plain SQL doing the same rows on a trigger-free copy

BENCH_ONLY=<comma-separated function names> runs only those sections.
"""
import os
import re
import statistics
import subprocess
import sys

SOCK = os.environ["BENCH_SOCK"]
PORT = os.environ["BENCH_PORT"]
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
BIG_RUNS = int(os.environ.get("BENCH_BIG_RUNS", "3"))
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
DB = "bench"
SUBJECT_EVENTS = int(os.environ.get("BENCH_SUBJECT_EVENTS", "100000"))


def psql(*commands, db=DB):
    """Runs the commands (SQL statements or psql meta-commands) in one session."""
    args = ["psql", "-h", SOCK, "-p", PORT, "-U", "postgres", "-d", db, "-X", "-q", "-At",
            "-v", "ON_ERROR_STOP=1", "-f", "-"]
    lines = []
    for c in commands:
        c = c.strip()
        if c.startswith("\\") or c.endswith("\\gset"):
            lines.append(c)
        else:
            lines.append(c.rstrip(";") + ";")
    out = subprocess.run(args, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"psql failed: {out.stderr}\n{commands}")
    return out.stdout


def timed(statement, setup=()):
    """Milliseconds of the statement(s) (psql \\timing, summed, client round trips
    included), the WAL bytes written, and the backend's peak RSS (VmHWM) in kB."""
    out = psql(*setup,
               "SELECT pg_current_wal_lsn() AS lsn0 \\gset",
               "\\timing on", statement, "\\timing off",
               "SELECT 'wal=' || pg_wal_lsn_diff(pg_current_wal_lsn(), :'lsn0')::bigint",
               "SELECT 'hwm=' || substring(pg_read_file('/proc/' || pg_backend_pid() || '/status') from 'VmHWM:\\s+(\\d+)')",
               "SELECT 'anon=' || substring(pg_read_file('/proc/' || pg_backend_pid() || '/status') from 'RssAnon:\\s+(\\d+)')")
    ms = sum(float(x) for x in re.findall(r"^Time: ([0-9.]+) ms", out, re.M))
    wal = int(re.search(r"^wal=(-?\d+)$", out, re.M).group(1))
    hwm = int(re.search(r"^hwm=(\d+)$", out, re.M).group(1))
    anon = int(re.search(r"^anon=(\d+)$", out, re.M).group(1))
    ANON.append(anon)
    return ms, wal, hwm


# RssAnon (private memory) of the backend after each timed statement, kB.
ANON = []

PARENT_DDL = """
CREATE TABLE {t} (LIKE audit_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE ("timestamp");
ALTER TABLE {t} ADD PRIMARY KEY (id, "timestamp");
CREATE INDEX ON {t} ("timestamp"); CREATE INDEX ON {t} (principal_id); CREATE INDEX ON {t} (organization_id);
CREATE INDEX ON {t} (action); CREATE INDEX ON {t} (status); CREATE INDEX ON {t} (hash);
CREATE INDEX ON {t} (correlation_id); CREATE INDEX ON {t} ("timestamp", status);
"""

results = []  # (comparison, ours_label, ours_ms, peer_label, peer_ms, note)


def median(xs):
    return statistics.median(xs)


def month_start():
    return psql("SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date").strip()


# ------------------------------------------------------------------- 1
PGCRYPTO_HMAC = "encode(hmac(v, 'bench-key-0123456789abcdef0123456789', 'sha256'), 'hex')"


def pseudonymization():
    """Issue 17's goals: the hash strategy single-process against md5 and pgcrypto's
    hmac over the same 1M-row table, then with parallel workers allowed (the plan must
    use them); token and encryption new values per second through the batch form; a
    subject's pseudonymization against the plain UPDATE of the same rows."""
    psql("CREATE EXTENSION IF NOT EXISTS pgcrypto",
         f"CREATE TABLE pseudo_src AS SELECT i::text AS v FROM generate_series(1, {ROWS}) i",
         "VACUUM ANALYZE pseudo_src")
    serial = "SET max_parallel_workers_per_gather = 0"
    times = {k: [] for k in ("fast", "old", "pgcrypto", "md5", "parallel")}
    for _ in range(BIG_RUNS):
        times["fast"].append(timed("SELECT count(audit_pseudonymize_hash(v)) FROM pseudo_src", [serial])[0])
        times["old"].append(timed("SELECT count(audit_pseudonymize(v, 'hash')) FROM pseudo_src", [serial])[0])
        times["pgcrypto"].append(timed(f"SELECT count({PGCRYPTO_HMAC}) FROM pseudo_src", [serial])[0])
        times["md5"].append(timed("SELECT count(md5(v)) FROM pseudo_src", [serial])[0])
        times["parallel"].append(timed("SELECT count(audit_pseudonymize_hash(v)) FROM pseudo_src",
                                       ["SET max_parallel_workers_per_gather = 2"])[0])
    m = {k: median(v) for k, v in times.items()}
    plan = psql("SET max_parallel_workers_per_gather = 2",
                "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(audit_pseudonymize_hash(v)) FROM pseudo_src")
    launched = re.search(r"Workers Launched: (\d+)", plan)
    workers = int(launched.group(1)) if launched else 0
    results.append((f"1. hash pseudonyms of {ROWS:,} values, one process", "audit_pseudonymize_hash(v)", m["fast"],
                    "pgcrypto encode(hmac(v, key, 'sha256'), 'hex')", m["pgcrypto"],
                    f"md5(v): {m['md5']:,.1f} ms, audit_db / md5 = {m['fast'] / m['md5']:.2f}x (goal <= 1.0x); "
                    f"audit_db / pgcrypto = {m['fast'] / m['pgcrypto']:.2f}x (goal < 1.0x); "
                    f"audit_pseudonymize(v, 'hash'), which delegates: {m['old']:,.1f} ms"))
    results.append((f"1. hash pseudonyms of {ROWS:,} values, parallel workers allowed", "audit_pseudonymize_hash(v)",
                    m["parallel"], "same, one process", m["fast"],
                    f"workers launched: {workers}; {m['fast'] / m['parallel']:.2f}x faster than one process"))
    n = max(ROWS // 10, 1000)
    for strategy in ("token", "encryption"):
        new, again, single = [], [], []
        for run in range(BIG_RUNS):
            batch = (f"SELECT cardinality(audit_pseudonymize_batch(array_agg('{strategy}-{run}-' || i), '{strategy}')) "
                     f"FROM generate_series(1, {n}) i")
            new.append(timed(batch)[0])
            again.append(timed(batch)[0])
            single.append(timed(f"SELECT count(audit_pseudonymize('{strategy}-one-{run}-' || i, '{strategy}')) "
                                f"FROM generate_series(1, {n // 10}) i")[0])
        results.append((f"1. {strategy} strategy, {n:,} values in one batch", "new originals (mappings written)",
                        median(new), "repeated originals (blind index lookup)", median(again),
                        f"{n / median(new) * 1000:,.0f} new values/s (goal >= 50,000), "
                        f"{n / median(again) * 1000:,.0f} repeated/s; one call per value: "
                        f"{n // 10 / median(single) * 1000:,.0f} new values/s"))


def subject_pseudonymization():
    """audit_pseudonymize_subject (principal and personal details keys, every row marked,
    the append-only trigger checking each row) against the plain UPDATE that changes
    the same rows of an identical copy with no trigger."""
    per = max(ROWS // 20, 1000)
    subjects = [f"subject-{i}@example.com" for i in range(BIG_RUNS)]
    psql("CREATE TABLE subj_plain (LIKE audit_log INCLUDING ALL) PARTITION BY RANGE (\"timestamp\")",
         "CREATE TABLE subj_plain_default PARTITION OF subj_plain DEFAULT",
         "SELECT count(*) FROM audit_create_partitions('subj_plain', 1)")
    for who in subjects:
        psql(f"""INSERT INTO audit_log ("timestamp", principal_id, organization_id, action, status, details)
                 SELECT now(), '{who}', 'org-1', 'bench.subject', 'ok',
                        jsonb_build_object('email', '{who}', 'ipAddress', '203.0.113.' || (i % 250), 'n', i)
                   FROM generate_series(1, {per}) i""")
    psql("""INSERT INTO subj_plain SELECT * FROM audit_log WHERE action = 'bench.subject'""",
         "VACUUM ANALYZE audit_log", "VACUUM ANALYZE subj_plain", "CHECKPOINT")
    ours, peer = [], []
    for who in subjects:
        ours.append(timed(f"SELECT audit_pseudonymize_subject('{who}')")[0])
        pseudonym = psql(f"SELECT audit_pseudonymize_hash('{who}')").strip()
        peer.append(timed(f"""UPDATE subj_plain SET principal_id = '{pseudonym}',
                                  details = details || jsonb_build_object('pseudonymized', true, 'pseudonymizedAt', now())
                            WHERE principal_id = '{who}'""")[0])
    left = int(psql("SELECT count(*) FROM audit_log WHERE principal_id LIKE 'subject-%' OR details->>'email' LIKE 'subject-%'").strip())
    results.append((f"1. pseudonymize a subject's {per:,} rows (principal + email, ipAddress)",
                    "audit_pseudonymize_subject", median(ours), "plain UPDATE of the same rows, no trigger",
                    median(peer), f"{median(ours) / median(peer):.2f}x the plain UPDATE (goal <= 1.5x); "
                                  f"rows left in clear: {left}"))


# ------------------------------------------------------------------- 2
SECONDS = int(os.environ.get("BENCH_PGBENCH_SECONDS", "10"))
# Each insert cell runs this many rounds of both tables; the ratio is the median of the
# rounds' ratios (each round runs both tables back to back: paired), tps medians beside.
ROUNDS = int(os.environ.get("BENCH_INSERT_ROUNDS", "5"))


def pgbench(script, clients):
    path = f"/tmp/audit_db_bench_{abs(hash(script))}.sql"
    with open(path, "w") as f:
        f.write(script)
    os.chmod(path, 0o644)
    out = subprocess.run(["pgbench", "-h", SOCK, "-p", PORT, "-U", "postgres", "-n", "-M", "prepared",
                          "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(SECONDS), "-f", path, DB],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"pgbench failed: {out.stderr}")
    return float(re.search(r"tps = ([0-9.]+)", out.stdout).group(1))


def paired(run):
    """Runs `run(table)` for audit_log and plain_log in ROUNDS rounds, alternating which
    goes first, each after a CHECKPOINT (so neither pays for the other's dirty pages or
    a checkpoint's full-page writes more than the other); returns each table's values."""
    values = {"audit_log": [], "plain_log": []}
    for r in range(ROUNDS):
        for t in (("audit_log", "plain_log") if r % 2 == 0 else ("plain_log", "audit_log")):
            psql("CHECKPOINT")
            values[t].append(run(t))
    return values


def insert_throughput():
    """Issue 13's cells: audit_log (row hash + signature + epoch, sealed by the background
    worker) against the same partitioned table without any trigger, holding the same
    rows, pgbench prepared single-row inserts; the 1 -> 4 client scaling of both; bulk
    INSERT ... SELECT. Both tables run in alternating rounds (`paired`); medians."""
    psql("CREATE TABLE plain_log (LIKE audit_log INCLUDING ALL) PARTITION BY RANGE (\"timestamp\")",
         "CREATE TABLE plain_log_default PARTITION OF plain_log DEFAULT",
         "SELECT count(*) FROM audit_create_partitions('plain_log', 1)",
         # The earlier comparisons wrote into audit_log: the peer starts with the same
         # rows, so its indexes are as deep.
         "INSERT INTO plain_log SELECT * FROM audit_log",
         # The whole database: the tables of section 1 (a million rows, the mappings)
         # would otherwise be autovacuumed during whichever round comes first.
         "VACUUM ANALYZE")
    row = """INSERT INTO {t} ("timestamp", principal_id, organization_id, action, status, details)
VALUES (now(), 'user-' || :u, 'org-1', 'bench.insert', 'ok', '{{"ip": "203.0.113.7"}}');
"""
    rates = {}
    for orgs, clients in ((1, 1), (1, 4), (1, 8), (50, 4)):
        def run(t):
            script = f"\\set u random(1, 1000)\n\\set o random(1, {orgs})\n" + row.format(t=t)
            lag = start_lag_probe() if t == "audit_log" and (orgs, clients) == (1, 4) else None
            tps = pgbench(script, clients)
            if lag is not None:
                LAG.extend(finish_lag_probe(lag))
            return tps
        tps = paired(run)
        for t in tps:
            rates[(orgs, clients, t)] = median(tps[t])
        a, p = rates[(orgs, clients, "audit_log")], rates[(orgs, clients, "plain_log")]
        ratios = [x / y for x, y in zip(tps["audit_log"], tps["plain_log"])]
        spread = ", ".join(f"{r:.2f}" for r in ratios)
        results.append((f"2. inserts/s, {orgs} organization(s), {clients} client(s), {ROUNDS} x {SECONDS} s",
                        "audit_log (hash + sign + epoch; sealer on)", 1000.0 / a,
                        "same table, no trigger", 1000.0 / p,
                        f"{median(ratios):.2f}x, median of the rounds (goal >= 0.8x); per round {spread}; "
                        f"tps medians: audit_db {a:,.0f}, no trigger {p:,.0f} ({a / p:.2f}x)"))
    a_scale = rates[(1, 4, "audit_log")] / rates[(1, 1, "audit_log")]
    p_scale = rates[(1, 4, "plain_log")] / rates[(1, 1, "plain_log")]
    results.append(("2. scaling 1 -> 4 clients, 1 organization", "audit_log", 1.0 / a_scale, "no trigger", 1.0 / p_scale,
                     f"audit_log scales {a_scale:.2f}x, plain {p_scale:.2f}x: {a_scale / p_scale:.2f} of the plain scaling (goal >= 0.8)"))

    def bulk_run(t):
        ms, _, _ = timed(f"""INSERT INTO {t} ("timestamp", principal_id, organization_id, action, status, details)
            SELECT now(), 'user-' || (i % 1000), 'org-1', 'bench.bulk', 'ok', '{{"ip": "203.0.113.7"}}'::jsonb
              FROM generate_series(1, 100000) i""")
        return ms
    bulk = paired(bulk_run)
    ratios = [y / x for x, y in zip(bulk["audit_log"], bulk["plain_log"])]
    spread = ", ".join(f"{r:.2f}" for r in ratios)
    results.append((f"2. bulk INSERT ... SELECT, 100,000 rows, {ROUNDS} rounds", "audit_log", median(bulk["audit_log"]),
                    "same table, no trigger", median(bulk["plain_log"]),
                    f"{median(ratios):.2f}x, median of the rounds (goal >= 0.8x); per round {spread}; "
                    f"time medians {median(bulk['plain_log']) / median(bulk['audit_log']):.2f}x"))
    if LAG:
        lags = sorted(LAG)
        p50, p99 = lags[len(lags) // 2], lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        results.append(("2. seal lag under load (1 organization, 4 clients, worker every 200 ms)", "p99", p99,
                        "p50", p50, f"{len(lags)} probes, commit -> block written, max {lags[-1]:,.0f} ms (goal p99 <= 1,000 ms)"))


LAG = []


def start_lag_probe():
    """A background session that, until pgbench ends, commits one probe event at a time
    and waits (polling every 10 ms) for the block that seals it; lag in ms per probe."""
    psql("CREATE TABLE IF NOT EXISTS bench_lag (ms float8)", "TRUNCATE bench_lag",
         """CREATE OR REPLACE PROCEDURE bench_seal_lag(seconds int) LANGUAGE plpgsql AS $p$
            DECLARE e bigint; t0 timestamptz; stop timestamptz := clock_timestamp() + make_interval(secs => seconds);
            BEGIN
              WHILE clock_timestamp() < stop LOOP
                INSERT INTO audit_log ("timestamp", organization_id, action, status)
                VALUES (now(), 'org-1', 'bench.lag.probe', 'ok') RETURNING seal_epoch INTO e;
                COMMIT;
                t0 := clock_timestamp();
                WHILE (SELECT coalesce(max(epoch), 0) FROM audit_seal_block) < e LOOP
                  PERFORM pg_sleep(0.01);
                END LOOP;
                INSERT INTO bench_lag VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
                COMMIT;
                PERFORM pg_sleep(0.05);
              END LOOP;
            END $p$""")
    args = ["psql", "-h", SOCK, "-p", PORT, "-U", "postgres", "-d", DB, "-X", "-q", "-c",
            f"CALL bench_seal_lag({SECONDS})"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish_lag_probe(proc):
    proc.wait()
    return [float(x) for x in psql("SELECT ms FROM bench_lag").split()]


# ------------------------------------------------------------------- 6
def verification():
    psql("SELECT * FROM audit_seal(5000)")
    n = int(psql("SELECT count(*) FROM audit_log").strip())
    times, hwm = [], []
    for _ in range(BIG_RUNS):
        ms, _, h = timed("SELECT * FROM audit_verify_integrity()")
        times.append(ms)
        hwm.append(ANON[-1])
    rate = n / median(times) * 1000
    results.append((f"6. audit_verify_integrity over {n:,} rows (all sealed)", "audit_verify_integrity()", median(times),
                    "(no peer)", median(times),
                    f"{rate:,.0f} rows/s (goal >= 500,000); backend private memory (RssAnon) after {median(hwm) / 1024:,.0f} MB"))


# ---------------------------------------------------------------- 3a / 3b
def partition_upkeep():
    start = month_start()
    ours_setup, peer_setup, ours_noop, peer_noop = [], [], [], []
    counts = {}
    for i in range(RUNS):
        a, p = f"bench_a_{i}", f"bench_p_{i}"
        psql(PARENT_DDL.format(t=a), PARENT_DDL.format(t=p))
        ours_setup.append(timed(f"SELECT count(*) FROM audit_create_partitions('{a}', 12)")[0])
        peer_setup.append(timed(
            f"SELECT partman.create_parent('public.{p}', 'timestamp', 'native', 'monthly', "
            f"p_premake := 12, p_start_partition := '{start}'); "
            f"SELECT partman.run_maintenance('public.{p}')")[0])
        ours_noop.append(timed(f"SELECT count(*) FROM audit_create_partitions('{a}', 12)")[0])
        peer_noop.append(timed(f"SELECT partman.run_maintenance('public.{p}')")[0])
        counts = {t: int(psql(f"SELECT count(*) FROM pg_inherits WHERE inhparent = '{t}'::regclass").strip())
                  for t in ("ours", "peer") for t in [a if t == "ours" else p]}
        counts = {"ours": counts[a], "peer": counts[p]}
    note = f"partitions made: audit_db {counts['ours']}, pg_partman {counts['peer']}"
    results.append(("3a. parent + 12 monthly partitions ahead, 8 indexes", "audit_create_partitions", median(ours_setup),
                    "pg_partman create_parent + run_maintenance", median(peer_setup), note))
    results.append(("3b. maintenance with nothing to do", "audit_create_partitions (no-op)", median(ours_noop),
                    "partman.run_maintenance(parent)", median(peer_noop), ""))


# ------------------------------------------------------------------- 4
def retention():
    ours, peer, ours_wal, peer_wal = [], [], [], []
    for i in range(BIG_RUNS):
        a, d = f"ret_a_{i}", f"ret_d_{i}"
        for t in (a, d):
            psql(PARENT_DDL.format(t=t),
                 f"CREATE TABLE {t}_default PARTITION OF {t} DEFAULT",
                 f"SELECT count(*) FROM audit_create_partitions('{t}', 11, '2024-01-15')",
                 f"INSERT INTO {t} (\"timestamp\", action, status, principal_id) "
                 f"SELECT '2024-01-01'::timestamptz + (i * (366.0 * 86400 / {ROWS})) * interval '1 second', "
                 f"'bench', 'ok', 'u' || (i % 1000) FROM generate_series(0, {ROWS - 1}) i",
                 f"VACUUM ANALYZE {t}", "CHECKPOINT")
        ms, wal, _ = timed(f"SELECT count(*) FROM audit_drop_expired_partitions('{a}', '6 months', false, '2025-01-01')")
        ours.append(ms); ours_wal.append(wal)
        ms, wal, _ = timed(f"DELETE FROM {d} WHERE \"timestamp\" < '2024-07-01'")
        peer.append(ms); peer_wal.append(wal)
        psql(f"DROP TABLE {a}, {d}")
    results.append((f"4. retention, {ROWS:,} rows over 12 months, drop 6", "audit_drop_expired_partitions",
                    median(ours), "DELETE WHERE timestamp < cutoff", median(peer),
                    f"WAL: {median(ours_wal) / 1024:,.0f} kB vs {median(peer_wal) / 1048576:,.1f} MB"))


# ------------------------------------------------------------------- 5
def conversion():
    attach, copy, attach_rss, copy_rss = [], [], [], []
    for i in range(BIG_RUNS):
        for mode, out, rss in (("attach", attach, attach_rss), ("copy", copy, copy_rss)):
            t = f"conv_{mode}_{i}"
            psql(f"CREATE TABLE {t} (id serial PRIMARY KEY, \"timestamp\" timestamptz NOT NULL, "
                 f"action varchar(255) NOT NULL, status varchar(50) NOT NULL, details jsonb)",
                 f"CREATE INDEX ON {t} (\"timestamp\")", f"CREATE INDEX ON {t} (action)",
                 f"INSERT INTO {t} (\"timestamp\", action, status) "
                 f"SELECT '2024-01-01'::timestamptz + (i * (366.0 * 86400 / {ROWS})) * interval '1 second', "
                 f"'a' || (i % 7), 'ok' FROM generate_series(0, {ROWS - 1}) i",
                 f"VACUUM ANALYZE {t}", "CHECKPOINT")
            ms, _, hwm = timed(f"SELECT audit_convert_to_partitioned('{t}', '{mode}')")
            out.append(ms); rss.append(ANON[-1])
            psql(f"DELETE FROM audit_partition_config WHERE parent = '{t}'::regclass", f"DROP TABLE {t}")
    results.append((f"5. convert a {ROWS:,}-row plain table (lock held = whole call)", "attach mode", median(attach),
                    "copy mode", median(copy),
                    f"backend private memory (RssAnon) after: attach {median(attach_rss) / 1024:,.0f} MB, copy {median(copy_rss) / 1024:,.0f} MB"))


# ------------------------------------------------------------------- 7
FP_IDS = "ARRAY['fp-uid', 'fp@example.com']"
FP_FIND = ("principal_id = ANY({ids}) OR target_resource_id = ANY({ids}) "
           "OR EXISTS (SELECT 1 FROM jsonb_each_text(a.details) e WHERE e.value = ANY({ids}))").format(ids=FP_IDS)


def subject_footprint():
    """Issue 18: one subject with SUBJECT_EVENTS events, 70% as actor (principal, email
    in details), 20% as target of someone else's event, 10% mentioned (email in someone
    else's details), among the rest of the benchmark's events. Each operation runs in a
    transaction rolled back afterwards, so each one starts from the same rows; the peer
    is plain SQL over a trigger-free copy of the same rows doing the same search."""
    n = SUBJECT_EVENTS
    actor, target = n * 7 // 10, n * 2 // 10
    mention = n - actor - target
    psql(f"""INSERT INTO audit_log ("timestamp", principal_id, organization_id, action, status,
                                     target_resource_type, target_resource_id, details)
             SELECT now() - i * interval '1 second',
                    CASE WHEN i <= {actor} THEN 'fp-uid' ELSE 'clerk-' || (i % 50) END,
                    'org-1', 'bench.footprint', 'ok',
                    CASE WHEN i > {actor} AND i <= {actor + target} THEN 'User' ELSE 'Document' END,
                    CASE WHEN i > {actor} AND i <= {actor + target} THEN 'fp-uid' ELSE 'doc-' || i END,
                    CASE WHEN i <= {actor} OR i > {actor + target}
                         THEN jsonb_build_object('email', 'fp@example.com', 'n', i)
                         ELSE jsonb_build_object('email', 'clerk@example.com', 'n', i) END
               FROM generate_series(1, {n}) i""",
         "CREATE TABLE fp_plain (LIKE audit_log INCLUDING ALL) PARTITION BY RANGE (\"timestamp\")",
         "CREATE TABLE fp_plain_default PARTITION OF fp_plain DEFAULT",
         "INSERT INTO fp_plain SELECT * FROM audit_log",
         "SELECT status FROM audit_seal(5000)",
         "VACUUM ANALYZE audit_log", "VACUUM ANALYZE fp_plain", "CHECKPOINT")
    total = int(psql("SELECT count(*) FROM audit_log").strip())
    found = int(psql(f"SELECT count(*) FROM audit_subject_rows({FP_IDS}) WHERE table_name = 'audit_log'").strip())
    peer_update = (f"UPDATE fp_plain a SET principal_id = CASE WHEN principal_id = ANY({FP_IDS}) THEN 'pseudo-x' ELSE principal_id END, "
                   f"target_resource_id = CASE WHEN target_resource_id = ANY({FP_IDS}) THEN 'pseudo-x' ELSE target_resource_id END, "
                   f"details = details || jsonb_build_object('email', 'pseudo-x', 'pseudonymized', true) WHERE {FP_FIND}")
    ops = [
        # Both sides render every row (a bare count(*) would let the planner skip to_jsonb).
        ("export, streamed", f"SELECT sum(length(row_data::text)) FROM audit_subject_rows({FP_IDS})", [],
         f"SELECT sum(length(to_jsonb(a)::text)) FROM fp_plain a WHERE {FP_FIND}", []),
        ("export, one jsonb", f"SELECT length(audit_export_subject({FP_IDS})::text)", [],
         f"SELECT length(jsonb_agg(to_jsonb(a))::text) FROM fp_plain a WHERE {FP_FIND}", []),
        ("pseudonymize (token)", f"SELECT sum(rows) FROM audit_pseudonymize_subject({FP_IDS}, 'token')", ["BEGIN"],
         peer_update, ["BEGIN"]),
        ("delete (compliance kept)", f"SELECT sum(rows) FROM audit_delete_subject({FP_IDS})", ["BEGIN"],
         f"DELETE FROM fp_plain WHERE principal_id = ANY({FP_IDS}); {peer_update}", ["BEGIN"]),
        ("forget (after a token pseudonymization)", f"SELECT sum(rows) FROM audit_forget_subject({FP_IDS})",
         ["BEGIN", f"SELECT count(*) FROM audit_pseudonymize_subject({FP_IDS}, 'token')"],
         # forget is one DELETE on pseudonym_mapping through its (strategy, blind_index)
         # index: the peer deletes by the same index.
         "DELETE FROM pseudonym_mapping WHERE strategy = ANY('{token,encryption}') AND blind_index = 'no such index'",
         ["BEGIN"]),
    ]
    for label, ours_sql, ours_setup, peer_sql, peer_setup in ops:
        ours, peer, ours_mem, peer_mem = [], [], [], []
        for _ in range(BIG_RUNS):
            ms, _, _ = timed(ours_sql, ours_setup)
            ours.append(ms)
            ours_mem.append(ANON[-1])
            ms, _, _ = timed(peer_sql, peer_setup)
            peer.append(ms)
            peer_mem.append(ANON[-1])
        results.append((f"7. subject with {n:,} events ({found:,} found among {total:,}): {label}",
                        "audit_db", median(ours), "plain SQL, same rows, no trigger", median(peer),
                        f"{median(ours) / median(peer):.2f}x the plain SQL; backend private memory after: "
                        f"{median(ours_mem) / 1024:,.0f} MB (plain SQL {median(peer_mem) / 1024:,.0f} MB)"))



def main():
    sections = [pseudonymization, subject_pseudonymization, insert_throughput, verification, partition_upkeep, retention, conversion,
                subject_footprint]
    only = [x for x in os.environ.get("BENCH_ONLY", "").split(",") if x]
    for section in sections:
        if not only or section.__name__ in only:
            section()
    print("| comparison | audit_db | ms (median) | peer | ms (median) | peer / audit_db | notes |")
    print("|---|---|---:|---|---:|---:|---|")
    for name, ours_label, ours, peer_label, peer, note in results:
        print(f"| {name} | {ours_label} | {ours:,.1f} | {peer_label} | {peer:,.1f} | {peer / ours:,.2f}x | {note} |")
    print()
    print(f"runs: {RUNS} (3a, 3b), {BIG_RUNS} ({ROWS:,}-row comparisons); times are psql \\timing, round trip included")
    print("ratios for 2 are time per insert (1/tps): peer / audit_db below 1 means audit_db is slower")


if __name__ == "__main__":
    main()
