"""The personalisation report: impressions, conversions and conversion rate of personalised blocks.

CRM › Personalisation lists one row per (page, block) over a date range; each row opens the block's report:
one row per variant, and charts of the daily numbers. Both read the daily counters (``VariantStats``) that
the ingest job keeps (``content/stats.py``), summed in SQL. Viewing needs ``wagtail_crm.view_variantstats``.
"""

from dataclasses import dataclass
from datetime import timedelta

import django_filters
from django import forms
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.humanize.templatetags.humanize import intcomma
from django.db.models import F, FloatField, Sum
from django.db.models.functions import Cast, NullIf
from django.http import Http404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _
from wagtail import blocks, hooks
from wagtail.admin.filters import WagtailFilterSet
from wagtail.admin.menu import MenuItem
from wagtail.admin.ui.tables import Column, NumberColumn, TitleColumn
from wagtail.admin.views.reports import ReportView
from wagtail.admin.viewsets.base import ViewSet
from wagtail.admin.widgets import AdminDateInput
from wagtail.fields import StreamField
from wagtail.permissions import policy_registry

from wagtail_crm.admin_viewsets import CRM_MENU_HOOK
from wagtail_crm.conf import get_setting
from wagtail_crm.content.blocks import PersonalisedBlock
from wagtail_crm.content.models import VariantStats
from wagtail_crm.content.offers import OFFER_VARIANT, OfferBlock
from wagtail_crm.content.rendering import DEFAULT_VARIANT
from wagtail_crm.profiles.admin_views import FormulaSafeExportMixin
from wagtail_crm.profiles.models import InteractionKind

NAME = "wagtail_crm_personalisation"  # the viewset's name: URL namespace and menu name
DEFAULT_DAYS = 30
MAX_DAYS = 366  # a daily chart of a year stays readable; longer ranges are refused with a message


# -- date range -----------------------------------------------------------------------------------------


def report_range(since=None, until=None):
    """``(since, until)``: the dates given, completed by the defaults (today, and 30 days up to ``until``)."""
    until = until or timezone.now().date()  # counters are per UTC day
    return since or until - timedelta(days=DEFAULT_DAYS - 1), until


class DateRangeForm(forms.Form):
    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        since, until = report_range(cleaned.get("since"), cleaned.get("until"))
        if since > until:
            raise forms.ValidationError(_("The start date must not be after the end date."))
        if (until - since).days >= MAX_DAYS:
            raise forms.ValidationError(_("Choose at most %(days)s days.") % {"days": MAX_DAYS})
        return cleaned


class DateRangeFilterSet(WagtailFilterSet):
    # The views apply the range themselves (it has a default): these filters only read and validate it.
    since = django_filters.DateFilter(
        label=_("From"), widget=AdminDateInput, method="keep", help_text=_("Default: 30 days before the end.")
    )
    until = django_filters.DateFilter(
        label=_("To"), widget=AdminDateInput, method="keep", help_text=_("Default: today.")
    )

    class Meta:
        model = VariantStats
        fields = []
        form = DateRangeForm

    def keep(self, queryset, name, value):
        return queryset


class StatsReportMixin:
    """Over the (UTC) days a report covers (the filter's, else the last ``DEFAULT_DAYS`` days), rows that
    ``make_rows`` builds from the aggregated counters of the page shown."""

    filterset_class = DateRangeFilterSet
    rows = None

    def make_rows(self, object_list):
        raise NotImplementedError

    def get_table(self, object_list):
        # The table is built before ReportView decorates the page of results: build the rows here, once.
        self.rows = self.make_rows(object_list)
        return super().get_table(self.rows)

    def decorate_paginated_queryset(self, object_list):
        return self.rows if self.rows is not None else self.make_rows(object_list)

    @cached_property
    def date_range(self):
        if self.filters is not None and self.filters.is_valid():
            return report_range(
                self.filters.form.cleaned_data.get("since"), self.filters.form.cleaned_data.get("until")
            )
        return report_range()

    @cached_property
    def date_errors(self):
        if self.filters is None or self.filters.is_valid():
            return []
        return [message for messages in self.filters.form.errors.values() for message in messages]

    def filter_queryset(self, queryset):
        return queryset  # the range is applied in get_queryset

    def stats(self):
        since, until = self.date_range
        return VariantStats.objects.filter(day__gte=since, day__lte=until)

    def order_queryset(self, queryset):
        ordering = self.ordering
        if not ordering:
            return queryset
        name = ordering.lstrip("-")
        expression = (
            F(name).desc(nulls_last=True) if ordering.startswith("-") else F(name).asc(nulls_last=True)
        )
        return queryset.order_by(expression, *self.tie_breakers)

    def get_context_data(self, *args, **kwargs):
        context = super().get_context_data(*args, **kwargs)
        since, until = self.date_range
        context.update(since=since, until=until, date_errors=self.date_errors)
        return context


def with_totals(queryset):
    impressions, conversions = Sum("impressions"), Sum("conversions")
    return queryset.annotate(
        total_impressions=impressions,
        total_conversions=conversions,
        rate=Cast(conversions, FloatField()) / NullIf(Cast(impressions, FloatField()), 0.0),
    )


def rate_text(rate):
    return "—" if rate is None else f"{rate:.1%}"


# -- what a block is called, from the page's current content ------------------------------------------


@dataclass
class BlockInfo:
    kind: str  # "personalised" or "offer"
    name: str
    goal: str
    days: int
    variants: dict  # variant key -> segment ids (str), in editor order


def page_blocks(page):
    """``{block id: BlockInfo}`` for the personalised and offer blocks anywhere in ``page``'s stream fields.

    Read from the raw stream data of the page as it is published (no block values are built). A block inside
    a struct records the id of the nearest stream item around it, as it renders with that id in context.
    """
    found = {}
    for field in page._meta.get_fields():
        if isinstance(field, StreamField):
            value = getattr(page, field.attname, None)
            raw = list(value.raw_data) if hasattr(value, "raw_data") else []
            _walk(field.stream_block, raw, None, found)
    numbered = 0
    for info in found.values():
        if info.kind == "personalised":
            numbered += 1
            info.name = info.name or _("Personalised block %(number)s") % {"number": numbered}
    return found


def _walk(block, raw, owner_id, found):
    if isinstance(block, PersonalisedBlock | OfferBlock):
        if owner_id and owner_id not in found and isinstance(raw, dict):
            found[owner_id] = _block_info(block, raw)
    elif isinstance(block, blocks.StreamBlock | blocks.ListBlock):
        for item in raw if isinstance(raw, list) else ():
            if isinstance(block, blocks.ListBlock):
                child = block.child_block
                is_item = isinstance(item, dict) and item.get("type") == "item" and "value" in item
                value, item_id = (item["value"], item.get("id")) if is_item else (item, None)
            elif isinstance(item, dict) and item.get("type") in block.child_blocks:
                child, value, item_id = block.child_blocks[item["type"]], item.get("value"), item.get("id")
            else:
                continue
            _walk(child, value, item_id or owner_id, found)
    elif isinstance(block, blocks.StructBlock) and isinstance(raw, dict):
        for name, child in block.child_blocks.items():
            _walk(child, raw.get(name), owner_id, found)


def _block_info(block, raw):
    if isinstance(block, OfferBlock):
        return BlockInfo(
            "offer",
            str(raw.get("headline") or _("Offer")),
            get_setting("CONVERSION_GOAL"),
            get_setting("CONVERSION_DAYS"),
            {OFFER_VARIANT: []},
        )
    variants = {}
    for item in raw.get("variants") or ():
        if isinstance(item, dict) and item.get("id") and isinstance(item.get("value"), dict):
            variants[str(item["id"])] = [str(pk) for pk in item["value"].get("segments") or ()]
    variants[DEFAULT_VARIANT] = []
    return BlockInfo(
        "personalised",
        str(raw.get("name") or ""),
        raw.get("goal") or get_setting("CONVERSION_GOAL"),
        raw.get("goal_days") or get_setting("CONVERSION_DAYS"),
        variants,
    )


def goal_text(info):
    try:
        goal = InteractionKind(info.goal).label
    except ValueError:
        goal = info.goal  # a kind of the site's own
    return _("%(goal)s within %(days)s days") % {"goal": goal, "days": info.days}


def variant_labels(info):
    """``{variant key: label}``: a variant is named by its segments (as they are named now)."""
    from wagtail_crm.segments.models import Segment

    ids = {pk for pks in info.variants.values() for pk in pks if pk.isdigit()}
    names = {str(pk): name for pk, name in Segment.objects.filter(pk__in=ids).values_list("pk", "name")}
    labels = {}
    for number, (key, pks) in enumerate(info.variants.items(), start=1):
        if key == DEFAULT_VARIANT:
            labels[key] = _("Everyone else (default)")
        elif key == OFFER_VARIANT:
            labels[key] = _("Offer")
        else:
            labels[key] = ", ".join(names[pk] for pk in pks if pk in names) or _("Variant %(number)s") % {
                "number": number
            }
    return labels


def specific_pages(page_ids):
    from wagtail.models import Page

    return Page.objects.filter(pk__in=page_ids).specific().in_bulk()


# -- the listing: one row per page and block ------------------------------------------------------------


def user_can_view(user):
    return policy_registry.get_by_type(VariantStats).user_has_permission(user, "view")


@dataclass
class BlockRow:
    page_id: int
    page_title: str
    block_id: str
    name: str
    impressions: int
    conversions: int
    rate: float | None

    @property
    def rate_text(self):
        return rate_text(self.rate)

    @property
    def rate_percent(self):
        return None if self.rate is None else round(self.rate * 100, 2)

    @property
    def detail_url(self):
        return reverse(f"{NAME}:block", args=[self.page_id, self.block_id])

    @property
    def page_edit_url(self):
        return reverse("wagtailadmin_pages:edit", args=[self.page_id])


class PersonalisationReportView(StatsReportMixin, FormulaSafeExportMixin, ReportView):
    model = VariantStats
    permission_required = "view"
    page_title = _("Personalisation")
    verbose_name, verbose_name_plural = _("block"), _("blocks")
    header_icon = "crosshairs"
    results_template_name = "wagtail_crm/content/reports/blocks_results.html"
    index_url_name = f"{NAME}:index"
    index_results_url_name = f"{NAME}:index_results"
    default_ordering = "-total_impressions"
    tie_breakers = ("page_id", "block_id")
    columns = [
        TitleColumn("name", label=_("Block"), get_url=lambda row: row.detail_url),
        TitleColumn(
            "page_title", label=_("Page"), get_url=lambda row: row.page_edit_url, sort_key="page__title"
        ),
        NumberColumn("impressions", label=_("Impressions"), sort_key="total_impressions"),
        NumberColumn("conversions", label=_("Conversions"), sort_key="total_conversions"),
        Column("rate", label=_("Conversion rate"), accessor="rate_text", sort_key="rate"),
    ]
    list_export = ["page_title", "name", "block_id", "impressions", "conversions", "rate_percent"]
    export_headings = {
        "page_title": _("Page"),
        "name": _("Block"),
        "block_id": _("Block id"),
        "impressions": _("Impressions"),
        "conversions": _("Conversions"),
        "rate_percent": _("Conversion rate (%)"),
    }
    export_filename = "personalisation-report"

    def get_queryset(self):
        rows = self.stats().values("page_id", "page__title", "block_id")
        return self.order_queryset(with_totals(rows))

    def make_rows(self, object_list):
        pages = specific_pages({row["page_id"] for row in object_list})
        infos = {page_id: page_blocks(page) for page_id, page in pages.items()}
        return [
            BlockRow(
                page_id=row["page_id"],
                page_title=row["page__title"],
                block_id=row["block_id"],
                name=_block_name(infos.get(row["page_id"], {}).get(row["block_id"])),
                impressions=row["total_impressions"],
                conversions=row["total_conversions"],
                rate=row["rate"],
            )
            for row in object_list
        ]


def _block_name(info):
    return info.name if info is not None else _("Removed block")


# -- one block: a row per variant, and the daily numbers ------------------------------------------------


@dataclass
class VariantRow:
    variant: str
    label: str
    impressions: int
    conversions: int
    rate: float | None
    goal: str

    @property
    def rate_text(self):
        return rate_text(self.rate)

    @property
    def rate_percent(self):
        return None if self.rate is None else round(self.rate * 100, 2)


class BlockReportView(StatsReportMixin, FormulaSafeExportMixin, ReportView):
    model = VariantStats
    verbose_name, verbose_name_plural = _("variant"), _("variants")
    permission_required = "view"
    header_icon = "crosshairs"
    results_template_name = "wagtail_crm/content/reports/variants_results.html"
    paginate_by = None  # a handful of variants
    tie_breakers = ("variant",)
    columns = [
        Column("label", label=_("Variant")),
        NumberColumn("impressions", label=_("Impressions"), sort_key="total_impressions"),
        NumberColumn("conversions", label=_("Conversions"), sort_key="total_conversions"),
        Column("rate", label=_("Conversion rate"), accessor="rate_text", sort_key="rate"),
        Column("goal", label=_("Goal")),
    ]
    list_export = ["label", "variant", "impressions", "conversions", "rate_percent", "goal"]
    export_headings = {
        "label": _("Variant"),
        "variant": _("Variant id"),
        "impressions": _("Impressions"),
        "conversions": _("Conversions"),
        "rate_percent": _("Conversion rate (%)"),
        "goal": _("Goal"),
    }
    export_filename = "personalisation-block-report"

    @cached_property
    def page(self):
        page = specific_pages([self.kwargs["page_id"]]).get(self.kwargs["page_id"])
        if page is None:
            raise Http404(_("This page no longer exists."))
        return page

    @cached_property
    def block(self):
        return page_blocks(self.page).get(self.kwargs["block_id"])

    @cached_property
    def labels(self):
        return variant_labels(self.block) if self.block is not None else {}

    def get_page_title(self):
        return _block_name(self.block)

    def get_page_subtitle(self):
        return self.page.get_admin_display_title()

    def get_breadcrumbs_items(self):
        listing = {"url": reverse(f"{NAME}:index"), "label": _("Personalisation")}
        return [
            *self.breadcrumbs_items,
            listing,
            {"url": "", "label": self.get_page_title(), "sublabel": self.get_page_subtitle()},
        ]

    def get_index_url(self):
        return reverse(f"{NAME}:block", args=[self.page.pk, self.kwargs["block_id"]])

    def get_index_results_url(self):
        name = f"{NAME}:block_results"
        return reverse(name, args=[self.page.pk, self.kwargs["block_id"]])

    def block_stats(self):
        return self.stats().filter(page_id=self.page.pk, block_id=self.kwargs["block_id"])

    def get_queryset(self):
        return self.order_queryset(with_totals(self.block_stats().values("variant")))

    def label(self, variant):
        return self.labels.get(variant) or _("Removed variant")

    def make_rows(self, object_list):
        goal = goal_text(self.block) if self.block is not None else ""
        rows = [
            VariantRow(
                variant=row["variant"],
                label=self.label(row["variant"]),
                impressions=row["total_impressions"],
                conversions=row["total_conversions"],
                rate=row["rate"],
                goal=goal,
            )
            for row in object_list
        ]
        # Variants nobody has seen yet (in this date range) are listed too, with nothing counted.
        counted = {row.variant for row in rows}
        rows += [
            VariantRow(variant=key, label=label, impressions=0, conversions=0, rate=None, goal=goal)
            for key, label in self.labels.items()
            if key not in counted
        ]
        if not self.ordering:  # editor order: variants, then the default, then removed ones
            order = {key: position for position, key in enumerate(self.labels)}
            rows.sort(key=lambda row: (order.get(row.variant, len(order)), row.variant))
        return rows

    def get_context_data(self, *args, **kwargs):
        context = super().get_context_data(*args, **kwargs)
        context["page"] = self.page
        context["goal"] = goal_text(self.block) if self.block is not None else None
        if self.rows:
            context["daily"] = self.daily(self.rows)
        return context

    def daily(self, rows):
        """Charts and a table of the daily numbers, one series per variant listed in ``rows``."""
        since, until = self.date_range
        days = [since + timedelta(days=n) for n in range((until - since).days + 1)]
        index = {day: n for n, day in enumerate(days)}
        variants = [row.variant for row in rows]
        series = {variant: ([0] * len(days), [0] * len(days)) for variant in variants}
        for day, variant, impressions, conversions in self.block_stats().values_list(
            "day", "variant", "impressions", "conversions"
        ):
            if variant in series:
                series[variant][0][index[day]] = impressions
                series[variant][1][index[day]] = conversions
        lines = [(row.label, PALETTE[n % len(PALETTE)], series[row.variant]) for n, row in enumerate(rows)]
        return {
            "charts": [
                line_chart(
                    "impressions", _("Impressions per day"), days, [(lb, c, s[0]) for lb, c, s in lines]
                ),
                line_chart(
                    "conversions", _("Conversions per day"), days, [(lb, c, s[1]) for lb, c, s in lines]
                ),
            ],
            "legend": [(label, colour) for label, colour, _series in lines],
            "table": [
                (day, [(series[v][0][n], series[v][1][n]) for v in variants]) for n, day in enumerate(days)
            ],
            "labels": [row.label for row in rows],
        }


# -- charts: server-rendered SVG, no script -------------------------------------------------------------

PALETTE = ("#007d7e", "#cd4444", "#5c4ba8", "#b07d00", "#1d6fa5", "#4d7c0f", "#a3489b", "#6b6b6b")
WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 12, 28
MAX_DOTS_DAYS = 62  # beyond two months, dots would merge into the line


def _nice_ceiling(value):
    """The smallest 1, 2 or 5 × 10ⁿ at or above ``value`` (at least 1): a readable top for the y axis."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def line_chart(slug, title, days, series):
    """What ``reports/_chart.html`` draws: one polyline per ``(label, colour, values)``, axes and ticks."""
    top = _nice_ceiling(max((max(values, default=0) for _label, _colour, values in series), default=0))
    width, height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(n):
        return LEFT + (width * n / (len(days) - 1) if len(days) > 1 else width / 2)

    def y(value):
        return TOP + height * (1 - value / top)

    # Coordinates are formatted here: a template would localise them ("12,5" is no SVG number).
    lines = []
    for label, colour, values in series:
        points = [(f"{x(n):.1f}", f"{y(value):.1f}") for n, value in enumerate(values)]
        dots = []
        if len(days) <= MAX_DOTS_DAYS:
            dots = [
                (px, py, f"{date_format(days[n])}: {intcomma(values[n])}")
                for n, (px, py) in enumerate(points)
            ]
        lines.append(
            {
                "label": label,
                "colour": colour,
                "points": " ".join(f"{px},{py}" for px, py in points),
                "dots": dots,
            }
        )
    y_ticks = [(f"{y(value):.1f}", intcomma(value)) for value in sorted({0, top // 2, top})]
    last = len(days) - 1
    anchors = {0: "start", last: "end"} if last else {0: "middle"}  # the end labels stay inside the chart
    x_ticks = [
        (f"{x(n):.1f}", date_format(days[n], "j M"), anchors.get(n, "middle"))
        for n in sorted({0, last // 2, last})
    ]
    return {
        "id": f"wagtail-crm-chart-{slug}",
        "title": title,
        "view_box": f"0 0 {WIDTH} {HEIGHT}",
        "left": str(LEFT),
        "right": str(WIDTH - RIGHT),
        "tick_x": str(LEFT - 6),
        "label_y": str(HEIGHT - 6),
        "lines": lines,
        "y_ticks": y_ticks,
        "x_ticks": x_ticks,
    }


# -- registration ---------------------------------------------------------------------------------------


class ReportMenuItem(MenuItem):
    def is_shown(self, request):
        return user_can_view(request.user)


def view_permission():
    """``view_variantstats``, offered on the group edit page so that editors can be given the report."""
    content_type = ContentType.objects.get_for_model(VariantStats)
    return Permission.objects.filter(content_type=content_type, codename="view_variantstats")


class PersonalisationReportViewSet(ViewSet):
    name = NAME
    url_prefix = "crm/personalisation"
    icon = "crosshairs"
    menu_label = _("Personalisation")
    menu_name = NAME
    menu_hook = CRM_MENU_HOOK  # in the CRM menu group (admin_viewsets.CRMViewSetGroup)
    menu_order = 400
    menu_item_class = ReportMenuItem

    def get_urlpatterns(self):
        index, block = PersonalisationReportView, BlockReportView
        return [
            path("", index.as_view(), name="index"),
            path("results/", index.as_view(results_only=True), name="index_results"),
            path("<int:page_id>/<str:block_id>/", block.as_view(), name="block"),
            path(
                "<int:page_id>/<str:block_id>/results/",
                block.as_view(results_only=True),
                name="block_results",
            ),
        ]

    def on_register(self):
        super().on_register()
        hooks.register("register_permissions", view_permission)
