# audit_db: the two commands of the README, and a few helpers.
.PHONY: demo test install prereqs sqltest bench

demo:            ## build, install, start a throwaway cluster and run the demo script
	bash scripts/demo.sh

test:            ## every test on PostgreSQL 15, 16, 17 and 18 (PG=17: one version): pure Rust, #[pg_test], SQL, cluster-level
	bash scripts/test.sh

prereqs:         ## Debian packages, cargo-pgrx 0.18.0, cargo pgrx init
	bash scripts/prereqs.sh

install: prereqs ## build and install into the system PostgreSQL 15
	bash scripts/install.sh

sqltest: install ## only the SQL tests (pg_test/), e.g. make sqltest T=partitions
	bash pg_test/run.sh $(T)

bench: prereqs   ## side-by-side benchmarks vs pg_partman and plain SQL (docs/benchmarks.md), release build
	bash scripts/install.sh --release
	bash pg_test/bench/run.sh
