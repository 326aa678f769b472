"""What personalised blocks and template tags share: who is looking, which mode the cache is in, and what
to remember about the response (it varies per visitor; which variants it showed).

Blocks and tags receive a template context. With no request in it (search indexing, a snippet preview, an
email) there is no visitor: they render their default content and mark nothing.

Two cache modes (setting ``CACHE_MODE``, see docs/how-to/caching.md):

- ``"private"`` (default): blocks render the visitor's variant into the page, and the middleware marks the
  response ``Cache-Control: private`` / ``Vary: Cookie`` because the visitor's segments were read.
- ``"edge"``: the page HTML must be identical for everyone. Blocks render their default inside a *slot*
  (``<div data-crm-slot="<block id>">``) without reading the visitor, and the fragment endpoint
  (``content/views.py``) renders the visitor's variant for the script to swap in.
"""

from django.utils.html import format_html

from wagtail_crm.conf import get_setting
from wagtail_crm.profiles.middleware import PAGE_ATTRIBUTE
from wagtail_crm.profiles.visitor import PreviewVisitor, get_visitor

# Set on the fragment endpoint's request: blocks render for the visitor even in edge mode.
FRAGMENT_ATTRIBUTE = "_wagtail_crm_fragment"
DEFAULT_VARIANT = "default"


def request_from(context):
    """The request in a template context (a dict or a ``Context``), or None."""
    if context is None:
        return None
    try:
        request = context.get("request")
    except AttributeError:
        return None
    return request if hasattr(request, "COOKIES") else None


def edge_mode():
    return get_setting("CACHE_MODE") == "edge"


def is_fragment_request(request):
    return getattr(request, FRAGMENT_ATTRIBUTE, False)


def visitor_for(context):
    """The visitor to personalise for, or None when the default must be rendered.

    None without a request, and in edge mode for the page HTML itself (the fragment endpoint and previews
    personalise). A ``Visitor`` otherwise; reading its ``segments`` marks the response as personalised.
    """
    request = request_from(context)
    if request is None:
        return None
    visitor = get_visitor(request)
    if edge_mode() and not is_fragment_request(request) and not isinstance(visitor, PreviewVisitor):
        return None
    return visitor


def in_edge_slot(context):
    """True when a block should render its default inside a slot for the edge-mode script."""
    request = request_from(context)
    return (
        request is not None
        and edge_mode()
        and not is_fragment_request(request)
        and not isinstance(get_visitor(request), PreviewVisitor)
    )


def slot(block_id, html):
    """Wrap ``html`` (the default content) in a slot the edge-mode script fills for the visitor."""
    return format_html('<div data-crm-slot="{}">{}</div>', block_id, html)


def mark_personalised(request):
    """Declare that the response to ``request`` depends on who the visitor is (custom code reading
    ``visitor.profile``, say): it is then kept out of shared caches. Reading segments does this already."""
    get_visitor(request).personalised = True


def page_id_from(context):
    page = context.get("page") if context is not None else None
    page_id = getattr(page, "pk", None)
    if page_id is None:
        request = request_from(context)
        page_id = getattr(request, PAGE_ATTRIBUTE, None) if request is not None else None
    return page_id


def note_impression(context, *, block_id, variant, goal=None, goal_days=None):
    """Remember that this response showed ``variant`` of block ``block_id``.

    The impression travels with the page view event (no write on the request path) and is counted by the
    ingest job in daily counters (``VariantStats``). Nothing is noted for previews, for visitors who may not
    be tracked, or for a block without an id or page.
    """
    request = request_from(context)
    if request is None or not block_id:
        return
    visitor = get_visitor(request)
    if not visitor.may_identify:
        return
    page_id = page_id_from(context)
    if page_id is None:
        return
    visitor.impressions.append(
        {
            "page": page_id,
            "block": str(block_id)[:64],
            "variant": str(variant)[:64],
            "goal": goal or get_setting("CONVERSION_GOAL"),
            "days": int(goal_days or get_setting("CONVERSION_DAYS")),
        }
    )


def first_name(visitor, request):
    """The name the visitor gave us (their profile), else their account's first name; "" when unknown."""
    visitor.personalised = True
    name = visitor.profile.first_name
    if not name and visitor.user_id is not None:
        user = getattr(request, "user", None)
        name = getattr(user, "first_name", "") if getattr(user, "is_authenticated", False) else ""
    return (name or "").strip()
