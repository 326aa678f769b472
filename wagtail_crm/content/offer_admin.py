"""Offer code pools in the admin: a snippet listing with how many codes are issued, redeemed and free, and an
"Upload codes" view that adds codes to a pool from pasted text or a .txt/.csv file."""

import csv
import io
import unicodedata
from dataclasses import dataclass

from django import forms
from django.contrib.humanize.templatetags.humanize import intcomma
from django.core.exceptions import ValidationError
from django.core.validators import FileExtensionValidator
from django.db import transaction
from django.db.models import Count, F, Q
from django.shortcuts import get_object_or_404, redirect
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.generic import FormView
from wagtail.admin import messages
from wagtail.admin.panels import FieldPanel
from wagtail.admin.ui.tables import Column
from wagtail.admin.views.generic import WagtailAdminTemplateMixin
from wagtail.admin.views.generic.permissions import PermissionCheckedMixin
from wagtail.admin.widgets.button import HeaderButton
from wagtail.admin.widgets.button import MenuItem as ButtonMenuItem
from wagtail.snippets.views.snippets import EditView, IndexView, SnippetViewSet

from wagtail_crm.admin_viewsets import CRM_MENU_HOOK
from wagtail_crm.conf import get_setting
from wagtail_crm.content.models import OfferCode, OfferCodePool

CODE_MAX_LENGTH = OfferCode._meta.get_field("code").max_length
INSERT_BATCH_SIZE = 1000
# Codes looked up per query when checking which are already in the pool (well under SQLite's variable limit).
LOOKUP_BATCH_SIZE = 500
ERRORS_SHOWN = 10
UPLOAD_PERMISSIONS = ["add", "change"]


def user_can_upload_codes(user):
    from wagtail.permissions import policy_registry

    return policy_registry.get_by_type(OfferCodePool).user_has_any_permission(user, UPLOAD_PERMISSIONS)


# -- reading an upload --------------------------------------------------------------------------------------


def _text_lines(text):
    return enumerate(text.splitlines(), start=1)


def _csv_lines(text):
    """``(line number, first column)`` of each row; a first row that is just a ``code`` heading is skipped."""
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count) if any(d in first_line for d in ",;\t") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    for row in reader:
        value = row[0] if row else ""
        if reader.line_num == 1 and value.strip().lower() == "code":
            continue
        yield reader.line_num, value


def read_codes(lines):
    """The codes in ``lines`` (``(line number, text)``), trimmed, without blank lines; raises a
    ``ValidationError`` naming the lines of codes that cannot be stored (shown under the field they came from)."""
    codes, errors = [], []
    for number, value in lines:
        code = value.strip()
        if not code:
            continue
        if len(code) > CODE_MAX_LENGTH:
            errors.append(
                _("Line %(line)d: the code is longer than %(max)d characters.")
                % {"line": number, "max": CODE_MAX_LENGTH}
            )
        elif any(unicodedata.category(char) == "Cc" for char in code):
            errors.append(_("Line %(line)d: the code contains a control character.") % {"line": number})
        else:
            codes.append(code)
    if errors:
        more = len(errors) - ERRORS_SHOWN
        shown = errors[:ERRORS_SHOWN]
        if more > 0:
            shown.append(
                ngettext("… and %(count)d more line.", "… and %(count)d more lines.", more) % {"count": more}
            )
        raise ValidationError(shown)
    return codes


class UploadCodesForm(forms.Form):
    codes = forms.CharField(
        label=gettext_lazy("Codes"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "autocomplete": "off"}),
        help_text=gettext_lazy("One code per line."),
    )
    file = forms.FileField(
        label=gettext_lazy("Or a file"),
        required=False,
        validators=[
            FileExtensionValidator(["txt", "csv"], message=gettext_lazy("Choose a .txt or .csv file."))
        ],
        widget=forms.ClearableFileInput(attrs={"accept": ".txt,.csv,text/plain,text/csv"}),
        help_text=gettext_lazy(
            "A .txt file with one code per line, or a .csv file with the codes in its first column."
        ),
    )

    def clean_codes(self):
        text = self.cleaned_data["codes"]
        if len(text.encode("utf-8")) > get_setting("IMPORT_MAX_UPLOAD_SIZE"):
            raise ValidationError(_("Too many codes to paste at once: upload them as a file."))
        return read_codes(_text_lines(text))

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload:
            return []
        max_size = get_setting("IMPORT_MAX_UPLOAD_SIZE")
        if upload.size > max_size:
            raise ValidationError(
                _("The file is too large (at most %(max)s); split it into smaller files.")
                % {"max": filesizeformat(max_size)}
            )
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError(_("The file is not UTF-8 text; save it as UTF-8 and try again.")) from exc
        try:
            lines = _csv_lines(text) if upload.name.lower().endswith(".csv") else _text_lines(text)
            return read_codes(lines)
        except csv.Error as exc:
            raise ValidationError(
                _("The file is not a readable CSV file: %(error)s") % {"error": exc}
            ) from exc

    def clean(self):
        cleaned_data = super().clean()
        if not self.errors and not cleaned_data.get("codes") and not cleaned_data.get("file"):
            raise ValidationError(_("Paste some codes or choose a file with codes in it."))
        return cleaned_data

    def get_codes(self):
        return [*self.cleaned_data["codes"], *self.cleaned_data["file"]]


@dataclass(frozen=True)
class UploadResult:
    added: int
    duplicates: int


def add_codes(pool, codes):
    """Add ``codes`` to ``pool``, skipping those repeated in ``codes`` or already in the pool."""
    unique = list(dict.fromkeys(codes))
    existing = set()
    for start in range(0, len(unique), LOOKUP_BATCH_SIZE):
        batch = unique[start : start + LOOKUP_BATCH_SIZE]
        existing.update(OfferCode.objects.filter(pool=pool, code__in=batch).values_list("code", flat=True))
    new = [code for code in unique if code not in existing]
    with transaction.atomic():
        # ignore_conflicts: a code another editor uploads at the same moment is stored once.
        OfferCode.objects.bulk_create(
            [OfferCode(pool=pool, code=code) for code in new],
            batch_size=INSERT_BATCH_SIZE,
            ignore_conflicts=True,
        )
    return UploadResult(added=len(new), duplicates=len(codes) - len(new))


# -- views --------------------------------------------------------------------------------------------------


class UploadCodesView(PermissionCheckedMixin, WagtailAdminTemplateMixin, FormView):
    model = OfferCodePool
    any_permission_required = UPLOAD_PERMISSIONS
    form_class = UploadCodesForm
    template_name = "wagtail_crm/content/offers/upload_codes.html"
    page_title = gettext_lazy("Upload codes")
    header_icon = "upload"
    index_url_name = None
    edit_url_name = None

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        self.pool = get_object_or_404(OfferCodePool, pk=kwargs["pk"])

    def get_page_subtitle(self):
        return self.pool.name

    def get_breadcrumbs_items(self):
        return [
            *self.breadcrumbs_items,
            {"url": reverse(self.index_url_name), "label": capfirst(OfferCodePool._meta.verbose_name_plural)},
            {"url": reverse(self.edit_url_name, args=[self.pool.pk]), "label": self.pool.name},
            {"url": "", "label": self.get_page_title()},
        ]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            {
                "pool": self.pool,
                "action_url": self.request.path,
                "submit_button_label": _("Upload"),
                "submit_button_active_label": _("Uploading…"),
                "max_upload_size": filesizeformat(get_setting("IMPORT_MAX_UPLOAD_SIZE")),
                "code_max_length": CODE_MAX_LENGTH,
            }
        )
        return context

    def form_valid(self, form):
        result = add_codes(self.pool, form.get_codes())
        added = ngettext("Added %(count)s code", "Added %(count)s codes", result.added) % {
            "count": intcomma(result.added)
        }
        if result.duplicates:
            added += "; " + ngettext(
                "%(count)s duplicate skipped", "%(count)s duplicates skipped", result.duplicates
            ) % {"count": intcomma(result.duplicates)}
        messages.success(self.request, added + ".")
        return redirect(self.index_url_name)

    def form_invalid(self, form):
        messages.error(self.request, _("The codes could not be uploaded."))
        return super().form_invalid(form)


def _upload_url(url_name, pool):
    return reverse(url_name, args=[pool.pk])


class OfferCodePoolIndexView(IndexView):
    upload_url_name = None

    def get_base_queryset(self):
        # Every count in the same query as the pools: no query per row.
        return (
            super()
            .get_base_queryset()
            .annotate(
                total_codes=Count("codes"),
                issued_codes=Count("codes", filter=Q(codes__issued_at__isnull=False)),
                redeemed_codes=Count("codes", filter=Q(codes__redeemed_at__isnull=False)),
            )
            .annotate(free_codes=F("total_codes") - F("issued_codes"))
        )

    def get_list_more_buttons(self, instance):
        buttons = super().get_list_more_buttons(instance)
        if self.upload_url_name and user_can_upload_codes(self.request.user):
            buttons.append(
                ButtonMenuItem(
                    _("Upload codes"),
                    url=_upload_url(self.upload_url_name, instance),
                    icon_name="upload",
                    priority=15,
                )
            )
        return buttons


class OfferCodePoolEditView(EditView):
    upload_url_name = None

    @cached_property
    def header_buttons(self):
        buttons = list(super().header_buttons)
        if self.upload_url_name and user_can_upload_codes(self.request.user):
            buttons.append(
                HeaderButton(
                    _("Upload codes"), url=_upload_url(self.upload_url_name, self.object), icon_name="upload"
                )
            )
        return buttons


def _count_column(name, label):
    return Column(name, label=label, sort_key=name, accessor=lambda pool: intcomma(getattr(pool, name)))


class OfferCodePoolViewSet(SnippetViewSet):
    model = OfferCodePool
    icon = "tag"
    menu_label = gettext_lazy("Offer codes")
    menu_name = "wagtail_crm_offer_codes"
    # In the "CRM" menu group (wagtail_crm.admin_viewsets.CRMViewSetGroup), not under Snippets.
    menu_hook = CRM_MENU_HOOK
    menu_order = 400
    url_prefix = "crm/offer-codes"
    admin_url_namespace = "wagtail_crm_offer_codes"
    index_view_class = OfferCodePoolIndexView
    edit_view_class = OfferCodePoolEditView
    list_display = [
        "name",
        _count_column("total_codes", gettext_lazy("Codes")),
        _count_column("issued_codes", gettext_lazy("Issued")),
        _count_column("redeemed_codes", gettext_lazy("Redeemed")),
        _count_column("free_codes", gettext_lazy("Free")),
    ]
    search_fields = ["name", "description"]
    search_backend_name = None
    ordering = ["name"]
    panels = [FieldPanel("name"), FieldPanel("description")]

    def get_common_view_kwargs(self, **kwargs):
        return super().get_common_view_kwargs(upload_url_name=self.get_url_name("upload"), **kwargs)

    @property
    def upload_view(self):
        return self.construct_view(UploadCodesView)

    def get_urlpatterns(self):
        return [*super().get_urlpatterns(), path("upload/<int:pk>/", self.upload_view, name="upload")]
