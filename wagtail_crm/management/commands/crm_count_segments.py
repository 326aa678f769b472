import time

from django.core.management.base import BaseCommand, CommandError

from wagtail_crm import jobs
from wagtail_crm.segments.jobs import SEGMENTS_PER_QUERY, count_segments, enqueue_count
from wagtail_crm.segments.models import Segment


class Command(BaseCommand):
    help = (
        "Count the members of every segment (or of those named with --segment) now and store the counts the "
        "admin's segment listing shows. Run it from cron to keep counts fresh on a large site."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--segment",
            action="append",
            dest="slugs",
            metavar="SLUG",
            help="Count only the segment with this slug. Repeat for several segments.",
        )
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Queue the recount as a background job instead of counting in this process.",
        )

    def handle(self, *args, slugs=None, enqueue=False, **options):
        segments = Segment.objects.order_by("name", "pk")
        if slugs:
            segments = segments.filter(slug__in=slugs)
            missing = sorted(set(slugs) - {segment.slug for segment in segments})
            if missing:
                raise CommandError(f"No segment with the slug: {', '.join(missing)}")
        segments = list(segments)
        if not segments:
            self.stdout.write("There are no segments to count.")
            return
        ids = [segment.pk for segment in segments]

        if enqueue:
            queue = jobs.queue_name()
            enqueue_count(ids)
            where = (
                f"on the queue {queue!r}" if queue else "and counted inline (no WAGTAIL_CRM['RQ_QUEUE'] set)"
            )
            self.stdout.write(self.style.SUCCESS(f"Queued a recount of {len(ids)} segment(s) {where}."))
            return

        began = time.monotonic()
        counts = count_segments(ids)
        elapsed = time.monotonic() - began
        width = max(len(segment.slug) for segment in segments)
        for segment in segments:
            self.stdout.write(f"{segment.slug:<{width}}  {counts[segment.pk]:>12,} members  ({segment.name})")
        queries = -(-len(ids) // SEGMENTS_PER_QUERY)
        self.stdout.write(
            self.style.SUCCESS(
                f"Counted {len(ids)} segment(s) in {elapsed:.2f} s ({queries} quer{'y' if queries == 1 else 'ies'})."
            )
        )
