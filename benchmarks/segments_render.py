#!/usr/bin/env python
"""What do 20 active segments cost a page that asks for the visitor's segments? Measured against plain Wagtail.

A returning visitor (a signed cookie of a stored profile with a realistic history: visits over three months from
campaigns, page views, orders, an abandoned checkout, a survey answer, points, a tier, a user account in a
group) requests a page of the example site whose template calls ``wagtail_crm.segments_for(request)``
(``benchmarks/templates/home/content_page.html``), with the 20 segments of ``benchmarks/_segments.py`` active:
every built-in rule type, ALL and ANY, exclude rules. Four configurations, in alternating blocks in one run:

- **segments**: the plugin on, the template lists the visitor's segments (all 20 evaluated);
- **plugin on**: the same, but the template does not ask for segments (what ``request_overhead.py`` measures);
- **plugin off**: ``VisitorMiddleware`` removed, segments not asked for (the app stays installed);
- **plain Wagtail**: a subprocess without ``wagtail_crm`` installed (the same template; no segments).

``--prototype`` adds a fifth: the segments page with the visitor's profile loaded by SQL compiled once per
process instead of through the ORM (``benchmarks/_profile_prototype.py``, a prototype, not the package's code).

It prints median times, the paired ratios, the queries per request (which tables they read), and the cost of
evaluating the 20 segments alone over the loaded profile (µs per request, and per segment).

    python benchmarks/segments_render.py                  # SQLite, queue on Redis DB 14
    python benchmarks/segments_render.py --db postgres    # PostgreSQL database wagtail_crm_bench_segments
    python benchmarks/segments_render.py --inline         # no queue: page views written in the request
"""

import argparse
import os
import re
import sys
import time
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import _common, _profile_prototype, _segments  # noqa: E402
from benchmarks import request_overhead as overhead  # noqa: E402

TARGET_RATIO = 1.10
CASE = "returning"
CONFIGS = ("segments", "prototype", "on", "off", "plain")
CONFIG_LABELS = {
    "segments": "plugin on, page lists the segments",
    "prototype": "the same, profile SQL compiled once (prototype)",
    "on": "plugin on, no segments asked",
    "off": "plugin off (app installed)",
    "plain": "plain Wagtail (no app)",
}
SKIP_HEADER = "HTTP_X_BENCH_SKIP_SEGMENTS"  # see benchmarks/bench_segments_tags.py
SEGMENT_MARK = re.compile(rb'data-segment="([^"]+)"')
TABLE = re.compile(r'FROM "([a-z_]+)"')

# The returning visitor's history: (days ago, page views that day, attribution of the visit's first view).
VISITS = [
    (84, ["/", "/blog/", "/blog/caring-for-leather-in-winter/"],
     {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "welcome-series",
      "offer_code": "WELCOME10"}),
    (70, ["/shop/", "/shop/shoes/", "/shop/shoes/", "/shop/bags/"], {}),
    (61, ["/shop/bags/", "/shop/bags/", "/about/"], {"referrer_host": "l.facebook.com"}),
    (47, ["/shop/", "/shop/shoes/", "/shop/shoes/", "/shop/shoes/"],
     {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "leather-boots"}),
    (40, ["/blog/", "/blog/how-we-choose-our-tanneries/", "/newsletter/"], {}),
    (29, ["/shop/shoes/", "/shop/shoes/", "/shop/bags/"],
     {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "autumn-edit"}),
    (21, ["/shop/", "/shop/bags/", "/shop/bags/"], {}),
    (12, ["/blog/", "/blog/a-shoe-in-200-steps/"], {}),
    (6, ["/shop/shoes/", "/shop/shoes/", "/shop/shoes/", "/shop/"], {}),
    (2, ["/shop/bags/", "/shop/bags/", "/shop/"], {}),
]  # fmt: skip
# (days ago, kind, data): what else the visitor did, a few minutes into that day's visit.
ACTIVITY = [
    (84, "signup", {}),
    (47, "checkout_started", {}),
    (47, "checkout_completed", {"amount": "129.00", "order": "A-1041"}),
    (47, "points_earned", {"points": 130}),
    (40, "survey_submitted", {"survey": "what-next",
                              "answers": {"activities": ["walking", "hiking"], "next_design": "running shoes"}}),
    (21, "checkout_started", {}),
    (21, "checkout_completed", {"amount": "89.50", "order": "A-1187"}),
    (21, "points_earned", {"points": 90}),
    (6, "checkout_started", {}),
    (6, "checkout_completed", {"amount": "240.00", "order": "A-1302"}),
    (6, "points_earned", {"points": 440}),
    (2, "checkout_started", {}),
    (2, "checkout_abandoned", {}),
]  # fmt: skip


def store_returning_visitor(now):
    """Ingest the history above for a new visitor id and link the profile to a user in the "Wholesale" group;
    returns the profile."""
    from django.contrib.auth import get_user_model
    from wagtail.models import Page

    from wagtail_crm.profiles.events import make_event
    from wagtail_crm.profiles.identity import new_visitor_id
    from wagtail_crm.profiles.ingest import ingest_events
    from wagtail_crm.profiles.models import VisitorProfile

    pages = {page.url_path: page.pk for page in Page.objects.filter(depth__gte=2)}
    root = min(pages, key=len)

    def page_id(path):
        return pages[root.rstrip("/") + path]

    visitor_id = new_visitor_id()
    events = []
    for days_ago, paths, attribution in VISITS:
        at = now - timedelta(days=days_ago, hours=3)
        for position, path in enumerate(paths):
            events.append(
                make_event(
                    "page_view",
                    visitor_id=visitor_id,
                    page_id=page_id(path),
                    occurred_at=at + timedelta(minutes=2 * position),
                    data={"path": path},
                    attribution=dict(attribution, landing_page=path) if position == 0 and attribution else {},
                )
            )
    for days_ago, kind, data in ACTIVITY:
        at = now - timedelta(days=days_ago, hours=3) + timedelta(minutes=9)
        events.append(make_event(kind, visitor_id=visitor_id, occurred_at=at, data=data))
    events.sort(key=lambda event: event["occurred_at"])
    ingest_events(events)

    groups = _segments.ensure_groups()
    user, _ = get_user_model().objects.get_or_create(username="bench-returning-visitor")
    user.groups.add(groups["Wholesale"])
    profile = VisitorProfile.objects.get(visitor_id=visitor_id)
    profile.user = user
    profile.email = "returning@example.com"
    profile.set_consent("email", True)
    profile.facts["tier"] = "Gold"  # written by the loyalty integration on a live site
    profile.save()
    return profile


def prepare_site(args):
    """Migrate, load the demo site, store the visitor and the 20 segments; returns (cookie header, profile)."""
    import io

    from django.core.management import call_command
    from django.utils import timezone

    from wagtail_crm.conf import get_setting
    from wagtail_crm.profiles.identity import sign_visitor_id

    call_command("migrate", verbosity=0, interactive=False)
    call_command("load_crm_demo", visitors=args.visitors, stdout=io.StringIO())
    profile = store_returning_visitor(timezone.now())
    groups = _segments.ensure_groups()
    segments = _segments.create_segments(_segments.example_pages(), groups["Wholesale"])
    from wagtail_crm.segments.rules import BUILTIN_RULES

    missing = {name for name, _ in BUILTIN_RULES} - _segments.rule_types(segments)
    assert not missing, f"rule types not covered by the benchmark segments: {missing}"
    cookie = f"{get_setting('COOKIE_NAME')}={sign_visitor_id(profile.visitor_id)}"
    return cookie, profile


def render_once(handler, environ):
    """(status, body) of one request."""
    state = {}

    def start_response(status, headers, exc_info=None):
        state["status"] = status

    response = handler(dict(environ), start_response)
    body = b"".join(response)
    response.close()
    return state["status"], body


def capture_queries(handler, environ, n):
    """The SQL of ``n`` requests (the query log kept across them), as in request_overhead.count_queries."""
    from django.core.signals import request_started
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    request_started.disconnect(reset_queries)
    try:
        with CaptureQueriesContext(connection) as captured:
            overhead.run_requests(handler, environ, n)
    finally:
        request_started.connect(reset_queries)
    return [query["sql"] for query in captured.captured_queries]


def classify(statements, n):
    """Queries per request: all, and those reading the profile or the segments tables."""
    tables = [set(TABLE.findall(sql)) for sql in statements]
    return {
        "all": len(statements) / n,
        "profile": sum("wagtail_crm_visitorprofile" in t for t in tables) / n,
        "segments": sum(any(name.startswith("wagtail_crm_segment") for name in t) for t in tables) / n,
    }


def time_segments_for(handler, environ, n):
    """Median µs of ``wagtail_crm.segments_for(request)`` (profile query + evaluation) inside ``n`` requests
    (untimed otherwise); the template tag calls it through the module, where it is wrapped for this pass."""
    import wagtail_crm

    original, samples = wagtail_crm.segments_for, []

    def timed(request):
        started = time.perf_counter_ns()
        result = original(request)
        samples.append(time.perf_counter_ns() - started)
        return result

    wagtail_crm.segments_for = timed
    try:
        overhead.run_requests(handler, environ, n)
    finally:
        wagtail_crm.segments_for = original
    return _common.median_ms(samples) * 1000


def evaluation_cost(args, cookie):
    """µs to evaluate the 20 segments over the loaded profile (as ``visitor.segments`` does), to load the
    profile (the one query), and per segment."""
    from django.core.handlers.wsgi import WSGIRequest
    from django.db import connection

    from wagtail_crm.profiles.visitor import Visitor, _profile_queryset
    from wagtail_crm.segments.evaluation import EvaluationContext, active_segments, segment_matches

    environ = overhead.make_environ(args.path, cookie)
    request = WSGIRequest(dict(environ))
    visitor = Visitor(request)
    profile = visitor.profile
    assert profile.pk is not None, "the cookie must name the stored profile"
    segments = active_segments()
    assert len(segments) == 20, len(segments)
    clock = time.perf_counter_ns

    def per_call(func, n):
        samples = []
        for _ in range(5):
            started = clock()
            for _ in range(n):
                func()
            samples.append((clock() - started) / n / 1000)
        return min(samples)

    def evaluate():
        context = EvaluationContext(profile, request=request)
        return [segment for segment in segments if segment_matches(segment, context)]

    def load_profile():
        return _profile_queryset(request).filter(visitor_id=visitor.visitor_id).first()

    # The same query's SQL, executed directly: what the database takes, without the ORM building the query
    # and the model instance.
    sql, params = _profile_queryset(request).filter(visitor_id=visitor.visitor_id).query.sql_with_params()

    def execute_profile_sql():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    matched = evaluate()
    all_us = per_call(evaluate, args.eval_n)
    profile_us = per_call(load_profile, max(1, args.eval_n // 4))
    profile_sql_us = per_call(execute_profile_sql, max(1, args.eval_n // 4))
    per_segment = []
    for segment in segments:
        # One context per segment, already used once: what one context computes for all the rules of a
        # request (the visit count, the local time, the campaign the request brings) is left out here.
        context = EvaluationContext(profile, request=request)
        segment_matches(segment, context)
        us = per_call(lambda s=segment, c=context: segment_matches(s, c), args.eval_n)
        per_segment.append((segment.name, segment in matched, us))
    return {
        "all_us": all_us,
        "profile_us": profile_us,
        "profile_sql_us": profile_sql_us,
        "matched": matched,
        "per_segment": per_segment,
    }


def measure(args, env):
    import django

    django.setup()
    from django.conf import settings

    assert overhead.PLUGIN_MIDDLEWARE in settings.MIDDLEWARE
    cookie, profile = prepare_site(args)
    handlers = {
        "segments": overhead.build_handler(settings.MIDDLEWARE),
        "off": overhead.build_handler([m for m in settings.MIDDLEWARE if m != overhead.PLUGIN_MIDDLEWARE]),
    }
    handlers["on"] = handlers["prototype"] = handlers["segments"]
    environs = {config: overhead.make_environ(args.path, cookie) for config in CONFIGS if config != "plain"}
    environs["on"][SKIP_HEADER] = environs["off"][SKIP_HEADER] = "1"
    environs["prototype"][_profile_prototype.HEADER] = "1"
    configs = [c for c in CONFIGS if (c != "plain" or args.plain) and (c != "prototype" or args.prototype)]
    if args.prototype:
        _profile_prototype.install()
    plain = overhead.PlainWagtail(args.path, env) if args.plain else None

    def timed(config, n):
        if config == "plain":
            return plain.time(cookie, n)
        return overhead.run_requests(handlers[config], environs[config], n)[0]

    try:
        # Sanity: the page lists the visitor's segments only where it asks for them.
        status, body = render_once(handlers["segments"], environs["segments"])
        listed = [slug.decode() for slug in SEGMENT_MARK.findall(body)]
        assert status == "200 OK" and listed, (status, listed)
        if args.prototype:
            status, body = render_once(handlers["prototype"], environs["prototype"])
            assert [slug.decode() for slug in SEGMENT_MARK.findall(body)] == listed, "prototype differs"
        for config in ("on", "off"):
            status, body = render_once(handlers[config], environs[config])
            assert status == "200 OK" and not SEGMENT_MARK.search(body), config

        for config in configs:  # warm-up: templates, URL resolvers, the per-process segment cache, Redis
            timed(config, args.warmup)
        blocks = {(config, CASE): [] for config in configs}
        rounds = max(1, args.n // args.block)
        started = time.monotonic()
        for round_number in range(rounds):
            order = configs if round_number % 2 == 0 else configs[::-1]
            for config in order:
                blocks[config, CASE].append(timed(config, args.block))
        elapsed = time.monotonic() - started

        queries = {}
        for config in configs:
            if config == "plain":
                queries[config] = dict(plain.count(cookie, args.count), profile=0.0, segments=0.0)
            else:
                statements = capture_queries(handlers[config], environs[config], args.count)
                queries[config] = classify(statements, args.count)
        in_request = time_segments_for(handlers["segments"], environs["segments"], args.count * 10)
    finally:
        if plain is not None:
            plain.close()
    cost = evaluation_cost(args, cookie)
    cost["in_request_us"] = in_request
    report(args, blocks, queries, configs, rounds, elapsed, listed, cost)


def report(args, blocks, queries, configs, rounds, elapsed, listed, cost):
    from django.conf import settings

    from wagtail_crm import jobs

    samples = {key: [t for block in value for t in block] for key, value in blocks.items()}
    mode = (
        f"queue {settings.WAGTAIL_CRM['RQ_QUEUE']!r} (page views buffered in Redis)"
        if jobs.get_queue() is not None
        else "inline (no queue: page views written in the request)"
    )
    print()
    print(f"Machine:   {_common.machine_description()}")
    print(f"Database:  {_common.database_description()}    Mode: {mode}")
    print(
        f"Page:      {args.path}    {rounds} rounds x {args.block} requests per configuration "
        f"(n={rounds * args.block}, after {args.warmup} warm-up); queries counted over {args.count} more "
        f"requests, untimed; {elapsed:.0f} s timed"
    )
    print(f"Visitor:   returning, in {len(listed)} of the 20 active segments: {', '.join(listed)}")

    headers = ["configuration", "median ms", "p90 ms", "vs plain", "vs off", "vs on"]
    headers += ["queries/req", "profile", "segments"]
    rows = []
    for config in configs:
        times = samples[config, CASE]
        q = queries[config]

        def ratio(base, config=config):
            if base not in configs:
                return "-"
            return f"{overhead.paired_ratio(blocks, config, base, CASE):.3f}"

        rows.append(
            [
                CONFIG_LABELS[config],
                f"{_common.median_ms(times):.3f}",
                f"{_common.percentile_ms(times, 90):.3f}",
                ratio("plain"),
                ratio("off"),
                ratio("on"),
                f"{q['all']:.2f}",
                f"{q['profile']:.2f}" if config != "plain" else "-",
                f"{q['segments']:.2f}" if config != "plain" else "-",
            ]
        )
    _common.print_table(headers, rows, title="A page that lists the visitor's segments (20 active)", left=1)
    print(
        "Ratios: median over the rounds of the ratio of the two configurations' block medians in that round "
        "(paired). profile / segments: queries per request reading the profile / the segment tables."
    )

    print()
    base = "plain" if "plain" in configs else "off"
    ratio = overhead.paired_ratio(blocks, "segments", base, CASE)
    extra = queries["segments"]["all"] - queries[base]["all"]
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(f"Target: segments vs {CONFIG_LABELS[base]} <= {TARGET_RATIO:.2f}: {ratio:.3f}  {verdict}")
    print(
        f"Queries: {extra:+.2f} per request vs {CONFIG_LABELS[base]} "
        f"({queries['segments']['profile']:.2f} reading the profile, {queries['segments']['segments']:.2f} "
        "reading segments: the per-process segment cache is "
        + (
            "warm)"
            if queries["segments"]["segments"] == 0
            else "NOT warm: segments were read from the database)"
        )
    )

    print()
    print(
        f"segments_for(request) inside the request (profile query + evaluation): {cost['in_request_us']:.0f} µs"
    )
    print(
        f"  evaluating the 20 segments over the loaded profile: {cost['all_us']:.0f} µs per request "
        f"(the visitor is in {len(cost['matched'])})"
    )
    print(
        f"  loading the profile (the one query, with the group annotation): {cost['profile_us']:.0f} µs, "
        f"of which the database {cost['profile_sql_us']:.0f} µs (the same SQL executed directly)"
    )
    headers = ["segment", "visitor in it", "µs"]
    rows = [[name, "yes" if matched else "no", f"{us:.1f}"] for name, matched, us in cost["per_segment"]]
    _common.print_table(headers, rows, title="Per segment (Python, over the loaded profile)", left=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _common.add_request_arguments(parser, n_help="timed requests per configuration (default 2000)")
    parser.add_argument(
        "--eval-n", type=int, default=2000, help="evaluations per timing of the segments alone (default 2000)"
    )
    parser.add_argument(
        "--prototype",
        action="store_true",
        help="also measure the page with the profile query compiled once (benchmarks/_profile_prototype.py)",
    )
    _common.add_db_arguments(parser, default_db="sqlite", default_pg_name="wagtail_crm_bench_segments")
    args = parser.parse_args()
    if min(args.n, args.warmup, args.block, args.count, args.eval_n) < 1:
        parser.error("--n, --warmup, --block, --count and --eval-n must be at least 1")
    # Read by benchmarks/settings.py, here and in the plain-Wagtail subprocess.
    os.environ["BENCH_SEGMENTS"] = "1"
    if not args.inline:
        _common.check_redis(args.redis_url)
        _common.flush_redis_keys(args.redis_url)
    with _common.BenchEnvironment(args, queue=not args.inline) as bench:
        measure(args, bench.env())


if __name__ == "__main__":
    main()
