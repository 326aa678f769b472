"""The fragment endpoint of the edge-cache mode (docs/how-to/caching.md).

The page HTML, cached at the edge and identical for everyone, holds each personalised block's default inside
a slot. ``personalise.js`` asks this endpoint for the visitor's version of those slots (and name), and the
endpoint reports the page view the cached page could not: the visitor's cookie and timeline stay as they are
without the edge cache. Responses are private and never cached.
"""

from urllib.parse import urlsplit

from django.http import JsonResponse, QueryDict
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET
from wagtail.blocks import StreamValue, StructValue
from wagtail.blocks.list_block import ListValue
from wagtail.fields import StreamField
from wagtail.models import Page

from wagtail_crm.content import rendering
from wagtail_crm.content.blocks import PersonalisedBlock
from wagtail_crm.content.offers import OfferBlock
from wagtail_crm.profiles.events import make_event, record_events
from wagtail_crm.profiles.middleware import ATTRIBUTION_ATTRIBUTE, PAGE_ATTRIBUTE, attribution_for
from wagtail_crm.profiles.models import InteractionKind
from wagtail_crm.profiles.visitor import get_visitor

MAX_SLOTS = 50
PERSONAL_BLOCKS = (PersonalisedBlock, OfferBlock)


def _error(message, status):
    response = JsonResponse({"error": message}, status=status)
    add_never_cache_headers(response)
    return response


def personal_blocks(page, wanted_ids):
    """``{block id: (block, value)}`` for the personalised blocks of ``page`` whose StreamField ids are in
    ``wanted_ids``, at any depth of its StreamFields."""
    found = {}

    def walk(value):
        if len(found) == len(wanted_ids):
            return
        if isinstance(value, StreamValue):
            for child in value:
                if child.id in wanted_ids and isinstance(child.block, PERSONAL_BLOCKS):
                    found[child.id] = (child.block, child.value)
                else:
                    walk(child.value)
        elif isinstance(value, StructValue):
            for item in value.bound_blocks.values():
                walk(item.value)
        elif isinstance(value, ListValue):
            for item in value.bound_blocks:
                walk(item.value)

    for field in page._meta.get_fields():
        if isinstance(field, StreamField):
            walk(getattr(page, field.name))
    return found


@require_GET
def fragments(request):
    """``GET ?page=<id>&slot=<block id>…[&greeting=1][&url=<location>][&ref=<referrer>]`` →
    ``{"slots": {block id: html}, "name": first name or ""}``."""
    page_id = request.GET.get("page", "")
    if not page_id.isdigit():
        return _error(_("“page” must be a page id."), 400)
    wanted = {value for value in request.GET.getlist("slot") if value and len(value) <= 64}
    if len(wanted) > MAX_SLOTS:
        return _error(_("Too many slots (at most %(max)d).") % {"max": MAX_SLOTS}, 400)
    page = Page.objects.live().filter(pk=int(page_id)).first()
    if page is None:
        return _error(_("No such page."), 404)
    page = page.specific
    for restriction in page.get_view_restrictions():
        if not restriction.accept_request(request):
            return _error(_("This page is private."), 403)

    url = urlsplit(request.GET.get("url", ""))
    path = url.path or page.url or "/"
    setattr(request, rendering.FRAGMENT_ATTRIBUTE, True)
    setattr(request, PAGE_ATTRIBUTE, page.pk)
    setattr(
        request,
        ATTRIBUTION_ATTRIBUTE,
        attribution_for(request, query=QueryDict(url.query), referrer=request.GET.get("ref", ""), path=path),
    )

    context = {"request": request, "page": page, "self": page}
    slots = {
        block_id: block.render(value, context={**context, "id": block_id})
        for block_id, (block, value) in personal_blocks(page, wanted).items()
    }
    visitor = get_visitor(request)
    name = ""
    if request.GET.get("greeting"):
        name = rendering.first_name(visitor, request)
    visitor.personalised = True
    if rendering.edge_mode() and visitor.may_identify:
        record_events(
            [
                make_event(
                    InteractionKind.PAGE_VIEW,
                    visitor_id=visitor.visitor_id,
                    user_id=visitor.user_id,
                    page_id=page.pk,
                    data={"path": path[:500]},
                    attribution=getattr(request, ATTRIBUTION_ATTRIBUTE),
                    impressions=visitor.impressions,
                )
            ]
        )
        visitor.events_recorded = True
    response = JsonResponse({"slots": slots, "name": name})
    add_never_cache_headers(response)
    patch_vary_headers(response, ["Cookie"])
    return response
