"""Helpers shared by the revisions (kept here, not in ``alpha_models``: migrations must not
depend on models that move on).

``adopt_or_create`` builds a schema's tables from DDL, or, where a table already exists
(a production database that grew without migrations), first builds the same DDL in a
scratch schema and compares the two catalogs: columns must match exactly, missing
constraints and indexes are added, anything that differs stops the migration with a
description. No row is read or written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from alembic import context, op

DATA_LOSS_FLAG = "allow-data-loss"


class AdoptionError(RuntimeError):
    """The existing database differs from the baseline in a way that needs an operator."""


@dataclass(frozen=True)
class TableDDL:
    name: str
    statements: Sequence[str]  # ``{s}`` stands for the schema name


def _rows(conn: Connection, sql: str, **params: object) -> list[tuple[object, ...]]:
    return [tuple(r) for r in conn.execute(text(sql), params).fetchall()]


def table_exists(conn: Connection, schema: str, table: str) -> bool:
    return bool(
        _rows(
            conn,
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :s AND c.relname = :t",
            s=schema,
            t=table,
        )
    )


def _columns(conn: Connection, schema: str, table: str) -> list[tuple[object, ...]]:
    return _rows(
        conn,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = (quote_ident(:s) || '.' || quote_ident(:t))::regclass "
        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        s=schema,
        t=table,
    )


def _constraints(conn: Connection, schema: str, table: str) -> dict[str, str]:
    rows = _rows(
        conn,
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = (quote_ident(:s) || '.' || quote_ident(:t))::regclass",
        s=schema,
        t=table,
    )
    return {str(name): str(defn) for name, defn in rows}


def _indexes(conn: Connection, schema: str, table: str) -> dict[str, str]:
    rows = _rows(
        conn,
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = (quote_ident(:s) || '.' || quote_ident(:t))::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid "
        "AND c.conrelid = x.indrelid)",
        s=schema,
        t=table,
    )
    return {str(name): str(defn) for name, defn in rows}


def _canonical_check(conn: Connection, ref: str, like: str, defn: str) -> str:
    """A CHECK definition as PostgreSQL prints it after parsing it again (twice, to reach
    the fixed point): a restored dump stores ``IN (...)`` checks in a different but
    equivalent form, which must not count as a difference."""
    for _ in range(2):
        op.execute(f"CREATE TABLE {ref}.alpha_canon (LIKE {like})")
        op.execute(f'ALTER TABLE {ref}.alpha_canon ADD CONSTRAINT "c" {defn}')
        defn = _constraints(conn, ref, "alpha_canon")["c"]
        op.execute(f"DROP TABLE {ref}.alpha_canon")
    return defn


def _norm(text: object, ref: str, schema: str) -> str:
    return str(text).replace(f"{ref}.", f"{schema}.")


def adopt_or_create(schema: str, tables: Iterable[TableDDL], schema_comment: str | None) -> None:
    """Create ``schema``'s tables, adopting those that already exist (see module doc)."""
    conn = op.get_bind()
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    if schema_comment is not None:
        op.execute(f"COMMENT ON SCHEMA {schema} IS '{schema_comment}'")
    tables = list(tables)
    existing = [t for t in tables if table_exists(conn, schema, t.name)]
    if not existing:
        for table in tables:
            for stmt in table.statements:
                op.execute(stmt.format(s=schema))
        return

    ref = f"alpha_adopt_ref_{schema}"
    op.execute(f"DROP SCHEMA IF EXISTS {ref} CASCADE")
    op.execute(f"CREATE SCHEMA {ref}")
    for table in tables:
        for stmt in table.statements:
            op.execute(stmt.format(s=ref))
    problems: list[str] = []
    for table in tables:
        if table not in existing:
            for stmt in table.statements:
                op.execute(stmt.format(s=schema))
            continue
        want_cols = [
            tuple(_norm(v, ref, schema) if isinstance(v, str) else v for v in row)
            for row in _columns(conn, ref, table.name)
        ]
        have_cols = _columns(conn, schema, table.name)
        if want_cols != have_cols:
            want = {r[0]: r for r in want_cols}
            have = {r[0]: r for r in have_cols}
            for name in sorted(set(want) | set(have)):
                if want.get(name) != have.get(name):
                    problems.append(
                        f"{schema}.{table.name}.{name}: expected {want.get(name)}, "
                        f"found {have.get(name)}"
                    )
            continue
        have_cons = _constraints(conn, schema, table.name)
        for name, defn in _constraints(conn, ref, table.name).items():
            defn = _norm(defn, ref, schema)
            if name not in have_cons:
                op.execute(f'ALTER TABLE {schema}.{table.name} ADD CONSTRAINT "{name}" {defn}')
            elif have_cons[name] != defn and not (
                defn.startswith("CHECK")
                and _canonical_check(conn, ref, f"{schema}.{table.name}", defn)
                == _canonical_check(conn, ref, f"{schema}.{table.name}", have_cons[name])
            ):
                problems.append(
                    f"{schema}.{table.name} constraint {name}: expected {defn}, "
                    f"found {have_cons[name]}"
                )
        have_idx = _indexes(conn, schema, table.name)
        for name, defn in _indexes(conn, ref, table.name).items():
            defn = _norm(defn, ref, schema)
            if name not in have_idx:
                op.execute(defn)
            elif have_idx[name] != defn:
                problems.append(
                    f"{schema}.{table.name} index {name}: expected {defn}, found {have_idx[name]}"
                )
    op.execute(f"DROP SCHEMA {ref} CASCADE")
    if problems:
        raise AdoptionError(
            "the existing database does not match the baseline; nothing was changed:\n  "
            + "\n  ".join(problems)
        )


def relation_exists(schema: str, name: str) -> bool:
    return table_exists(op.get_bind(), schema, name)


def function_exists(schema: str, name: str) -> bool:
    return bool(
        _rows(
            op.get_bind(),
            "SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = :s AND p.proname = :f",
            s=schema,
            f=name,
        )
    )


def trigger_exists(schema: str, table: str, name: str) -> bool:
    return bool(
        _rows(
            op.get_bind(),
            "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :s AND c.relname = :t AND t.tgname = :g",
            s=schema,
            t=table,
            g=name,
        )
    )


def data_loss_allowed() -> bool:
    value = context.get_x_argument(as_dictionary=True).get(DATA_LOSS_FLAG, "")
    return value.lower() in {"1", "yes", "true"}


def refuse_data_loss(schema: str, tables: Iterable[str]) -> None:
    """Stop a downgrade that would drop rows, unless ``-x allow-data-loss=yes`` was given."""
    if data_loss_allowed():
        return
    conn = op.get_bind()
    full: list[str] = []
    for table in tables:
        if table_exists(conn, schema, table):
            if _rows(conn, f"SELECT 1 FROM {schema}.{table} LIMIT 1"):
                full.append(f"{schema}.{table}")
    if full:
        raise RuntimeError(
            "refusing to downgrade: it would drop data in "
            + ", ".join(full)
            + f". Back up first, then rerun with `-x {DATA_LOSS_FLAG}=yes` to accept the loss."
        )
