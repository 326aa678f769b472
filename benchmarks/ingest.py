#!/usr/bin/env python
"""How many buffered page views per second does ONE RQ worker write to the database?

Creates a bench database, migrates it and loads the example site's pages, then pushes ``--events`` page-view
events for ``--visitors`` visitors into the Redis buffer exactly as the site does (``record_events`` with a
queue configured: the events go to a Redis list and one drain job is queued). Then it starts ONE worker,
``python -m django rqworker <queue> --burst``, and times it from its start until the buffer is empty and the
worker has exited. Finally it checks the database holds exactly the rows that were pushed.

Two runs: first every visitor is new (the worker creates 20,000 profiles), then the same visitors come back
(their profiles exist: the steady state of a live site).

    python benchmarks/ingest.py                            # PostgreSQL database wagtail_crm_bench_ingest
    python benchmarks/ingest.py --events 50000 --visitors 5000
    python benchmarks/ingest.py --batch-size 5000          # WAGTAIL_CRM["INGEST_BATCH_SIZE"]
"""

import argparse
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import _common  # noqa: E402

TARGET_EVENTS_PER_SECOND = 20_000
NAMESPACE = uuid.UUID("0b6f6d2e-51c4-4f0e-9d8e-2f1a7c3b9e51")
HORIZON = timedelta(days=7)  # each run's events are spread over one week
CAMPAIGNS = [
    {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring-sale"},
    {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand"},
    {"utm_source": "facebook", "utm_medium": "social", "utm_campaign": "boots-launch"},
    {"referrer_host": "www.example-blog.com"},
]
PUSH_CHUNK = 1000


class Workload:
    """Deterministic page views for ``visitors`` visitors; remembers each visitor's last page view so that
    the visits the worker should count (a gap > VISIT_TIMEOUT starts one) are known in advance."""

    def __init__(self, visitors, seed, visit_timeout):
        self.visitor_ids = [uuid.uuid5(NAMESPACE, f"visitor-{i}").hex for i in range(visitors)]
        self.rng = random.Random(seed)
        self.timeout = timedelta(seconds=visit_timeout)
        self.last_seen = {}

    def generate(self, events, start):
        """``events`` page views between ``start`` and ``start + HORIZON`` in time order, as compact tuples
        (occurred_at, visitor index, page index, campaign index or -1); returns (tuples, visits started)."""
        rng = self.rng
        visitors = len(self.visitor_ids)
        rows = []
        for index in range(visitors):
            remaining = events // visitors + (1 if index < events % visitors else 0)
            while remaining:
                size = min(remaining, rng.randint(1, 6))
                at = start + timedelta(seconds=rng.uniform(0, HORIZON.total_seconds() - 3600))
                campaign = rng.randrange(len(CAMPAIGNS)) if rng.random() < 0.3 else -1
                for _ in range(size):
                    rows.append((at, index, rng.randrange(1 << 16), campaign))
                    campaign = -1  # attribution comes with the landing page view only
                    at += timedelta(seconds=rng.uniform(20, 120))
                remaining -= size
        rows.sort()
        visits = 0
        for at, index, _, _ in rows:
            last = self.last_seen.get(index)
            if last is None or at - last > self.timeout:
                visits += 1
            self.last_seen[index] = max(last, at) if last else at
        return rows, visits


def make_events(rows, visitor_ids, pages):
    """The page-view events of ``rows``, as the middleware makes them."""
    from wagtail_crm.profiles.events import make_event
    from wagtail_crm.profiles.models import InteractionKind

    events = []
    for at, index, page_index, campaign in rows:
        page_id, path = pages[page_index % len(pages)]
        attribution = dict(CAMPAIGNS[campaign], landing_page=path) if campaign >= 0 else {}
        events.append(
            make_event(
                InteractionKind.PAGE_VIEW,
                visitor_id=visitor_ids[index],
                page_id=page_id,
                occurred_at=at,
                data={"path": path},
                attribution=attribution,
            )
        )
    return events


def push_events(rows, visitor_ids, pages):
    """Hand the events to ``record_events`` as the middleware does (a queue is configured: Redis buffer)."""
    from wagtail_crm.profiles.events import record_events

    for start in range(0, len(rows), PUSH_CHUNK):
        record_events(make_events(rows[start : start + PUSH_CHUNK], visitor_ids, pages))


def profile_ingest(args, workload, pages, start):
    """--profile: cProfile ``ingest_events`` in this process on batches of returning visitors' events."""
    import cProfile
    import json
    import pstats

    from wagtail_crm.conf import get_setting
    from wagtail_crm.profiles.ingest import ingest_events

    batch_size = get_setting("INGEST_BATCH_SIZE")

    def batches(rows):
        # Through JSON and back, exactly as the drain job reads them from Redis.
        events = [json.loads(json.dumps(e)) for e in make_events(rows, workload.visitor_ids, pages)]
        return [events[i : i + batch_size] for i in range(0, len(events), batch_size)]

    print(f"Writing the first run's {args.events:,} events in-process (no profiler) so profiles exist...")
    for batch in batches(workload.generate(args.events, start)[0]):
        ingest_events(batch)
    returning = batches(workload.generate(args.events, start + HORIZON)[0])
    count = min(args.profile_batches, len(returning) // 2)
    started = time.perf_counter()
    events = sum(len(batch) for batch in returning[:count])
    for batch in returning[:count]:
        ingest_events(batch)
    seconds = time.perf_counter() - started
    print(
        f"Returning visitors, {count} batches of {batch_size}, no profiler: {events / seconds:,.0f} events/s "
        "in-process (no Redis, no worker)"
    )
    profiler = cProfile.Profile()
    profiler.enable()
    for batch in returning[count : 2 * count]:
        ingest_events(batch)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
    print(f"\ncProfile of ingest_events over {count} more batches, by cumulative time:")
    stats.sort_stats("cumulative").print_stats(30)
    print("By own time:")
    stats.sort_stats("tottime").print_stats(15)


def run_worker(args, queue_name, pushed, log_path):
    """Start one burst worker; returns timings measured from its start (seconds) and its exit code."""
    from wagtail_crm.profiles.events import buffered_count

    pythonpath = [str(REPO_ROOT)]
    if args.pythonpath:
        pythonpath.insert(0, args.pythonpath)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    command = [sys.executable, "-m", "django", "rqworker", queue_name, "--burst"]
    cpu_before = _children_cpu()
    with open(log_path, "wb") as log:
        started = time.monotonic()
        # Not run from the checkout: ``python -m`` puts the working directory first on sys.path, and
        # --pythonpath must win over the checkout's wagtail_crm.
        worker = subprocess.Popen(command, cwd=log_path.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
        first_batch = empty = None
        remaining_at_first = pushed
        deadline = started + args.timeout
        try:
            while worker.poll() is None:
                now = time.monotonic()
                if now > deadline:
                    raise RuntimeError(f"the worker did not finish within {args.timeout} s")
                left = buffered_count()
                if first_batch is None and left < pushed:
                    first_batch, remaining_at_first = now, left
                if empty is None and left == 0:
                    empty = now
                time.sleep(0.02)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        exited = time.monotonic()
    cpu = _children_cpu() - cpu_before
    if empty is None and buffered_count() == 0:
        empty = exited
    return {
        "returncode": worker.returncode,
        "cpu": cpu,  # user + system CPU seconds of the worker and its work horse
        "wall": exited - started,
        "to_empty": (empty or exited) - started,
        "first_batch": (first_batch or exited) - started,
        # steady state: events written after the first batch was trimmed, until the buffer was empty
        "drain_events": remaining_at_first,
        "drain_seconds": (empty or exited) - (first_batch or exited),
    }


def _children_cpu():
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def count_rows():
    from wagtail_crm.profiles.models import Interaction, InteractionKind, VisitorProfile

    return {
        "page_view": Interaction.objects.filter(kind=InteractionKind.PAGE_VIEW).count(),
        "visit_started": Interaction.objects.filter(kind=InteractionKind.VISIT_STARTED).count(),
        "profiles": VisitorProfile.objects.count(),
    }


def worker_errors(log_path):
    """The exception lines the worker logged (rq logs a failed job's traceback)."""
    lines = log_path.read_text(errors="replace").splitlines()
    return sorted({line.strip() for line in lines if "Error: " in line or "Exception: " in line})


def failed_jobs(queue):
    from rq.registry import FailedJobRegistry

    return FailedJobRegistry(queue=queue).count


def run(args, bench):
    import io

    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone
    from home.models import ContentPage, HomePage

    from wagtail_crm import jobs
    from wagtail_crm.conf import get_setting
    from wagtail_crm.profiles.events import buffered_count

    call_command("migrate", verbosity=0, interactive=False)
    call_command("load_crm_demo", visitors=0, stdout=io.StringIO())  # the page tree only
    pages = [(p.pk, p.url) for p in [*HomePage.objects.all(), *ContentPage.objects.order_by("path")]]
    queue = jobs.get_queue()
    assert queue is not None, "a queue must be configured"
    workload = Workload(args.visitors, args.seed, get_setting("VISIT_TIMEOUT"))
    start = timezone.now().replace(microsecond=0) - 2 * HORIZON
    if args.profile:
        profile_ingest(args, workload, pages, start)
        return True
    before = count_rows()
    results = []
    for number, label in enumerate(("all visitors new", "all visitors returning"), start=1):
        log_path = Path(bench.tmpdir) / f"worker-{number}.log"
        rows, visits = workload.generate(args.events, start)
        start += HORIZON
        pushed_at = time.monotonic()
        push_events(rows, workload.visitor_ids, pages)
        push_seconds = time.monotonic() - pushed_at
        buffered = buffered_count()
        if buffered != len(rows):
            sys.exit(f"{buffered} events in the buffer, {len(rows)} expected: is another process using it?")
        print(
            f"{label}: pushed {len(rows):,} events into Redis in {push_seconds:.1f} s; "
            f"starting one worker on {queue.name!r}...",
            flush=True,
        )
        failed_before = failed_jobs(queue)
        timing = run_worker(args, queue.name, len(rows), log_path)
        if timing["returncode"] != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-30:]
            sys.exit("The worker failed:\n" + "\n".join(tail))
        after = count_rows()
        written = {key: after[key] - before[key] for key in after}
        before = after
        ok = (
            timing["returncode"] == 0
            and buffered_count() == 0
            and written["page_view"] == len(rows)
            and written["visit_started"] == visits
            and after["profiles"] == args.visitors
        )
        results.append(
            {
                "label": label,
                "events": len(rows),
                "visits": visits,
                "written": written,
                "profiles": after["profiles"],
                "timing": timing,
                "failed_jobs": failed_jobs(queue) - failed_before,
                "errors": worker_errors(log_path) if failed_jobs(queue) > failed_before else [],
                "ok": ok,
            }
        )
        print(
            f"  worker exit code {timing['returncode']}, {timing['wall']:.1f} s; wrote {written['page_view']:,} "
            f"page views (pushed {len(rows):,}) and {written['visit_started']:,} visit starts (expected "
            f"{visits:,}); {after['profiles']:,} profiles (expected {args.visitors:,})",
            flush=True,
        )
    report(args, results)
    return all(result["ok"] for result in results)


def report(args, results):
    from wagtail_crm.conf import get_setting

    print()
    print(f"Machine:    {_common.machine_description()}")
    print(f"Database:   {_common.database_description()}")
    print(
        f"Workload:   {args.events:,} page views across {args.visitors:,} visitors per run, "
        f"INGEST_BATCH_SIZE={get_setting('INGEST_BATCH_SIZE')}, one `rqworker --burst`"
    )
    if args.pythonpath:
        print(f"Code:       wagtail_crm imported from {args.pythonpath} (--pythonpath)")
    headers = ["run", "events", "interactions", "startup s", "wall s", "worker CPU s", "events/s"]
    headers += ["interactions/s"]
    headers += ["drain events/s", "rows verified", "failed jobs"]
    rows = []
    for result in results:
        timing = result["timing"]
        interactions = result["written"]["page_view"] + result["written"]["visit_started"]
        if timing["drain_seconds"] > 0:
            drain_rate = timing["drain_events"] / timing["drain_seconds"]
            drain = f"{drain_rate:,.0f} ({drain_rate * interactions / result['events']:,.0f} int.)"
        else:
            drain = "-"  # the whole buffer went in the first batch
        rows.append(
            [
                result["label"],
                f"{result['events']:,}",
                f"{interactions:,}",
                f"{timing['first_batch']:.1f}",
                f"{timing['wall']:.1f}",
                f"{timing['cpu']:.1f}",
                f"{result['events'] / timing['wall']:,.0f}",
                f"{interactions / timing['wall']:,.0f}",
                drain,
                "yes" if result["ok"] else "NO",
                str(result["failed_jobs"]),
            ]
        )
    _common.print_table(headers, rows, title="Ingest throughput of one RQ worker", left=1)
    print(
        "wall s: from starting the worker until it exited (includes its start-up: Django set-up, the fork of "
        "the job, the first batch = 'startup s'). worker CPU s: CPU time of the worker process and its work "
        "horse;\nfor the rest of the wall time it waited (for PostgreSQL on the same machine, Redis, or a CPU).\n"
        "drain events/s: from the first batch written until the "
        "buffer was empty (the worker's steady rate). interactions = page views + visit starts."
    )
    for result in results:
        if result["failed_jobs"]:
            print(f"WARNING: {result['failed_jobs']} RQ job(s) failed in run '{result['label']}':")
            for line in result["errors"]:
                print(f"  {line}")
    print()
    for result in results:
        rate = result["events"] / result["timing"]["wall"]
        verdict = "met" if rate >= TARGET_EVENTS_PER_SECOND else "MISSED"
        print(
            f"Target >= {TARGET_EVENTS_PER_SECOND:,} events/s, {result['label']}: {rate:,.0f} events/s  {verdict}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="page views per run (default 200,000)")
    parser.add_argument("--visitors", type=int, default=20_000, help="distinct visitors (default 20,000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the workload (default 1)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help='WAGTAIL_CRM["INGEST_BATCH_SIZE"] (default: the plugin\'s)',
    )
    parser.add_argument(
        "--timeout", type=int, default=1800, help="give up on a worker after this many seconds (default 1800)"
    )
    parser.add_argument(
        "--pythonpath",
        default=None,
        help="a folder to import wagtail_crm from in the worker instead of this checkout (to measure a change)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing a worker, profile ingest_events in-process (cProfile) on returning visitors",
    )
    parser.add_argument(
        "--profile-batches", type=int, default=5, help="batches to profile with --profile (default 5)"
    )
    _common.add_db_arguments(parser, default_db="postgres", default_pg_name="wagtail_crm_bench_ingest")
    args = parser.parse_args()
    if args.events < 1 or not 1 <= args.visitors <= args.events:
        parser.error("need --events >= --visitors >= 1")
    _common.check_redis(args.redis_url)
    _common.flush_redis_keys(args.redis_url)
    if args.batch_size:
        os.environ["BENCH_INGEST_BATCH_SIZE"] = str(args.batch_size)
    if args.pythonpath:
        sys.path.insert(0, os.path.abspath(args.pythonpath))  # for --profile, which runs in this process
        args.pythonpath = os.path.abspath(args.pythonpath)
    with _common.BenchEnvironment(args, queue=True) as bench:
        ok = run(args, bench)
    if not ok:
        sys.exit("Some rows are missing or a worker failed: the figures above are not valid.")


if __name__ == "__main__":
    main()
