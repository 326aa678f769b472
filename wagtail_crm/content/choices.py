"""Choices for block fields, computed when a form is shown (never at import time).

These functions are referenced by name from the block definitions that sites' migrations freeze: keep them here.
"""

from django.utils.translation import gettext_lazy as _


def segment_choices():
    """Every segment, by name; stored values are segment ids (as strings), so renaming keeps variants."""
    from wagtail_crm.segments.models import Segment

    return [(str(pk), name) for pk, name in Segment.objects.order_by("name").values_list("pk", "name")]


def goal_choices():
    """Interaction kinds an editor may pick as a conversion goal; blank means the site's default."""
    from wagtail_crm.profiles.models import InteractionKind

    skip = {InteractionKind.PAGE_VIEW, InteractionKind.VISIT_STARTED}
    return [("", _("Site default"))] + [
        (kind.value, kind.label) for kind in InteractionKind if kind not in skip
    ]
