"""The SQL that numbers PostgreSQL commits and announces them (`storage.commits` reads
it). Revisions call these functions; on SQLite they do nothing (every process sees a
commit to the file in its wal-index at once).

Every table carries the statement trigger `registry_mark_commit`: on the first change of
a transaction it records the transaction in `registry_commit_marks` (one row per
session, updated in place). That row's deferred constraint trigger,
`registry_number_commit`, therefore runs once per writing transaction, at COMMIT: under
a transaction lock it takes the commit's number from the sequence, sends it on the
`registry_commits` channel, and reports it to the session when the session asked
(`registry.report_commits`). The lock is held until the commit is visible, so numbers
(and notifications, which PostgreSQL delivers in commit order) follow commit order.
PostgreSQL already holds a lock of its own across the commit of every notifying
transaction, so this one adds no wait of its own beyond the trigger.

A revision that creates a table calls `mark_commits_on(table)`;
tests/test_replicas.py fails for any table of the models without the trigger.
"""

from __future__ import annotations

from alembic import op

from ..storage.commits import CHANNEL, COMMIT_LOCK, NOTICE_PREFIX, REPORT_SETTING, SEQUENCE

MARKS = "registry_commit_marks"
MARK_TRIGGER = "registry_mark_commit"  # on every table, and the name of its function
NUMBER_TRIGGER = "registry_number_commit"
MARKED_SETTING = "registry.commit_marked"  # transaction-local: marked already

_CREATE = [
    f"CREATE SEQUENCE {SEQUENCE}",
    f"CREATE UNLOGGED TABLE {MARKS} (pid integer PRIMARY KEY)",
    f"""
    CREATE FUNCTION {MARK_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF current_setting('{MARKED_SETTING}', true) IS DISTINCT FROM 'on' THEN
            PERFORM set_config('{MARKED_SETTING}', 'on', true);
            INSERT INTO {MARKS} AS m (pid) VALUES (pg_backend_pid())
                ON CONFLICT (pid) DO UPDATE SET pid = m.pid;
        END IF;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION {NUMBER_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        seq bigint;
    BEGIN
        PERFORM pg_advisory_xact_lock({COMMIT_LOCK[0]}, {COMMIT_LOCK[1]});
        seq := nextval('{SEQUENCE}');
        PERFORM pg_notify('{CHANNEL}', seq::text);
        IF current_setting('{REPORT_SETTING}', true) = 'on' THEN
            RAISE NOTICE '{NOTICE_PREFIX}%', seq;
        END IF;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE CONSTRAINT TRIGGER {NUMBER_TRIGGER} AFTER INSERT OR UPDATE ON {MARKS}
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {NUMBER_TRIGGER}()
    """,
]


def _postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def create_commit_numbering() -> None:
    """The sequence, the marks table and both trigger functions, and the trigger on
    every table that exists now."""
    if not _postgresql():
        return
    for statement in _CREATE:
        op.execute(statement)
    for table in _tables():
        mark_commits_on(table)


def mark_commits_on(table: str) -> None:
    """Makes every change to `table` number and announce its transaction's commit."""
    if not _postgresql():
        return
    op.execute(
        f'CREATE TRIGGER {MARK_TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "{table}"'
        f" FOR EACH STATEMENT EXECUTE FUNCTION {MARK_TRIGGER}()"
    )


def drop_commit_numbering() -> None:
    if not _postgresql():
        return
    # A later revision's downgrade in the same transaction (its alembic_version update
    # is marked) left the deferred numbering trigger pending: run it now, or the marks
    # table cannot be dropped.
    op.execute("SET CONSTRAINTS ALL IMMEDIATE")
    for table in _tables():
        op.execute(f'DROP TRIGGER IF EXISTS {MARK_TRIGGER} ON "{table}"')
    op.execute(f"DROP TABLE {MARKS}")  # and its trigger
    op.execute(f"DROP FUNCTION {NUMBER_TRIGGER}()")
    op.execute(f"DROP FUNCTION {MARK_TRIGGER}()")
    op.execute(f"DROP SEQUENCE {SEQUENCE}")


def _tables() -> list[str]:
    """The tables of the schema, but the marks table."""
    rows = op.get_bind().exec_driver_sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        f" AND tablename <> '{MARKS}' ORDER BY tablename"
    )
    return [row[0] for row in rows]
