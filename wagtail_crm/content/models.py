from django.db import models
from django.utils.translation import gettext_lazy as _


class OfferCodePool(models.Model):
    """Unique codes uploaded by editors; an ``OfferBlock`` issues one per visitor, each at most once."""

    name = models.CharField(_("name"), max_length=255, unique=True)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("offer code pool")
        verbose_name_plural = _("offer code pools")
        ordering = ["name"]

    def __str__(self):
        return self.name


class OfferCode(models.Model):
    pool = models.ForeignKey(
        OfferCodePool, verbose_name=_("pool"), on_delete=models.CASCADE, related_name="codes"
    )
    code = models.CharField(_("code"), max_length=64)
    issued_to = models.ForeignKey(
        "wagtail_crm.VisitorProfile",
        verbose_name=_("issued to"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="offer_codes",
    )
    issued_at = models.DateTimeField(_("issued at"), null=True, blank=True)
    redeemed_at = models.DateTimeField(_("redeemed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("offer code")
        verbose_name_plural = _("offer codes")
        constraints = [
            models.UniqueConstraint(fields=["pool", "code"], name="wagtail_crm_offer_code_unique"),
            # One code per visitor and pool, even when two of their requests race.
            models.UniqueConstraint(fields=["pool", "issued_to"], name="wagtail_crm_offer_code_one_each"),
        ]
        indexes = [
            # "the next free code of this pool"
            models.Index(
                fields=["pool", "id"],
                condition=models.Q(issued_at__isnull=True),
                name="wagtail_crm_offer_free_idx",
            ),
            models.Index(fields=["code"], name="wagtail_crm_offer_code_idx"),
        ]

    def __str__(self):
        return self.code


class VariantStats(models.Model):
    """Impressions and conversions of one variant of one personalised block on one day (UTC)."""

    day = models.DateField(_("day"))
    page = models.ForeignKey(
        "wagtailcore.Page",
        verbose_name=_("page"),
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
    )
    # The StreamField block's id and the variant's list item id ("default" for everyone else).
    block_id = models.CharField(_("block"), max_length=64)
    variant = models.CharField(_("variant"), max_length=64)
    impressions = models.PositiveBigIntegerField(_("impressions"), default=0)
    conversions = models.PositiveBigIntegerField(_("conversions"), default=0)

    class Meta:
        verbose_name = _("variant statistics")
        verbose_name_plural = _("variant statistics")
        constraints = [
            models.UniqueConstraint(
                fields=["page", "block_id", "variant", "day"], name="wagtail_crm_variant_stats_unique"
            )
        ]

    def __str__(self):
        return f"{self.block_id}/{self.variant} {self.day}"
