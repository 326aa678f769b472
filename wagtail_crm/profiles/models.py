import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def new_visitor_id():
    return uuid.uuid4().hex


class InteractionKind(models.TextChoices):
    """Built-in interaction kinds. ``Interaction.kind`` also accepts any other slug (custom kinds)."""

    PAGE_VIEW = "page_view", _("Page view")
    VISIT_STARTED = "visit_started", _("Visit started")
    SIGNUP = "signup", _("Sign-up")
    DETAILS_UPDATED = "details_updated", _("Contact details given")
    LOGIN = "login", _("Login")
    SURVEY_SUBMITTED = "survey_submitted", _("Survey submitted")
    CHECKOUT_STARTED = "checkout_started", _("Checkout started")
    CHECKOUT_COMPLETED = "checkout_completed", _("Checkout completed")
    CHECKOUT_ABANDONED = "checkout_abandoned", _("Checkout abandoned")
    POINTS_EARNED = "points_earned", _("Points earned")
    POINTS_REDEEMED = "points_redeemed", _("Points redeemed")
    CALL_LOGGED = "call_logged", _("Phone call")
    OFFLINE_PURCHASE = "offline_purchase", _("In-store purchase")
    LETTER = "letter", _("Letter")
    OFFER_CODE_ISSUED = "offer_code_issued", _("Offer code issued")
    OFFER_CODE_REDEEMED = "offer_code_redeemed", _("Offer code redeemed")
    CUSTOM = "custom", _("Custom")


class Channel(models.TextChoices):
    ONLINE = "online", _("Online")
    STORE = "store", _("Offline / in store")
    PHONE = "phone", _("Phone")
    EMAIL = "email", _("Email")
    MAIL = "mail", _("Post")


# Kinds that count as a purchase in the profile's facts (spend, order count).
PURCHASE_KINDS = {InteractionKind.CHECKOUT_COMPLETED, InteractionKind.OFFLINE_PURCHASE}

kind_validator = RegexValidator(
    r"^[a-z][a-z0-9_]{0,49}$",
    _("A kind is a lowercase slug: letters, digits and underscores, starting with a letter."),
)


class VisitorProfile(models.Model):
    """One person (or browser, until they log in) as the CRM knows them."""

    visitor_id = models.CharField(
        _("visitor id"), max_length=32, unique=True, default=new_visitor_id, editable=False
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="crm_profile",
    )
    # Set when this (anonymous) profile was merged into another; kept as a tombstone so that events still
    # carrying the old visitor id (buffered, or from an old cookie) land on the right profile.
    merged_into = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="merged_profiles",
        editable=False,
    )

    # Contact details
    first_name = models.CharField(_("first name"), max_length=150, blank=True)
    last_name = models.CharField(_("last name"), max_length=150, blank=True)
    email = models.EmailField(_("email"), blank=True, db_index=True)
    phone = models.CharField(_("phone"), max_length=32, blank=True, db_index=True)

    # Consent per channel
    email_consent = models.BooleanField(_("email consent"), default=False)
    email_consent_at = models.DateTimeField(_("email consent changed at"), null=True, blank=True)
    phone_consent = models.BooleanField(_("phone consent"), default=False)
    phone_consent_at = models.DateTimeField(_("phone consent changed at"), null=True, blank=True)

    # Activity
    first_seen = models.DateTimeField(_("first seen"), default=timezone.now)
    last_seen = models.DateTimeField(_("last seen"), default=timezone.now, db_index=True)
    visit_count = models.PositiveIntegerField(_("visits"), default=0)

    # Attribution: first touch is set once, last touch by every visit that carries campaign data.
    first_utm_source = models.CharField(_("first source"), max_length=100, blank=True)
    first_utm_medium = models.CharField(_("first medium"), max_length=100, blank=True)
    first_utm_campaign = models.CharField(_("first campaign"), max_length=100, blank=True)
    first_utm_term = models.CharField(_("first term"), max_length=100, blank=True)
    first_utm_content = models.CharField(_("first content"), max_length=100, blank=True)
    first_referrer_host = models.CharField(_("first referrer"), max_length=255, blank=True)
    first_landing_page = models.CharField(_("first landing page"), max_length=500, blank=True)
    first_offer_code = models.CharField(_("first offer code"), max_length=64, blank=True)
    first_touch_at = models.DateTimeField(_("first touch at"), null=True, blank=True)
    last_utm_source = models.CharField(_("last source"), max_length=100, blank=True)
    last_utm_medium = models.CharField(_("last medium"), max_length=100, blank=True)
    last_utm_campaign = models.CharField(_("last campaign"), max_length=100, blank=True)
    last_utm_term = models.CharField(_("last term"), max_length=100, blank=True)
    last_utm_content = models.CharField(_("last content"), max_length=100, blank=True)
    last_referrer_host = models.CharField(_("last referrer"), max_length=255, blank=True)
    last_landing_page = models.CharField(_("last landing page"), max_length=500, blank=True)
    last_offer_code = models.CharField(_("last offer code"), max_length=64, blank=True)
    last_touch_at = models.DateTimeField(_("last touch at"), null=True, blank=True)

    # Summary of the timeline that segment rules read without touching Interaction (see profiles/facts.py).
    facts = models.JSONField(_("facts"), default=dict, blank=True, editable=False)

    class Meta:
        verbose_name = _("visitor profile")
        verbose_name_plural = _("visitor profiles")
        indexes = [
            models.Index(fields=["first_utm_source"], name="wagtail_crm_first_src_idx"),
            models.Index(fields=["last_utm_campaign"], name="wagtail_crm_last_camp_idx"),
        ]

    def __str__(self):
        return self.display_name

    @property
    def full_name(self):
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    @property
    def display_name(self):
        if self.full_name:
            return self.full_name
        if self.email:
            return self.email
        if self.user_id and self.user:
            return self.user.get_username()
        return _("Anonymous visitor %(id)s") % {"id": self.visitor_id[:8]}

    @property
    def is_identified(self):
        return bool(self.user_id or self.email or self.phone)

    def set_consent(self, channel, granted, *, when=None):
        """Record consent for ``channel`` ("email" or "phone") with its timestamp; caller saves."""
        if channel not in ("email", "phone"):
            raise ValueError(f"Unknown consent channel {channel!r}")
        setattr(self, f"{channel}_consent", bool(granted))
        setattr(self, f"{channel}_consent_at", when or timezone.now())


class Interaction(models.Model):
    """One entry of a profile's timeline. Append-only: written by the ingest job or by staff."""

    event_id = models.UUIDField(_("event id"), unique=True, default=uuid.uuid4, editable=False)
    profile = models.ForeignKey(
        VisitorProfile,
        verbose_name=_("profile"),
        on_delete=models.CASCADE,
        related_name="interactions",
    )
    kind = models.CharField(_("kind"), max_length=50, validators=[kind_validator])
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices, default=Channel.ONLINE)
    occurred_at = models.DateTimeField(_("occurred at"), default=timezone.now)
    page = models.ForeignKey(
        "wagtailcore.Page",
        verbose_name=_("page"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,  # page-view rows must never block page deletion or slow its cascade
    )
    data = models.JSONField(_("data"), default=dict, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("recorded by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(_("recorded at"), auto_now_add=True)

    class Meta:
        verbose_name = _("interaction")
        verbose_name_plural = _("interactions")
        ordering = ["-occurred_at", "-id"]
        indexes = [
            # "this profile's latest events"
            models.Index(fields=["profile", "-occurred_at"], name="wagtail_crm_prof_time_idx"),
            # "events of kind K since T"
            models.Index(fields=["kind", "occurred_at"], name="wagtail_crm_kind_time_idx"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} · {self.occurred_at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if self.pk and not kwargs.get("force_insert"):
            raise ValueError("Interactions are append-only and cannot be changed once recorded.")
        return super().save(*args, **kwargs)

    def get_kind_display(self):
        try:
            return InteractionKind(self.kind).label
        except ValueError:
            return self.kind.replace("_", " ").capitalize()
