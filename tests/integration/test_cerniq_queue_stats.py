"""cerniq_queue_stats fills runbook 2.4's bullmq_queue_stats from a real queue read."""

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq import schema as cerniq_schema
from cerniq_testkit.ansible_run import run_module


def _schema(conn):
    cerniq_schema.apply(conn, cerniq_schema.load_migrations_dir(cerniq_schema.default_migrations_dir()))


def _table(conn):
    with conn.cursor() as cur:
        cur.execute('SELECT queue_name, waiting, active, delayed, completed, failed, paused, updated_at '
                    'FROM bullmq_queue_stats ORDER BY 1')
        return cur.fetchall()


def _read(redis_params, names):
    result = run_module('bullmq_queue_info', dict(redis_params, names=names, ignore_missing=True, scan_active=False))
    assert not result.failed, result
    return result['queues']


def test_runbook_2_4_sql_sees_the_queue_read(pg_db, pg_conn, redis_params, redis_client):
    _schema(pg_conn)
    redis_client.lpush('bull:silver:score:quality:wait', *[str(i) for i in range(12)])
    redis_client.zadd('bull:silver:score:quality:prioritized', {'p1': 1, 'p2': 2})
    redis_client.lpush('bull:silver:score:quality:active', 'a1')
    redis_client.zadd('bull:silver:score:quality:failed', {'f1': 1})
    redis_client.zadd('bull:silver:score:quality:completed', {'c%d' % i: i for i in range(30)})
    redis_client.hset('bull:silver:score:quality:meta', 'version', 'bullmq:5.58.0')
    queues = _read(redis_params, ['silver:score:quality', 'silver:no:such'])

    check = run_module('cerniq_queue_stats', dict(pg_db, queues=queues), check_mode=True)
    assert check['changed'] and check['changed_queues'] == ['silver:score:quality'] and _table(pg_conn) == []

    first = run_module('cerniq_queue_stats', dict(pg_db, queues=queues))
    assert first['changed'], first
    with pg_conn.cursor() as cur:  # the runbook's own query
        cur.execute("SELECT queue_name, waiting, active, completed, failed FROM bullmq_queue_stats "
                    "WHERE queue_name LIKE 'silver:score%'")
        assert cur.fetchall() == [('silver:score:quality', 14, 1, 30, 1)]
    assert [row[0] for row in _table(pg_conn)] == ['silver:score:quality']  # the missing queue gets no row
    read_at = _table(pg_conn)[0][-1]

    again = run_module('cerniq_queue_stats', dict(pg_db, queues=_read(redis_params, ['silver:score:quality'])))
    assert not again['changed'] and again['changed_queues'] == []
    assert _table(pg_conn)[0][-1] > read_at  # the time of the read moves; the counts did not change

    redis_client.lpop('bull:silver:score:quality:wait')
    moved = run_module('cerniq_queue_stats', dict(pg_db, queues=_read(redis_params, ['silver:score:quality'])))
    assert moved['changed'] and moved['rows']['silver:score:quality']['waiting'] == 13


def test_bad_input_and_missing_table_change_nothing(pg_db, pg_conn):
    result = run_module('cerniq_queue_stats', dict(pg_db, queues={'q': {'counts': {'wait': 1}}}))
    assert result.failed and 'bullmq_queue_stats does not exist' in result['msg']
    _schema(pg_conn)
    result = run_module('cerniq_queue_stats', dict(pg_db, queues={'q': {'counts': {'wait': -3}},
                                                                  'r': {'counts': {'wait': 2}}}))
    assert result.failed and 'non-negative' in result['msg'] and 'Traceback' not in result['msg']
    result = run_module('cerniq_queue_stats', dict(pg_db, queues={'q': {'counts': {'wait': 'lots'}}}))
    assert result.failed and 'non-negative' in result['msg']
    result = run_module('cerniq_queue_stats', dict(pg_db, queues={'q': {'counts': {}}}, table='a.b.c'))
    assert result.failed and 'Traceback' not in result['msg']
    assert _table(pg_conn) == []
