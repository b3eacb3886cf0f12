"""roles and row-level security: each bot's role may write only its own rows

Adds, without touching a row:

- ``trading.db_roles``: the platform's NOLOGIN group roles and what each may write for
  (``bot``: one bot_id; ``listener``: every bot, ``unknown`` and bot-less events;
  ``analytics``: nothing, read only). Login roles of the services are members of them.
- ``trading.may_write(bot_id)``: true when ``current_user`` has the privileges of a group
  role that may write for ``bot_id``. The identity is the login role (PgBouncer pools per
  user, so it holds behind transaction pooling too); no session setting is trusted.
- Row-level security on every table with a ``bot_id`` (``trading.enable_bot_row_security``):
  reads open, INSERT/UPDATE/DELETE only of rows ``may_write`` allows. Not FORCEd: the owner
  (``trading_user`` in production, the role that runs the migrations) is unaffected.
- ``trading.sync_roles()``: creates the configured roles that are missing (when the caller
  has CREATEROLE; otherwise it reports them) and grants exactly the privileges of each kind,
  plus ``ALTER DEFAULT PRIVILEGES`` so that future tables are readable by all of them. It
  converges, so it is safe to run again (``alpha-db roles-sync`` does).
- ``trading.record_fill`` (0011) no longer reports ``reattributed`` when the caller may not
  re-attribute the ``unknown`` copy (row security hides it from a bot's role): the outcome is
  then ``duplicate`` and the copy stays ``unknown`` for the listener to attribute.

Role names are configurable: ``-x roles-prefix=alpha`` (default) gives ``alpha_bot_<bot_id>``,
``alpha_listener`` and ``alpha_analytics``; ``-x role-listener=NAME``,
``-x role-analytics=NAME`` and ``-x role-bot-<bot_id>=NAME`` name one role. Rows already in
``trading.db_roles`` win over these defaults.

Roles are objects of the whole cluster: the downgrade removes everything they hold in this
database (grants, default privileges, policies, the table and functions) but does not drop
them, since other databases of the cluster may use them.

Revision ID: 0016
Revises: 0015
Create Date: 2025-12-01
"""

import logging
import re
from collections.abc import Sequence

from sqlalchemy import text

from alembic import context, op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

PLATFORM_BOTS = ("shortseller_001", "lxalgo_001", "momentum_001")
DEFAULT_PREFIX = "alpha"
ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
RESERVED_NAMES = {"trading", "audit", "public", "unknown"}

# Every table with a bot_id. Future tables: call trading.enable_bot_row_security(...) and
# SELECT trading.sync_roles() in their migration.
SECURED_TABLES = (
    "trading.bots",
    "trading.fills",
    "trading.orders",
    "trading.positions",
    "trading.position_entries",
    "trading.completed_trades",
    "trading.sync_status",
    "trading.funding_settlements",
    "trading.exchange_positions",
    "trading.equity_snapshots",
    "trading.strategy_trades",
    "audit.system_events",
    "audit.risk_events",
)

DB_ROLES = """
CREATE TABLE trading.db_roles (
    id serial NOT NULL,
    role_name character varying(63) NOT NULL,
    kind character varying(20) NOT NULL,
    bot_id character varying(50),
    created_at timestamp with time zone DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT db_roles_pkey PRIMARY KEY (id),
    CONSTRAINT db_roles_role_name_key UNIQUE (role_name),
    CONSTRAINT valid_role_kind CHECK (kind IN ('bot', 'listener', 'analytics')),
    CONSTRAINT bot_role_names_its_bot CHECK ((kind = 'bot') = (bot_id IS NOT NULL))
)"""

DB_ROLES_COMMENT = (
    "COMMENT ON TABLE trading.db_roles IS 'Group roles of the platform and the bot each may "
    "write for (row-level security); login roles are members of them'"
)

MAY_WRITE = """
CREATE FUNCTION trading.may_write(p_bot_id character varying) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1
          FROM trading.db_roles d
          JOIN pg_catalog.pg_roles r ON r.rolname = d.role_name
         WHERE (d.kind = 'listener' OR (d.kind = 'bot' AND d.bot_id = p_bot_id))
           AND pg_catalog.pg_has_role(r.oid, 'USAGE'))
$$"""

ENABLE_ROW_SECURITY = """
CREATE FUNCTION trading.enable_bot_row_security(p_table regclass) RETURNS void
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_name text;
BEGIN
    SELECT format('%I.%I', n.nspname, c.relname) INTO v_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', v_name);
    EXECUTE format('DROP POLICY IF EXISTS alpha_read ON %s', v_name);
    EXECUTE format('DROP POLICY IF EXISTS alpha_insert ON %s', v_name);
    EXECUTE format('DROP POLICY IF EXISTS alpha_update ON %s', v_name);
    EXECUTE format('DROP POLICY IF EXISTS alpha_delete ON %s', v_name);
    EXECUTE format('CREATE POLICY alpha_read ON %s FOR SELECT USING (true)', v_name);
    EXECUTE format('CREATE POLICY alpha_insert ON %s FOR INSERT '
                   'WITH CHECK (trading.may_write(bot_id))', v_name);
    EXECUTE format('CREATE POLICY alpha_update ON %s FOR UPDATE '
                   'USING (trading.may_write(bot_id)) WITH CHECK (trading.may_write(bot_id))',
                   v_name);
    EXECUTE format('CREATE POLICY alpha_delete ON %s FOR DELETE '
                   'USING (trading.may_write(bot_id))', v_name);
END $$"""

# Writers (bot and listener roles) get INSERT and UPDATE on every table under row security;
# these tables get less (or, for lots, DELETE: the write path rebuilds them).
SYNC_ROLES = """
CREATE FUNCTION trading.sync_roles()
RETURNS TABLE (role_name text, kind text, bot_id text, action text)
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_owner name;
    v_can_create boolean;
    v_role record;
    v_table record;
    v_func record;
    v_privs text;
    v_schemas constant text[] := ARRAY['trading', 'audit'];
    v_special constant jsonb := '{
        "trading.fills": "INSERT, UPDATE (bot_id, client_order_id, close_reason, source)",
        "trading.funding_settlements": "INSERT, UPDATE (bot_id, source)",
        "trading.position_entries": "INSERT, UPDATE, DELETE",
        "trading.bots": "UPDATE (last_heartbeat, current_equity, updated_at)",
        "audit.system_events": "INSERT",
        "audit.risk_events": "INSERT, UPDATE (resolved, resolved_at, resolution_notes)"
    }';
    -- The listener/reconciliation role also replaces derived round trips.
    v_listener_special constant jsonb := '{
        "trading.completed_trades": "INSERT, UPDATE, DELETE"
    }';
BEGIN
    SELECT pg_get_userbyid(n.nspowner) INTO v_owner FROM pg_namespace n
     WHERE n.nspname = 'trading';
    IF NOT pg_has_role(v_owner, 'USAGE') THEN
        RAISE EXCEPTION 'trading.sync_roles() must run as the schema owner % (or a superuser)',
            v_owner;
    END IF;
    SELECT r.rolcreaterole OR r.rolsuper INTO v_can_create FROM pg_roles r
     WHERE r.rolname = current_user;

    FOR v_role IN SELECT d.role_name, d.kind, d.bot_id FROM trading.db_roles d
                   ORDER BY d.kind, d.role_name
    LOOP
        role_name := v_role.role_name;
        kind := v_role.kind;
        bot_id := v_role.bot_id;
        IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = v_role.role_name) THEN
            IF NOT v_can_create THEN
                action := 'missing (needs CREATEROLE)';
                RETURN NEXT;
                CONTINUE;
            END IF;
            EXECUTE format('CREATE ROLE %I NOLOGIN', v_role.role_name);
            action := 'created';
        ELSE
            action := 'granted';
        END IF;
        IF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = v_role.role_name
                      AND (r.rolsuper OR r.rolbypassrls)) THEN
            RAISE EXCEPTION 'role % is a superuser or has BYPASSRLS: row security would not '
                'apply to it', v_role.role_name;
        END IF;
        IF pg_has_role(v_role.role_name, v_owner, 'MEMBER') THEN
            RAISE EXCEPTION 'role % is a member of the owner %: row security would not '
                'apply to it', v_role.role_name, v_owner;
        END IF;

        -- Converge: drop whatever the role holds here, then grant exactly its kind's set.
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA trading, audit FROM %I',
                       v_role.role_name);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA trading, audit FROM %I',
                       v_role.role_name);
        EXECUTE format('GRANT USAGE ON SCHEMA trading, audit TO %I', v_role.role_name);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA trading, audit TO %I',
                       v_role.role_name);
        EXECUTE format('GRANT EXECUTE ON FUNCTION trading.may_write(character varying) TO %I',
                       v_role.role_name);
        IF to_regclass('public.alembic_version') IS NOT NULL THEN
            -- The write path refuses a database behind its migration: it reads the version.
            EXECUTE format('GRANT SELECT ON public.alembic_version TO %I', v_role.role_name);
        END IF;
        EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA trading, audit '
                       'GRANT SELECT ON TABLES TO %I', v_owner, v_role.role_name);

        IF v_role.kind IN ('bot', 'listener') THEN
            EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA trading, audit TO %I',
                           v_role.role_name);
            EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA trading, audit '
                           'GRANT USAGE ON SEQUENCES TO %I', v_owner, v_role.role_name);
            FOR v_func IN
                SELECT p.oid::regprocedure AS sig FROM pg_proc p
                  JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'trading' AND p.prokind = 'f'
                   AND p.proname NOT IN ('sync_roles', 'enable_bot_row_security')
            LOOP
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_func.sig,
                               v_role.role_name);
            END LOOP;
            FOR v_table IN
                SELECT format('%I.%I', n.nspname, c.relname) AS qualified,
                       n.nspname || '.' || c.relname AS plain
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = ANY (v_schemas) AND c.relkind IN ('r', 'p')
                   AND c.relrowsecurity
                   AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid
                                  AND a.attname = 'bot_id' AND NOT a.attisdropped)
            LOOP
                v_privs := coalesce(
                    CASE WHEN v_role.kind = 'listener'
                         THEN v_listener_special ->> v_table.plain END,
                    v_special ->> v_table.plain,
                    'INSERT, UPDATE');
                EXECUTE format('GRANT %s ON %s TO %I', v_privs, v_table.qualified,
                               v_role.role_name);
            END LOOP;
        END IF;
        RETURN NEXT;
    END LOOP;
END $$"""

ADMIN_FUNCTIONS = ("trading.sync_roles()", "trading.enable_bot_row_security(regclass)")

_RECORD_FILL_HEAD = """
CREATE OR REPLACE FUNCTION trading.record_fill(
    p_exec_id varchar, p_bot_id varchar, p_symbol varchar, p_order_id varchar,
    p_client_order_id varchar, p_side varchar, p_price numeric, p_qty numeric,
    p_exec_time timestamptz, p_close_reason varchar, p_commission numeric,
    p_exec_type varchar, p_source varchar
) RETURNS TABLE (
    fill_id bigint, outcome text, pos_side varchar, pos_size numeric, pos_avg numeric,
    pos_version bigint, pos_updated timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    v_fill_id bigint;
    v_existing_bot varchar;
    v_pos trading.positions;
BEGIN
    INSERT INTO trading.fills (
        exec_id, bot_id, symbol, order_id, client_order_id, side, exec_price, exec_qty,
        exec_time, close_reason, commission, exec_type, source)
    VALUES (
        p_exec_id, p_bot_id, p_symbol, p_order_id, p_client_order_id, p_side, p_price, p_qty,
        p_exec_time, p_close_reason, p_commission, p_exec_type, p_source)
    ON CONFLICT (exec_id) DO NOTHING
    RETURNING id INTO v_fill_id;

    IF v_fill_id IS NULL THEN
        SELECT f.id, f.bot_id INTO v_fill_id, v_existing_bot
          FROM trading.fills f WHERE f.exec_id = p_exec_id;
        fill_id := v_fill_id;
        IF v_existing_bot = 'unknown' AND p_bot_id <> 'unknown' THEN
            UPDATE trading.fills f
               SET bot_id = p_bot_id,
                   client_order_id = CASE WHEN f.client_order_id = '' THEN p_client_order_id
                                          ELSE f.client_order_id END,
                   close_reason = coalesce(nullif(p_close_reason, ''), f.close_reason),
                   source = coalesce(f.source, p_source)
             WHERE f.id = v_fill_id;
"""

_RECORD_FILL_GUARD = """            IF NOT FOUND THEN
                -- Row security hid the 'unknown' copy: this role may not re-attribute it.
                outcome := 'duplicate';
                RETURN NEXT;
                RETURN;
            END IF;
"""

_RECORD_FILL_TAIL = """            v_pos := trading.rebuild_position(p_bot_id, p_symbol);
            outcome := 'reattributed';
        ELSE
            outcome := 'duplicate';
            RETURN NEXT;
            RETURN;
        END IF;
    ELSIF p_bot_id = 'unknown' THEN
        fill_id := v_fill_id;
        outcome := 'new';
        RETURN NEXT;
        RETURN;
    ELSE
        fill_id := v_fill_id;
        v_pos := trading.lock_position(p_bot_id, p_symbol);
        IF v_pos.last_exec_time IS NOT NULL AND p_exec_time < v_pos.last_exec_time THEN
            v_pos := trading.rebuild_position(p_bot_id, p_symbol);
            outcome := 'rebuilt';
        ELSE
            PERFORM trading.apply_fill_to_lots(
                p_bot_id, p_symbol, p_exec_id, v_fill_id, p_order_id, p_side, p_price, p_qty,
                p_exec_time, p_commission);
            v_pos := trading.refresh_position(p_bot_id, p_symbol, p_exec_time);
            outcome := 'new';
        END IF;
    END IF;
    pos_side := v_pos.side;
    pos_size := v_pos.size;
    pos_avg := v_pos.avg_entry_price;
    pos_version := v_pos.version;
    pos_updated := v_pos.updated_at;
    RETURN NEXT;
END $$
"""

RECORD_FILL = _RECORD_FILL_HEAD + _RECORD_FILL_GUARD + _RECORD_FILL_TAIL
RECORD_FILL_0011 = _RECORD_FILL_HEAD + _RECORD_FILL_TAIL  # what the downgrade restores


def _x_args() -> dict[str, str]:
    return dict(context.get_x_argument(as_dictionary=True))


def _checked(name: str, source: str) -> str:
    if ROLE_NAME.fullmatch(name) is None or name.startswith("pg_") or name in RESERVED_NAMES:
        raise ValueError(
            f"{source}: {name!r} is not usable as a role name (^[a-z_][a-z0-9_]{{0,62}}$, "
            "not pg_*, not a schema name)"
        )
    return name


def default_roles(bot_ids: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """(role_name, kind, bot_id) for the listener, analytics and one role per bot."""
    x = _x_args()
    prefix = x.get("roles-prefix", DEFAULT_PREFIX)
    _checked(f"{prefix}_listener", "-x roles-prefix")
    out: list[tuple[str, str, str | None]] = [
        (_checked(x.get("role-listener", f"{prefix}_listener"), "-x role-listener"),
         "listener", None),
        (_checked(x.get("role-analytics", f"{prefix}_analytics"), "-x role-analytics"),
         "analytics", None),
    ]  # fmt: skip
    for bot_id in bot_ids:
        key = f"role-bot-{bot_id}"
        name = x.get(key, f"{prefix}_bot_{bot_id}")
        if ROLE_NAME.fullmatch(name) is None:
            log.warning("no writer role for bot %r: %r is not a plain role name", bot_id, name)
            continue
        out.append((_checked(name, f"-x {key}"), "bot", bot_id))
    return out


def upgrade() -> None:
    conn = op.get_bind()
    op.execute(DB_ROLES)
    op.execute(DB_ROLES_COMMENT)
    registered = conn.execute(text("SELECT bot_id FROM trading.bots ORDER BY bot_id")).scalars()
    bot_ids = list(dict.fromkeys([*PLATFORM_BOTS, *registered]))
    for role_name, kind, bot_id in default_roles(bot_ids):
        conn.execute(
            text(
                "INSERT INTO trading.db_roles (role_name, kind, bot_id) VALUES (:r, :k, :b) "
                "ON CONFLICT (role_name) DO NOTHING"
            ),
            {"r": role_name, "k": kind, "b": bot_id},
        )
    op.execute(MAY_WRITE)
    op.execute(ENABLE_ROW_SECURITY)
    op.execute(SYNC_ROLES)
    for signature in ADMIN_FUNCTIONS:
        op.execute(f"REVOKE EXECUTE ON FUNCTION {signature} FROM PUBLIC")
    op.execute(RECORD_FILL)
    for table in SECURED_TABLES:
        conn.execute(
            text("SELECT trading.enable_bot_row_security(CAST(:t AS regclass))"), {"t": table}
        )
    missing = []
    for row in conn.execute(text("SELECT * FROM trading.sync_roles()")):
        log.info("role %s (%s %s): %s", row.role_name, row.kind, row.bot_id or "-", row.action)
        if row.action.startswith("missing"):
            missing.append(row.role_name)
    if missing:
        log.warning(
            "roles not created (this connection lacks CREATEROLE): %s. Row security is on; "
            "create them with `alpha-db roles-sync` as a role with CREATEROLE (or a superuser)",
            ", ".join(missing),
        )


def downgrade() -> None:
    conn = op.get_bind()
    owner = conn.execute(
        text("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'trading'")
    ).scalar_one()
    roles = conn.execute(
        text(
            "SELECT d.role_name, d.kind FROM trading.db_roles d "
            "JOIN pg_roles r ON r.rolname = d.role_name ORDER BY d.role_name"
        )
    ).all()
    for role_name, _kind in roles:
        role = conn.execute(text("SELECT quote_ident(:r)"), {"r": role_name}).scalar_one()
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA trading, audit FROM {role}")
        op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA trading, audit FROM {role}")
        op.execute(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA trading, audit FROM {role}")
        op.execute(f"REVOKE ALL ON SCHEMA trading, audit FROM {role}")
        if conn.execute(text("SELECT to_regclass('public.alembic_version')")).scalar():
            op.execute(f"REVOKE ALL ON public.alembic_version FROM {role}")
        op.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA trading, audit "
            f"REVOKE ALL ON TABLES FROM {role}"
        )
        op.execute(
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA trading, audit "
            f"REVOKE ALL ON SEQUENCES FROM {role}"
        )
    for table in SECURED_TABLES:
        for policy in ("alpha_read", "alpha_insert", "alpha_update", "alpha_delete"):
            op.execute(f"DROP POLICY IF EXISTS {policy} ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(RECORD_FILL_0011)
    op.execute("DROP FUNCTION trading.sync_roles()")
    op.execute("DROP FUNCTION trading.enable_bot_row_security(regclass)")
    op.execute("DROP FUNCTION trading.may_write(character varying)")
    op.execute("DROP TABLE trading.db_roles")
    if roles:
        log.info(
            "roles kept (cluster-wide; they hold nothing in this database now): %s",
            ", ".join(r[0] for r in roles),
        )
