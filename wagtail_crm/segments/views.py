"""Admin views for segments: the listing's columns and stale-count recounts, the "Recount members" action, and
the helpers the visitor profile page uses to show which segments a visitor is in, and why.

Member counts are stored (``SegmentMemberCount``) and recounted by a job: the listing never counts while it
renders. When it shows counts older than ``SEGMENT_COUNT_MAX_AGE`` (or none yet), it queues one recount for
those segments and remembers in the cache (``CACHE_ALIAS``) that they are pending, so that reloading the
listing does not queue them again.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.cache import caches
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.generic import View
from wagtail.admin import messages
from wagtail.admin.templatetags.wagtailadmin_tags import timesince_simple
from wagtail.admin.ui.tables import Column
from wagtail.admin.utils import get_valid_next_url_from_request
from wagtail.admin.views.generic.permissions import PermissionCheckedMixin
from wagtail.admin.widgets.button import HeaderButton
from wagtail.permissions import policy_registry
from wagtail.snippets.bulk_actions.snippet_bulk_action import SnippetBulkAction
from wagtail.snippets.views.snippets import IndexView

from wagtail_crm.conf import get_setting
from wagtail_crm.segments import jobs
from wagtail_crm.segments.models import Segment

logger = logging.getLogger("wagtail_crm.segments")

# How long a queued recount counts as pending: the listing does not queue the same segment again within this
# time, unless the count arrives first. Long enough for a busy queue, short enough to retry a lost job.
RECOUNT_PENDING_SECONDS = 5 * 60
PENDING_KEY = "wagtail_crm:segments:recount-pending:{pk}"


def user_can_view_segments(user):
    return policy_registry.get_by_type(Segment).user_has_any_permission(
        user, ["add", "change", "delete", "view"]
    )


def user_can_recount(user):
    return policy_registry.get_by_type(Segment).user_has_permission(user, "change")


def _format_time(value):
    return date_format(timezone.localtime(value), "Y-m-d H:i")


# -- what the listing and the profile page say about a segment ------------------------------------------


@dataclass(frozen=True)
class SegmentStatus:
    label: str
    live: bool
    detail: str = ""  # the start/end of its window, when it has one


def segment_status(segment, now=None):
    """Whether ``segment`` personalises pages at ``now``, in words: live, inactive, scheduled or ended."""
    now = now or timezone.now()
    if not segment.active:
        return SegmentStatus(_("Inactive"), False)
    if segment.starts_at and now < segment.starts_at:
        return SegmentStatus(
            _("Scheduled"), False, _("from %(when)s") % {"when": _format_time(segment.starts_at)}
        )
    if segment.ends_at and segment.ends_at <= now:
        return SegmentStatus(_("Ended"), False, _("on %(when)s") % {"when": _format_time(segment.ends_at)})
    if segment.ends_at:
        return SegmentStatus(_("Live"), True, _("until %(when)s") % {"when": _format_time(segment.ends_at)})
    return SegmentStatus(_("Live"), True)


def stored_count(segment):
    """The segment's ``SegmentMemberCount``, or None (no query when loaded with ``select_related``)."""
    return getattr(segment, "member_count", None)


def member_count_text(segment):
    """ "1,234 · counted 3 minutes ago", or "not counted yet"."""
    counted = stored_count(segment)
    if counted is None:
        return _("not counted yet")
    return _("%(count)s · counted %(ago)s") % {
        "count": intcomma(counted.count),
        "ago": timesince_simple(counted.counted_at),
    }


def rules_text(segment):
    """How many rules and exclude rules a segment has, e.g. "3 rules, 1 exclude rule"."""
    # len() of a StreamField value reads the stored JSON: no rule is loaded or queried.
    rules, excludes = len(segment.rules), len(segment.exclude_rules)
    text = ngettext("%(count)s rule", "%(count)s rules", rules) % {"count": rules}
    if excludes:
        text += ", " + ngettext("%(count)s exclude rule", "%(count)s exclude rules", excludes) % {
            "count": excludes
        }
    return text


# -- recounts ---------------------------------------------------------------------------------------------


def _cache():
    return caches[get_setting("CACHE_ALIAS")]


def queue_recount(segment_ids=None):
    """Queue a recount of the given segments (all when None) and mark them pending for the listing."""
    if segment_ids is not None and not segment_ids:
        return
    jobs.enqueue_count(segment_ids)
    if segment_ids is None:
        segment_ids = Segment.objects.values_list("pk", flat=True)
    try:
        _cache().set_many({PENDING_KEY.format(pk=pk): 1 for pk in segment_ids}, RECOUNT_PENDING_SECONDS)
    except Exception:  # the recount is queued; at worst the listing queues it once more
        logger.warning("Could not mark segment recounts as pending", exc_info=True)


def is_stale(segment, now=None):
    counted = stored_count(segment)
    if counted is None:
        return True
    max_age = timedelta(seconds=get_setting("SEGMENT_COUNT_MAX_AGE"))
    return counted.counted_at < (now or timezone.now()) - max_age


def recount_stale(segments, now=None):
    """Queue one recount for those of ``segments`` whose counts are missing or too old, unless already pending.

    Returns the ids of the stale segments (pending or queued now).
    """
    stale = [segment.pk for segment in segments if is_stale(segment, now)]
    if not stale:
        return set()
    try:
        cache = _cache()
        # add() is atomic: of two listings loaded at the same moment, one queues the recount.
        to_queue = [pk for pk in stale if cache.add(PENDING_KEY.format(pk=pk), 1, RECOUNT_PENDING_SECONDS)]
    except Exception:
        # Without the cache there is no way to tell a queued recount from a missing one: rather than queue one
        # on every page load, leave it to the "Recount members" button and the management command.
        logger.warning("Could not check pending segment recounts; none queued", exc_info=True)
        return set()
    if to_queue:
        jobs.enqueue_count(to_queue)
    return set(stale)


# -- the listing ------------------------------------------------------------------------------------------


class SegmentStatusColumn(Column):
    cell_template_name = "wagtail_crm/segments/status_cell.html"

    def get_value(self, instance):
        return segment_status(instance)


class MemberCountColumn(Column):
    cell_template_name = "wagtail_crm/segments/member_count_cell.html"

    def get_cell_context_data(self, instance, parent_context):
        context = super().get_cell_context_data(instance, parent_context)
        counted = stored_count(instance)
        context["counted"] = counted
        context["recount_pending"] = getattr(instance, "_crm_recount_pending", False)
        return context

    def get_value(self, instance):
        return member_count_text(instance)


class SegmentIndexView(IndexView):
    recount_url_name = None

    def get_base_queryset(self):
        # The stored count comes with each segment: no query per row.
        return super().get_base_queryset().select_related("member_count")

    @cached_property
    def header_buttons(self):
        buttons = super().header_buttons
        if self.recount_url_name and user_can_recount(self.request.user):
            # A POST through Wagtail's action controller (it adds the CSRF token and the current URL as "next").
            buttons = [
                *buttons,
                HeaderButton(
                    _("Recount members"),
                    icon_name="rotate",
                    attrs={
                        "type": "button",
                        "data-controller": "w-action",
                        "data-action": "w-action#post",
                        "data-w-action-url-value": reverse(self.recount_url_name),
                    },
                ),
            ]
        return buttons

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        segments = list(context["object_list"])
        pending = recount_stale(segments)
        for segment in segments:
            segment._crm_recount_pending = segment.pk in pending
        return context


class RecountMembersView(PermissionCheckedMixin, View):
    """POST: queue a recount of all segments, or of those whose ids are posted as ``id``; then go back."""

    model = None
    index_url_name = None
    permission_required = "change"
    http_method_names = ["post"]

    def post(self, request):
        ids = request.POST.getlist("id")
        if ids:
            # Matched in Python: a made-up id (too large for the database's integers) is simply not found.
            existing = set(Segment.objects.values_list("pk", flat=True))
            segment_ids = sorted({int(value) for value in ids if value.isdecimal()} & existing)
            if not segment_ids:
                messages.error(request, _("None of the chosen segments exists."))
                return self._back()
            queue_recount(segment_ids)
            total = len(segment_ids)
        else:
            total = Segment.objects.count()
            queue_recount(None)
        messages.success(
            request,
            ngettext("Recount of %(count)s segment queued.", "Recount of %(count)s segments queued.", total)
            % {"count": intcomma(total)},
        )
        return self._back()

    def _back(self):
        return redirect(get_valid_next_url_from_request(self.request) or reverse(self.index_url_name))


class RecountMembersBulkAction(SnippetBulkAction):
    """ "Recount members" for the segments selected in the listing."""

    display_name = gettext_lazy("Recount members")
    action_type = "recount_members"
    aria_label = gettext_lazy("Recount the members of the selected segments")
    template_name = "wagtail_crm/segments/confirm_bulk_recount.html"
    action_priority = 20
    models = [Segment]

    def dispatch(self, request, *args, **kwargs):
        if not user_can_recount(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def check_perm(self, segment):
        return self.permission_policy.user_has_permission_for_instance(self.request.user, "change", segment)

    @classmethod
    def execute_action(cls, objects, **kwargs):
        queue_recount([segment.pk for segment in objects])
        return len(objects), 0

    def get_success_message(self, num_parent_objects, num_child_objects):
        if num_parent_objects:
            return ngettext(
                "Recount of %(count)s segment queued.",
                "Recount of %(count)s segments queued.",
                num_parent_objects,
            ) % {"count": intcomma(num_parent_objects)}


# -- a visitor's segments (on the profile page) ---------------------------------------------------------


@dataclass
class Membership:
    segment: Segment
    status: SegmentStatus
    is_member: bool
    edit_url: str | None = None


@dataclass
class Explanation:
    """Why a visitor is in a segment or not: every rule's verdict and the overall one."""

    segment: Segment
    status: SegmentStatus
    is_member: bool
    rules: list = field(default_factory=list)  # RuleResult, the segment's rules
    exclude_rules: list = field(default_factory=list)  # RuleResult, its exclude rules

    @property
    def rules_pass(self):
        if not self.rules:
            return True
        verdicts = [result.matched for result in self.rules]
        return all(verdicts) if self.segment.match == Segment.Match.ALL else any(verdicts)

    @property
    def excluded(self):
        return any(result.matched for result in self.exclude_rules)

    @property
    def reason(self):
        """One sentence for the verdict."""
        if self.is_member:
            if not self.rules:
                return _("In the segment: it has no rules, and no exclude rule matches.")
            if self.segment.match == Segment.Match.ALL:
                return _("In the segment: all of the rules match, and no exclude rule does.")
            return _("In the segment: at least one of the rules matches, and no exclude rule does.")
        all_rules = self.segment.match == Segment.Match.ALL
        if self.rules_pass:
            return _("Not in the segment: an exclude rule matches.")
        if self.excluded:
            if all_rules:
                return _("Not in the segment: not all of the rules match, and an exclude rule matches.")
            return _("Not in the segment: none of the rules matches, and an exclude rule matches.")
        if all_rules:
            return _("Not in the segment: not all of the rules match.")
        return _("Not in the segment: none of the rules matches.")


def memberships(profile, segments, now):
    """``Membership`` of ``profile`` in each of ``segments``, evaluated in Python at ``now``."""
    return [
        Membership(segment, segment_status(segment, now), segment.matches(profile, now=now))
        for segment in segments
    ]


def explain_membership(segment, profile, now):
    results = segment.explain(profile, now=now)
    return Explanation(
        segment=segment,
        status=segment_status(segment, now),
        is_member=segment.matches(profile, now=now),
        rules=[result for result in results if not result.excluding],
        exclude_rules=[result for result in results if result.excluding],
    )
