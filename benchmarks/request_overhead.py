#!/usr/bin/env python
"""What does ``VisitorMiddleware`` cost a page request? Plugin on vs off vs absent, measured in one run.

Renders a page of the example site through Django's WSGI handler (``RequestFactory`` environ, in-process):

- **plugin on**: the example site's settings, ``wagtail_crm.middleware.VisitorMiddleware`` in MIDDLEWARE;
- **plugin off**: the same settings and process with that middleware removed (the app stays installed);
- **plain Wagtail**: a subprocess whose settings do not install ``wagtail_crm`` (nor django-rq) at all.

for two visitors: a *returning* visitor (a valid signed cookie of a stored profile) and a *new* visitor (no
cookie). The configurations run in alternating blocks (ABC, CBA, ...) so that drift (CPU frequency, caches,
a growing database) hits them equally. Queries are counted in a separate, untimed pass.

By default page views go to a Redis queue (``WAGTAIL_CRM["RQ_QUEUE"]``, the production set-up): the request
pushes the event into a Redis list and writes nothing to the database. No worker runs, so nothing drains the
buffer during the measurement; the keys used are deleted at the end. ``--inline`` measures the default
mode without Redis instead, where each page view is written to the database in the request.

    python benchmarks/request_overhead.py                  # SQLite, queue on Redis DB 14
    python benchmarks/request_overhead.py --db postgres    # PostgreSQL database wagtail_crm_bench
    python benchmarks/request_overhead.py --inline         # no queue: page views written in the request
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import _common  # noqa: E402

PLUGIN_MIDDLEWARE = "wagtail_crm.middleware.VisitorMiddleware"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
CASES = ("returning", "new")
CASE_LABELS = {"returning": "returning visitor", "new": "new visitor"}
CONFIGS = ("on", "off", "plain")
CONFIG_LABELS = {"on": "plugin on", "off": "plugin off (app installed)", "plain": "plain Wagtail (no app)"}
WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "COPY")
# Django logs an executemany() as "<n> times: <sql>".
EXECUTEMANY_PREFIX = re.compile(r"^\d+ times: ")


# -- requests (shared by the main process and the plain-Wagtail subprocess) ---------------------------------


def make_environ(path, cookie):
    """A browser-like GET environ; ``cookie`` is the raw Cookie header (or None for a new visitor)."""
    from django.test import RequestFactory

    headers = {
        "HTTP_USER_AGENT": BROWSER,
        "HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        "HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9",
    }
    if cookie:
        headers["HTTP_COOKIE"] = cookie
    return RequestFactory().get(path, **headers).environ


def run_requests(handler, environ, n):
    """Serve ``n`` requests; returns the wall time of each in ns. Fails loudly on anything but a 200."""
    times = []
    state = {}

    def start_response(status, headers, exc_info=None):
        state["status"] = status
        state["headers"] = headers

    clock = time.perf_counter_ns
    for _ in range(n):
        env = dict(environ)
        started = clock()
        response = handler(env, start_response)
        b"".join(response)
        response.close()
        times.append(clock() - started)
        if state["status"] != "200 OK":
            raise RuntimeError(f"{environ['PATH_INFO']} answered {state['status']}")
    return times, state["headers"]


def count_queries(handler, environ, n):
    """Average queries per request over ``n`` requests: (all, reads, writes)."""
    from django.core.signals import request_started
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    # The handler clears the query log at each request start; keep it for the whole pass instead.
    request_started.disconnect(reset_queries)
    try:
        with CaptureQueriesContext(connection) as captured:
            run_requests(handler, environ, n)
    finally:
        request_started.connect(reset_queries)
    statements = [EXECUTEMANY_PREFIX.sub("", q["sql"].lstrip()).upper() for q in captured.captured_queries]
    reads = sum(1 for sql in statements if sql.startswith(("SELECT", "WITH")))
    writes = sum(1 for sql in statements if sql.startswith(WRITE_VERBS))
    return {"all": len(statements) / n, "reads": reads / n, "writes": writes / n}


def build_handler(middleware):
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    # The middleware chain is built when the handler is created, so both chains coexist in one process.
    with override_settings(MIDDLEWARE=middleware):
        return WSGIHandler()


# -- plain Wagtail, served by a subprocess ------------------------------------------------------------------


def serve_plain(path):
    """Subprocess mode: plain Wagtail (BENCH_PLAIN=1) answering JSON commands on stdin, one per line."""
    import django

    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything else printed goes to stderr, not into the protocol
    django.setup()
    from django.conf import settings

    assert "wagtail_crm" not in settings.INSTALLED_APPS
    handler = build_handler(settings.MIDDLEWARE)
    for line in sys.stdin:
        command = json.loads(line)
        environ = make_environ(path, command.get("cookie"))
        if command["op"] == "time":
            times, _ = run_requests(handler, environ, command["n"])
            reply = {"times": times}
        elif command["op"] == "count":
            reply = count_queries(handler, environ, command["n"])
        else:
            break
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


class PlainWagtail:
    """The parent's side of the plain-Wagtail subprocess."""

    def __init__(self, path, env):
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-plain", "--path", path],
            cwd=REPO_ROOT,
            env={**os.environ, **env, "BENCH_PLAIN": "1", "PYTHONPATH": str(REPO_ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _ask(self, command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the plain-Wagtail subprocess stopped (see its error output above)")
        return json.loads(line)

    def time(self, cookie, n):
        return self._ask({"op": "time", "cookie": cookie, "n": n})["times"]

    def count(self, cookie, n):
        return self._ask({"op": "count", "cookie": cookie, "n": n})

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


# -- the benchmark ------------------------------------------------------------------------------------------


def prepare_site(args):
    """Migrate, load the demo site, store one returning visitor; returns (the Cookie header, page id)."""
    import io

    from django.core.management import call_command
    from wagtail.models import Page

    from wagtail_crm.conf import get_setting
    from wagtail_crm.profiles.events import make_event
    from wagtail_crm.profiles.identity import new_visitor_id, sign_visitor_id
    from wagtail_crm.profiles.ingest import ingest_events
    from wagtail_crm.profiles.models import InteractionKind, VisitorProfile

    call_command("migrate", verbosity=0, interactive=False)
    call_command("load_crm_demo", visitors=args.visitors, stdout=io.StringIO())
    page = Page.objects.filter(url_path__endswith=args.path).first()
    if page is None:
        sys.exit(f"No page at {args.path} in the example site.")
    visitor_id = new_visitor_id()
    ingest_events(
        [
            make_event(
                InteractionKind.PAGE_VIEW, visitor_id=visitor_id, page_id=page.pk, data={"path": args.path}
            )
        ]
    )
    assert VisitorProfile.objects.filter(visitor_id=visitor_id).exists()
    return f"{get_setting('COOKIE_NAME')}={sign_visitor_id(visitor_id)}", page.pk


def recorded_page_views():
    """How many page views the plugin has recorded so far: buffered in Redis, or written to the DB."""
    from wagtail_crm import jobs
    from wagtail_crm.profiles.events import buffered_count
    from wagtail_crm.profiles.models import Interaction, InteractionKind

    if jobs.get_queue() is not None:
        return buffered_count() + Interaction.objects.filter(kind=InteractionKind.PAGE_VIEW).count()
    return Interaction.objects.filter(kind=InteractionKind.PAGE_VIEW).count()


def measure(args, env):
    import django

    django.setup()
    from django.conf import settings

    from wagtail_crm import jobs

    cookie, _ = prepare_site(args)
    cookies = {"returning": cookie, "new": None}
    handlers = {
        "on": build_handler(settings.MIDDLEWARE),
        "off": build_handler([m for m in settings.MIDDLEWARE if m != PLUGIN_MIDDLEWARE]),
    }
    assert PLUGIN_MIDDLEWARE in settings.MIDDLEWARE
    configs = [c for c in CONFIGS if c != "plain" or args.plain]
    plain = PlainWagtail(args.path, env) if args.plain else None
    environs = {case: make_environ(args.path, cookies[case]) for case in CASES}
    on_requests = 0

    def timed(config, case, n):
        nonlocal on_requests
        if config == "plain":
            return plain.time(cookies[case], n)
        if config == "on":
            on_requests += n
        return run_requests(handlers[config], environs[case], n)[0]

    try:
        views_before = recorded_page_views()
        # Sanity: the plugin really tracks these requests (a new visitor gets a cookie), the others do not.
        _, headers = run_requests(handlers["on"], environs["new"], 1)
        on_requests += 1
        assert any(h == "Set-Cookie" and v.strip().startswith(cookie.split("=")[0]) for h, v in headers), (
            headers
        )
        _, headers = run_requests(handlers["off"], environs["new"], 1)
        assert not any(h == "Set-Cookie" for h, _ in headers), headers

        # Warm-up: templates, URL resolvers, Wagtail's site cache, the Redis connection and queue.
        for case in CASES:
            for config in configs:
                timed(config, case, args.warmup)

        # blocks[config, case]: one list of request times per round, so rounds can be compared pairwise.
        blocks = {(config, case): [] for config in configs for case in CASES}
        rounds = max(1, args.n // args.block)
        started = time.monotonic()
        for case in CASES:
            for round_number in range(rounds):
                order = configs if round_number % 2 == 0 else configs[::-1]
                for config in order:
                    blocks[config, case].append(timed(config, case, args.block))
        elapsed = time.monotonic() - started

        queries = {}
        for case in CASES:
            for config in configs:
                if config == "plain":
                    queries[config, case] = plain.count(cookies[case], args.count)
                else:
                    if config == "on":
                        on_requests += args.count
                    queries[config, case] = count_queries(handlers[config], environs[case], args.count)
        views_recorded = recorded_page_views() - views_before
        mode = (
            f"queue {settings.WAGTAIL_CRM['RQ_QUEUE']!r} on {args.redis_url} (page views buffered in Redis)"
            if jobs.get_queue() is not None
            else "inline (no queue: page views written in the request)"
        )
    finally:
        if plain is not None:
            plain.close()

    report(args, mode, blocks, queries, configs, rounds, elapsed, views_recorded, on_requests)


def paired_ratio(blocks, config, base, case):
    """Median over rounds of (median time of ``config``'s block / median of ``base``'s block that round).

    The blocks of one round run back to back, so a change of machine load between rounds cancels out.
    """
    return statistics.median(
        statistics.median(a) / statistics.median(b)
        for a, b in zip(blocks[config, case], blocks[base, case], strict=True)
    )


def report(args, mode, blocks, queries, configs, rounds, elapsed, views_recorded, on_requests):
    samples = {key: [t for block in value for t in block] for key, value in blocks.items()}
    print()
    print(f"Machine:   {_common.machine_description()}")
    print(f"Database:  {_common.database_description()}    Mode: {mode}")
    print(
        f"Page:      {args.path}    {rounds} rounds x {args.block} requests per configuration and visitor "
        f"(n={rounds * args.block}, after {args.warmup} warm-up); queries counted over {args.count} more "
        f"requests, untimed; {elapsed:.0f} s timed"
    )
    check = "ok" if views_recorded == on_requests else "MISMATCH: was the Redis database flushed meanwhile?"
    print(f"Check:     {views_recorded} page views recorded for {on_requests} 'plugin on' requests ({check})")

    headers = ["visitor", "configuration", "median ms", "p90 ms", "vs off", "vs plain"]
    headers += ["queries/req", "reads", "writes"]
    rows = []
    for case in CASES:
        for config in configs:
            times = samples[config, case]
            q = queries[config, case]
            rows.append(
                [
                    CASE_LABELS[case],
                    CONFIG_LABELS[config],
                    f"{_common.median_ms(times):.3f}",
                    f"{_common.percentile_ms(times, 90):.3f}",
                    f"{paired_ratio(blocks, config, 'off', case):.3f}",
                    f"{paired_ratio(blocks, config, 'plain', case):.3f}" if "plain" in configs else "-",
                    f"{q['all']:.2f}",
                    f"{q['reads']:.2f}",
                    f"{q['writes']:.2f}",
                ]
            )
    _common.print_table(headers, rows, title="Request overhead of wagtail_crm (per request)", left=2)
    print(
        "Ratios: median over the rounds of the ratio of the two configurations' block medians in that round "
        "(paired, so load drift cancels)."
    )

    print()
    print(
        "Targets for a returning visitor (queue configured): ratio on/off <= 1.10, <= 1 extra read, 0 writes"
    )
    verdict = {True: "met", False: "MISSED"}
    for case in CASES:
        ratio = paired_ratio(blocks, "on", "off", case)
        plain_medians = statistics.median(samples["on", case]) / statistics.median(samples["off", case])
        q_on, q_off = queries["on", case], queries["off", case]
        extra_reads = q_on["reads"] - q_off["reads"]
        writes = q_on["writes"] - q_off["writes"]
        targeted = case == "returning" and not args.inline
        print(f"  {CASE_LABELS[case]}:")
        print(
            f"    ratio on/off   {ratio:.3f} (ratio of the overall medians: {plain_medians:.3f})"
            + (f"   {verdict[ratio <= 1.10]}" if targeted else "")
        )
        print(
            f"    extra reads    {extra_reads:.2f}" + (f"   {verdict[extra_reads <= 1]}" if targeted else "")
        )
        print(f"    extra writes   {writes:.2f}" + (f"   {verdict[writes == 0]}" if targeted else ""))
    if args.inline:
        print(
            "  (inline mode writes each page view in the request by design; the targets apply to queue mode)"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_request_arguments(parser, n_help="timed requests per configuration and visitor")
    parser.add_argument("--serve-plain", action="store_true", help=argparse.SUPPRESS)
    _common.add_db_arguments(parser, default_db="sqlite", default_pg_name="wagtail_crm_bench")
    args = parser.parse_args()
    if args.serve_plain:
        serve_plain(args.path)
        return
    if min(args.n, args.warmup, args.block, args.count) < 1:
        parser.error("--n, --warmup, --block and --count must be at least 1")
    if not args.inline:
        _common.check_redis(args.redis_url)
        _common.flush_redis_keys(args.redis_url)
    with _common.BenchEnvironment(args, queue=not args.inline) as bench:
        measure(args, bench.env())


if __name__ == "__main__":
    main()
