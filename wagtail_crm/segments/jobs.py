"""Background work for segments: member counts (one pass over the profiles for many segments)."""

import logging
import time

from django.db.models import Count
from django.utils import timezone

from wagtail_crm import jobs

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
        totals = profiles.aggregate(
            **{f"s{segment.pk}": Count("pk", filter=segment.as_q(now=now)) for segment in chunk}
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


def enqueue_count(segment_ids=None):
    """Queue a recount (inline after commit when no queue is configured)."""
    jobs.enqueue("wagtail_crm.segments.jobs.count_segments", list(segment_ids) if segment_ids else None)
