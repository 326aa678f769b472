from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from wagtail.models import RevisionMixin

from wagtail_crm.segments.fields import RuleStreamField


class Segment(RevisionMixin, models.Model):
    """An audience: the visitors who pass its rules. Built by editors as a snippet."""

    class Match(models.TextChoices):
        ALL = "all", _("all of the rules")
        ANY = "any", _("any of the rules")

    name = models.CharField(_("name"), max_length=255)
    slug = models.SlugField(
        _("slug"),
        max_length=100,
        unique=True,
        help_text=_("How templates and developers refer to this segment, e.g. “newsletter-readers”."),
    )
    description = models.TextField(_("description"), blank=True)
    active = models.BooleanField(
        _("active"),
        default=True,
        help_text=_("Inactive segments are never used to personalise pages (they can still be counted)."),
    )
    starts_at = models.DateTimeField(
        _("active from"), null=True, blank=True, help_text=_("Optional: personalise only from this time.")
    )
    ends_at = models.DateTimeField(
        _("active until"), null=True, blank=True, help_text=_("Optional: stop personalising at this time.")
    )
    match = models.CharField(_("visitors must match"), max_length=3, choices=Match.choices, default=Match.ALL)
    rules = RuleStreamField(
        blank=True,
        verbose_name=_("rules"),
        help_text=_("With no rules, every visitor is in the segment (minus the excluded ones)."),
    )
    exclude_rules = RuleStreamField(
        blank=True,
        verbose_name=_("exclude visitors who match any of"),
        help_text=_("Visitors who pass any of these rules are left out, whatever the rules above say."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        super().clean()
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": _("The end must come after the start.")})

    def is_live(self, now=None):
        """Active, and within its optional start/end window at ``now``."""
        now = now or timezone.now()
        return (
            self.active
            and (self.starts_at is None or self.starts_at <= now)
            and (self.ends_at is None or now < self.ends_at)
        )

    is_live.boolean = True

    # Evaluation (see wagtail_crm/segments/evaluation.py)

    def matches(self, profile, request=None, now=None):
        """Whether ``profile`` is in this segment (Python, no query)."""
        from wagtail_crm.segments.evaluation import EvaluationContext, segment_matches

        return segment_matches(self, EvaluationContext(profile, request=request, now=now))

    def explain(self, profile, request=None, now=None):
        """Each rule with its verdict for ``profile``: why the visitor is in the segment or not."""
        from wagtail_crm.segments.evaluation import EvaluationContext, explain

        return explain(self, EvaluationContext(profile, request=request, now=now))

    def as_q(self, now=None):
        """A ``Q`` over ``VisitorProfile`` selecting this segment's members at ``now``."""
        from wagtail_crm.segments.evaluation import segment_q

        return segment_q(self, now=now)

    def members(self, now=None):
        """This segment's members: a ``VisitorProfile`` queryset (merged-away profiles left out)."""
        from wagtail_crm.profiles.models import VisitorProfile

        return VisitorProfile.objects.filter(merged_into__isnull=True).filter(self.as_q(now=now))


class SegmentMemberCount(models.Model):
    """The last member count of a segment, kept apart from the segment so counting never makes a revision."""

    segment = models.OneToOneField(
        Segment, on_delete=models.CASCADE, primary_key=True, related_name="member_count"
    )
    count = models.PositiveIntegerField(_("members"))
    counted_at = models.DateTimeField(_("counted at"))
    duration = models.FloatField(_("seconds taken"), default=0)

    class Meta:
        verbose_name = _("segment member count")
        verbose_name_plural = _("segment member counts")

    def __str__(self):
        return f"{self.segment}: {self.count}"
