"""``alpha-db roles-sync``, ``roles-list``, ``role-password``: the platform's database roles.

Run them with the owner's connection (``POSTGRES_USER=trading_user``, as ``alpha-db
migrate``); creating roles and setting passwords needs CREATEROLE (see docs/security.md).
Passwords are read from a file or standard input, never from the command line, and are
never printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from alpha_models import roles
from alpha_models.cli.common import (
    EXIT_ACTION_NEEDED,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    add_json_flag,
    command,
    print_json,
    print_table,
    safe_text,
)
from alpha_models.errors import AlphaModelsError, DatabaseError


def _sync(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.engine.begin() as conn:
        actions = roles.sync_roles(conn, roles.RoleNames(prefix=args.prefix))
    missing = [a.role_name for a in actions if a.missing]
    if args.json:
        print_json({"roles": actions, "missing": missing})
    else:
        print_table(
            [(a.role_name, str(a.kind), a.bot_id, a.action) for a in actions],
            ["role", "kind", "bot", "action"],
        )
        if missing:
            print(
                f"{len(missing)} role(s) missing: rerun as a role with CREATEROLE "
                "(or a superuser) to create them"
            )
    return EXIT_ACTION_NEEDED if missing else EXIT_OK


def _list(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.engine.connect() as conn:
        configured = roles.configured_roles(conn)
        members = {r.role_name: roles.login_members(conn, r.role_name) for r in configured}
        scope = roles.write_scope(conn)
        conn.rollback()
    if args.json:
        print_json(
            {
                "roles": [{**_role_json(r), "logins": members[r.role_name]} for r in configured],
                "connected_as": {
                    "role": scope.role,
                    "writes_everything": scope.everything,
                    "bots": sorted(scope.bot_ids),
                },
            }
        )
    else:
        print_table(
            [
                (r.role_name, str(r.kind), r.bot_id, ", ".join(members[r.role_name]) or None)
                for r in configured
            ],
            ["role", "kind", "bot", "logins"],
        )
        writes = "every bot" if scope.everything else ", ".join(sorted(scope.bot_ids)) or "none"
        print(f"connected as {safe_text(scope.role)}: may write {writes}")
    return EXIT_OK


def _role_json(role: roles.DbRole) -> dict[str, Any]:
    return {"role": role.role_name, "kind": str(role.kind), "bot_id": role.bot_id}


def _password(args: argparse.Namespace, ctx: Context) -> int:
    if (args.password_file is None) == (not args.password_stdin):
        print(
            "alpha-db: error: give exactly one of --password-file PATH or --password-stdin",
            file=sys.stderr,
        )
        return EXIT_USAGE
    secret = roles.read_password("-" if args.password_stdin else args.password_file)
    try:
        with ctx.engine.begin() as conn:
            verifier, created = roles.set_login_password(conn, args.role, secret, group=args.group)
    except AlphaModelsError as exc:
        # Belt and braces: the new password is not among the settings' secrets that the
        # CLI boundary scrubs, so make sure no message carries it.
        message = str(exc)
        if secret.get_secret_value() in message:
            raise DatabaseError(message.replace(secret.get_secret_value(), "***")) from None
        raise
    userlist_updated = False
    if args.pgbouncer_userlist:
        roles.update_pgbouncer_userlist(args.pgbouncer_userlist, args.role, verifier)
        userlist_updated = True
    result = {
        "role": args.role,
        "created": created,
        "group": args.group,
        "pgbouncer_userlist": args.pgbouncer_userlist if userlist_updated else None,
    }
    if args.json:
        print_json(result)
    else:
        what = f"created (member of {args.group})" if created else "password changed"
        print(f"role {args.role}: {what}; stored as a SCRAM-SHA-256 verifier")
        if userlist_updated:
            print(
                f"PgBouncer auth file {safe_text(args.pgbouncer_userlist)} updated: reload "
                "PgBouncer (RELOAD on its console, or SIGHUP)"
            )
        print("next: put the new password in the service's *_PASSWORD_FILE and restart it")
    return EXIT_OK


def register(sub: Any) -> None:
    s = command(
        sub,
        "roles-sync",
        help="create missing group roles and grant each exactly its privileges",
        example="POSTGRES_USER=trading_user alpha-db roles-sync",
        handler=_sync,
    )
    s.add_argument(
        "--prefix",
        default=roles.DEFAULT_PREFIX,
        help="name prefix of roles for newly registered bots (default: alpha)",
    )
    add_json_flag(s)
    ls = command(
        sub,
        "roles-list",
        help="list the group roles, their login roles, and what this connection may write",
        example="alpha-db roles-list --json",
        handler=_list,
    )
    add_json_flag(ls)
    p = command(
        sub,
        "role-password",
        help="set (rotate) a login role's password; create the login with --group",
        example=(
            "alpha-db role-password shortseller --group alpha_bot_shortseller_001 "
            "--password-file /run/secrets/shortseller_pg --pgbouncer-userlist "
            "/etc/pgbouncer/userlist.txt"
        ),
        handler=_password,
    )
    p.add_argument("role", help="the login role")
    p.add_argument("--group", help="group role to attach a new login to (trading.db_roles)")
    p.add_argument("--password-file", help="file holding the new password (one line)")
    p.add_argument("--password-stdin", action="store_true", help="read the new password from stdin")
    p.add_argument(
        "--pgbouncer-userlist",
        help="PgBouncer auth_file to update with the role's SCRAM verifier",
    )
    add_json_flag(p)
