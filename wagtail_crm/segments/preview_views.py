"""The admin's "Preview as…" view: any page, as one or several segments or as one visitor profile.

The form is a GET form, so a preview is a link an editor can share with a colleague. The page's latest
revision is rendered the way Wagtail renders previews (``make_preview_request``), in an iframe below the
form, for a :class:`~wagtail_crm.profiles.visitor.PreviewVisitor`: nothing is recorded, no cookie is set.

Who may use it: whoever may edit or publish the page (like Wagtail's "View draft"). Previewing as a visitor
profile shows what a person sees, so it also needs the permission to view visitor profiles.
"""

import swapper
from django import forms
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.functional import cached_property
from django.utils.translation import gettext, gettext_lazy
from django.views import View
from django.views.generic import TemplateView
from wagtail.admin.ui.menus.pages import PageMenuItem
from wagtail.admin.utils import get_latest_str
from wagtail.admin.views.generic.base import WagtailAdminTemplateMixin
from wagtail.admin.views.pages.utils import get_breadcrumbs_items_for_page
from wagtail.permissions import policy_registry
from wagtail.utils.decorators import xframe_options_sameorigin_override

from wagtail_crm.admin_viewsets import PROFILES
from wagtail_crm.profiles.models import VisitorProfile
from wagtail_crm.profiles.visitor import REQUEST_ATTRIBUTE, PreviewVisitor
from wagtail_crm.segments.models import Segment

app_name = "wagtail_crm_preview"

# Profile numbers are database ids; longer digit strings are visitor ids (32 hex characters).
MAX_PROFILE_NUMBER_DIGITS = 18
# Submitted with the form, so that opening the view with only a pre-filled profile shows the form first.
SUBMIT_PARAM = "preview"


def can_preview_page(user, page):
    """Editors and publishers of the page may preview it (as Wagtail's "View draft" does)."""
    perms = page.permissions_for_user(user)
    return perms.can_edit() or perms.can_publish()


def can_preview_as_profile(user):
    return policy_registry.get_by_type(VisitorProfile).user_has_any_permission(user, ["view", "change"])


def find_profile(text):
    """The visitor profile an editor means by an email address, a visitor id or a profile number.

    Raises ``ValidationError`` with a message for the form when there is no such profile, or several.
    """
    text = text.strip()
    profiles = VisitorProfile.objects.select_related("user")
    if "@" in text:
        matches = list(profiles.filter(email__iexact=text, merged_into__isnull=True)[:2])
        if len(matches) > 1:
            raise ValidationError(
                gettext("Several profiles have this email address: enter a visitor id or profile number."),
                code="ambiguous",
            )
        profile = matches[0] if matches else None
    elif text.isascii() and text.isdigit() and len(text) <= MAX_PROFILE_NUMBER_DIGITS:
        profile = profiles.filter(pk=int(text)).first()
    else:
        profile = profiles.filter(visitor_id=text.lower()).first()
    # An old visitor id may name a profile that was merged at login: preview the person it lives on in.
    for _step in range(20):
        if profile is None or not profile.merged_into_id:
            break
        profile = profiles.filter(pk=profile.merged_into_id).first()
    if profile is None or profile.merged_into_id:
        raise ValidationError(
            gettext("No visitor profile matches “%(text)s”.") % {"text": text}, code="not_found"
        )
    return profile


class SegmentChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj):
        if obj.is_live():
            return obj.name
        return gettext("%(name)s (not live)") % {"name": obj.name}


class PreviewAsForm(forms.Form):
    segments = SegmentChoiceField(
        queryset=Segment.objects.order_by("name", "pk"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label=gettext_lazy("As segments"),
        help_text=gettext_lazy(
            "The page shows what visitors in all of these segments see. Choose none to see what visitors in "
            "no segment see."
        ),
    )
    profile = forms.CharField(
        required=False,
        max_length=254,
        label=gettext_lazy("As visitor profile"),
        help_text=gettext_lazy(
            "An email address, a visitor id or a profile number. Without chosen segments, the page shows "
            "the segments this visitor is in now."
        ),
    )

    def __init__(self, *args, can_choose_profile=True, **kwargs):
        super().__init__(*args, **kwargs)
        if not can_choose_profile:
            del self.fields["profile"]

    def clean_profile(self):
        text = self.cleaned_data["profile"].strip()
        return find_profile(text) if text else None

    def preview_visitor(self, request):
        """The visitor to render the page for (call on a valid form)."""
        segments = list(self.cleaned_data["segments"])
        profile = self.cleaned_data.get("profile")
        if profile is not None and not segments:
            return PreviewVisitor(request, profile=profile)  # segments computed from the profile
        return PreviewVisitor(request, profile=profile, segments=segments)


class PreviewPageMixin:
    """Loads the page (its latest revision) and checks the user may preview it."""

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        Page = swapper.load_model("wagtailcore", "Page")
        page = get_object_or_404(Page.objects.select_related("latest_revision"), pk=kwargs["page_id"])
        self.page = page.get_latest_revision_as_object()

    def dispatch(self, request, *args, **kwargs):
        if not can_preview_page(request.user, self.page):
            raise PermissionDenied
        if not self.page.is_previewable():
            raise Http404("This page cannot be previewed")
        return super().dispatch(request, *args, **kwargs)

    @cached_property
    def can_choose_profile(self):
        return can_preview_as_profile(self.request.user)

    def get_form(self, bound=True):
        data = self.request.GET if bound else None
        return PreviewAsForm(data, can_choose_profile=self.can_choose_profile)


class PreviewAsView(PreviewPageMixin, WagtailAdminTemplateMixin, TemplateView):
    template_name = "wagtail_crm/preview/preview_as.html"
    page_title = gettext_lazy("Preview as…")
    header_icon = "view"

    def get_page_subtitle(self):
        return get_latest_str(self.page)

    def get_breadcrumbs_items(self):
        return [
            *get_breadcrumbs_items_for_page(self.page, self.request.user),
            {"url": "", "label": self.get_page_title()},
        ]

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        submitted = SUBMIT_PARAM in self.request.GET
        form = self.get_form(bound=submitted)
        if not submitted:
            # A link may pre-fill the form (e.g. from a visitor profile: ?profile=<number>).
            form.initial = {
                "segments": self.request.GET.getlist("segments"),
                "profile": self.request.GET.get("profile", ""),
            }
        context.update({"form": form, "page": self.page, "form_url": self.request.path})
        if submitted and form.is_valid():
            visitor = form.preview_visitor(self.request)
            context.update(
                {
                    "render_url": reverse(f"{app_name}:render", args=[self.page.pk])
                    + "?"
                    + self.request.GET.urlencode(),
                    "chosen_segments": form.cleaned_data["segments"],
                    "profile": form.cleaned_data.get("profile"),
                    "visitor_segments": visitor.segments,
                    "profile_url": self.profile_url(form.cleaned_data.get("profile")),
                }
            )
        return context

    def profile_url(self, profile):
        if profile is None:
            return None
        return reverse(f"{PROFILES}:inspect", args=[profile.pk])


@method_decorator(xframe_options_sameorigin_override, name="get")
class PreviewAsRenderView(PreviewPageMixin, View):
    """The preview itself (shown in the iframe of ``PreviewAsView``, or in a tab of its own)."""

    http_method_names = ["get"]

    def get(self, request, *args, **kwargs):
        form = self.get_form()
        if not form.is_valid():
            errors = "; ".join(str(error) for errors in form.errors.values() for error in errors)
            message = gettext("Cannot preview: %(errors)s") % {"errors": errors}
            return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
        # Installed before the middleware runs, so that it sees a visitor it must not track.
        visitor = form.preview_visitor(request)
        return self.page.make_preview_request(
            request, self.page.default_preview_mode, extra_request_attrs={REQUEST_ATTRIBUTE: visitor}
        )


class PreviewAsMenuItem(PageMenuItem):
    """ "Preview as…" in a page's header menu."""

    label = gettext_lazy("Preview as…")
    icon_name = "view"
    url_name = f"{app_name}:preview_as"

    def is_shown(self, user):
        page = self.page
        if page.is_root():
            return False
        return can_preview_page(user, page) and page.specific_deferred.is_previewable()


urlpatterns = [
    path("<int:page_id>/", PreviewAsView.as_view(), name="preview_as"),
    path("<int:page_id>/render/", PreviewAsRenderView.as_view(), name="render"),
]
