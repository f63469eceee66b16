#!/usr/bin/env python3
"""Import checks of src/ (issue 29): the module list and the floors.

README.md's table "src/ by floor" gives every folder of src/ a floor and lists its
modules. This script checks, reading `crate::...` (and `super::...`) paths in
src/**/*.rs with comments and string literals left out:

1. every .rs file of src/ is listed in README with its folder, every listed file
   exists, and every file of a folder is declared in its mod.rs;
2. no module imports, directly or through others, a module that imports it (the
   graph of modules, e.g. evidence::seal, and the graph of folders);
3. a folder imports only folders of a lower floor.

Usage: scripts/check_imports.py   (prints "ok - ..." / "not ok - ..." lines and
"import checks: N passed, M failed"; exits 1 on any failure). scripts/check_release.py
runs the same checks through `checks()`.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE_HEADING = "### src/ by floor"


def strip_comments_and_strings(text):
    """Rust source with comments removed and string/char literals emptied."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif re.match(r'b?r(#*)"', text[i:i + 260]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + m.end())
            out.append('""')
            i = n if end < 0 else end + 1 + len(m.group(1))
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:i + 12]):
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            out.append("' '")
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(path):
    """(folder, module) of a file under src/: ('', 'lib'), ('evidence', None) for a
    mod.rs, ('evidence', 'seal') for src/evidence/seal.rs."""
    rel = path.relative_to(ROOT / "src")
    if len(rel.parts) == 1:
        return "", rel.stem
    folder = "/".join(rel.parts[:-1])
    return folder, None if rel.name == "mod.rs" else rel.stem


IDENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")


def use_tree(text, i):
    """The paths of a use tree starting at text[i] (after `crate::`), each a list of
    segments, and the position after it: `a::b`, `a::{b, c::d}`, `{a, b::*}`."""
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == "{":
        paths, i = [], i + 1
        while True:
            while i < len(text) and text[i] in " \t\r\n,":
                i += 1
            if i >= len(text) or text[i] == "}":
                return paths, i + 1
            sub, j = use_tree(text, i)
            if j <= i:
                return paths, i + 1
            paths += sub
            i = j
    if i < len(text) and text[i] == "*":
        return [[]], i + 1
    m = IDENT.match(text, i)
    if not m:
        return [[]], i
    name, i = m.group(1), m.end()
    rest = re.compile(r"\s*::\s*").match(text, i)
    if rest:
        sub, i = use_tree(text, rest.end())
        return [[name] + p for p in sub], i
    alias = re.compile(r"\s+as\s+[A-Za-z_][A-Za-z0-9_]*").match(text, i)
    return [[name]], alias.end() if alias else i


def references(text, folder, siblings):
    """Modules a file names: ('evidence', 'seal'), or ('evidence', None) for a folder
    named alone. Handles `crate::a::b`, `crate::{a::b, c::{d, e}}`, `super::x`, and
    `a::b` after `use crate::a;`."""
    refs = set()
    for m in re.finditer(r"\bcrate\s*::", text):
        paths, _ = use_tree(text, m.end())
        for parts in paths:
            parts = [x for x in parts if x not in ("self",)]
            if parts:
                refs.add((parts[0], parts[1] if len(parts) > 1 else None))
    # a folder imported by name (`use crate::evidence;`), then used as `evidence::seal`
    for top in sorted({t for t, sub in refs if sub is None}):
        for m in re.finditer(r"(?<![A-Za-z0-9_:])%s\s*::\s*([A-Za-z_][A-Za-z0-9_]*)" % re.escape(top), text):
            refs.add((top, m.group(1)))
    if folder:
        for m in re.finditer(r"\bsuper\s*::\s*([A-Za-z_][A-Za-z0-9_]*)", text):
            if m.group(1) in siblings:
                refs.add((folder, m.group(1)))
    return refs


def readme_table():
    """{folder: (floor, [file names])} from README's table, or None without one."""
    lines = (ROOT / "README.md").read_text().splitlines()
    try:
        start = lines.index(TABLE_HEADING)
    except ValueError:
        return None
    table, seen_row = {}, False
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        m = re.match(r"^\|\s*(\d+)\s*\|\s*`src/([A-Za-z0-9_/]*?)/?`\s*\|(.*)\|\s*$", line)
        if m:
            seen_row = True
            table[m.group(2)] = (int(m.group(1)), re.findall(r"`([A-Za-z0-9_]+\.rs)`", m.group(3)))
        elif seen_row and not line.startswith("|"):
            break
    return table


def find_cycles(nodes, edges):
    """Strongly connected components of more than one node (Tarjan), each as a
    sorted list; a self-loop is not an import circle."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def cycle_path(comp, edges):
    """One circle through a component, as 'a -> b -> a'."""
    members = set(comp)
    start = comp[0]
    # breadth-first from start's successors back to start, inside the component
    prev = {}
    frontier = [w for w in sorted(edges.get(start, ())) if w in members]
    for w in frontier:
        prev.setdefault(w, start)
    while frontier and start not in frontier:
        nxt = []
        for v in frontier:
            for w in sorted(edges.get(v, ())):
                if w in members and w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    path, v = [start], prev.get(start)
    while v is not None and v != start:
        path.append(v)
        v = prev.get(v)
    path.append(start)
    return " -> ".join(reversed(path))


def checks():
    """[(name, ok, detail)] of every import check."""
    results = []
    files = sorted((ROOT / "src").rglob("*.rs"))
    mods = {}  # "folder::module" or "module" (lib) -> file
    folders = {}
    for f in files:
        folder, mod = module_of(f)
        folders.setdefault(folder, set())
        if mod is not None:
            folders[folder].add(mod)
            mods[f"{folder}::{mod}" if folder else mod] = f

    # 1. README lists every module with its folder; mod.rs declares every file
    table = readme_table()
    results.append(("README.md has the table \"src/ by floor\"", table is not None,
                    f"add a heading '{TABLE_HEADING}' followed by a table | floor | `src/<folder>/` | `module.rs` ... |"))
    table = table or {}
    for folder in sorted(folders):
        listed = set(n[:-3] for n in table.get(folder, (0, []))[1])
        actual = folders[folder]
        shown = f"src/{folder}/" if folder else "src/"
        results.append((f"README lists the modules of {shown} in its row", folder in table and listed == actual,
                        f"missing from README: {sorted(actual - listed) or 'none'}; "
                        f"listed but not in {shown}: {sorted(listed - actual) or 'none'}"
                        + ("" if folder in table else f"; no row for {shown}")))
    stale = sorted(set(table) - set(folders))
    results.append(("README names no folder that src/ lacks", not stale, f"not in src/: {stale}"))
    for folder in sorted(f for f in folders if f):
        mod_rs = ROOT / "src" / folder / "mod.rs"
        declared = set(re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;",
                                  mod_rs.read_text(), re.M)) if mod_rs.exists() else set()
        results.append((f"src/{folder}/mod.rs declares every file of src/{folder}/", declared == folders[folder],
                        f"not declared: {sorted(folders[folder] - declared)}; declared without a file: {sorted(declared - folders[folder])}"))

    # 2. no import circle (modules, then folders)
    mod_edges, folder_edges = {}, {}
    unresolved = []
    for f in files:
        folder, mod = module_of(f)
        src = (f"{folder}::{mod}" if folder else mod) if mod is not None else None
        for top, sub in references(strip_comments_and_strings(f.read_text()), folder, folders.get(folder, set())):
            if top not in folders:
                if f"{top}" in mods:  # a module of the crate root (none today)
                    target_folder, target = "", top
                else:
                    unresolved.append(f"{f.relative_to(ROOT)}: crate::{top}")
                    continue
            else:
                target_folder = top
                target = f"{top}::{sub}" if sub in folders[top] else None
            if src and target and target != src:
                mod_edges.setdefault(src, set()).add(target)
            if target_folder != folder:
                folder_edges.setdefault(folder, set()).add(target_folder)
    results.append(("every crate:: path names a folder or module of src/", not unresolved, "\n".join(unresolved)))
    for kind, nodes, edges in (("module", set(mods), mod_edges), ("folder", set(folders), folder_edges)):
        cycles = find_cycles(nodes | set(edges), edges)
        results.append((f"no import circle between {kind}s of src/", not cycles,
                        "\n".join(f"{len(c)} {kind}s import each other ({', '.join(c)}), e.g. {cycle_path(c, edges)}"
                                  for c in cycles)))

    # 3. floors: a folder imports only lower floors
    wrong = []
    for a in sorted(folder_edges):
        for b in sorted(folder_edges[a]):
            fa, fb = table.get(a, (None,))[0], table.get(b, (None,))[0]
            if fa is None or fb is None or fb >= fa:
                wrong.append(f"src/{a}/ (floor {fa}) imports src/{b}/ (floor {fb})")
    results.append(("every folder imports only folders of a lower floor (README)", not wrong, "\n".join(wrong)))
    return results


def main():
    results = checks()
    for name, ok, detail in results:
        print(("ok - " if ok else "not ok - ") + name)
        if not ok and detail:
            print("    " + detail.replace("\n", "\n    "))
    failed = sum(1 for _, ok, _ in results if not ok)
    print(f"import checks: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
