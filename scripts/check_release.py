#!/usr/bin/env python3
"""Release checks for audit_db's versioned schema (see docs/releasing.md).

1. Released scripts are never edited: every file listed in sql/RELEASED still has
   its recorded sha256.
2. Every upgrade script starts with the \\echo guard.
3. A schema change needs a new version: if the current Cargo version is released
   (sql/audit_db--<version>.sql is frozen), the SQL that cargo pgrx generates now must
   equal the frozen script (comments aside); if it is not released yet, the newest
   upgrade script must target it.
4. A manifest exists for the current version (audit_verify_schema() needs it).
5. docs/reference.md has one heading per function of that manifest (the catalog of a
   fresh install), and none for a function the catalog lacks.
6. Every function of that manifest has a COMMENT in the install script.
7. The import checks of scripts/check_imports.py: no import circle in src/, no import
   of a higher floor, every module of src/ listed in README with its folder.

Usage: scripts/check_release.py GENERATED_SQL   (output of `cargo pgrx schema`)
Prints "ok - ..." / "not ok - ..." lines and "release checks: N passed, M failed".
"""
import hashlib
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
sql = root / "sql"
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok - " if ok else "not ok - ") + name)
    if not ok and detail:
        print("    " + detail.replace("\n", "\n    "))


def normalize(text):
    """The SQL without comments, blank lines and the \\echo guard."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("--") or s.startswith("\\echo"):
            continue
        lines.append(line.rstrip())
    return lines


def version_key(v):
    return [int(p) if p.isdigit() else p for p in re.split(r"[.-]", v)]


version = re.search(r'^version\s*=\s*"([^"]+)"', (root / "Cargo.toml").read_text(), re.M).group(1)

# 1. released scripts unchanged
released = (sql / "RELEASED").read_text().split("\n")
for line in released:
    if not line.strip() or line.startswith("#"):
        continue
    digest, name = line.split()
    path = sql / name
    actual = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"
    check(f"released script {name} is unchanged", actual == digest,
          f"sha256 is {actual}, sql/RELEASED says {digest}: released scripts are never edited; add a new version step instead")

# 2. upgrade scripts carry the guard
upgrades = sorted(sql.glob("audit_db--*--*.sql"))
for path in upgrades:
    first = [l for l in path.read_text().splitlines() if l.startswith("\\echo")]
    check(f"{path.name} refuses to run outside ALTER EXTENSION",
          any("ALTER EXTENSION audit_db UPDATE" in l and "\\quit" in l for l in first))

# 3. schema changes come with a version step
generated = normalize(pathlib.Path(sys.argv[1]).read_text())
frozen = sql / f"audit_db--{version}.sql"
targets = sorted((re.match(r"audit_db--(.+)--(.+)\.sql", p.name).group(2) for p in upgrades), key=version_key)
newest = targets[-1] if targets else None
if frozen.exists():
    same = normalize(frozen.read_text()) == generated
    detail = ""
    if not same:
        import difflib
        diff = list(difflib.unified_diff(normalize(frozen.read_text()), generated, "frozen", "generated", lineterm="", n=1))
        detail = ("the SQL of released version %s changed: bump the version in Cargo.toml, write "
                  "sql/audit_db--%s--<new>.sql and follow docs/releasing.md\n" % (version, version)) + "\n".join(diff[:40])
    check(f"generated SQL equals the frozen sql/audit_db--{version}.sql", same, detail)
else:
    check(f"unreleased version {version} is reached by an upgrade script (newest targets {newest})",
          newest == version,
          f"write sql/audit_db--{newest}--{version}.sql before changing the schema")

# 4. manifest
check(f"sql/manifest/audit_db--{version}.tsv exists", (sql / "manifest" / f"audit_db--{version}.tsv").exists(),
      "run scripts/manifest.sh")

# 5. the function reference documents exactly the catalog's functions
manifest = sql / "manifest" / f"audit_db--{version}.tsv"
if manifest.exists():
    catalog = sorted(line.split("\t")[1].split("(")[0] for line in manifest.read_text().splitlines()
                     if line.startswith("function\t"))
    reference = (root / "docs" / "reference.md").read_text()
    documented = sorted(m.group(1) for m in re.finditer(r"^#+ .*?`([a-z_][a-z0-9_]*)\(", reference, re.M))
    missing = sorted(set(catalog) - set(documented))
    stale = sorted(set(documented) - set(catalog))
    check("docs/reference.md has one heading per function of the catalog", not missing and not stale
          and len(documented) == len(set(documented)),
          f"undocumented: {missing}; documented but not in the catalog: {stale}; "
          f"documented twice: {sorted({d for d in documented if documented.count(d) > 1})}")

# 6. every function of the catalog carries a COMMENT in the install script (what \df+
#    shows; the reference above is the long form of the same text)
if manifest.exists():
    commented = set(re.findall(r'COMMENT ON (?:FUNCTION|PROCEDURE) (?:@extschema@\.)?"?([a-z_][a-z0-9_]*)', "\n".join(generated)))
    uncommented = sorted(set(catalog) - commented)
    check("every function of the catalog has a COMMENT in the install script", not uncommented,
          f"no COMMENT ON FUNCTION for: {uncommented}")

# 7. src/: no import circle, no import of a higher floor, README lists every module
#    (scripts/check_imports.py)
sys.path.insert(0, str(root / "scripts"))
sys.dont_write_bytecode = True
import check_imports  # noqa: E402

for name, ok, detail in check_imports.checks():
    check(name, ok, detail)

failed = results.count(False)
print(f"release checks: {len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
