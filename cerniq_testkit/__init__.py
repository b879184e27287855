"""cerniq_testkit: the real parts the collection's tests, benchmarks and local demo run against.

Not shipped in the collection (galaxy.yml build_ignore) and not a test suite: a library that
starts throwaway PostgreSQL and Redis servers on free loopback ports (``servers``), real BullMQ
workers in subprocesses (``bullmq_helpers``, ``bullmq_worker``), Prometheus/Alertmanager/promtool
(``monitoring``), a recording HTTP server standing in for the CERNIQ API (``http_recorder``), and
runs the collection's modules and playbooks as Ansible does (``ansible_run``, ``results``).

Importers put the repository root on ``sys.path`` (tests/conftest.py, scripts/demo_common.py,
the benchmarks) and import it by name: ``from cerniq_testkit.servers import PostgresServer``.
"""
