"""Admin views for visitor profiles and their timeline. The viewsets in ``wagtail_crm.admin_viewsets`` wire them."""

import base64
import json
from urllib.parse import urlencode

from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import FormView
from wagtail.admin import messages
from wagtail.admin.admin_url_finder import AdminURLFinder
from wagtail.admin.paginator import WagtailPaginator
from wagtail.admin.ui.menus import MenuItem
from wagtail.admin.ui.tables import Column, DateColumn, NumberColumn, TitleColumn
from wagtail.admin.views.generic import CreateView, DeleteView, EditView, IndexView, InspectView
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.widgets.button import HeaderButton
from wagtail.permissions import policy_registry

from wagtail_crm.conf import get_setting
from wagtail_crm.profiles import importers
from wagtail_crm.profiles.forms import ImportTransactionsForm, OfflineInteractionForm, max_upload_size
from wagtail_crm.profiles.ingest import ATTRIBUTION_FIELDS, ingest_events
from wagtail_crm.profiles.models import Channel, Interaction, VisitorProfile
from wagtail_crm.segments import views as segment_views
from wagtail_crm.segments.models import Segment

# How many unmatched / invalid rows the import result page lists (the CSV downloads have them all).
RESULT_ROWS_SHOWN = 500


def user_can(user, model, action):
    return policy_registry.get_by_type(model).user_has_permission(user, action)


def user_can_view_profiles(user):
    return policy_registry.get_by_type(VisitorProfile).user_has_any_permission(
        user, ["add", "change", "delete", "view"]
    )


def user_can_record_interactions(user):
    """Recording offline interactions needs ``wagtail_crm.add_interaction`` and access to profiles."""
    return user_can(user, Interaction, "add") and user_can_view_profiles(user)


class FormulaSafeExportMixin:
    """CSV exports: text that a spreadsheet would run as a formula (=, +, -, @) is prefixed with a quote.

    Wagtail's XLSX export already stores such values as text cells; CSV has no cell types.
    """

    def preprocess_field_value(self, field, value, export_format):
        value = super().preprocess_field_value(field, value, export_format)
        if export_format == self.FORMAT_CSV:
            value = importers.escape_spreadsheet_value(value)
        return value


# --- timeline entries -------------------------------------------------------------------------------------

# Data keys shown first, in this order; other scalar keys follow.
DETAIL_KEYS = (
    "amount",
    "reference",
    "order_id",
    "note",
    "outcome",
    "points",
    "survey",
    "path",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "referrer_host",
    "landing_page",
    "offer_code",
)
HIDDEN_KEYS = {"currency", "source", "title", "answers"}
MAX_DETAILS = 8
MAX_VALUE_LENGTH = 200


def _short(value):
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    value = str(value)
    return value if len(value) <= MAX_VALUE_LENGTH else value[: MAX_VALUE_LENGTH - 1] + "…"


def interaction_details(interaction):
    """The key facts of an interaction's data as ``(label, value)`` pairs, for listings and the timeline."""
    data = interaction.data if isinstance(interaction.data, dict) else {}
    keys = [key for key in DETAIL_KEYS if key in data]
    keys += sorted(key for key in data if key not in DETAIL_KEYS and key not in HIDDEN_KEYS)
    details = []
    for key in keys:
        value = data[key]
        if value in (None, "", [], {}):
            continue
        if key == "amount" and data.get("currency"):
            value = f"{value} {data['currency']}"
        details.append((capfirst(key.replace("_", " ")), _short(value)))
        if len(details) >= MAX_DETAILS:
            break
    if isinstance(data.get("answers"), dict) and len(details) < MAX_DETAILS:
        details.append((_("Answers"), str(len(data["answers"]))))
    return details


def interaction_summary(interaction):
    return "; ".join(f"{label}: {value}" for label, value in interaction_details(interaction))


def channel_label(value):
    try:
        return Channel(value).label
    except ValueError:
        return value


class TimelineEntry:
    def __init__(self, interaction, request):
        self.interaction = interaction
        self.kind = interaction.kind
        self.kind_label = interaction.get_kind_display()
        self.channel = interaction.channel
        self.channel_label = channel_label(interaction.channel)
        self.occurred_at = interaction.occurred_at
        self.details = interaction_details(interaction)
        self.recorded_by = interaction.recorded_by
        self.page = interaction.page
        self.page_url = None
        if self.page is not None:
            self.page_url = self.page.get_url(request)


# --- profiles ---------------------------------------------------------------------------------------------


def live_profiles():
    """Profiles staff work with: merge tombstones are bookkeeping and never listed."""
    return VisitorProfile.objects.filter(merged_into__isnull=True)


class ProfileIndexView(FormulaSafeExportMixin, IndexView):
    import_url_name = None
    add_interaction_url_name = None
    default_ordering = "-last_seen"

    def get_base_queryset(self):
        return super().get_base_queryset().filter(merged_into__isnull=True).select_related("user")

    def search_queryset(self, queryset):
        # Every word must match a name, the email or the phone: "ann smith" finds Ann Smith.
        if not self.is_searching:
            return queryset
        queryset = queryset.annotate(phone_digits=importers.phone_digits_expression())
        for term in self.search_query.split()[:10]:
            query = Q()
            for field in self.search_fields or ():
                query |= Q(**{f"{field}__icontains": term})
            digits = importers.normalise_phone(term)
            if len(digits) >= 3:
                query |= Q(phone_digits__contains=digits)  # "07700900123" finds "07700 900 123"
            queryset = queryset.filter(query)
        return queryset

    @cached_property
    def columns(self):
        title_column_class = self._get_title_column_class(TitleColumn)
        return [
            title_column_class(
                "name",
                label=_("Name"),
                accessor="display_name",
                get_url=self.get_inspect_url,
                sort_key="last_name",
            ),
            Column("email", label=_("Email"), sort_key="email"),
            Column("phone", label=_("Phone")),
            Column("first_utm_source", label=_("Source"), sort_key="first_utm_source"),
            Column("last_utm_campaign", label=_("Campaign"), sort_key="last_utm_campaign"),
            NumberColumn("visit_count", label=_("Visits"), sort_key="visit_count"),
            DateColumn("last_seen", label=_("Last seen"), sort_key="last_seen"),
        ]

    def to_row_dict(self, item):
        facts = item.facts if isinstance(item.facts, dict) else {}
        row = {}
        for field in self.list_export:
            if field in ("orders", "spend", "points"):
                row[field] = facts.get(field, 0)
            elif field == "user":
                row[field] = item.user.get_username() if item.user_id and item.user else ""
            else:
                row[field] = getattr(item, field)
        return row

    def get_list_more_buttons(self, instance):
        buttons = super().get_list_more_buttons(instance)
        if self.add_interaction_url_name and user_can_record_interactions(self.request.user):
            buttons.append(
                MenuItem(
                    _("Add offline interaction"),
                    url=reverse(self.add_interaction_url_name, args=(quote(instance.pk),)),
                    icon_name="plus",
                    priority=25,
                )
            )
        return buttons

    @cached_property
    def header_buttons(self):
        buttons = super().header_buttons
        if self.import_url_name and user_can_record_interactions(self.request.user):
            buttons = [
                *buttons,
                HeaderButton(
                    _("Import offline transactions"),
                    url=reverse(self.import_url_name),
                    icon_name="upload",
                ),
            ]
        return buttons


class ProfileCreateView(CreateView):
    """Add a customer known only offline (a shop or phone customer) so their purchases can be recorded."""

    inspect_url_name = None

    def get_success_url(self):
        if self.inspect_url_name:
            return reverse(self.inspect_url_name, args=(quote(self.object.pk),))
        return super().get_success_url()


class ProfileEditView(EditView):
    def get_queryset(self):
        return live_profiles()


class ProfileDeleteView(DeleteView):
    # A merge tombstone forwards late events to the profile it joined: it goes when that profile goes.
    def get_queryset(self):
        return live_profiles()


class ProfileDetailView(InspectView):
    """A profile at a glance: contact details, consent, attribution, visits and the timeline."""

    template_name = "wagtail_crm/profiles/detail.html"
    page_title = gettext_lazy("Visitor profile")
    header_icon = "user"
    inspect_url_name = None
    add_interaction_url_name = None

    def get_object(self, queryset=None):
        return get_object_or_404(VisitorProfile.objects.select_related("user"), pk=unquote(str(self.pk)))

    def get(self, request, *args, **kwargs):
        if self.object.merged_into_id:
            # An old link to a profile that was merged at login: show the profile it lives on in.
            survivor = self.object
            for _step in range(20):
                if not survivor.merged_into_id:
                    break
                survivor = VisitorProfile.objects.get(pk=survivor.merged_into_id)
            else:
                raise Http404
            return redirect(reverse(self.inspect_url_name, args=(quote(survivor.pk),)))
        return super().get(request, *args, **kwargs)

    def get_fields(self):
        return []  # the template lays out its own sections

    def get_add_interaction_url(self):
        if self.add_interaction_url_name and user_can_record_interactions(self.request.user):
            return reverse(self.add_interaction_url_name, args=(quote(self.object.pk),))

    def get_preview_as_url(self):
        """ "Preview the site as this visitor": the site's home page in the "Preview as…" view, if allowed."""
        from wagtail.models import Site

        from wagtail_crm.segments.preview_views import can_preview_as_profile, can_preview_page

        site = Site.find_for_request(self.request)
        if site is None or not can_preview_as_profile(self.request.user):
            return None
        home = site.root_page.specific
        if not can_preview_page(self.request.user, home):
            return None
        url = reverse("wagtail_crm_preview:preview_as", args=(home.pk,))
        return f"{url}?{urlencode({'profile': self.object.pk})}"

    @cached_property
    def header_buttons(self):
        buttons = []
        url = self.get_add_interaction_url()
        if url:
            buttons.append(HeaderButton(_("Add offline interaction"), url=url, icon_name="plus"))
        preview_url = self.get_preview_as_url()
        if preview_url:
            buttons.append(
                HeaderButton(_("Preview the site as this visitor"), url=preview_url, icon_name="view")
            )
        return buttons

    def get_page_subtitle(self):
        return self.object.display_name

    def _field_rows(self, names):
        opts = VisitorProfile._meta
        return [(capfirst(opts.get_field(name).verbose_name), getattr(self.object, name)) for name in names]

    def get_attribution(self):
        profile = self.object
        labels = {
            "utm_source": _("Source"),
            "utm_medium": _("Medium"),
            "utm_campaign": _("Campaign"),
            "utm_term": _("Term"),
            "utm_content": _("Content"),
            "referrer_host": _("Referrer"),
            "landing_page": _("Landing page"),
            "offer_code": _("Offer code"),
        }
        rows = [
            (labels[name], getattr(profile, f"first_{name}"), getattr(profile, f"last_{name}"))
            for name in ATTRIBUTION_FIELDS
        ]
        rows.append((_("When"), profile.first_touch_at, profile.last_touch_at))
        return rows

    def get_timeline(self):
        queryset = self.object.interactions.select_related("page", "recorded_by").order_by(
            "-occurred_at", "-id"
        )
        paginator = WagtailPaginator(queryset, get_setting("TIMELINE_PAGE_SIZE"))
        page = paginator.get_page(self.request.GET.get("p"))
        entries = [TimelineEntry(interaction, self.request) for interaction in page.object_list]
        return paginator, page, entries

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        profile = self.object
        facts = profile.facts if isinstance(profile.facts, dict) else {}
        paginator, page, entries = self.get_timeline()
        context.update(
            {
                "profile": profile,
                "contact": self._field_rows(["first_name", "last_name", "email", "phone"]),
                "consent": [
                    (_("Email"), profile.email_consent, profile.email_consent_at),
                    (_("Phone"), profile.phone_consent, profile.phone_consent_at),
                ],
                "attribution": self.get_attribution(),
                "stats": [
                    (_("Visits"), profile.visit_count),
                    (_("First seen"), profile.first_seen),
                    (_("Last seen"), profile.last_seen),
                    (_("Orders"), facts.get("orders", 0)),
                    (_("Total spend"), facts.get("spend", 0)),
                    (_("Interactions"), paginator.count),
                ],
                "timeline_page": page,
                "timeline_entries": entries,
                "elided_page_range": paginator.get_elided_page_range(page.number),
                "add_interaction_url": self.get_add_interaction_url(),
                "edit_url": self.get_edit_url(),
            }
        )
        context.update(self.get_segments_context())
        return context

    # Segments: which ones the visitor is in, and why (or why not) for the one chosen with ?segment=<id>.

    segment_param = "segment"

    def get_segments_context(self):
        if not segment_views.user_can_view_segments(self.request.user):
            return {}
        profile = self.object
        now = timezone.now()
        segments = list(Segment.objects.order_by("name", "pk"))
        memberships = segment_views.memberships(profile, segments, now)
        url_finder = AdminURLFinder(self.request.user)
        for membership in memberships:
            membership.edit_url = url_finder.get_edit_url(membership.segment)
        chosen_id = self.request.GET.get(self.segment_param, "")
        chosen = next((s for s in segments if chosen_id.isdecimal() and s.pk == int(chosen_id)), None)
        return {
            "show_segments": True,
            "segment_memberships": memberships,
            "segment_member_count": sum(1 for membership in memberships if membership.is_member),
            "segment_param": self.segment_param,
            "chosen_segment": chosen,
            "segment_explanation": segment_views.explain_membership(chosen, profile, now) if chosen else None,
            "segment_not_found": bool(chosen_id) and chosen is None,
        }


class ProfileActionMixin(WagtailAdminTemplateMixin):
    """Shared by the staff-only forms reached from the profiles listing: permissions and breadcrumbs."""

    model = VisitorProfile
    index_url_name = None
    inspect_url_name = None
    header_icon = "user"

    def dispatch(self, request, *args, **kwargs):
        if not user_can_record_interactions(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def get_index_breadcrumbs(self):
        return [
            *self.breadcrumbs_items,
            {
                "url": reverse(self.index_url_name),
                "label": capfirst(VisitorProfile._meta.verbose_name_plural),
            },
        ]


class AddInteractionView(ProfileActionMixin, FormView):
    """Record a purchase in the shop, a phone call or a letter on a profile's timeline."""

    template_name = "wagtail_crm/profiles/add_interaction.html"
    form_class = OfflineInteractionForm
    page_title = gettext_lazy("Add offline interaction")
    add_interaction_url_name = None

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.profile = get_object_or_404(live_profiles(), pk=unquote(str(kwargs["pk"])))

    def get_page_subtitle(self):
        return self.profile.display_name

    def get_breadcrumbs_items(self):
        return [
            *self.get_index_breadcrumbs(),
            {"url": self.get_profile_url(), "label": self.profile.display_name},
            {"url": "", "label": self.get_page_title()},
        ]

    def get_profile_url(self):
        return reverse(self.inspect_url_name, args=(quote(self.profile.pk),))

    def form_valid(self, form):
        written = ingest_events([form.get_event(self.profile, self.request.user)])
        if written:
            messages.success(
                self.request,
                _("%(kind)s recorded for %(name)s.")
                % {
                    "kind": capfirst(Interaction(kind=form.get_kind()).get_kind_display()),
                    "name": self.profile,
                },
            )
        else:
            messages.warning(self.request, _("This interaction had already been recorded."))
        return redirect(self.get_profile_url())

    def form_invalid(self, form):
        messages.error(self.request, _("The interaction could not be recorded due to errors."))
        return super().form_invalid(form)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            {
                "profile": self.profile,
                "action_url": self.request.path,
                "submit_button_label": _("Add interaction"),
                "submit_button_active_label": _("Adding…"),
                "media": context["form"].media,
            }
        )
        return context


class ImportTransactionsView(ProfileActionMixin, FormView):
    """Upload a CSV of offline transactions; show what was imported and every row that was not."""

    template_name = "wagtail_crm/profiles/import.html"
    result_template_name = "wagtail_crm/profiles/import_result.html"
    form_class = ImportTransactionsForm
    page_title = gettext_lazy("Import offline transactions")
    header_icon = "upload"

    def get_breadcrumbs_items(self):
        return [*self.get_index_breadcrumbs(), {"url": "", "label": self.get_page_title()}]

    def form_valid(self, form):
        try:
            result = importers.import_offline_transactions(
                form.cleaned_data["file"], recorded_by=self.request.user
            )
        except importers.ImportFileError as exc:
            form.add_error("file", str(exc))
            return self.form_invalid(form)
        if result.imported:
            messages.success(
                self.request,
                _("%(count)s transaction(s) imported.") % {"count": result.imported},
            )
        context = self.get_context_data(form=form)
        context.update(
            {
                "result": result,
                "unmatched_shown": result.unmatched[:RESULT_ROWS_SHOWN],
                "errors_shown": result.errors[:RESULT_ROWS_SHOWN],
                "rows_shown_limit": RESULT_ROWS_SHOWN,
                "unmatched_csv_url": _csv_data_url(result.unmatched_csv()) if result.unmatched else "",
                "errors_csv_url": _csv_data_url(result.errors_csv()) if result.errors else "",
                "import_url": self.request.path,
                "index_url": reverse(self.index_url_name),
                "filename_stem": timezone.localtime().strftime("%Y%m%d-%H%M"),
            }
        )
        return TemplateResponse(self.request, self.result_template_name, context)

    def form_invalid(self, form):
        messages.error(self.request, _("The file could not be imported."))
        return super().form_invalid(form)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            {
                "action_url": self.request.path,
                "submit_button_label": _("Import"),
                "submit_button_active_label": _("Importing…"),
                "columns": importers.COLUMNS,
                "channels": importers.IMPORT_CHANNELS,
                "max_upload_mb": importers._megabytes(max_upload_size()),
                "form_is_multipart": True,
            }
        )
        return context


def _csv_data_url(text):
    """A ``data:`` URL for a CSV download, so the result needs no server-side storage of personal data."""
    payload = base64.b64encode(("\ufeff" + text).encode("utf-8")).decode("ascii")
    return f"data:text/csv;charset=utf-8;base64,{payload}"


# --- interactions (read-only) -----------------------------------------------------------------------------


class InteractionIndexView(FormulaSafeExportMixin, IndexView):
    profile_inspect_url_name = None
    default_ordering = "-occurred_at"

    def get_base_queryset(self):
        return super().get_base_queryset().select_related("profile", "profile__user", "page", "recorded_by")

    def get_profile_url(self, instance):
        if self.profile_inspect_url_name and user_can_view_profiles(self.request.user):
            return reverse(self.profile_inspect_url_name, args=(quote(instance.profile_id),))

    @cached_property
    def columns(self):
        title_column_class = self._get_title_column_class(TitleColumn)
        return [
            title_column_class(
                "kind",
                label=_("Kind"),
                accessor="get_kind_display",
                get_url=self.get_inspect_url,
                sort_key="kind",
            ),
            TitleColumn("profile", label=_("Profile"), accessor="profile", get_url=self.get_profile_url),
            Column("channel", label=_("Channel"), accessor="get_channel_display", sort_key="channel"),
            DateColumn("occurred_at", label=_("When"), sort_key="occurred_at"),
            Column("page", label=_("Page"), accessor=lambda i: i.page.title if i.page else ""),
            Column("details", label=_("Details"), accessor=interaction_summary),
        ]

    def to_row_dict(self, item):
        row = {}
        for field in self.list_export:
            if field == "profile":
                row[field] = item.profile.display_name
            elif field == "profile_email":
                row[field] = item.profile.email
            elif field == "page":
                row[field] = item.page.url_path if item.page else ""
            elif field == "data":
                row[field] = json.dumps(item.data, ensure_ascii=False, sort_keys=True)
            elif field == "recorded_by":
                row[field] = item.recorded_by.get_username() if item.recorded_by else ""
            else:
                row[field] = getattr(item, field)
        return row


class InteractionInspectView(InspectView):
    profile_inspect_url_name = None

    def get_object(self, queryset=None):
        return get_object_or_404(
            Interaction.objects.select_related("profile", "page", "recorded_by"), pk=unquote(str(self.pk))
        )

    def get_profile_display_value(self):
        profile = self.object.profile
        if self.profile_inspect_url_name and user_can_view_profiles(self.request.user):
            url = reverse(self.profile_inspect_url_name, args=(quote(profile.pk),))
            return format_html('<a href="{}">{}</a>', url, profile.display_name)
        return profile.display_name

    def get_page_display_value(self):
        page = self.object.page
        if page is None:
            return "-"
        url = page.get_url(self.request)
        return format_html('<a href="{}">{}</a>', url, page.title) if url else page.title

    def get_data_display_value(self):
        return format_html(
            "<pre>{}</pre>", json.dumps(self.object.data, indent=2, ensure_ascii=False, sort_keys=True)
        )
