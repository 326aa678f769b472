"""``OfferBlock``: an incentivised message (free gift, discount, limited-time offer) with an optional code.

A code is one for everyone, or unique per visitor from an ``OfferCodePool``: issued on the visitor's first
view of the offer, at most once per code and once per visitor and pool, also when requests race (see
``issue_code``). ``redeem_code`` is what a shop's checkout calls.
"""

import logging
import time

from django import forms
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from wagtail import blocks
from wagtail.blocks.struct_block import BlockGroup
from wagtail.snippets.blocks import SnippetChooserBlock

from wagtail_crm.content import rendering
from wagtail_crm.content.choices import SegmentChoiceBlock
from wagtail_crm.profiles.visitor import PreviewVisitor, get_visitor

logger = logging.getLogger("wagtail_crm.offers")

#: What previews show instead of a pool code: editors see the offer, and no code is issued.
PREVIEW_CODE = "PREVIEW-CODE"
#: The variant name offers are counted under in the variant report.
OFFER_VARIANT = "offer"
# Codes issued (or found) during a request, per pool: an offer shown twice on a page asks the database once.
REQUEST_CODES_ATTRIBUTE = "_wagtail_crm_offer_codes"
# Attempts to claim a free code when concurrent requests take the ones we picked (only without SKIP LOCKED).
CLAIM_ATTEMPTS = 20
# "Pool exhausted" is logged at most this often (seconds) per pool and process, not on every page view.
EXHAUSTED_LOG_INTERVAL = 60
_exhausted_logged_at = {}


class OfferBlock(blocks.StructBlock):
    headline = blocks.CharBlock(
        label=_("headline"), max_length=120, help_text=_("e.g. “Free tote bag with every order”.")
    )
    body = blocks.RichTextBlock(label=_("body"), required=False, features=["bold", "italic", "link"])
    incentive = blocks.ChoiceBlock(
        label=_("incentive"),
        choices=[
            ("free_gift", _("Free gift")),
            ("discount", _("Discount")),
            ("limited_time", _("Limited-time offer")),
        ],
        default="discount",
    )
    code_source = blocks.ChoiceBlock(
        label=_("code"),
        choices=[
            ("none", _("No code")),
            ("single", _("One code for everyone")),
            ("pool", _("A unique code per visitor, from a pool")),
        ],
        default="none",
        help_text=_(
            "A pool gives each visitor a code of their own, once; bots and Do-Not-Track visitors get none."
        ),
    )
    code = blocks.CharBlock(
        label=_("code for everyone"),
        required=False,
        max_length=64,
        help_text=_("With “One code for everyone”."),
    )
    pool = SnippetChooserBlock(
        "wagtail_crm.OfferCodePool",
        label=_("code pool"),
        required=False,
        help_text=_("With “A unique code per visitor”: upload codes in CRM › Offer codes."),
    )
    starts_at = blocks.DateTimeBlock(
        label=_("starts"), required=False, help_text=_("Optional: the offer shows from this time.")
    )
    ends_at = blocks.DateTimeBlock(
        label=_("ends"), required=False, help_text=_("Optional: “limited time only” — hidden from this time.")
    )
    segments = SegmentChoiceBlock(
        label=_("show to"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Visitors in any of these segments; none ticked: everyone."),
    )

    class Meta:
        icon = "tag"
        label = _("Offer")
        label_format = "{headline}"
        template = "wagtail_crm/content/offer_block.html"
        form_layout = BlockGroup(
            children=["headline", "body", "incentive", "code_source", "code", "pool"],
            settings=["starts_at", "ends_at", "segments"],
        )
        description = _("An incentive (free gift, discount, limited-time offer) with an optional code.")
        preview_value = {
            "headline": "10% off your first order",
            "incentive": "discount",
            "code_source": "single",
            "code": "WELCOME10",
        }

    def clean(self, value):
        value = super().clean(value)
        errors = {}
        source = value.get("code_source")
        if source == "single" and not (value.get("code") or "").strip():
            errors["code"] = ValidationError(
                _("Enter the code everyone gets, or choose another kind of code.")
            )
        if source == "pool" and value.get("pool") is None:
            errors["pool"] = ValidationError(_("Choose the pool the codes come from."))
        starts_at, ends_at = value.get("starts_at"), value.get("ends_at")
        if starts_at and ends_at and ends_at <= starts_at:
            errors["ends_at"] = ValidationError(_("The offer must end after it starts."))
        if errors:
            raise blocks.StructBlockValidationError(block_errors=errors)
        return value

    def is_running(self, value, now=None):
        """Whether ``now`` is inside the offer's start/end window (an open end never closes it)."""
        now = now or timezone.now()
        starts_at, ends_at = _aware(value.get("starts_at")), _aware(value.get("ends_at"))
        return (starts_at is None or starts_at <= now) and (ends_at is None or now < ends_at)

    def render(self, value, context=None):
        if not self.is_running(value):
            return ""
        source = value.get("code_source")
        targets = frozenset(value.get("segments") or ())
        if source != "pool" and not targets:
            # The same offer for everyone: the page stays the same for every visitor (and cacheable).
            rendering.note_impression(context, block_id=_block_id(context), variant=OFFER_VARIANT)
            return self._render_offer(value, context, code=(value.get("code") or "").strip() or None)

        # Shown to some visitors only, or with a code of their own: it depends on who is looking.
        block_id = _block_id(context)
        if rendering.in_edge_slot(context):
            # The edge-cached page holds an empty slot; the script fills it for the visitor, if it applies.
            return rendering.slot(block_id, "") if block_id else ""
        visitor = rendering.visitor_for(context)
        if visitor is None:
            return ""
        if targets and not (visitor.segment_ids & targets):
            return ""
        code = (value.get("code") or "").strip() or None
        if source == "pool":
            visitor.personalised = True
            code = code_for_visitor(value, context)
            if code is None:
                return ""
        rendering.note_impression(context, block_id=block_id, variant=OFFER_VARIANT)
        return self._render_offer(value, context, code=code)

    def _render_offer(self, value, context, *, code):
        new_context = self.get_context(value, parent_context=dict(context) if context is not None else None)
        new_context.update(
            code=code,
            incentive=value.get("incentive") or "discount",
            incentive_label=dict(self.child_blocks["incentive"].field.choices).get(
                value.get("incentive"), ""
            ),
            ends_at=_aware(value.get("ends_at")),
        )
        return mark_safe(render_to_string(self.meta.template, new_context))  # noqa: S308 - our template


def _block_id(context):
    return context.get("id") if context is not None else None


def _aware(moment):
    # A value stored without a time zone (an import, a fixture) is in the site's time zone, as forms show it.
    if moment is not None and timezone.is_naive(moment):
        return timezone.make_aware(moment)
    return moment


# -- issuing codes ------------------------------------------------------------------------------------------


def code_for_visitor(value, context):
    """The pool code the visitor behind ``context``'s request holds, issuing one on their first view.

    None when they may not get one: a visitor who may not be tracked (a bot, Do Not Track), an exhausted or
    deleted pool. Previews show ``PREVIEW_CODE`` and issue nothing.
    """
    request = rendering.request_from(context)
    pool = value.get("pool")
    if request is None or pool is None:
        return None
    visitor = get_visitor(request)
    if isinstance(visitor, PreviewVisitor):
        return PREVIEW_CODE
    if not visitor.may_identify:
        return None  # crawlers must never drain a pool
    codes = getattr(request, REQUEST_CODES_ATTRIBUTE, None)
    if codes is None:
        codes = {}
        setattr(request, REQUEST_CODES_ATTRIBUTE, codes)
    if pool.pk not in codes:
        codes[pool.pk] = _code_for(visitor, pool, value, context)
    return codes[pool.pk]


def _code_for(visitor, pool, value, context):
    from wagtail_crm.content.models import OfferCode

    if visitor.is_known:
        held = OfferCode.objects.filter(pool=pool, issued_to=visitor.profile).values_list("code", flat=True)
        held = held.first()
        if held is not None:
            return held
    offer_code, issued = issue_code(pool, visitor)
    if offer_code is None:
        _log_exhausted(pool)
        return None
    if issued:
        from wagtail_crm.profiles.models import InteractionKind
        from wagtail_crm.profiles.tracking import track

        track(
            offer_code.issued_to,
            InteractionKind.OFFER_CODE_ISSUED,
            code=offer_code.code,
            pool=pool.name,
            offer=value.get("headline") or "",
            page=rendering.page_id_from(context),
            event_id=f"{offer_code.pk}:{offer_code.issued_at.isoformat()}",
        )
        # The code belongs to this browser's profile: the visitor must keep the cookie that names it.
        visitor.events_recorded = True
    return offer_code.code


def issue_code(pool, visitor):
    """``(OfferCode, issued now)``: the code of ``pool`` that ``visitor``'s profile holds, or a free code
    issued to it now; ``(None, False)`` when the pool has no free code left.

    Safe under concurrency: a free code is picked (on PostgreSQL locked with SKIP LOCKED, so concurrent
    visitors pick different codes without waiting) and claimed with a conditional UPDATE, retried when
    another request claimed it first. Two requests of the same visitor racing each other hit the
    one-code-per-visitor-and-pool constraint; the loser returns the winner's code.
    """
    from wagtail_crm.content.models import OfferCode

    free = OfferCode.objects.filter(pool=pool, issued_at__isnull=True).order_by("pk")
    if connection.features.has_select_for_update_skip_locked:
        free = free.select_for_update(skip_locked=True)
    for _attempt in range(CLAIM_ATTEMPTS):
        try:
            with transaction.atomic():
                candidate = free.first()
                if candidate is None and not visitor.is_known:
                    return None, False  # nothing to issue, and a visitor we never stored holds no code
                profile = _stored_profile(visitor)
                if profile is None:
                    return None, False
                held = OfferCode.objects.filter(pool=pool, issued_to=profile).first()
                if held is not None or candidate is None:
                    return held, False
                now = timezone.now()
                claimed = OfferCode.objects.filter(pk=candidate.pk, issued_at__isnull=True).update(
                    issued_to=profile, issued_at=now
                )
                if claimed:
                    candidate.issued_to, candidate.issued_at = profile, now
                    return candidate, True
        except IntegrityError:
            pass  # the same visitor got a code from this pool meanwhile: the next attempt returns it
    logger.warning("Could not issue a code of pool %r after %d attempts", pool.name, CLAIM_ATTEMPTS)
    return None, False


def _stored_profile(visitor):
    """The visitor's saved ``VisitorProfile``, created now if their events are not written yet.

    Created exactly as the ingest job does (the same code), so that it finds and reuses this row for
    the visitor's page views instead of creating a second profile.
    """
    if visitor.is_known:
        return visitor.profile
    from wagtail_crm.profiles.ingest import stored_profile

    return stored_profile(visitor_id=visitor.visitor_id, user_id=visitor.user_id)


def _log_exhausted(pool):
    now = time.monotonic()
    if now - _exhausted_logged_at.get(pool.pk, -EXHAUSTED_LOG_INTERVAL) >= EXHAUSTED_LOG_INTERVAL:
        _exhausted_logged_at[pool.pk] = now
        logger.warning(
            "Offer code pool %r is exhausted: its offers show to nobody until codes are added", pool.name
        )


# -- redeeming codes ----------------------------------------------------------------------------------------


def redeem_code(code, *, pool=None, profile=None):
    """Mark an issued pool code as redeemed (a shop's checkout calls this) and return its ``OfferCode``.

    ``pool``: an ``OfferCodePool``, its id or its name, needed only when the same code is in several pools.
    ``profile``: the saved ``VisitorProfile`` whose timeline records the redemption; by default the profile
    the code was issued to. Redeeming twice is harmless: the code keeps its first ``redeemed_at`` and the
    timeline gets one entry. Raises ``ValueError`` for an unknown code or one that was never issued.
    """
    from wagtail_crm.content.models import OfferCode, OfferCodePool
    from wagtail_crm.profiles.models import InteractionKind, VisitorProfile
    from wagtail_crm.profiles.tracking import track

    code = str(code or "").strip()
    if not code:
        raise ValueError("No offer code given.")
    codes = OfferCode.objects.filter(code=code).select_related("pool", "issued_to")
    if isinstance(pool, OfferCodePool):
        codes = codes.filter(pool=pool)
    elif isinstance(pool, int) and not isinstance(pool, bool):
        codes = codes.filter(pool_id=pool)
    elif isinstance(pool, str):
        codes = codes.filter(pool__name=pool)
    elif pool is not None:
        raise TypeError(f"pool must be an OfferCodePool, its id or its name, not {pool!r}")
    if profile is not None and not isinstance(profile, VisitorProfile):
        raise TypeError(f"profile must be a VisitorProfile, not {profile!r}")
    found = list(codes[:2])
    if not found:
        raise ValueError(
            f"Unknown offer code {code!r}" + (f" in pool {pool}" if pool is not None else "") + "."
        )
    if len(found) > 1:
        raise ValueError(f"Offer code {code!r} is in several pools; say which with pool=.")
    offer_code = found[0]
    if offer_code.issued_at is None:
        raise ValueError(f"Offer code {code!r} was never issued to anyone, so it cannot be redeemed.")
    now = timezone.now()
    if not OfferCode.objects.filter(pk=offer_code.pk, redeemed_at__isnull=True).update(redeemed_at=now):
        offer_code.refresh_from_db(fields=["redeemed_at"])
        return offer_code  # redeemed before: nothing more to record
    offer_code.redeemed_at = now
    holder = profile if profile is not None and profile.pk is not None else offer_code.issued_to
    if holder is not None:
        track(
            holder,
            InteractionKind.OFFER_CODE_REDEEMED,
            code=offer_code.code,
            pool=offer_code.pool.name,
            event_id=f"{offer_code.pk}:{now.isoformat()}",
        )
    return offer_code
