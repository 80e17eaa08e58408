"""Which user SQL the query sandbox runs: an allow-list checked by ClickHouse's own parser.
Part of the ``sql.query`` contract: the sink's sandbox and ``streams.sql.query_direct`` (a
ClickHouse server) apply the same rule.

A query is accepted only when all of this holds (docs/clickhouse.md, docs/security.md):

1. ClickHouse formats it as exactly one statement (``formatQuerySingleLine``; several
   statements, syntax errors and unparseable unicode are refused right there). The text that
   then runs is that canonical form, never the raw input, so comments, odd spacing and
   quoting cannot hide a keyword from the checks below.
2. The canonical text, with its literals and quoted names blanked out, has no ``INTO
   OUTFILE``, ``FORMAT``, ``SETTINGS`` or ``COMPRESSION`` clause.
3. ``EXPLAIN AST`` of it (parse only: nothing is read or run) has a root in
   ``ALLOWED_ROOTS``, no ``Set`` node (SETTINGS anywhere, EXPLAIN options), no output
   literal at root level, only the table functions in ``ALLOWED_TABLE_FUNCTIONS``,
   tables of this database or the few system tables in ``ALLOWED_SYSTEM_TABLES``, and none
   of the ``DENIED_FUNCTIONS`` (ordinary functions that read files, reach other hosts or
   tell about the host, the user or the server's settings).

The session itself is ``readonly=1`` with the limits applied before, so even a query that
got past this could neither write nor lift a limit; this is the layer that keeps reads
inside the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

MAX_SQL_CHARS = 100_000

# Root nodes of EXPLAIN AST that only read: SELECT / WITH (SelectWithUnionQuery), INTERSECT /
# EXCEPT, SHOW TABLES / DATABASES / SETTINGS (all ShowTables), SHOW COLUMNS, DESCRIBE,
# EXISTS, SHOW CREATE TABLE and EXPLAIN of any of these.
ALLOWED_ROOTS = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "ShowTables",
        "ShowColumns",
        "DescribeQuery",
        "ExistsTableQuery",
        "ShowCreateTableQuery",
        "Explain",
    }
)
# Pure generators that ClickHouse also runs under readonly=1 (zeros() it refuses there);
# every other table function (file, url, s3, remote, mysql, executable, input, merge, ...
# and any added by a later ClickHouse) is refused because it is not here.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {"numbers", "numbers_mt", "generateseries", "generate_series", "values"}
)
# Schema and storage introspection only. Not: processes / query_log (other people's
# queries), databases / disks / server_settings / build_options (paths and host facts),
# users / grants, stack_trace, zookeeper, dictionaries, ...
ALLOWED_SYSTEM_TABLES = frozenset(
    {
        "system.tables",
        "system.columns",
        "system.parts",
        "system.parts_columns",
        "system.functions",
        "system.table_functions",
        "system.data_type_families",
        "system.formats",
        "system.settings",
        "system.one",
        "system.numbers",
        "system.numbers_mt",
        "system.zeros",
        "system.zeros_mt",
        "information_schema.tables",
        "information_schema.columns",
        "information_schema.schemata",
        "information_schema.views",
    }
)
OTHER_DATABASES = frozenset({"system", "information_schema"})
# Ordinary functions that read outside the database, connect to other hosts, sleep, or tell
# about the host, the user, the session or the server's configuration. Everything else
# ClickHouse offers is computation on the values a query reads.
DENIED_FUNCTIONS = frozenset(
    {
        "file", "joinget", "joingetornull", "hascolumnintable", "getsetting",
        "getsettingordefault", "getserversetting", "getmergetreesetting", "getmacro",
        "getserverport", "tcpport", "hostname", "fqdn", "fullhostname", "currentuser",
        "current_user", "user", "sessionuser", "session_user", "currentprofiles",
        "currentroles", "enabledprofiles", "enabledroles", "defaultprofiles", "defaultroles",
        "serveruuid", "uptime", "getoskernelversion", "displayname", "buildid", "queryid",
        "query_id", "initialqueryid", "initial_query_id", "initialquerystarttime",
        "getclienthttpheader", "catboostevaluate", "modelevaluate", "demangle", "sleep",
        "sleepeachrow", "globalvariable", "connectionid", "connection_id",
        "zookeepersessionuptime", "transactionid", "transactionlatestsnapshot",
        "transactionoldestsnapshot", "shardnum", "shardcount", "getscalar", "__getscalar",
    }
)  # fmt: skip
DENIED_PREFIXES = ("dict", "filesystem", "addressto", "trace")

_LITERALS = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"")
_CLAUSES = re.compile(r"\b(INTO\s+OUTFILE|FORMAT(?!\s*\()|SETTINGS|COMPRESSION)\b")
_NODE = re.compile(r"^( *)(\S+)(?: (.*?))?(?: \(alias .*?\))?(?: \(children \d+\))?$")


class Refused(ValueError):
    """The query is outside what the sandbox runs; the message says why, in one line."""


def literal(text: str) -> str:
    """A ClickHouse string literal holding ``text`` exactly."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def precheck(sql: str) -> None:
    if len(sql) > MAX_SQL_CHARS:
        raise Refused(f"refused: query longer than {MAX_SQL_CHARS} characters")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in sql):
        raise Refused("refused: control characters in the query")
    if not sql.strip():
        raise Refused("refused: empty query")


@dataclass(frozen=True)
class Node:
    depth: int
    kind: str
    name: str


def parse_ast(text: str) -> list[Node]:
    """EXPLAIN AST lines -> nodes (depth by indentation)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _NODE.match(line.rstrip())
        if m is None:
            raise Refused(f"refused: unreadable syntax tree line {line.strip()[:80]!r}")
        out.append(Node(len(m.group(1)), m.group(2), (m.group(3) or "").strip()))
    return out


def check_clauses(canonical: str) -> None:
    bare = _LITERALS.sub("''", canonical)
    if m := _CLAUSES.search(bare):
        clause = " ".join(m.group(1).split())
        why = (
            "limits are fixed by the service"
            if clause == "SETTINGS"
            else "results come back in the reply only"
        )
        raise Refused(f"refused: {clause} is not allowed ({why})")


def check_ast(
    nodes: list[Node], table_functions: frozenset[str], database: str = "default"
) -> None:
    """``table_functions``: every table function name ClickHouse knows (lower case), so a
    name used outside FROM (``x IN url(...)``) is caught as well; ``database``: the
    session's own database, whose tables are all readable."""
    if not nodes:
        raise Refused("refused: empty syntax tree")
    root = nodes[0]
    if root.kind not in ALLOWED_ROOTS:
        raise Refused(
            "refused: only one SELECT, WITH, SHOW, DESCRIBE, EXISTS or EXPLAIN statement is"
            f" allowed, not {root.kind} (the service is read-only)"
        )
    if root.kind == "ShowCreateTableQuery" and root.name.split(" ")[0].lower() in OTHER_DATABASES:
        raise Refused("refused: SHOW CREATE of a system table")
    parents: list[Node] = []
    for i, n in enumerate(nodes):
        while parents and parents[-1].depth >= n.depth:
            parents.pop()
        parent = parents[-1] if parents else (root if i else None)
        if n.kind == "Set":
            raise Refused("refused: SETTINGS are not allowed (limits are fixed by the service)")
        if parent is root and i:
            # a query's own children after its body are INTO OUTFILE / COMPRESSION
            # literals, FORMAT identifiers and SETTINGS: only the body may be there
            first = nodes[1] is n
            if n.kind == "Literal" or (not first and root.kind in _ONE_BODY):
                raise Refused("refused: INTO OUTFILE, FORMAT and SETTINGS clauses are not allowed")
        if n.kind == "Function":
            _check_function(n.name, parent, table_functions)
        elif n.kind in ("TableIdentifier", "Identifier"):
            _check_table(n.name, database, table=n.kind == "TableIdentifier")
        if i:
            parents.append(n)


def _check_function(name: str, parent: Node | None, table_functions: frozenset[str]) -> None:
    low = name.lower()
    as_table = parent is not None and parent.kind == "TableExpression"
    table_fn = as_table or (low in table_functions and low not in _SCALAR_TOO)
    if table_fn and low not in ALLOWED_TABLE_FUNCTIONS:
        raise Refused(
            f"refused: table function {name}() is not allowed (allowed: "
            f"{', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))})"
        )
    if low in DENIED_FUNCTIONS or low.startswith(DENIED_PREFIXES):
        raise Refused(f"refused: function {name}() reads outside the data or about the host")


_ONE_BODY = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery", "Explain"})

# Table function names that are also harmless ordinary functions (``format('{}', x)``);
# ``file`` is both, and denied as an ordinary function too.
_SCALAR_TOO = frozenset({"format", "values"})


def _check_table(name: str, database: str, *, table: bool) -> None:
    parts = name.split(".")
    if len(parts) < 2:
        return  # a table of this database, a CTE or a column
    db = parts[0].lower()
    full = f"{db}.{parts[1].lower()}"
    if db in OTHER_DATABASES and full not in ALLOWED_SYSTEM_TABLES:
        raise Refused(
            f"refused: {name} is not readable here (only this database's tables and"
            " system.tables/columns/parts/functions/settings and a few more)"
        )
    if table and db not in OTHER_DATABASES and db != database.lower() and len(parts) == 2:
        # another database than this one and the system ones
        raise Refused(f"refused: table {name} is outside this database")


def canonical(
    run: Callable[[str], list[str]], sql: str, table_functions: frozenset[str], database: str
) -> str:
    """The checked, canonical single statement to run, or Refused.

    ``run`` executes one statement in the read-only session and returns its first column."""
    precheck(sql)
    try:
        text = run(f"SELECT formatQuerySingleLine({literal(sql)})")[0]
    except Exception as exc:
        raise Refused(
            "refused: " + first_line(exc).replace(" In scope SELECT formatQuerySingleLine", "")
        ) from None
    try:
        ast = "\n".join(run(f"EXPLAIN AST {text}"))
    except Exception as exc:
        raise Refused("refused: " + first_line(exc)) from None
    # clickhouse-connect appends FORMAT Native to the EXPLAIN, which shows as the root's
    # last child; a user's FORMAT Native dropped with it is refused by check_clauses
    nodes = parse_ast(ast)
    last = nodes[-1] if len(nodes) > 1 else None
    if last == Node(nodes[0].depth + 1, "Identifier", "Native"):
        nodes = nodes[:-1]
    check_ast(nodes, table_functions, database)
    check_clauses(text)
    return text


def first_line(exc: BaseException) -> str:
    msg = str(exc).strip()
    # clickhouse-connect wraps the server's text; keep ClickHouse's own sentence
    m = re.search(r"(Code: \d+\. DB::Exception: .*)", msg, re.S)
    msg = m.group(1) if m else msg
    return " ".join(msg.split())[:500]
