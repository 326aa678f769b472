"""Segment rules: StreamField blocks that each decide one thing about a visitor, twice.

Every rule type is a ``RuleBlock`` (a ``StructBlock``) with two evaluations of the same definition:

* ``matches(value, context)``: for one visitor, in Python, over the profile already loaded for the request
  (and the request itself). It must not query the database.
* ``as_q(value, context)``: a ``Q`` over ``VisitorProfile`` selecting exactly the profiles ``matches`` accepts
  (for member counts, listings and the call list). ``tests/test_segment_rules_property.py`` proves the two
  agree for every built-in rule on SQLite and PostgreSQL.

``describe(value)`` says what the rule checks in a sentence, for the admin ("why is this visitor in").

Sites add their own rule types with the ``register_wagtail_crm_rule`` hook (``docs/how-to/custom-rules.md``).
"""

from datetime import UTC, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef, Q
from django.db.models.lookups import Contains, Exact, GreaterThanOrEqual, LessThanOrEqual
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _
from wagtail import blocks

from wagtail_crm.conf import get_setting
from wagtail_crm.profiles.models import InteractionKind
from wagtail_crm.segments.expressions import (
    AsciiLower,
    DailySum,
    FactNumber,
    FactText,
    SurveyAnswered,
    fold,
)

RULE_HOOK = "register_wagtail_crm_rule"

# Q objects that select every / no profile, for rules that do not depend on the profile (time of day).
MATCH_ALL = Q(pk__isnull=False)
MATCH_NONE = Q(pk__isnull=True)


class EvaluationContext:
    """What a rule may look at: the profile, the request (if any) and the time of the evaluation.

    One context is built per visitor and evaluation, so that every rule of every segment sees the same
    ``now`` (and the SQL built from the same context agrees with the Python verdict to the microsecond).
    """

    def __init__(self, profile, request=None, now=None):
        self.profile = profile
        self.request = request
        self.now = now or timezone.now()

    @cached_property
    def local_now(self):
        """``now`` in the site's time zone (``TIME_ZONE``)."""
        return timezone.localtime(self.now)

    @cached_property
    def visit_count(self):
        """Visits including the current one: a request that starts a new visit counts it already.

        The page view that opens a visit is written after the response (or later, by a worker), so on the first
        page of a second visit the stored count still says 1. Without a request, the stored count.
        """
        profile = self.profile
        count = profile.visit_count
        if self.request is not None:
            timeout = timedelta(seconds=get_setting("VISIT_TIMEOUT"))
            if profile.pk is None or count == 0 or self.now - profile.last_seen > timeout:
                count += 1
        return count

    @cached_property
    def pending_touch(self):
        """The campaign data the current request brings, as it will be stored: {"first": {...}, "last": {...}}.

        The visit's page view (and with it the attribution) is stored after the response, but a visitor who
        arrives from the newsletter should see the newsletter content on the landing page already. Without a
        request, or for a request with no campaign data, nothing is pending.
        """
        if self.request is None:
            return {}
        from wagtail_crm.profiles.ingest import TOUCH_KEYS
        from wagtail_crm.profiles.middleware import ATTRIBUTION_ATTRIBUTE, attribution_for

        # The edge-mode fragment endpoint sets the attribution of the page being viewed.
        attribution = getattr(self.request, ATTRIBUTION_ATTRIBUTE, None)
        if attribution is None:
            attribution = attribution_for(self.request)
        pending = {}
        if attribution and self.visit_count == 1 and self.profile.first_touch_at is None:
            pending["first"] = attribution
        if any(attribution.get(key) for key in TOUCH_KEYS):
            pending["last"] = attribution
        return pending

    def attribute(self, touch, name):
        """An attribution value (``touch`` "first" or "last", ``name`` e.g. "utm_source"), this request included."""
        pending = self.pending_touch.get(touch)
        if pending is not None:
            return pending.get(name, "")
        return getattr(self.profile, f"{touch}_{name}")

    def since_day(self, days):
        """The first UTC date (ISO) of a window of ``days`` days ending today: 1 means today only."""
        return (self.now.astimezone(UTC) - timedelta(days=days - 1)).date().isoformat()


# -- helpers shared by the rules -------------------------------------------------------------------------

OPERATORS = [("gte", _("at least")), ("lte", _("at most")), ("eq", _("exactly"))]
OPERATOR_SIGNS = {"gte": "≥", "lte": "≤", "eq": "="}
_LOOKUPS = {"gte": GreaterThanOrEqual, "lte": LessThanOrEqual, "eq": Exact}


def compare(operator, left, right):
    if operator == "gte":
        return left >= right
    if operator == "lte":
        return left <= right
    return left == right


def compare_q(operator, expression, value):
    return Q(_LOOKUPS[operator](expression, value))


def _dig(data, keys):
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def fact_number(facts, keys, money=False):
    """Python twin of :class:`~wagtail_crm.segments.expressions.FactNumber`."""
    value = _dig(facts, keys)
    if value is None or isinstance(value, bool):
        return 0.0
    if money:
        return float(round(Decimal(str(value)), 2))
    return float(value)


def daily_sum(facts, keys, since_day, money=False):
    """Python twin of :class:`~wagtail_crm.segments.expressions.DailySum`."""
    total = Decimal(0)
    for day, bucket in (facts.get("daily") or {}).items():
        if day >= since_day:
            value = _dig(bucket, keys)
            if value is not None and not isinstance(value, bool):
                total += Decimal(str(value))
    return float(round(total, 2) if money else total)


def within_days_block():
    return blocks.IntegerBlock(
        label=_("within the last … days"),
        required=False,
        min_value=1,
        help_text=_("Leave empty for all time. 1 means today (UTC dates)."),
    )


def _check_window(errors, days):
    limit = get_setting("FACTS_DAILY_DAYS")
    if days is not None and days > limit:
        errors["within_days"] = ValidationError(
            _("Profiles keep daily activity for %(limit)s days: choose %(limit)s or fewer, or leave empty.")
            % {"limit": limit}
        )


def _raise(errors):
    if errors:
        raise blocks.StructBlockValidationError(block_errors=errors)


def _window_text(days):
    if not days:
        return ""
    if days == 1:
        return str(_(" today"))
    return str(_(" in the last %(days)s days")) % {"days": days}


def _number_text(value):
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.2f}"


class RuleBlock(blocks.StructBlock):
    """Base class of every rule type. Subclasses define child blocks and the three methods below."""

    def matches(self, value, context):
        """Whether the visitor of ``context`` passes this rule, in Python, without querying the database."""
        raise NotImplementedError

    def as_q(self, value, context):
        """A ``Q`` over ``VisitorProfile`` for the profiles that pass this rule at ``context.now``."""
        raise NotImplementedError

    def describe(self, value):
        """One sentence saying what this rule checks (shown in the admin)."""
        return str(self.label)

    def profile_annotations(self, value):
        """Annotations (name → expression) to add to the one query that loads a visitor's profile.

        For rules that need data beyond the profile row (group membership): ``matches`` then reads them from
        the profile instead of querying.
        """
        return {}

    def clean(self, value):
        value = super().clean(value)
        errors = {}
        self.validate(value, errors)
        _raise(errors)
        return value

    def validate(self, value, errors):
        """Add cross-field errors to ``errors`` (child block name → ValidationError)."""

    class Meta:
        icon = "crosshairs"


# -- visits --------------------------------------------------------------------------------------------


class VisitorTypeRule(RuleBlock):
    visitor = blocks.ChoiceBlock(
        choices=[("first_time", _("First-time visitor")), ("returning", _("Returning visitor"))],
        default="first_time",
        label=_("visitor is a"),
    )

    def matches(self, value, context):
        returning = context.visit_count >= 2
        return returning if value["visitor"] == "returning" else not returning

    def as_q(self, value, context):
        return Q(visit_count__gte=2) if value["visitor"] == "returning" else Q(visit_count__lte=1)

    def describe(self, value):
        if value["visitor"] == "returning":
            return str(_("Returning visitor (2 visits or more)"))
        return str(_("First-time visitor (first visit)"))

    class Meta:
        label_format = "{visitor}"
        label = _("First-time or returning")
        group = _("Visits")
        icon = "user"


class VisitCountRule(RuleBlock):
    operator = blocks.ChoiceBlock(choices=OPERATORS, default="gte", label=_("visits"))
    count = blocks.IntegerBlock(min_value=0, default=3, label=_("number of visits"))

    def matches(self, value, context):
        return compare(value["operator"], context.visit_count, value["count"])

    def as_q(self, value, context):
        return Q(
            **{f"visit_count__{value['operator'] if value['operator'] != 'eq' else 'exact'}": value["count"]}
        )

    def describe(self, value):
        return str(_("Visits %(sign)s %(count)s")) % {
            "sign": OPERATOR_SIGNS[value["operator"]],
            "count": value["count"],
        }

    class Meta:
        label_format = "{operator} {count}"
        label = _("Number of visits")
        group = _("Visits")
        icon = "repeat"


class DaysSinceLastVisitRule(RuleBlock):
    operator = blocks.ChoiceBlock(
        choices=[("gte", _("at least")), ("lte", _("at most"))], default="gte", label=_("last seen")
    )
    days = blocks.IntegerBlock(min_value=0, default=60, label=_("days ago"))

    def matches(self, value, context):
        elapsed = context.now - context.profile.last_seen
        limit = timedelta(days=value["days"])
        if value["operator"] == "gte":
            return elapsed >= limit
        # "at most D days" counts whole days: anything less than D + 1 days ago.
        return elapsed < limit + timedelta(days=1)

    def as_q(self, value, context):
        if value["operator"] == "gte":
            return Q(last_seen__lte=context.now - timedelta(days=value["days"]))
        return Q(last_seen__gt=context.now - timedelta(days=value["days"] + 1))

    def describe(self, value):
        if value["operator"] == "gte":
            return str(_("Last seen %(days)s days ago or longer")) % {"days": value["days"]}
        return str(_("Last seen within %(days)s days")) % {"days": value["days"]}

    class Meta:
        label_format = "{operator} {days} days ago"
        label = _("Days since last visit")
        group = _("Visits")
        icon = "time"


# -- where they came from ------------------------------------------------------------------------------

TOUCHES = [
    ("either", _("first or last visit")),
    ("first", _("first visit (first touch)")),
    ("last", _("latest campaign visit (last touch)")),
]


def _touches(touch):
    return ("first", "last") if touch == "either" else (touch,)


def _touch_fields(touch, name):
    return [f"{prefix}_{name}" for prefix in _touches(touch)]


def _text_matches(text, operator, needle):
    text, needle = fold(text), fold(needle)
    return needle in text if operator == "contains" else text == needle


def _text_q(field, operator, needle):
    needle = fold(needle)
    if operator == "contains":
        return Q(Contains(AsciiLower(field), needle))
    return Q(Exact(AsciiLower(field), needle))


class CampaignRule(RuleBlock):
    parameter = blocks.ChoiceBlock(
        choices=[
            ("utm_source", _("Source (utm_source)")),
            ("utm_medium", _("Medium (utm_medium)")),
            ("utm_campaign", _("Campaign (utm_campaign)")),
            ("utm_term", _("Term (utm_term)")),
            ("utm_content", _("Content (utm_content)")),
        ],
        default="utm_source",
        label=_("campaign parameter"),
    )
    touch = blocks.ChoiceBlock(choices=TOUCHES, default="either", label=_("on their"))
    operator = blocks.ChoiceBlock(
        choices=[("equals", _("equals")), ("contains", _("contains"))], default="equals", label=_("value")
    )
    value = blocks.CharBlock(max_length=100, label=_("text"), help_text=_("Not case-sensitive."))

    def matches(self, value, context):
        return any(
            _text_matches(context.attribute(touch, value["parameter"]), value["operator"], value["value"])
            for touch in _touches(value["touch"])
        )

    def as_q(self, value, context):
        q = Q()
        for field in _touch_fields(value["touch"], value["parameter"]):
            q |= _text_q(field, value["operator"], value["value"])
        return q

    def describe(self, value):
        return str(_("%(parameter)s %(operator)s “%(value)s” (%(touch)s)")) % {
            "parameter": dict(self.child_blocks["parameter"].field.choices)[value["parameter"]],
            "operator": dict(self.child_blocks["operator"].field.choices)[value["operator"]],
            "value": value["value"],
            "touch": dict(TOUCHES)[value["touch"]],
        }

    class Meta:
        label_format = "{parameter} {operator} “{value}”, {touch}"
        label = _("Campaign (UTM)")
        group = _("Where they came from")
        icon = "link"


class ReferrerRule(RuleBlock):
    touch = blocks.ChoiceBlock(choices=TOUCHES, default="either", label=_("on their"))
    host = blocks.CharBlock(max_length=255, label=_("referring site contains"), help_text=_("e.g. google."))

    def matches(self, value, context):
        return any(
            _text_matches(context.attribute(touch, "referrer_host"), "contains", value["host"])
            for touch in _touches(value["touch"])
        )

    def as_q(self, value, context):
        q = Q()
        for field in _touch_fields(value["touch"], "referrer_host"):
            q |= _text_q(field, "contains", value["host"])
        return q

    def describe(self, value):
        return str(_("Referred by a site containing “%(host)s” (%(touch)s)")) % {
            "host": value["host"],
            "touch": dict(TOUCHES)[value["touch"]],
        }

    class Meta:
        label_format = "“{host}”, {touch}"
        label = _("Referring site")
        group = _("Where they came from")
        icon = "site"


class OfferCodeRule(RuleBlock):
    touch = blocks.ChoiceBlock(choices=TOUCHES, default="either", label=_("on their"))
    code = blocks.CharBlock(
        max_length=64,
        required=False,
        label=_("offer code"),
        help_text=_("Leave empty for any offer code. Not case-sensitive."),
    )

    def matches(self, value, context):
        codes = [context.attribute(touch, "offer_code") for touch in _touches(value["touch"])]
        if not value["code"]:
            return any(codes)
        return any(_text_matches(code, "equals", value["code"]) for code in codes)

    def as_q(self, value, context):
        q = Q()
        for field in _touch_fields(value["touch"], "offer_code"):
            q |= ~Q(**{field: ""}) if not value["code"] else _text_q(field, "equals", value["code"])
        return q

    def describe(self, value):
        if value["code"]:
            return str(_("Arrived with offer code “%(code)s” (%(touch)s)")) % {
                "code": value["code"],
                "touch": dict(TOUCHES)[value["touch"]],
            }
        return str(_("Arrived with an offer code (%(touch)s)")) % {"touch": dict(TOUCHES)[value["touch"]]}

    class Meta:
        label_format = "{code} {touch}"
        label = _("Offer code")
        group = _("Where they came from")
        icon = "tag"


# -- who they are --------------------------------------------------------------------------------------


class LoggedInRule(RuleBlock):
    state = blocks.ChoiceBlock(
        choices=[("yes", _("has an account (logged in)")), ("no", _("has no account / anonymous"))],
        default="yes",
        label=_("visitor"),
    )

    def matches(self, value, context):
        has_user = context.profile.user_id is not None
        return has_user if value["state"] == "yes" else not has_user

    def as_q(self, value, context):
        return Q(user__isnull=value["state"] != "yes")

    def describe(self, value):
        if value["state"] == "yes":
            return str(_("Has an account (logged in)"))
        return str(_("Has no account"))

    class Meta:
        label_format = "{state}"
        label = _("Logged in")
        group = _("Who they are")
        icon = "user"


def _group_choices():
    from django.contrib.auth.models import Group

    return [(str(pk), name) for pk, name in Group.objects.order_by("name").values_list("pk", "name")]


def _group_id(value):
    try:
        return int(value["group"])
    except (TypeError, ValueError):
        return None


class GroupRule(RuleBlock):
    group = blocks.ChoiceBlock(choices=_group_choices, label=_("member of group"))

    def annotation_name(self, group_id):
        return f"crm_in_group_{group_id}"

    def _membership(self, group_id, outer="user_id"):
        through = get_user_model().groups.through
        return Exists(through.objects.filter(user_id=OuterRef(outer), group_id=group_id))

    def profile_annotations(self, value):
        group_id = _group_id(value)
        if group_id is None or not hasattr(get_user_model(), "groups"):
            return {}
        return {self.annotation_name(group_id): self._membership(group_id)}

    def matches(self, value, context):
        group_id = _group_id(value)
        profile = context.profile
        if group_id is None or profile.user_id is None or not hasattr(get_user_model(), "groups"):
            return False
        name = self.annotation_name(group_id)
        if hasattr(profile, name):  # loaded with the visitor's profile (no extra query)
            return bool(getattr(profile, name))
        # A profile loaded some other way (admin, scripts): ask once, then remember on the instance.
        cached = profile.__dict__.setdefault("_crm_group_ids", None)
        if cached is None:
            cached = set(
                get_user_model()
                .groups.through.objects.filter(user_id=profile.user_id)
                .values_list("group_id", flat=True)
            )
            profile.__dict__["_crm_group_ids"] = cached
        return group_id in cached

    def as_q(self, value, context):
        group_id = _group_id(value)
        if group_id is None or not hasattr(get_user_model(), "groups"):
            return MATCH_NONE
        # A semi-join: counted once for all profiles, not probed per profile like the EXISTS above.
        through = get_user_model().groups.through
        return Q(user_id__in=through.objects.filter(group_id=group_id).values("user_id"))

    def describe(self, value):
        from django.contrib.auth.models import Group

        name = Group.objects.filter(pk=_group_id(value)).values_list("name", flat=True).first()
        return str(_("Member of the group “%(group)s”")) % {"group": name or _("(deleted group)")}

    class Meta:
        label_format = "{group}"
        label = _("User group")
        group = _("Who they are")
        icon = "group"


class ConsentRule(RuleBlock):
    channel = blocks.ChoiceBlock(
        choices=[("email", _("email")), ("phone", _("phone"))], default="email", label=_("consented to")
    )

    def matches(self, value, context):
        return bool(getattr(context.profile, f"{value['channel']}_consent"))

    def as_q(self, value, context):
        return Q(**{f"{value['channel']}_consent": True})

    def describe(self, value):
        return str(_("Has given consent to be contacted by %(channel)s")) % {"channel": value["channel"]}

    class Meta:
        label_format = "{channel}"
        label = _("Consent")
        group = _("Who they are")
        icon = "tick-inverse"


# -- what they did --------------------------------------------------------------------------------------


class PageViewsRule(RuleBlock):
    page = blocks.PageChooserBlock(label=_("page or section"))
    count = blocks.IntegerBlock(min_value=1, default=1, label=_("at least … times"))
    within_days = within_days_block()

    def _key(self, value):
        page = value["page"]
        return str(page.pk) if page is not None else None

    def matches(self, value, context):
        key = self._key(value)
        if key is None:
            return False
        facts = context.profile.facts or {}
        if value["within_days"]:
            views = daily_sum(facts, ["@pages", key], context.since_day(value["within_days"]))
        else:
            views = fact_number(facts, ["pages", key])
        return views >= value["count"]

    def as_q(self, value, context):
        key = self._key(value)
        if key is None:
            return MATCH_NONE
        if value["within_days"]:
            views = DailySum("@pages", key, since_day=context.since_day(value["within_days"]))
        else:
            views = FactNumber("pages", key)
        return compare_q("gte", views, float(value["count"]))

    def validate(self, value, errors):
        _check_window(errors, value["within_days"])

    def describe(self, value):
        page = value["page"]
        return str(_("Viewed “%(page)s” or a page under it at least %(count)s times%(window)s")) % {
            "page": page.title if page else _("(deleted page)"),
            "count": value["count"],
            "window": _window_text(value["within_days"]),
        }

    class Meta:
        label_format = "{page} ×{count} {within_days}"
        label = _("Pages viewed")
        group = _("What they did")
        icon = "doc-full"


class PurchasesRule(RuleBlock):
    measure = blocks.ChoiceBlock(
        choices=[("orders", _("orders (online and in store)")), ("spend", _("amount spent"))],
        default="orders",
        label=_("at least"),
    )
    amount = blocks.DecimalBlock(
        min_value=0, decimal_places=2, max_digits=14, default=1, label=_("number/amount")
    )
    within_days = within_days_block()

    def _value(self, facts, value, context):
        money = value["measure"] == "spend"
        if value["within_days"]:
            key = "@spend" if money else "@orders"
            return daily_sum(facts, [key], context.since_day(value["within_days"]), money=money)
        return fact_number(facts, [value["measure"]], money=money)

    def matches(self, value, context):
        return self._value(context.profile.facts or {}, value, context) >= float(value["amount"])

    def as_q(self, value, context):
        money = value["measure"] == "spend"
        if value["within_days"]:
            key = "@spend" if money else "@orders"
            total = DailySum(key, since_day=context.since_day(value["within_days"]), money=money)
        else:
            total = FactNumber(value["measure"], money=money)
        return compare_q("gte", total, float(value["amount"]))

    def validate(self, value, errors):
        _check_window(errors, value["within_days"])

    def describe(self, value):
        text = (
            _("Spent at least %(amount)s%(window)s")
            if value["measure"] == "spend"
            else _("At least %(amount)s orders%(window)s")
        )
        return str(text) % {
            "amount": _number_text(value["amount"]),
            "window": _window_text(value["within_days"]),
        }

    class Meta:
        label_format = "{measure} {amount} {within_days}"
        label = _("Purchases")
        group = _("What they did")
        icon = "pick"


class ActivityRule(RuleBlock):
    kind = blocks.ChoiceBlock(
        choices=InteractionKind.choices,
        required=False,
        label=_("did"),
        help_text=_("Or type the name of a custom interaction kind below."),
    )
    custom_kind = blocks.RegexBlock(
        regex=r"^[a-z][a-z0-9_]{0,49}$",
        required=False,
        label=_("custom kind"),
        error_messages={"invalid": _("A kind is a lowercase slug: letters, digits and underscores.")},
    )
    count = blocks.IntegerBlock(min_value=1, default=1, label=_("at least … times"))
    within_days = within_days_block()

    def kind_of(self, value):
        return value.get("custom_kind") or value.get("kind")

    def _count(self, facts, value, context):
        kind = self.kind_of(value)
        if value["within_days"]:
            return daily_sum(facts, [kind], context.since_day(value["within_days"]))
        return fact_number(facts, ["counts", kind])

    def matches(self, value, context):
        return self._count(context.profile.facts or {}, value, context) >= value["count"]

    def as_q(self, value, context):
        kind = self.kind_of(value)
        if value["within_days"]:
            total = DailySum(kind, since_day=context.since_day(value["within_days"]))
        else:
            total = FactNumber("counts", kind)
        return compare_q("gte", total, float(value["count"]))

    def validate(self, value, errors):
        if not self.kind_of(value):
            errors["kind"] = ValidationError(_("Choose what the visitor did, or type a custom kind."))
        _check_window(errors, value["within_days"])

    def describe(self, value):
        kind = self.kind_of(value)
        try:
            label = InteractionKind(kind).label
        except ValueError:
            label = kind
        return str(_("%(kind)s at least %(count)s times%(window)s")) % {
            "kind": label,
            "count": value["count"],
            "window": _window_text(value["within_days"]),
        }

    class Meta:
        label_format = "{kind}{custom_kind} ×{count} {within_days}"
        label = _("Activity")
        group = _("What they did")
        icon = "history"


class AbandonedCheckoutRule(RuleBlock):
    within_days = blocks.IntegerBlock(min_value=1, default=7, label=_("within the last … days"))

    def matches(self, value, context):
        since = context.since_day(value["within_days"])
        return daily_sum(context.profile.facts or {}, [InteractionKind.CHECKOUT_ABANDONED.value], since) >= 1

    def as_q(self, value, context):
        since = context.since_day(value["within_days"])
        return compare_q("gte", DailySum(InteractionKind.CHECKOUT_ABANDONED.value, since_day=since), 1.0)

    def validate(self, value, errors):
        _check_window(errors, value["within_days"])

    def describe(self, value):
        return str(_("Abandoned a checkout%(window)s")) % {"window": _window_text(value["within_days"])}

    class Meta:
        label_format = "within {within_days} days"
        label = _("Abandoned checkout")
        group = _("What they did")
        icon = "warning"


class SurveyAnswerRule(RuleBlock):
    question = blocks.CharBlock(max_length=255, label=_("question"), help_text=_("The question's name."))
    answer = blocks.CharBlock(
        max_length=255,
        required=False,
        label=_("answer"),
        help_text=_(
            "Leave empty for any answer. For multiple choice, matches when this is one of the answers."
        ),
    )

    def matches(self, value, context):
        survey = (context.profile.facts or {}).get("survey") or {}
        if value["question"] not in survey:
            return False
        if not value["answer"]:
            return True
        answer = survey[value["question"]]
        if isinstance(answer, list):
            return value["answer"] in answer
        return answer == value["answer"]

    def as_q(self, value, context):
        return Q(SurveyAnswered(value["question"], value["answer"] or None))

    def describe(self, value):
        if value["answer"]:
            return str(_("Answered “%(answer)s” to “%(question)s”")) % value
        return str(_("Answered “%(question)s”")) % value

    class Meta:
        label_format = "{question}: {answer}"
        label = _("Survey answer")
        group = _("What they did")
        icon = "form"


class PointsRule(RuleBlock):
    operator = blocks.ChoiceBlock(
        choices=[("gte", _("at least")), ("lte", _("at most"))], default="gte", label=_("points balance")
    )
    points = blocks.IntegerBlock(default=100, label=_("points"))

    def matches(self, value, context):
        return compare(
            value["operator"], fact_number(context.profile.facts or {}, ["points"]), value["points"]
        )

    def as_q(self, value, context):
        return compare_q(value["operator"], FactNumber("points"), float(value["points"]))

    def describe(self, value):
        return str(_("Loyalty points %(sign)s %(points)s")) % {
            "sign": OPERATOR_SIGNS[value["operator"]],
            "points": value["points"],
        }

    class Meta:
        label_format = "{operator} {points}"
        label = _("Loyalty points")
        group = _("Loyalty")
        icon = "pick"


class TierRule(RuleBlock):
    tier = blocks.CharBlock(max_length=100, label=_("loyalty tier"), help_text=_("Not case-sensitive."))

    def matches(self, value, context):
        tier = (context.profile.facts or {}).get("tier")  # a tier that is not text is no tier (as in SQL)
        return isinstance(tier, str) and fold(tier) == fold(value["tier"])

    def as_q(self, value, context):
        return Q(Exact(AsciiLower(FactText("tier")), fold(value["tier"])))

    def describe(self, value):
        return str(_("Loyalty tier is “%(tier)s”")) % value

    class Meta:
        label_format = "{tier}"
        label = _("Loyalty tier")
        group = _("Loyalty")
        icon = "pick"


# -- when ------------------------------------------------------------------------------------------------

WEEKDAYS = [
    ("0", _("Monday")),
    ("1", _("Tuesday")),
    ("2", _("Wednesday")),
    ("3", _("Thursday")),
    ("4", _("Friday")),
    ("5", _("Saturday")),
    ("6", _("Sunday")),
]


class TimeWindowRule(RuleBlock):
    days = blocks.MultipleChoiceBlock(
        choices=WEEKDAYS, required=False, label=_("on"), help_text=_("None ticked: any day.")
    )
    start = blocks.TimeBlock(required=False, label=_("from"))
    end = blocks.TimeBlock(
        required=False, label=_("until"), help_text=_("Site time zone. May pass midnight.")
    )

    def is_open(self, value, local_now):
        days = value["days"] or []
        if days and str(local_now.weekday()) not in days:
            return False
        now, start, end = local_now.time().replace(tzinfo=None), value["start"], value["end"]
        if start and end:
            return start <= now < end if start < end else (now >= start or now < end)
        if start:
            return now >= start
        if end:
            return now < end
        return True

    def matches(self, value, context):
        return self.is_open(value, context.local_now)

    def as_q(self, value, context):
        # The same for every profile: all of them or none, decided now.
        return MATCH_ALL if self.is_open(value, context.local_now) else MATCH_NONE

    def validate(self, value, errors):
        if not value["days"] and not value["start"] and not value["end"]:
            errors["days"] = ValidationError(_("Choose days, a time window, or both."))
        if value["start"] and value["end"] and value["start"] == value["end"]:
            errors["end"] = ValidationError(_("The window must end at another time than it starts."))

    def describe(self, value):
        parts = []
        if value["days"]:
            names = dict(WEEKDAYS)
            parts.append(", ".join(str(names[day]) for day in sorted(value["days"])))
        if value["start"] or value["end"]:
            start = date_format(value["start"], "TIME_FORMAT") if value["start"] else "00:00"
            end = date_format(value["end"], "TIME_FORMAT") if value["end"] else "24:00"
            parts.append(f"{start}–{end}")
        return str(_("Now is %(window)s (site time)")) % {"window": " ".join(parts)}

    class Meta:
        label_format = "{days} {start}–{end}"
        label = _("Day and time")
        group = _("When")
        icon = "calendar"


BUILTIN_RULES = [
    ("visitor_type", VisitorTypeRule()),
    ("visit_count", VisitCountRule()),
    ("days_since_last_visit", DaysSinceLastVisitRule()),
    ("campaign", CampaignRule()),
    ("referrer", ReferrerRule()),
    ("offer_code", OfferCodeRule()),
    ("logged_in", LoggedInRule()),
    ("group", GroupRule()),
    ("consent", ConsentRule()),
    ("page_views", PageViewsRule()),
    ("purchases", PurchasesRule()),
    ("activity", ActivityRule()),
    ("abandoned_checkout", AbandonedCheckoutRule()),
    ("survey_answer", SurveyAnswerRule()),
    ("loyalty_points", PointsRule()),
    ("loyalty_tier", TierRule()),
    ("time_window", TimeWindowRule()),
]


def get_rule_blocks():
    """Built-in rule types plus those sites register with the ``register_wagtail_crm_rule`` hook.

    A hook function returns one ``(name, RuleBlock instance)`` pair or a list of them.
    """
    from django.core.exceptions import ImproperlyConfigured
    from wagtail import hooks

    rules = dict(BUILTIN_RULES)
    for hook in hooks.get_hooks(RULE_HOOK):
        registered = hook()
        pairs = [registered] if isinstance(registered, tuple) else registered
        if not isinstance(pairs, list | tuple) or not all(
            isinstance(pair, tuple) and len(pair) == 2 for pair in pairs
        ):
            raise ImproperlyConfigured(
                f"{RULE_HOOK}: {hook.__module__}.{hook.__qualname__} must return a (name, RuleBlock instance) "
                f"pair or a list of them, not {registered!r}."
            )
        for name, block in pairs:
            if isinstance(block, type) and issubclass(block, RuleBlock):
                raise ImproperlyConfigured(
                    f"{RULE_HOOK}: {name!r} is the class {block.__name__}; register an instance: "
                    f"({name!r}, {block.__name__}())."
                )
            if not isinstance(block, RuleBlock):
                raise ImproperlyConfigured(
                    f"{RULE_HOOK}: {name!r} must be a wagtail_crm.segments.rules.RuleBlock instance, "
                    f"got {type(block).__name__}."
                )
            if name in rules:
                raise ImproperlyConfigured(f"{RULE_HOOK}: a rule named {name!r} is already registered.")
            rules[name] = block
    return list(rules.items())
