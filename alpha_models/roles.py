"""The platform's database roles: names, which bot each may write for, login roles, passwords.

Migration 0016 holds the machinery in the database (``docs/security.md`` has the model):

- ``trading.db_roles`` lists the NOLOGIN **group roles**: one writer per bot
  (``alpha_bot_<bot_id>``), the listener/reconciliation role that may write for every bot
  (``alpha_listener``) and the read-only analytics role (``alpha_analytics``). The table's
  owner (``trading_user`` in production, the role running the migrations) owns everything
  and is not subject to row security.
- ``trading.sync_roles()`` creates missing group roles (when the caller has CREATEROLE)
  and grants each kind exactly its privileges; :func:`sync_roles` calls it after adding a
  row for every bot registered in ``trading.bots``.
- Services connect as **login roles** that are members of one group
  (:func:`set_login_password` creates them and rotates their passwords). Row security maps
  ``current_user`` to its group, so nothing the client sets can change its identity.

Passwords never travel to the server in clear: :func:`scram_sha256_verifier` computes the
SCRAM-SHA-256 verifier here, and only the verifier reaches ``CREATE/ALTER ROLE`` (and the
PgBouncer auth file), so neither a statement log nor an error message can hold the password.
Identifiers are quoted by the server (``format('%I')``) from bound parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from alpha_models.db import translate_error
from alpha_models.errors import ConfigurationError, ValidationError
from alpha_models.inputs import KNOWN_BOTS, UNKNOWN_BOT

__all__ = [
    "DEFAULT_PREFIX",
    "DbRole",
    "RoleKind",
    "RoleNames",
    "SyncAction",
    "WriteScope",
    "check_write_scope",
    "configure_roles",
    "configured_roles",
    "login_members",
    "read_password",
    "scram_sha256_verifier",
    "set_login_password",
    "sync_roles",
    "update_pgbouncer_userlist",
    "validate_role_name",
    "write_scope",
]

DEFAULT_PREFIX: Final = "alpha"
SCRAM_ITERATIONS: Final = 4096  # PostgreSQL 15's fixed iteration count
PASSWORD_MIN: Final = 12
PASSWORD_MAX: Final = 1024

_ROLE_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_RESERVED = frozenset({"trading", "audit", "public", UNKNOWN_BOT})
_USERLIST_LINE = re.compile(r'\s*"((?:[^"]|"")*)"')


class RoleKind(StrEnum):
    """What a group role may write (``trading.db_roles.kind``)."""

    BOT = "bot"  # the rows of one bot_id
    LISTENER = "listener"  # the rows of every bot, 'unknown' and bot-less events
    ANALYTICS = "analytics"  # nothing: reads only


def validate_role_name(value: Any, field: str = "role") -> str:
    """A plain lower-case role name (``^[a-z_][a-z0-9_]{0,62}$``), not ``pg_*`` and not a
    schema name (a login role named like a schema silently changes the search path)."""
    if not isinstance(value, str):
        raise ValidationError(field, value, f"expected a string, got {type(value).__name__}")
    if _ROLE_RE.fullmatch(value) is None:
        raise ValidationError(field, value, "not a role name (^[a-z_][a-z0-9_]{0,62}$)")
    if value.startswith("pg_") or value in _RESERVED:
        raise ValidationError(field, value, "reserved name (pg_*, a schema, or 'unknown')")
    return str.__str__(value)


@dataclass(frozen=True, slots=True)
class RoleNames:
    """How group roles are named: ``<prefix>_bot_<bot_id>``, ``<prefix>_listener``,
    ``<prefix>_analytics``, each overridable (the migration's ``-x roles-prefix``,
    ``-x role-listener``, ``-x role-analytics``, ``-x role-bot-<bot_id>``)."""

    prefix: str = DEFAULT_PREFIX
    listener: str | None = None
    analytics: str | None = None
    bots: Mapping[str, str] = field(default_factory=dict)

    def listener_role(self) -> str:
        return validate_role_name(self.listener or f"{self.prefix}_listener")

    def analytics_role(self) -> str:
        return validate_role_name(self.analytics or f"{self.prefix}_analytics")

    def bot_role(self, bot_id: str) -> str:
        return validate_role_name(self.bots.get(bot_id) or f"{self.prefix}_bot_{bot_id}")

    def roles_for(self, bot_ids: Iterable[str]) -> list[DbRole]:
        out = [
            DbRole(self.listener_role(), RoleKind.LISTENER),
            DbRole(self.analytics_role(), RoleKind.ANALYTICS),
        ]
        out += [DbRole(self.bot_role(b), RoleKind.BOT, b) for b in bot_ids if b != UNKNOWN_BOT]
        return out


@dataclass(frozen=True, slots=True)
class DbRole:
    """One row of ``trading.db_roles``."""

    role_name: str
    kind: RoleKind
    bot_id: str | None = None


@dataclass(frozen=True, slots=True)
class SyncAction:
    """What ``trading.sync_roles()`` did for one group role (``created``, ``granted`` or
    ``missing (needs CREATEROLE)``)."""

    role_name: str
    kind: RoleKind
    bot_id: str | None
    action: str

    @property
    def missing(self) -> bool:
        return self.action.startswith("missing")


@dataclass(frozen=True, slots=True)
class WriteScope:
    """Whose rows a role may write under row security."""

    role: str
    everything: bool  # owner, superuser, BYPASSRLS, or the listener
    bot_ids: frozenset[str]
    kinds: frozenset[str]

    def may_write(self, bot_id: str | None) -> bool:
        return self.everything or (bot_id is not None and bot_id in self.bot_ids)


def _db_error(exc: DBAPIError) -> Exception:
    return translate_error(exc)


def configured_roles(conn: Connection) -> list[DbRole]:
    """The rows of ``trading.db_roles``."""
    rows = conn.execute(
        text("SELECT role_name, kind, bot_id FROM trading.db_roles ORDER BY kind, role_name")
    ).all()
    return [DbRole(r.role_name, RoleKind(r.kind), r.bot_id) for r in rows]


def configure_roles(conn: Connection, roles: Iterable[DbRole]) -> int:
    """Add rows to ``trading.db_roles`` (existing role names are left as they are); returns
    how many were added. Runs as the table owner."""
    added = 0
    for role in roles:
        name = validate_role_name(role.role_name)
        added += conn.execute(
            text(
                "INSERT INTO trading.db_roles (role_name, kind, bot_id) VALUES (:r, :k, :b) "
                "ON CONFLICT (role_name) DO NOTHING"
            ),
            {"r": name, "k": str(role.kind), "b": role.bot_id},
        ).rowcount
    return added


def sync_roles(conn: Connection, names: RoleNames | None = None) -> list[SyncAction]:
    """Give every bot of ``trading.bots`` (and the platform's three) a writer role in
    ``trading.db_roles``, then run ``trading.sync_roles()``: missing roles are created when
    this connection has CREATEROLE, and every configured role gets exactly its privileges.

    Must run as the schema owner (or a superuser). Idempotent.
    """
    names = names or RoleNames()
    registered = conn.execute(text("SELECT bot_id FROM trading.bots ORDER BY bot_id")).scalars()
    bot_ids = [
        b for b in dict.fromkeys([*sorted(KNOWN_BOTS), *registered]) if _ROLE_RE.fullmatch(b)
    ]
    configure_roles(conn, names.roles_for(bot_ids))
    try:
        rows = conn.execute(text("SELECT * FROM trading.sync_roles()")).all()
    except DBAPIError as exc:
        raise _db_error(exc) from None
    return [SyncAction(r.role_name, RoleKind(r.kind), r.bot_id, r.action) for r in rows]


def write_scope(conn: Connection, role: str | None = None) -> WriteScope:
    """Whose rows ``role`` (default: this connection's ``current_user``) may write."""
    who = (
        validate_role_name(role)
        if role is not None
        else str(conn.execute(text("SELECT current_user")).scalar_one())
    )
    unrestricted = conn.execute(
        text(
            "SELECT r.rolsuper OR r.rolbypassrls OR pg_has_role(r.oid, n.nspowner, 'USAGE') "
            "FROM pg_roles r, pg_namespace n WHERE r.rolname = :who AND n.nspname = 'trading'"
        ),
        {"who": who},
    ).scalar()
    if unrestricted is None:
        raise ConfigurationError(f"role {who} does not exist (or schema trading is missing)")
    groups = conn.execute(
        text(
            "SELECT d.kind, d.bot_id FROM trading.db_roles d "
            "JOIN pg_roles g ON g.rolname = d.role_name "
            "WHERE pg_has_role(:who, g.oid, 'USAGE')"
        ),
        {"who": who},
    ).all()
    kinds = frozenset(str(g.kind) for g in groups)
    return WriteScope(
        role=who,
        everything=bool(unrestricted) or RoleKind.LISTENER in kinds,
        bot_ids=frozenset(g.bot_id for g in groups if g.bot_id is not None),
        kinds=kinds | ({"owner"} if unrestricted else set()),
    )


def check_write_scope(conn: Connection, bot_id: str) -> WriteScope:
    """Raise :class:`ConfigurationError` when this connection's role may not write
    ``bot_id``'s rows (a service started with another bot's credentials): call it once at
    start-up instead of discovering it at the first refused write."""
    scope = write_scope(conn)
    if not scope.may_write(bot_id):
        allowed = ", ".join(sorted(scope.bot_ids)) or "nothing"
        raise ConfigurationError(
            f"database role {scope.role} may not write rows of bot {bot_id} (it may write: "
            f"{allowed}); check POSTGRES_USER"
        )
    return scope


def login_members(conn: Connection, group: str) -> list[str]:
    """The login roles that are members of ``group``."""
    return list(
        conn.execute(
            text(
                "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member "
                "JOIN pg_roles g ON g.oid = a.roleid WHERE g.rolname = :g ORDER BY 1"
            ),
            {"g": validate_role_name(group, "group")},
        ).scalars()
    )


# ---------------------------------------------------------------------------- passwords


def _secret(password: SecretStr | str) -> str:
    value = password.get_secret_value() if isinstance(password, SecretStr) else password
    if not isinstance(value, str):
        raise ValidationError("password", "***", "expected a string")
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise ValidationError(
            "password", "***", f"must have {PASSWORD_MIN} to {PASSWORD_MAX} characters"
        )
    if not all(" " <= c <= "~" for c in value):
        # Printable ASCII is what SASLprep leaves unchanged: the verifier computed here is
        # then exactly the one libpq and PostgreSQL compute.
        raise ValidationError("password", "***", "use printable ASCII characters only")
    return value


def scram_sha256_verifier(
    password: SecretStr | str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` verifier that
    PostgreSQL stores for ``password`` (RFC 5802/7677, as ``PQencryptPasswordConn``).

    PgBouncer accepts the same string in its auth file, for client and server login."""
    value = _secret(password).encode("utf-8")
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", value, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def read_password(source: str | Path) -> SecretStr:
    """A new password from a file (``-`` = standard input; a terminal is prompted without
    echo). One trailing newline is removed, as for ``*_PASSWORD_FILE``."""
    if str(source) == "-":
        if sys.stdin.isatty():
            import getpass

            raw = getpass.getpass("new password: ")
        else:
            raw = sys.stdin.read()
    else:
        try:
            raw = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read {source}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigurationError(f"{source} is not UTF-8 text") from None
    secret = SecretStr(raw.removesuffix("\n").removesuffix("\r"))
    _secret(secret)
    return secret


def _utility(conn: Connection, template: str, *values: str) -> None:
    """Run a utility statement (which takes no bind parameters) built by the server's
    ``format()`` from bound values: ``%I`` quotes an identifier, ``%L`` a literal."""
    binds = {f"v{i}": v for i, v in enumerate(values)}
    placeholders = "".join(f", :v{i}" for i in range(len(values)))
    statement = conn.execute(
        text(f"SELECT format(:template{placeholders})"), {"template": template, **binds}
    ).scalar_one()
    conn.exec_driver_sql(str(statement), execution_options={"no_parameters": True})


def set_login_password(
    conn: Connection, login: str, password: SecretStr | str, *, group: str | None = None
) -> tuple[str, bool]:
    """Set ``login``'s password (stored as a SCRAM verifier); create it, as a member of the
    configured group role ``group``, when it does not exist yet. Returns the verifier (for the
    PgBouncer auth file: keep it secret, it allows offline guessing) and whether the role was
    created. Needs CREATEROLE (or a superuser); refuses to attach a group to a role that row
    security would not apply to."""
    login = validate_role_name(login, "login")
    verifier = scram_sha256_verifier(password)
    groups = {r.role_name: r for r in configured_roles(conn)}
    if login in groups:
        raise ConfigurationError(
            f"{login} is a group role of trading.db_roles: create a login role that is a "
            "member of it instead (--group)"
        )
    if group is not None:
        group = validate_role_name(group, "group")
        if group not in groups:
            raise ConfigurationError(f"{group} is not a group role of trading.db_roles")
    state = conn.execute(
        text(
            "SELECT r.rolsuper OR r.rolbypassrls OR pg_has_role(r.oid, n.nspowner, 'MEMBER') "
            "FROM pg_roles r, pg_namespace n WHERE r.rolname = :r AND n.nspname = 'trading'"
        ),
        {"r": login},
    ).first()
    created = state is None
    try:
        if created:
            if group is None:
                raise ConfigurationError(f"role {login} does not exist: pass its group role")
            _utility(
                conn,
                "CREATE ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE "
                "NOREPLICATION NOBYPASSRLS PASSWORD %L",
                login,
                verifier,
            )
        else:
            if group is not None and state is not None and state[0]:
                raise ConfigurationError(
                    f"{login} is a superuser, has BYPASSRLS or owns the schema: row security "
                    f"would not apply to it, so it cannot act as {group}"
                )
            _utility(conn, "ALTER ROLE %I PASSWORD %L", login, verifier)
        if group is not None:
            _utility(conn, "GRANT %I TO %I", group, login)
            if groups[group].kind is RoleKind.ANALYTICS:
                # Defence in depth for dashboards: read-only transactions, and an idle
                # transaction (that would hold locks and block a migration) is ended.
                _utility(conn, "ALTER ROLE %I SET default_transaction_read_only = on", login)
                _utility(
                    conn,
                    "ALTER ROLE %I SET idle_in_transaction_session_timeout = %L",
                    login,
                    "60s",
                )
    except DBAPIError as exc:
        raise _db_error(exc) from None
    return verifier, created


def _userlist_name(line: str) -> str | None:
    match = _USERLIST_LINE.match(line)
    return match.group(1).replace('""', '"') if match else None


def update_pgbouncer_userlist(path: str | Path, login: str, verifier: str) -> bool:
    """Put ``"login" "verifier"`` in PgBouncer's auth file (replacing the login's line, or
    appending one), atomically, keeping the file's owner and mode 0600. Returns True when a
    line was replaced. PgBouncer reads it again on ``RELOAD`` or SIGHUP."""
    login = validate_role_name(login, "login")
    if not verifier.startswith("SCRAM-SHA-256$") or '"' in verifier or "\n" in verifier:
        raise ValidationError("verifier", "***", "not a SCRAM-SHA-256 verifier")
    target = Path(path)
    try:
        lines = target.read_text(encoding="utf-8").splitlines() if target.exists() else []
        stat = target.stat() if target.exists() else None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {target}: {exc.strerror}") from None
    entry = f'"{login}" "{verifier}"'
    replaced = False
    out: list[str] = []
    for line in lines:
        if _userlist_name(line) == login:
            if not replaced:
                out.append(entry)
            replaced = True
        else:
            out.append(line)
    if not replaced:
        out.append(entry)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".userlist-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(out) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        if stat is not None and (os.geteuid() == 0 or os.geteuid() == stat.st_uid):
            os.chown(tmp, stat.st_uid, stat.st_gid)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigurationError(f"cannot write {target}: {exc.strerror}") from None
    return replaced
