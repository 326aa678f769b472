"""Background work for segments: member counts (one pass over the profiles for many segments)."""

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections, transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from wagtail_crm import jobs
from wagtail_crm.conf import get_setting
from wagtail_crm.segments.expressions import lateral_daily_columns

logger = logging.getLogger("wagtail_crm.segments")

# Segments counted by one query: each adds a FILTER (WHERE …) to the same scan of the profiles.
SEGMENTS_PER_QUERY = 25


def count_segments(segment_ids=None):
    """Count the members of the given segments (all when None) and store the counts. Idempotent."""
    from wagtail_crm.profiles.models import VisitorProfile
    from wagtail_crm.segments.models import Segment, SegmentMemberCount

    segments = Segment.objects.order_by("pk")
    if segment_ids is not None:
        segments = segments.filter(pk__in=segment_ids)
    segments = list(segments)
    now = timezone.now()
    profiles = VisitorProfile.objects.filter(merged_into__isnull=True)
    counted = {}
    for start in range(0, len(segments), SEGMENTS_PER_QUERY):
        chunk = segments[start : start + SEGMENTS_PER_QUERY]
        began = time.monotonic()
        totals = _aggregate(profiles, {f"s{segment.pk}": segment.as_q(now=now) for segment in chunk})
        duration = time.monotonic() - began
        for segment in chunk:
            count = totals[f"s{segment.pk}"]
            SegmentMemberCount.objects.update_or_create(
                segment_id=segment.pk,
                defaults={"count": count, "counted_at": now, "duration": duration},
            )
            counted[segment.pk] = count
    logger.info("Counted %d segments", len(counted))
    return counted


def _count(profiles, conditions):
    """{name: number of ``profiles`` matching the ``Q``} for each of ``conditions``, in one scan."""
    if connections[profiles.db].vendor != "postgresql":
        return profiles.aggregate(**{name: Count("pk", filter=q) for name, q in conditions.items()})
    with transaction.atomic(using=profiles.db):
        with connections[profiles.db].cursor() as cursor:
            # PostgreSQL prices this query high and JIT-compiles it, which costs more than it saves here
            # (measured in benchmarks/segment_counts.py).
            cursor.execute("SET LOCAL jit = off")
            one_pass = _one_pass_sql(profiles, conditions)
            if one_pass is None:
                return profiles.aggregate(**{name: Count("pk", filter=q) for name, q in conditions.items()})
            cursor.execute(*one_pass)
            return dict(zip(conditions, cursor.fetchone(), strict=True))


def _where_sql(queryset):
    """The WHERE clause of ``queryset`` as (sql, params); None when it joins other tables."""
    query = queryset.query
    compiler = query.get_compiler(using=queryset.db)
    try:
        sql, params = compiler.compile(query.where)
    except EmptyResultSet:
        return "FALSE", []
    except FullResultSet:
        return "TRUE", []
    # Django keeps trimmed joins (``user__isnull``) in the alias map with no references: those are not joins.
    if any(query.alias_refcount.get(alias) for alias in query.alias_map if alias != query.base_table):
        return None
    return sql or "TRUE", list(params)


def _one_pass_sql(profiles, conditions):
    """PostgreSQL: one ``COUNT(*) FILTER (WHERE …)`` per condition, with every "within D days" sum computed once
    per profile by a lateral subquery over its daily buckets (instead of one subquery per rule and profile).

    None when a condition joins other tables (a custom rule's ``Q`` may): the ORM's aggregate counts those.
    """
    connection = connections[profiles.db]
    model = profiles.model
    columns = {}
    token = lateral_daily_columns.set(columns)
    try:
        selects, select_params = [], []
        for q in conditions.values():
            where = _where_sql(model._default_manager.using(profiles.db).filter(q))
            if where is None:
                return None
            selects.append(f"COUNT(*) FILTER (WHERE {where[0]})")
            select_params += where[1]
    finally:
        lateral_daily_columns.reset(token)
    base_where = _where_sql(profiles)
    if base_where is None:
        return None
    table = connection.ops.quote_name(model._meta.db_table)
    lateral, lateral_params = "", []
    if columns:
        sums = []
        for (keys, since_day, money), name in columns.items():
            if money:
                total = "ROUND(SUM((day.value #>> %s)::numeric) FILTER (WHERE day.key >= %s), 2)"
            else:
                total = "SUM((day.value #>> %s)::float8) FILTER (WHERE day.key >= %s)"
            sums.append(f'COALESCE({total}, 0)::float8 AS "{name}"')
            lateral_params += [list(keys), since_day]
        # An aggregate without GROUP BY gives exactly one row, also for a profile without daily buckets.
        lateral = (
            f" CROSS JOIN LATERAL (SELECT {', '.join(sums)} FROM jsonb_each(NULLIF({table}.\"facts\" -> 'daily', "
            f"'{{}}'::jsonb)) AS day) AS crm_daily"
        )
    sql = f"SELECT {', '.join(selects)} FROM {table}{lateral} WHERE {base_where[0]}"
    return sql, select_params + lateral_params + base_where[1]


def _aggregate(profiles, conditions):
    """:func:`_count` of ``profiles``, split into id ranges counted at once on several connections.

    One scan of the profiles evaluates every segment's conditions in one process; with
    ``SEGMENT_COUNT_CONNECTIONS`` above 1 (PostgreSQL), that many connections each scan a range of ids, so a
    database with free cores counts that many times faster. Each range is its own snapshot: a count taken while
    profiles change may be off by what changed during the count, as any count of a busy table is.
    """
    workers = get_setting("SEGMENT_COUNT_CONNECTIONS")
    if workers <= 1 or connections[profiles.db].vendor != "postgresql":
        return _count(profiles, conditions)
    bounds = profiles.aggregate(first=Min("pk"), last=Max("pk"))
    if bounds["first"] is None:
        return _count(profiles, conditions)
    step = math.ceil((bounds["last"] - bounds["first"] + 1) / workers)

    def count_range(start):
        try:
            return _count(profiles.filter(pk__gte=start, pk__lt=start + step), conditions)
        finally:
            connections.close_all()  # this thread's own connections

    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(count_range, range(bounds["first"], bounds["last"] + 1, step)))
    return {name: sum(part[name] for part in parts) for name in conditions}


def enqueue_count(segment_ids=None):
    """Queue a recount (inline after commit when no queue is configured)."""
    jobs.enqueue("wagtail_crm.segments.jobs.count_segments", list(segment_ids) if segment_ids else None)
