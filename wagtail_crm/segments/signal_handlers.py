from django.db import transaction
from django.db.models.signals import post_delete, post_save

from wagtail_crm.segments.evaluation import invalidate_segment_cache
from wagtail_crm.segments.models import Segment


def segment_saved(sender, instance, raw=False, **kwargs):
    if raw:
        return
    # After commit: a process reloading before the commit would cache the old rules under the new version.
    transaction.on_commit(invalidate_segment_cache)
    from wagtail_crm.segments.jobs import enqueue_count

    enqueue_count([instance.pk])


def segment_deleted(sender, instance, **kwargs):
    transaction.on_commit(invalidate_segment_cache)


def register_signal_handlers():
    post_save.connect(segment_saved, sender=Segment, dispatch_uid="wagtail_crm_segment_saved")
    post_delete.connect(segment_deleted, sender=Segment, dispatch_uid="wagtail_crm_segment_deleted")
