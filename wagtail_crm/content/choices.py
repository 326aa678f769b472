"""Choices for block fields, computed when a form is shown (never at import time).

These functions are referenced by name from the block definitions that sites' migrations freeze: keep them here.
"""

from django.utils.translation import gettext_lazy as _
from wagtail import blocks


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


class StoredValueMixin:
    """Use stored values as they are. Wagtail's choice blocks look every stored value up among the choices when
    a page is loaded, which for callable choices means building them (for segments, a query) for every value
    of every variant of every page load. Submitted forms are still validated against the choices."""

    def to_python(self, value):
        return value

    def normalize(self, value):
        return value


class SegmentChoiceBlock(StoredValueMixin, blocks.MultipleChoiceBlock):
    """Segments, offered by name; the value is a list of segment ids as strings."""

    def __init__(self, **kwargs):
        super().__init__(choices=segment_choices, **kwargs)

    def to_python(self, value):
        if value is None:
            return []
        return [str(item) for item in value] if isinstance(value, (list, tuple)) else [str(value)]

    normalize = to_python

    def get_searchable_content(self, value):
        return []  # segment names are not page content


class GoalChoiceBlock(StoredValueMixin, blocks.ChoiceBlock):
    """An interaction kind (or "" for the site's default goal)."""

    def __init__(self, **kwargs):
        super().__init__(choices=goal_choices, **kwargs)

    def to_python(self, value):
        return value or ""
