"""Shared plumbing of the benchmark scripts: the bench database, Redis clean-up, the summary table.

Import this module before Django is set up: ``configure()`` chooses the settings through environment
variables (read by ``benchmarks/settings.py``), which subprocesses such as the RQ worker inherit.
"""

import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
REDIS_KEY_PREFIX = "wagtail_crm_bench"


def add_db_arguments(parser, *, default_db, default_pg_name):
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgres"],
        default=default_db,
        help=f"database to measure on (default {default_db}); the script creates and drops it",
    )
    parser.add_argument(
        "--pg-name",
        default=default_pg_name,
        help=f"PostgreSQL database to create and drop (default {default_pg_name})",
    )
    parser.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-port", default=os.environ.get("PGPORT", "5432"))
    parser.add_argument("--pg-user", default=os.environ.get("PGUSER", ""))
    parser.add_argument("--pg-password", default=os.environ.get("PGPASSWORD", ""))
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help=f"Redis database used for the queue and event buffer (default {DEFAULT_REDIS_URL}); "
        "the keys the benchmark used are deleted at the end",
    )


class BenchEnvironment:
    """Creates the bench database (a SQLite file in a temporary folder, or a PostgreSQL database) and removes
    it again; sets the ``BENCH_*`` variables ``benchmarks/settings.py`` reads."""

    def __init__(self, args, *, queue):
        self.args = args
        self.queue = queue
        self.tmpdir = None

    def env(self):
        """The environment variables of this configuration (also passed to subprocesses)."""
        args = self.args
        env = {
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "BENCH_DB": args.db,
            "BENCH_REDIS_URL": args.redis_url,
            "BENCH_RQ": "1" if self.queue else "0",
            "BENCH_PG_NAME": args.pg_name,
            "BENCH_PG_HOST": args.pg_host,
            "BENCH_PG_PORT": str(args.pg_port),
            "BENCH_PG_USER": args.pg_user,
            "BENCH_PG_PASSWORD": args.pg_password,
        }
        if self.tmpdir:
            env["BENCH_SQLITE_PATH"] = str(Path(self.tmpdir) / "bench.sqlite3")
        return env

    def __enter__(self):
        self.tmpdir = tempfile.mkdtemp(prefix="wagtail_crm_bench_")
        if self.args.db == "postgres":
            self._pg_admin(f'DROP DATABASE IF EXISTS "{self.args.pg_name}" WITH (FORCE)')
            self._pg_admin(f'CREATE DATABASE "{self.args.pg_name}"')
        os.environ.update(self.env())
        return self

    def __exit__(self, *exc):
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        if self.args.db == "postgres":
            self._pg_admin(f'DROP DATABASE IF EXISTS "{self.args.pg_name}" WITH (FORCE)')
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        if self.queue:
            flush_redis_keys(self.args.redis_url)

    def _pg_admin(self, sql):
        pg_admin(self.args, sql)


def pg_admin(args, sql, fetch=False):
    """Run ``sql`` on the server's ``postgres`` database (creating and dropping benchmark databases)."""
    import psycopg

    params = {"host": args.pg_host, "port": args.pg_port, "dbname": "postgres"}
    if args.pg_user:
        params["user"] = args.pg_user
    if args.pg_password:
        params["password"] = args.pg_password
    with psycopg.connect(**params, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if fetch else None


def add_request_arguments(parser, *, n_help):
    """The options of the benchmarks that time page requests (request_overhead.py, segments_render.py)."""
    parser.add_argument("--n", type=int, default=2000, help=n_help)
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests first (default 200)")
    parser.add_argument(
        "--block", type=int, default=10, help="requests per block before switching (default 10)"
    )
    parser.add_argument(
        "--count", type=int, default=20, help="requests in the query-counting pass (default 20)"
    )
    parser.add_argument("--path", default="/shop/shoes/", help="page to render (default /shop/shoes/)")
    parser.add_argument("--visitors", type=int, default=300, help="demo visitors to load first (default 300)")
    parser.add_argument(
        "--inline",
        action="store_true",
        help="no queue configured: each page view is written to the database in the request",
    )
    parser.add_argument(
        "--no-plain",
        dest="plain",
        action="store_false",
        help="skip the plain-Wagtail (app not installed) subprocess",
    )


def redis_client(url):
    import redis

    return redis.Redis.from_url(url)


def check_redis(url):
    try:
        redis_client(url).ping()
    except Exception as exc:
        sys.exit(f"Redis is needed at {url} ({exc}). Start Redis or pass --redis-url.")


def flush_redis_keys(url):
    """Delete the keys the benchmarks use: the event buffer (``wagtail_crm_bench:*``) and RQ's keys.

    The benchmark Redis database holds nothing else, so every ``rq:*`` key in it belongs to our queue.
    """
    try:
        client = redis_client(url)
        keys = list(client.scan_iter(f"{REDIS_KEY_PREFIX}*")) + list(client.scan_iter("rq:*"))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    except Exception as exc:  # clean-up must not hide the results
        print(f"warning: could not clean Redis keys at {url}: {exc}", file=sys.stderr)


def machine_description():
    import django
    import wagtail

    cpus = os.cpu_count()
    return (
        f"{platform.machine()} · {cpus} CPU core{'s' if cpus != 1 else ''} · Python {platform.python_version()}"
        f" · Django {django.get_version()} · Wagtail {wagtail.__version__}"
    )


def database_description():
    """The database in use and its server version, e.g. "PostgreSQL 15.2 (wagtail_crm_bench)"."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0].split()[0]
        return f"PostgreSQL {version} (database {connection.settings_dict['NAME']})"
    if connection.vendor == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version} (a file in a temporary folder)"
    return connection.vendor


def median_ms(samples_ns):
    return statistics.median(samples_ns) / 1e6


def percentile_ms(samples_ns, pct):
    ordered = sorted(samples_ns)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index] / 1e6


def print_table(headers, rows, *, title=None, left=1):
    """Print ``rows`` (lists of values) under ``headers``; the first ``left`` columns are left-aligned."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def fmt(cells):
        return "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    if title:
        print()
        print(title)
        print("=" * len(title))
    print(fmt([str(h) for h in headers]))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(fmt(row))
