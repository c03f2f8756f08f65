"""SQL only with parameters: no query text the code sends is built from a runtime value.

Every ``execute``/``executemany``/``copy`` call in the product's code is read with ``ast``:
its query must be a literal, a module constant, a ``psycopg.sql`` composition (which quotes
identifiers and literals itself), or text put together only from those (an f-string of
constants, a choice between two literals). A value that comes from a caller, a device or an
HTTP request can then only reach the database as a bound parameter.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("alerts", "api", "devices", "detectors", "gridwatch", "ingest", "outputs", "storage")
CALLS = {"execute", "executemany", "copy"}


def _is_constant_name(name: str) -> bool:
    return name.lstrip("_").isupper()


class _Scope:
    """Assignments of each name in one function (or module), to follow a local query text."""

    def __init__(self, node: ast.AST) -> None:
        self.assigned: dict[str, list[ast.expr]] = {}
        for child in ast.walk(node):
            if isinstance(child, ast.Assign):
                for target in child.targets:
                    if isinstance(target, ast.Name):
                        self.assigned.setdefault(target.id, []).append(child.value)
            elif (
                isinstance(child, ast.AnnAssign | ast.AugAssign)
                and child.value is not None
                and isinstance(child.target, ast.Name)
            ):
                self.assigned.setdefault(child.target.id, []).append(child.value)


def _composers() -> set[str]:
    """Functions of the product declared to return a ``psycopg.sql`` composition."""
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                    and node.returns
                    and ast.unparse(node.returns).startswith("sql.")
                ):
                    names.add(node.name)
    return names


COMPOSERS = _composers()


def _is_sql_composition(node: ast.expr) -> bool:
    """``sql.SQL(...)``, ``sql.Identifier(...)`` …, ``.format``/``.join`` on them, and calls
    of the product's own functions that return one."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in COMPOSERS
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name) and func.value.id == "sql":
            return True
        if func.attr in COMPOSERS:
            return True
        if func.attr in ("format", "join") and _is_sql_composition(func.value):
            return True
    return False


def _safe(
    node: ast.expr, scope: _Scope, seen: frozenset[str] = frozenset(), *, whole: bool = True
) -> bool:
    """Whether ``node`` is query text made of constants. ``whole``: the node is the whole
    query, so a parameter name is the caller's query (checked at the caller); as a part of
    text it is a runtime value."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str | bytes)
    if _is_sql_composition(node):
        return True
    if isinstance(node, ast.Name):
        if _is_constant_name(node.id):
            return True
        values = scope.assigned.get(node.id)
        if values is None:
            return whole
        if node.id in seen:
            return False
        return all(_safe(v, scope, seen | {node.id}, whole=whole) for v in values)
    if isinstance(node, ast.JoinedStr):
        return all(
            _safe(part.value, scope, seen, whole=False)
            for part in node.values
            if isinstance(part, ast.FormattedValue)
        )
    if isinstance(node, ast.IfExp):
        return _safe(node.body, scope, seen, whole=whole) and _safe(
            node.orelse, scope, seen, whole=whole
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _safe(node.left, scope, seen, whole=False) and _safe(
            node.right, scope, seen, whole=False
        )
    return False


def _violations() -> Iterator[str]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            module_scope = _Scope(tree)
            functions = [
                n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
            for function in [tree, *functions]:
                scope = _Scope(function)
                scope.assigned = {**module_scope.assigned, **scope.assigned}
                body = function.body if function is not tree else []
                nodes = (n for stmt in body for n in ast.walk(stmt))
                if function is tree:
                    nodes = (n for n in ast.walk(tree) if not _inside_function(n, functions))
                for node in nodes:
                    if (
                        isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Attribute)
                        and node.func.attr in CALLS
                        and node.args
                        and not _safe(node.args[0], scope)
                    ):
                        where = f"{path.relative_to(ROOT)}:{node.lineno}"
                        yield f"{where}: {ast.unparse(node.args[0])[:80]}"


def _inside_function(node: ast.AST, functions: list[ast.AST]) -> bool:
    line = getattr(node, "lineno", None)
    if line is None:
        return False
    return any(f.lineno <= line <= (f.end_lineno or f.lineno) for f in functions)


def test_no_query_is_built_from_a_runtime_value() -> None:
    found = sorted(set(_violations()))
    assert found == [], "\n".join(found)


def test_the_checker_catches_interpolation() -> None:
    bad = ast.parse(
        "def f(conn, name):\n"
        "    conn.execute(f\"SELECT * FROM t WHERE name = '{name}'\")\n"
        "    conn.execute('SELECT %s' % name)\n"
        "    q = 'SELECT ' + name\n"
        "    conn.execute(q)\n"
        "    conn.execute('SELECT {}'.format(name))\n"
    )
    function = bad.body[0]
    scope = _Scope(function)
    calls = [n for n in ast.walk(function) if isinstance(n, ast.Call) and n.args]
    checked = [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "execute"]
    assert [_safe(c.args[0], scope) for c in checked] == [False, False, False, False]
    good = ast.parse(
        "def g(conn, grid, revoked):\n"
        "    where = '' if revoked else ' WHERE revoked_at IS NULL'\n"
        "    conn.execute(f'SELECT {_FIELDS} FROM t{where}', (grid,))\n"
        "    conn.execute(sql.SQL('SELECT {}').format(sql.Identifier(grid)))\n"
    ).body[0]
    scope = _Scope(good)
    calls = [n for n in ast.walk(good) if isinstance(n, ast.Call) and n.args]
    checked = [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "execute"]
    assert [_safe(c.args[0], scope) for c in checked] == [True, True]
