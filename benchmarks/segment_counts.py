#!/usr/bin/env python
"""How long does counting the members of 20 segments take over 100,000 and 1,000,000 profiles? PostgreSQL only.

For each size (``--profiles``) the script uses its own database (``wagtail_crm_bench_counts_<size>``): it
migrates it, loads the example site's page tree, and generates the profiles in SQL (``INSERT … SELECT`` over
``generate_series``, deterministic: profile *i* is the same in every run). The profiles are a mix of one-time
visitors, returning browsers and customers with realistic ``facts`` (counts, last occurrences, section page
counts, daily buckets with ``@orders`` / ``@spend`` / ``@pages`` for the last 90 days, survey answers, points,
tiers), first- and last-touch attribution from the example site's campaigns, consent, some user accounts in
groups, and a few merged-away profiles. Then it stores the 20 segments of ``benchmarks/_segments.py`` and times

- ``wagtail_crm.segments.jobs.count_segments()``: all 20 segments in one pass (one aggregate query with a
  ``COUNT(*) FILTER (WHERE …)`` per segment), ``--repeat`` times;
- for comparison, ``segment.members().count()`` for each segment: 20 separate queries.

It checks that both give the same counts, and that for ``--sample`` random profiles the Python verdict
(``segment.matches``) equals the SQL membership. ``--explain`` prints the plan of the one-pass query
(``EXPLAIN ANALYZE``). ``--connections N`` counts on N connections at once (``SEGMENT_COUNT_CONNECTIONS``).

    python benchmarks/segment_counts.py                          # 100,000 and 1,000,000 profiles
    python benchmarks/segment_counts.py --profiles 100000        # one size
    python benchmarks/segment_counts.py --keep                   # keep the databases for the next run
    python benchmarks/segment_counts.py --explain                # where the time goes
    python benchmarks/segment_counts.py --connections 2          # count ranges of profiles on two connections

Generated databases are reused by the next run when kept (``--keep``), otherwise dropped at the end.
"""

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import _common, _segments  # noqa: E402

TARGET_SECONDS = 5.0
TARGET_PROFILES = 1_000_000
# Bump when the generated profiles change, so that kept databases are generated again.
GENERATOR_VERSION = 1
CHUNK = 100_000
META_TABLE = "bench_counts_meta"
DAILY_DAYS = 90  # FACTS_DAILY_DAYS: the generated daily buckets span the last 90 days

# How visitors arrive (first and last touch): weight (out of 100), source, medium, campaign, referrer host,
# offer code (carried by 60% of the campaign's visits), landing page, and the utm_term / utm_content choices.
ARRIVALS = [
    (27, "", "", "", "", "", "", "", ""),
    (5, "newsletter", "email", "spring-sale", "", "SPRING20", "/shop/", "content", "header-link|product-grid"),
    (7, "newsletter", "email", "welcome-series", "", "WELCOME10", "/blog/", "content", "care-guide|our-story"),
    (6, "newsletter", "email", "autumn-edit", "", "", "/shop/shoes/", "content", "hero|boots-grid"),
    (6, "google", "cpc", "brand-search", "www.google.com", "", "/", "term",
     "northwind leather|northwind shoes"),
    (5, "google", "cpc", "leather-boots", "www.google.com", "", "/shop/shoes/", "term",
     "chelsea boots leather|handmade brogues|goodyear welted shoes"),
    (3, "google", "cpc", "work-bags", "www.google.com", "", "/shop/bags/", "term",
     "leather work tote|laptop bag leather"),
    (8, "", "", "", "www.google.com", "", "/", "", ""),
    (8, "facebook", "social", "summer-bags", "l.facebook.com", "SUMMER15", "/shop/bags/", "content",
     "carousel|video|story"),
    (10, "facebook", "social", "new-season", "m.facebook.com", "", "/shop/shoes/", "content", "carousel|video"),
    (15, "", "", "", "www.example-blog.com", "PARTNER10", "/about/", "", ""),
]  # fmt: skip

FUNCTIONS_SQL = """
CREATE OR REPLACE FUNCTION bench_rand(i bigint, k int) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (hashint8extended(i, k) & 2147483647)::float8 / 2147483648.0 $$;
-- 0: one-time visitor (55%), 1: returning browser (33%), 2: customer (12%)
CREATE OR REPLACE FUNCTION bench_kind(i bigint) RETURNS int
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN bench_rand(i, 1) < 0.55 THEN 0 WHEN bench_rand(i, 1) < 0.88 THEN 1 ELSE 2 END $$;
CREATE OR REPLACE FUNCTION bench_has_user(i bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT bench_rand(i, 12) < (ARRAY[0, 0.03, 0.3])[bench_kind(i) + 1] $$;
CREATE OR REPLACE FUNCTION bench_iso(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') $$;
CREATE OR REPLACE FUNCTION bench_pick(options text, r float8) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT COALESCE((string_to_array(options, '|'))[1 + floor(r * cardinality(string_to_array(options, '|')))::int], '') $$;
"""  # noqa: E501

USERS_SQL = """
WITH new_users AS (
    INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
                           date_joined)
    SELECT '!', false, 'bench-' || g.i, '', '', 'person' || g.i || '@example.com', false, true, %(now)s
    FROM generate_series(%(start)s, %(end)s) AS g(i)
    WHERE bench_has_user(g.i)
    RETURNING id, substr(username, 7)::bigint AS i
)
INSERT INTO auth_user_groups (user_id, group_id)
SELECT id, %(wholesale)s FROM new_users WHERE bench_rand(i, 30) < 0.10
UNION ALL
SELECT id, %(staff)s FROM new_users WHERE bench_rand(i, 31) < 0.05
"""

# The profiles of ids start..end: p = who they are, d = their daily buckets of the last 90 days.
PROFILES_SQL = """
INSERT INTO wagtail_crm_visitorprofile ({columns})
SELECT {values}
FROM (
    SELECT b.*,
        CASE WHEN b.a2 = 1 THEN b.a1 ELSE b.a2 END AS l,  -- a direct visit keeps the last touch as it was
        b.last_seen - (CASE WHEN b.visits = 1 THEN bench_rand(b.i, 4) * 0.02 ELSE bench_rand(b.i, 4) * 300 END)
            * interval '1 day' AS first_seen,
        ((b.last_seen AT TIME ZONE 'UTC')::date - (%(today)s::date - {daily_days} + 1)) AS span
    FROM (
        SELECT g.i, k.kind, v.visits, %(now)s - v.last_ago * interval '1 day' AS last_seen,
            a.a1,
            CASE WHEN v.visits > 1 AND bench_rand(g.i, 6) < 0.5
                 THEN (%(slots)s::int[])[1 + floor(bench_rand(g.i, 7) * 100)::int] ELSE a.a1 END AS a2,
            bench_rand(g.i, 10) < (ARRAY[0.03, 0.2, 0.6])[k.kind + 1] AS email_consent,
            bench_rand(g.i, 11) < (ARRAY[0.01, 0.01, 0.15])[k.kind + 1] AS phone_consent,
            bench_has_user(g.i) AS has_user,
            bench_rand(g.i, 13) < (ARRAY[0, 0.08, 0.3])[k.kind + 1] AS answered,
            CASE WHEN k.kind = 2 AND bench_rand(g.i, 14) < 0.7
                 THEN floor(power(bench_rand(g.i, 15), 2) * 2000)::int END AS points,
            CASE WHEN k.kind = 0 THEN 0 ELSE v.visits + floor(bench_rand(g.i, 16) * v.visits * 2)::int END
                AS older_views,
            CASE WHEN k.kind = 2 THEN 1 + floor(bench_rand(g.i, 17) * 2)::int ELSE 0 END AS older_orders
        FROM generate_series(%(start)s, %(end)s) AS g(i)
        CROSS JOIN LATERAL (SELECT bench_kind(g.i) AS kind) k
        CROSS JOIN LATERAL (
            SELECT (ARRAY[1, 2 + floor(bench_rand(g.i, 2) * 10)::int, 3 + floor(bench_rand(g.i, 2) * 30)::int])
                       [k.kind + 1] AS visits,
                   (ARRAY[bench_rand(g.i, 3) * 365, power(bench_rand(g.i, 3), 2) * 150,
                          power(bench_rand(g.i, 3), 2) * 120])[k.kind + 1] AS last_ago
        ) v
        CROSS JOIN LATERAL (SELECT (%(slots)s::int[])[1 + floor(bench_rand(g.i, 5) * 100)::int] AS a1) a
    ) b
) p
CROSS JOIN LATERAL (
    SELECT jsonb_object_agg(x.day, x.bucket) AS daily, COALESCE(sum(x.views), 0) AS views,
        COALESCE(sum(x.shoes), 0) AS shoes, COALESCE(sum(x.bags), 0) AS bags, COALESCE(sum(x.blog), 0) AS blog,
        COALESCE(sum(x.bought), 0) AS orders, COALESCE(sum(x.spend), 0) AS spend,
        COALESCE(sum(x.started), 0) AS started, COALESCE(sum(x.abandoned), 0) AS abandoned
    FROM (
        SELECT DISTINCT ON (y.day) to_char(y.day, 'YYYY-MM-DD') AS day, y.views, y.shoes, y.bags, y.blog,
            y.bought, y.spend * y.bought AS spend, y.started, y.abandoned,
            jsonb_build_object(
                'page_view', y.views, 'visit_started', 1,
                'checkout_started', NULLIF(y.started, 0), 'checkout_completed', NULLIF(y.bought, 0),
                'checkout_abandoned', NULLIF(y.abandoned, 0),
                '@orders', NULLIF(y.bought, 0), '@spend', CASE WHEN y.bought = 1 THEN y.spend END,
                '@pages', NULLIF(jsonb_strip_nulls(jsonb_build_object(
                    %(shop)s, NULLIF(y.shoes + y.bags, 0), %(shoes)s, NULLIF(y.shoes, 0),
                    %(bags)s, NULLIF(y.bags, 0), %(blog)s, NULLIF(y.blog, 0))), '{{}}'::jsonb)
            ) AS bucket
        FROM (
            SELECT (p.last_seen AT TIME ZONE 'UTC')::date
                       - CASE WHEN j.j = 1 THEN 0 ELSE floor(bench_rand(h.h, 20) * (p.span + 1))::int END AS day,
                c1.views, c2.shoes, c3.bags, c4.blog, c5.started, c6.bought,
                CASE WHEN c5.started = 1 AND c6.bought = 0 AND bench_rand(h.h, 27) < 0.7 THEN 1 ELSE 0 END
                    AS abandoned,
                round((19 + bench_rand(h.h, 28) * 181)::numeric, 2) AS spend
            FROM generate_series(1, CASE WHEN p.span < 0 THEN 0 WHEN p.kind = 0 THEN 1
                                         ELSE least(ceil(p.visits * 0.7)::int, p.span + 1) END) AS j(j)
            CROSS JOIN LATERAL (SELECT p.i * 128 + j.j AS h) h
            CROSS JOIN LATERAL (SELECT 1 + floor(bench_rand(h.h, 21) * 6)::int AS views) c1
            CROSS JOIN LATERAL (SELECT floor(bench_rand(h.h, 22) * (c1.views + 1))::int AS shoes) c2
            CROSS JOIN LATERAL (SELECT floor(bench_rand(h.h, 23) * (c1.views - c2.shoes + 1))::int AS bags) c3
            CROSS JOIN LATERAL (
                SELECT floor(bench_rand(h.h, 24) * (c1.views - c2.shoes - c3.bags + 1))::int AS blog) c4
            CROSS JOIN LATERAL (
                SELECT CASE WHEN bench_rand(h.h, 25) < (ARRAY[0, 0.05, 0.35])[p.kind + 1] THEN 1 ELSE 0 END
                    AS started) c5
            CROSS JOIN LATERAL (
                SELECT CASE WHEN c5.started = 1 AND p.kind = 2 AND bench_rand(h.h, 26) < 0.6 THEN 1 ELSE 0 END
                    AS bought) c6
        ) y
        ORDER BY y.day
    ) x
) d
LEFT JOIN auth_user u ON p.has_user AND u.username = 'bench-' || p.i
"""

FACTS_SQL = """
jsonb_strip_nulls(jsonb_build_object(
    'counts', jsonb_build_object(
        'page_view', d.views + p.older_views, 'visit_started', p.visits,
        'checkout_started', NULLIF(d.started + p.older_orders, 0),
        'checkout_completed', NULLIF(d.orders + p.older_orders, 0),
        'checkout_abandoned', NULLIF(d.abandoned, 0),
        'survey_submitted', CASE WHEN p.answered THEN 1 END,
        'signup', CASE WHEN p.has_user THEN 1 END,
        'points_earned', CASE WHEN p.points > 0 THEN 1 + p.points / 150 END),
    'last', jsonb_build_object(
        'page_view', bench_iso(p.last_seen),
        'visit_started', bench_iso(p.last_seen - interval '7 minutes'),
        'checkout_completed', CASE WHEN p.kind = 2 THEN bench_iso(p.last_seen - interval '5 minutes') END),
    'pages', NULLIF(jsonb_strip_nulls(jsonb_build_object(
        %(shop)s, NULLIF(d.shoes + d.bags + (p.older_views * 0.5)::int, 0),
        %(shoes)s, NULLIF(d.shoes + (p.older_views * bench_rand(p.i, 18) * 0.4)::int, 0),
        %(bags)s, NULLIF(d.bags + (p.older_views * bench_rand(p.i, 19) * 0.3)::int, 0),
        %(blog)s, NULLIF(d.blog + (p.older_views * bench_rand(p.i, 32) * 0.3)::int, 0),
        %(about)s, NULLIF(floor(bench_rand(p.i, 33) * 2)::int, 0))), '{}'::jsonb),
    'orders', NULLIF(d.orders + p.older_orders, 0),
    'spend', CASE WHEN p.kind = 2
                  THEN d.spend + round((p.older_orders * (25 + bench_rand(p.i, 34) * 150))::numeric, 2) END,
    'points', p.points,
    'tier', CASE WHEN p.points >= 1000 THEN 'Gold' WHEN p.points >= 400 THEN 'Silver'
                 WHEN p.points IS NOT NULL THEN 'Bronze' END,
    'survey', CASE WHEN p.answered THEN jsonb_build_object(
        'activities', to_jsonb(COALESCE(NULLIF(array_remove(ARRAY[
            CASE WHEN bench_rand(p.i, 35) < 0.6 THEN 'walking' END,
            CASE WHEN bench_rand(p.i, 36) < 0.45 THEN 'commuting' END,
            CASE WHEN bench_rand(p.i, 37) < 0.3 THEN 'running' END,
            CASE WHEN bench_rand(p.i, 38) < 0.25 THEN 'hiking' END,
            CASE WHEN bench_rand(p.i, 39) < 0.2 THEN 'cycling' END], NULL), '{}'), ARRAY['walking'])),
        'next_design', CASE WHEN bench_rand(p.i, 40) < 0.3 THEN 'running shoes'
                            WHEN bench_rand(p.i, 40) < 0.55 THEN 'hiking boots'
                            WHEN bench_rand(p.i, 40) < 0.8 THEN 'a backpack' ELSE 'kids'' shoes' END) END,
    'daily', COALESCE(d.daily, '{}'::jsonb)
))"""


def _arrival(name, index):
    """SQL: the ``name`` value (source, medium, ...) of arrival ``index`` (1-based)."""
    return f"(%(ARR_{name})s::text[])[{index}]"


def touch_columns(prefix, arrival, seen, random_key):
    """SQL for the first_* / last_* attribution columns, from the arrival index ``arrival``."""
    extra = f"bench_pick({_arrival('extra', arrival)}, bench_rand(p.i, {random_key}))"
    return {
        f"{prefix}_utm_source": _arrival("source", arrival),
        f"{prefix}_utm_medium": _arrival("medium", arrival),
        f"{prefix}_utm_campaign": _arrival("campaign", arrival),
        f"{prefix}_utm_term": f"CASE WHEN {_arrival('extra_kind', arrival)} = 'term' THEN {extra} ELSE '' END",
        f"{prefix}_utm_content": f"CASE WHEN {_arrival('extra_kind', arrival)} = 'content' THEN {extra} ELSE '' END",
        f"{prefix}_referrer_host": _arrival("referrer", arrival),
        f"{prefix}_landing_page": _arrival("landing", arrival),
        f"{prefix}_offer_code": f"CASE WHEN bench_rand(p.i, {random_key + 1}) < 0.6 "
        f"THEN {_arrival('offer', arrival)} ELSE '' END",
        f"{prefix}_touch_at": f"CASE WHEN {arrival} = 1 THEN NULL ELSE {seen} END",
    }


def profile_columns():
    """Column → SQL expression for every column of the profile table (unknown columns get their default)."""
    from django.db import connection

    from wagtail_crm.profiles.models import VisitorProfile

    known = {
        "visitor_id": "md5('bench-' || p.i)",
        "user_id": "u.id",
        "merged_into_id": "NULL",
        "email": "CASE WHEN p.kind = 2 OR p.email_consent THEN 'person' || p.i || '@example.com' ELSE '' END",
        "email_consent": "p.email_consent",
        "email_consent_at": "CASE WHEN p.email_consent THEN p.first_seen END",
        "phone_consent": "p.phone_consent",
        "phone_consent_at": "CASE WHEN p.phone_consent THEN p.first_seen END",
        "phone": "CASE WHEN p.phone_consent THEN '+4477009' || lpad((p.i %% 100000)::text, 5, '0') ELSE '' END",
        "first_seen": "p.first_seen",
        "last_seen": "p.last_seen",
        "visit_count": "p.visits",
        "facts": FACTS_SQL,
        **touch_columns("first", "p.a1", "p.first_seen", 41),
        **touch_columns("last", "p.l", "CASE WHEN p.a2 = p.l THEN p.last_seen ELSE p.first_seen END", 43),
    }
    columns, values, defaults = [], [], {}
    for field in VisitorProfile._meta.concrete_fields:
        if field.primary_key:
            continue
        column = field.column
        columns.append(connection.ops.quote_name(column))
        if column in known:
            values.append(known[column])
        elif field.null:
            values.append("NULL")
        else:
            name = f"DEFAULT_{column}"
            defaults[name] = field.get_db_prep_save(field.get_default(), connection)
            values.append(f"%({name})s")
    return columns, values, defaults


def arrival_params():
    slots = []
    for index, arrival in enumerate(ARRIVALS, start=1):
        slots += [index] * arrival[0]
    assert len(slots) == 100, "arrival weights must add up to 100"
    names = ["source", "medium", "campaign", "referrer", "offer", "landing", "extra_kind", "extra"]
    params = {"slots": slots}
    for position, name in enumerate(names, start=1):
        params[f"ARR_{name}"] = [arrival[position] for arrival in ARRIVALS]
    return params


# -- the databases --------------------------------------------------------------------------------------------


class Databases:
    """One PostgreSQL database per size, created (or reused when kept from an earlier run) and dropped."""

    def __init__(self, args):
        self.args = args
        self.created = []

    def name(self, size):
        return f"{self.args.pg_name}_{size}"

    def admin(self, sql, fetch=False):
        return _common.pg_admin(self.args, sql, fetch=fetch)

    def exists(self, size):
        rows = self.admin(f"SELECT 1 FROM pg_database WHERE datname = '{self.name(size)}'", fetch=True)
        return bool(rows)

    def use(self, size, fresh):
        """Point Django's connection at the database of ``size``, creating it unless it can be reused."""
        from django.db import connection

        name = self.name(size)
        if fresh and self.exists(size):
            self.admin(f'DROP DATABASE "{name}" WITH (FORCE)')
        if not self.exists(size):
            self.admin(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        connection.close()
        connection.settings_dict["NAME"] = name

    def drop_all(self):
        from django.db import connection

        connection.close()
        for name in self.created:
            self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def read_meta():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [META_TABLE])
        if cursor.fetchone()[0] is None:
            return {}
        cursor.execute(f"SELECT key, value FROM {META_TABLE}")
        return dict(cursor.fetchall())


def write_meta(values):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key text PRIMARY KEY, value text NOT NULL)")
        for key, value in values.items():
            cursor.execute(
                f"INSERT INTO {META_TABLE} (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                [key, str(value)],
            )


def prepare(size, databases, args):
    """Make the database of ``size`` hold ``size`` generated profiles; returns (generated now?, seconds)."""
    import io

    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    databases.use(size, fresh=args.fresh)
    meta = read_meta()
    if meta.get("version") == str(GENERATOR_VERSION) and meta.get("profiles") == str(size):
        call_command("migrate", verbosity=0, interactive=False)  # new migrations since the database was kept
        print(
            f"{size:,} profiles: reusing {connection.settings_dict['NAME']} (generated {meta['generated']})"
        )
        return False, float(meta.get("seconds", 0))
    if meta:  # an older or interrupted generation: start again
        databases.use(size, fresh=True)
    call_command("migrate", verbosity=0, interactive=False)
    call_command("load_crm_demo", visitors=0, stdout=io.StringIO())  # the page tree only
    groups = _segments.ensure_groups()
    pages = _segments.example_pages()
    about = _page_id("/about/")
    columns, values, defaults = profile_columns()
    sql = PROFILES_SQL.format(
        columns=", ".join(columns), values=",\n    ".join(values), daily_days=DAILY_DAYS
    )
    now = timezone.now().replace(microsecond=0)
    params = {
        **arrival_params(),
        **defaults,
        "now": now,
        "today": now.date().isoformat(),
        "shop": str(pages["shop"]),
        "shoes": str(pages["shoes"]),
        "bags": str(pages["bags"]),
        "blog": str(pages["blog"]),
        "about": str(about),
        "wholesale": groups["Wholesale"],
        "staff": groups["Staff picks"],
    }
    started = time.monotonic()
    with connection.cursor() as cursor:
        # The planner's cost estimate of these statements is huge, so PostgreSQL would spend far longer on
        # JIT-compiling them than on running them.
        cursor.execute("SET jit = off")
        cursor.execute(FUNCTIONS_SQL)
        for start in range(1, size + 1, CHUNK):
            end = min(size, start + CHUNK - 1)
            cursor.execute(USERS_SQL, {**params, "start": start, "end": end})
            cursor.execute(sql, {**params, "start": start, "end": end})
            print(
                f"\r{size:,} profiles: generated {end:,} ({time.monotonic() - started:.0f} s)",
                end="",
                flush=True,
            )
        cursor.execute("RESET jit")
        # 1% of the one-time visitors were merged into another profile (tombstones, left out of counts).
        cursor.execute(
            "UPDATE wagtail_crm_visitorprofile AS t SET merged_into_id = t.id - 1 "
            "WHERE t.user_id IS NULL AND t.visit_count = 1 AND bench_rand(t.id, 50) < 0.01 AND t.id > "
            "(SELECT min(id) FROM wagtail_crm_visitorprofile)"
        )
    generated = time.monotonic() - started
    print(f"\r{size:,} profiles: generated in {generated:.0f} s; VACUUM ANALYZE...", end="", flush=True)
    vacuum()
    seconds = time.monotonic() - started
    print(f"\r{size:,} profiles: generated and vacuumed in {seconds:.0f} s" + " " * 20)
    write_meta(
        {"version": GENERATOR_VERSION, "profiles": size, "generated": now.isoformat(), "seconds": seconds}
    )
    return True, seconds


def _page_id(path):
    from wagtail.models import Page

    return Page.objects.filter(url_path__endswith=path).order_by("depth").values_list("pk", flat=True).first()


def vacuum():
    from django.db import connection

    old = connection.get_autocommit()
    connection.set_autocommit(True)
    try:
        with connection.cursor() as cursor:
            for table in ("wagtail_crm_visitorprofile", "auth_user", "auth_user_groups"):
                cursor.execute(f"VACUUM (ANALYZE) {table}")
    finally:
        connection.set_autocommit(old)


def describe_data():
    """A few figures about the generated profiles: table size, facts size, how many are TOASTed."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE merged_into_id IS NULL), count(user_id), "
            "avg(pg_column_size(facts)), percentile_cont(0.5) WITHIN GROUP (ORDER BY octet_length(facts::text)), "
            "avg(octet_length(facts::text)), max(octet_length(facts::text)), "
            "count(*) FILTER (WHERE octet_length(facts::text) > 2000), "
            "pg_total_relation_size('wagtail_crm_visitorprofile'), pg_relation_size('wagtail_crm_visitorprofile'), "
            "COALESCE(pg_relation_size((SELECT reltoastrelid FROM pg_class "
            "WHERE relname = 'wagtail_crm_visitorprofile')), 0) "
            "FROM wagtail_crm_visitorprofile"
        )
        row = cursor.fetchone()
    keys = [
        "profiles",
        "live",
        "with_user",
        "facts_stored_avg",
        "facts_text_median",
        "facts_text_avg",
        "facts_text_max",
        "facts_over_2kb",
        "total_bytes",
        "heap_bytes",
        "toast_bytes",
    ]
    return dict(zip(keys, row, strict=True))


# -- measuring ------------------------------------------------------------------------------------------------


def capture_sql(func):
    """Run ``func`` and return (its result, the SQL statements it ran, with their parameters inlined)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        result = func()
    return result, [query["sql"] for query in captured.captured_queries]


def count_query_sql():
    """The one aggregate query ``count_segments()`` runs, as executed (parameters inlined)."""
    from django.conf import settings

    from wagtail_crm.segments.jobs import count_segments

    # On one connection, so that the query runs where it can be captured (this is the untimed pass).
    configured = settings.WAGTAIL_CRM
    settings.WAGTAIL_CRM = {**configured, "SEGMENT_COUNT_CONNECTIONS": 1}
    try:
        _, statements = capture_sql(count_segments)
    finally:
        settings.WAGTAIL_CRM = configured
    aggregates = [sql for sql in statements if sql.startswith("SELECT COUNT(") and "FILTER (WHERE" in sql]
    assert len(aggregates) == 1, f"expected one aggregate query, got {len(aggregates)}"
    return aggregates[0]


def time_count_segments(repeat):
    """Run ``count_segments()`` ``repeat`` times: (wall seconds of each run, the query seconds it stored, the
    counts and the time of the last run)."""
    from wagtail_crm.segments.jobs import count_segments
    from wagtail_crm.segments.models import SegmentMemberCount

    runs, query_seconds, counts = [], [], None
    for _ in range(repeat):
        started = time.perf_counter()
        counts = count_segments()
        runs.append(time.perf_counter() - started)
        query_seconds.append(max(SegmentMemberCount.objects.values_list("duration", flat=True)))
    # The time the last run counted at: rules such as "last seen 60 days ago or longer" move with it.
    counted_at = SegmentMemberCount.objects.values_list("counted_at", flat=True).first()
    return runs, query_seconds, counts, counted_at


def time_separate_counts(segments, now):
    """``segment.members().count()`` for each segment: {pk: (count, seconds)}."""
    results = {}
    for segment in segments:
        started = time.perf_counter()
        count = segment.members(now=now).count()
        results[segment.pk] = (count, time.perf_counter() - started)
    return results


def check_sample(segments, sample_size, now):
    """Python verdicts (``segment.matches``) vs SQL membership over ``sample_size`` random live profiles.

    Returns (profiles checked, memberships found, mismatches as (segment, profile pk, python, sql)).
    """
    from django.db.models import TextField
    from django.db.models.functions import MD5, Cast

    from wagtail_crm.profiles.models import VisitorProfile

    live = VisitorProfile.objects.filter(merged_into__isnull=True)
    # A deterministic "random" sample: ordered by a hash of the id.
    sample_ids = list(live.order_by(MD5(Cast("id", TextField()))).values_list("pk", flat=True)[:sample_size])
    annotations = {}
    for segment in segments:
        for stream in (segment.rules, segment.exclude_rules):
            for child in stream:
                annotations.update(child.block.profile_annotations(child.value))
    profiles = list(VisitorProfile.objects.filter(pk__in=sample_ids).annotate(**annotations))
    mismatches, memberships = [], 0
    for segment in segments:
        in_sql = set(segment.members(now=now).filter(pk__in=sample_ids).values_list("pk", flat=True))
        memberships += len(in_sql)
        for profile in profiles:
            in_python = segment.matches(profile, now=now)
            if in_python != (profile.pk in in_sql):
                mismatches.append((segment.name, profile.pk, in_python, profile.pk in in_sql))
    return len(profiles), memberships, mismatches


def explain(sql):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, VERBOSE OFF) " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


@contextlib.contextmanager
def session_settings(**values):
    """SET ``values`` for the session, RESET afterwards."""
    from django.db import connection

    with connection.cursor() as cursor:
        for name, value in values.items():
            cursor.execute(f"SET {name} = {value}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for name in values:
                cursor.execute(f"RESET {name}")


def measure(size, args):
    from django.utils import timezone

    from wagtail_crm.segments.models import Segment

    pages = _segments.example_pages()
    groups = _segments.ensure_groups()
    segments = _segments.create_segments(pages, groups["Wholesale"])
    data = describe_data()
    print(
        f"{size:,} profiles ({data['live']:,} live, {data['with_user']:,} with a user account); table "
        f"{data['total_bytes'] / 2**20:,.0f} MB with indexes (heap {data['heap_bytes'] / 2**20:,.0f} MB, TOAST "
        f"{data['toast_bytes'] / 2**20:,.0f} MB); facts as JSON text: median {data['facts_text_median']:,.0f} "
        f"bytes, mean {data['facts_text_avg']:,.0f}, max {data['facts_text_max']:,}, "
        f"{data['facts_over_2kb'] / data['profiles']:.1%} over 2 kB; stored (compressed) mean "
        f"{data['facts_stored_avg']:,.0f} bytes",
        flush=True,
    )
    # Warm-up: one untimed pass reads the table into the OS cache (shared_buffers is much smaller).
    count_query_sql()
    runs, query_seconds, counts, counted_at = time_count_segments(args.repeat)
    # The separate counts use the same "now" as the last count_segments() run, so they must agree exactly.
    separate = time_separate_counts(segments, counted_at)
    now = timezone.now()
    mismatched_counts = [s.name for s in segments if separate[s.pk][0] != counts[s.pk]]
    result = {
        "size": size,
        "data": data,
        "segments": segments,
        "runs": runs,
        "query_seconds": query_seconds,
        "counts": counts,
        "separate": separate,
        "mismatched_counts": mismatched_counts,
    }
    if args.sample:
        checked, memberships, mismatches = check_sample(segments, args.sample, now)
        result["sample"] = (checked, memberships, mismatches)
    if args.explain:
        print(f"\nEXPLAIN ANALYZE of the one-pass count query, {size:,} profiles:")
        print(explain(count_query_sql()))
    assert Segment.objects.filter(slug__startswith=_segments.SLUG_PREFIX).count() == 20
    return result


def report(args, results, generation):
    print()
    print(f"Machine:   {_common.machine_description()}")
    print(f"Database:  {_common.database_description()}")
    print("Segments:  20 (benchmarks/_segments.py), every built-in rule type, ALL/ANY, exclude rules")
    for size, (generated, seconds) in generation.items():
        how = "generated in" if generated else "reused; generated earlier in"
        print(f"Profiles:  {size:,}: {how} {seconds:.0f} s")

    headers = [
        "profiles",
        "count_segments() runs, s",
        "median s",
        "aggregate query s",
        "20 separate counts s",
    ]
    headers += ["target"]
    rows = []
    for result in results:
        median = statistics.median(result["runs"])
        separate_total = sum(seconds for _, seconds in result["separate"].values())
        target = "-"
        if result["size"] >= TARGET_PROFILES:
            target = "met" if median <= TARGET_SECONDS else "MISSED"
        rows.append(
            [
                f"{result['size']:,}",
                " / ".join(f"{run:.2f}" for run in result["runs"]),
                f"{median:.2f}",
                f"{statistics.median(result['query_seconds']):.2f}",
                f"{separate_total:.2f}",
                target,
            ]
        )
    _common.print_table(headers, rows, title="Counting 20 segments", left=1)
    print(
        f"Target: 20 segments over {TARGET_PROFILES:,} profiles in <= {TARGET_SECONDS:.0f} s (count_segments())."
    )

    headers = ["segment"]
    for result in results:
        headers += [f"members @{result['size']:,}", "share", "alone s"]
    rows = []
    for index, segment in enumerate(results[0]["segments"]):
        row = [segment.name]
        for result in results:
            seg = result["segments"][index]
            count, seconds = result["separate"][seg.pk]
            live = result["data"]["live"]
            row += [f"{count:,}", f"{count / live:.1%}", f"{seconds:.3f}"]
        rows.append(row)
    _common.print_table(headers, rows, title="Per segment (members().count(), one query each)", left=1)

    print()
    for result in results:
        size = result["size"]
        verdict = (
            "same counts" if not result["mismatched_counts"] else f"DIFFERENT: {result['mismatched_counts']}"
        )
        print(f"Check @{size:,}: count_segments() vs 20 separate counts: {verdict}")
        if "sample" in result:
            checked, memberships, mismatches = result["sample"]
            print(
                f"Check @{size:,}: Python segment.matches() vs SQL membership over {checked:,} random profiles "
                f"x 20 segments ({memberships:,} memberships): "
                + ("all equal" if not mismatches else f"{len(mismatches)} MISMATCHES, e.g. {mismatches[:5]}")
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--profiles",
        type=int,
        nargs="+",
        default=[100_000, TARGET_PROFILES],
        help="sizes to measure (default 100000 1000000); each gets its own database",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of count_segments() (default 3)")
    parser.add_argument(
        "--sample",
        type=int,
        default=3000,
        help="random profiles whose Python verdicts are checked against SQL (default 3000; 0: skip)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=1,
        help="WAGTAIL_CRM['SEGMENT_COUNT_CONNECTIONS'] for count_segments() (default 1)",
    )
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the count query")
    parser.add_argument("--keep", action="store_true", help="keep the databases (a later run reuses them)")
    parser.add_argument("--fresh", action="store_true", help="generate the profiles again even if kept")
    parser.add_argument(
        "--pg-name",
        default="wagtail_crm_bench_counts",
        help="prefix of the databases (default wagtail_crm_bench_counts: wagtail_crm_bench_counts_<size>)",
    )
    parser.add_argument("--pg-host", default=os.environ.get("PGHOST", "127.0.0.1"))
    parser.add_argument("--pg-port", default=os.environ.get("PGPORT", "5432"))
    parser.add_argument("--pg-user", default=os.environ.get("PGUSER", ""))
    parser.add_argument("--pg-password", default=os.environ.get("PGPASSWORD", ""))
    args = parser.parse_args()
    if min(args.profiles) < 1 or args.repeat < 1 or args.sample < 0:
        parser.error("--profiles and --repeat must be at least 1, --sample at least 0")

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
            "BENCH_DB": "postgres",
            "BENCH_RQ": "0",
            "BENCH_PG_NAME": "postgres",  # replaced by each size's database before any query
            "BENCH_PG_HOST": args.pg_host,
            "BENCH_PG_PORT": str(args.pg_port),
            "BENCH_PG_USER": args.pg_user,
            "BENCH_PG_PASSWORD": args.pg_password,
        }
    )
    import django

    django.setup()
    from django.conf import settings

    settings.WAGTAIL_CRM = {
        **getattr(settings, "WAGTAIL_CRM", {}),
        "SEGMENT_COUNT_CONNECTIONS": args.connections,
    }
    databases = Databases(args)
    results, generation = [], {}
    try:
        for size in sorted(set(args.profiles)):
            generation[size] = prepare(size, databases, args)
            results.append(measure(size, args))
        report(args, results, generation)
    finally:
        if args.keep:
            print(f"\nKept: {', '.join(databases.created)} (--fresh generates them again)")
        else:
            databases.drop_all()


if __name__ == "__main__":
    main()
