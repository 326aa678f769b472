from django.core.management.base import BaseCommand

from wagtail_crm import jobs
from wagtail_crm.profiles.events import buffered_count, drain_buffer


class Command(BaseCommand):
    help = (
        "Write the page views and other events buffered in Redis now, in this process. Workers normally do "
        "this; run it from cron as a safety net or after a worker outage."
    )

    def handle(self, *args, **options):
        if jobs.get_queue() is None:
            self.stdout.write(
                "No WAGTAIL_CRM['RQ_QUEUE'] configured: events are written inline, nothing to do."
            )
            return
        waiting = buffered_count()
        written = drain_buffer()
        self.stdout.write(
            self.style.SUCCESS(f"{waiting} buffered event(s) found, {written} new interaction(s) written.")
        )
