"""pg_sql.transaction / explicit_transactions on a real server: what stays, what is rolled back, autocommit restored."""

import pytest

from ansible_collections.cerniq.ops.plugins.module_utils.pg_sql import explicit_transactions, fetch_all, transaction


@pytest.fixture
def table(pg_conn):
    with pg_conn.cursor() as cur:
        cur.execute('CREATE TABLE t (n int)')
    return pg_conn


def rows(conn):
    return [row[0] for row in fetch_all(conn, 'SELECT n FROM t ORDER BY n')]


def insert(conn, n):
    with conn.cursor() as cur:
        cur.execute('INSERT INTO t VALUES (%s)', (n,))


def test_transaction_commits_at_the_end_and_restores_autocommit(table):
    with transaction(table):
        assert not table.autocommit
        insert(table, 1)
    assert table.autocommit and rows(table) == [1]


def test_transaction_without_commit_leaves_nothing(table):
    """Check mode: the statements ran (their counts are real), nothing stays."""
    with transaction(table, commit=False):
        insert(table, 1)
        assert rows(table) == [1]
    assert table.autocommit and rows(table) == []


def test_transaction_rolls_back_when_the_block_raises(table):
    with pytest.raises(ZeroDivisionError):
        with transaction(table):
            insert(table, 1)
            1 / 0  # noqa: B018
    assert table.autocommit and rows(table) == []


def test_explicit_transactions_keep_what_was_committed_and_roll_back_the_rest(table):
    """A batch loop: batches committed before an error stay, the batch in progress does not."""
    with pytest.raises(RuntimeError):
        with explicit_transactions(table):
            insert(table, 1)
            table.commit()
            insert(table, 2)
            raise RuntimeError('API down')
    assert table.autocommit and rows(table) == [1]


def test_a_connection_already_in_manual_mode_stays_so(table):
    table.autocommit = False
    with transaction(table):
        insert(table, 1)
    assert table.autocommit is False
    table.rollback()
    assert rows(table) == [1]
