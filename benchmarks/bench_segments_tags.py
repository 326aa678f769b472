"""Template tags of ``benchmarks/segments_render.py`` (registered as the ``bench_segments`` library by
``benchmarks/settings.py`` when ``BENCH_SEGMENTS=1``)."""

from django import template
from django.apps import apps

register = template.Library()

# A request carrying this header renders the page without asking for its segments (the "segments not used"
# configurations of the benchmark).
SKIP_HEADER = "HTTP_X_BENCH_SKIP_SEGMENTS"


@register.simple_tag(takes_context=True)
def visitor_segments(context):
    """``wagtail_crm.segments_for(request)``; an empty list where the plugin is not installed (plain Wagtail)."""
    request = context.get("request")
    if request is None or SKIP_HEADER in request.META or not apps.is_installed("wagtail_crm"):
        return []
    import wagtail_crm

    return wagtail_crm.segments_for(request)
