"""Template tags for personalising templates: ``{% load wagtail_crm %}``.

- ``{% if_segment "newsletter-readers" "returning-customers" %}…{% else %}…{% endif_segment %}``
- ``{% visitor_segments as segments %}``
- ``{% crm_greeting "Welcome back, {name}!" fallback="Welcome!" %}`` and ``{% visitor_first_name as name %}``
- ``{% wagtail_crm_script %}``: the edge-cache mode's script (nothing in the default mode).

Without a request in the context (emails, search indexing), and for the page HTML in edge-cache mode, they
render the default: the ``else`` branch, no segments, the fallback greeting.
"""

import re

from django import template
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from wagtail_crm.content import rendering

register = template.Library()

_NAME_PLACEHOLDER = re.compile(r"[,\s]*\{name\}")


class IfSegmentNode(template.Node):
    def __init__(self, segments, nodelist_true, nodelist_false):
        self.segments = segments
        self.nodelist_true = nodelist_true
        self.nodelist_false = nodelist_false

    def render(self, context):
        visitor = rendering.visitor_for(context)
        if visitor is not None:
            wanted = {_slug(expression.resolve(context)) for expression in self.segments}
            if any(segment.slug in wanted for segment in visitor.segments):
                return self.nodelist_true.render(context)
        return self.nodelist_false.render(context)


def _slug(value):
    return getattr(value, "slug", value)


@register.tag
def if_segment(parser, token):
    """Render the body for visitors in any of the given segments (slugs or ``Segment`` objects)."""
    bits = token.split_contents()
    if len(bits) < 2:
        raise template.TemplateSyntaxError(f"'{bits[0]}' needs at least one segment slug")
    segments = [parser.compile_filter(bit) for bit in bits[1:]]
    nodelist_true = parser.parse(("else", "endif_segment"))
    token = parser.next_token()
    if token.contents == "else":
        nodelist_false = parser.parse(("endif_segment",))
        parser.delete_first_token()
    else:
        nodelist_false = template.NodeList()
    return IfSegmentNode(segments, nodelist_true, nodelist_false)


@register.simple_tag(takes_context=True)
def visitor_segments(context):
    """The live segments (``Segment`` objects) the visitor is in; an empty list by default."""
    visitor = rendering.visitor_for(context)
    return list(visitor.segments) if visitor is not None else []


@register.simple_tag(takes_context=True)
def visitor_first_name(context):
    visitor = rendering.visitor_for(context)
    return rendering.first_name(visitor, rendering.request_from(context)) if visitor is not None else ""


@register.simple_tag(takes_context=True)
def crm_greeting(context, greeting, fallback=None):
    """``greeting`` with ``{name}`` replaced by the visitor's first name (or ", name" appended); ``fallback``
    (default: the greeting without the name) when the name is unknown."""
    if fallback is None:
        fallback = _NAME_PLACEHOLDER.sub("", greeting)
    if "{name}" not in greeting:
        greeting += ", {name}"
    if rendering.in_edge_slot(context):
        return format_html('<span data-crm-greeting="{}">{}</span>', greeting, fallback)
    visitor = rendering.visitor_for(context)
    name = rendering.first_name(visitor, rendering.request_from(context)) if visitor is not None else ""
    if not name:
        return fallback
    before, _sep, after = greeting.partition("{name}")
    return format_html("{}{}{}", before, name, after)


@register.simple_tag(takes_context=True)
def wagtail_crm_script(context):
    """In edge-cache mode, the script that fetches the visitor's personalised fragments (and records the
    page view); nothing in the default mode. Put it once in the base template, before ``</body>``."""
    if not rendering.edge_mode():
        return ""
    try:
        endpoint = reverse("wagtail_crm:fragments")
    except NoReverseMatch:
        return ""
    page_id = rendering.page_id_from(context)
    return format_html(
        '<script src="{}" data-endpoint="{}" data-page="{}" defer></script>',
        static("wagtail_crm/js/personalise.js"),
        endpoint,
        page_id if page_id is not None else "",
    )
