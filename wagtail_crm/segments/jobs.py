"""Background work for segments: member counts (one pass over the profiles for many segments)."""

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import connections, transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from wagtail_crm import jobs
from wagtail_crm.conf import get_setting

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
        totals = _aggregate(
            profiles, {f"s{segment.pk}": Count("pk", filter=segment.as_q(now=now)) for segment in chunk}
        )
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


def _count(profiles, counts):
    if connections[profiles.db].vendor != "postgresql":
        return profiles.aggregate(**counts)
    with transaction.atomic(using=profiles.db):
        with connections[profiles.db].cursor() as cursor:
            # PostgreSQL prices this query high and JIT-compiles it, which costs more than it saves here
            # (measured in benchmarks/segment_counts.py).
            cursor.execute("SET LOCAL jit = off")
        return profiles.aggregate(**counts)


def _aggregate(profiles, counts):
    """``profiles.aggregate(**counts)``, split into id ranges counted at once on several connections.

    One scan of the profiles evaluates every segment's conditions in one process; with
    ``SEGMENT_COUNT_CONNECTIONS`` above 1 (PostgreSQL), that many connections each scan a range of ids, so a
    database with free cores counts that many times faster. Each range is its own snapshot: a count taken while
    profiles change may be off by what changed during the count, as any count of a busy table is.
    """
    workers = get_setting("SEGMENT_COUNT_CONNECTIONS")
    if workers <= 1 or connections[profiles.db].vendor != "postgresql":
        return _count(profiles, counts)
    bounds = profiles.aggregate(first=Min("pk"), last=Max("pk"))
    if bounds["first"] is None:
        return _count(profiles, counts)
    step = math.ceil((bounds["last"] - bounds["first"] + 1) / workers)

    def count_range(start):
        try:
            return _count(profiles.filter(pk__gte=start, pk__lt=start + step), counts)
        finally:
            connections.close_all()  # this thread's own connections

    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(count_range, range(bounds["first"], bounds["last"] + 1, step)))
    return {name: sum(part[name] for part in parts) for name in counts}


def enqueue_count(segment_ids=None):
    """Queue a recount (inline after commit when no queue is configured)."""
    jobs.enqueue("wagtail_crm.segments.jobs.count_segments", list(segment_ids) if segment_ids else None)
