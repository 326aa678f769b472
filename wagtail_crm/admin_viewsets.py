"""The CRM area of the Wagtail admin: one "CRM" menu group and the viewsets in it.

Capabilities add their own viewsets to the group in either of two ways:

* list them in ``CRMViewSetGroup.items`` here; or
* register them on their own with ``menu_hook = CRM_MENU_HOOK`` (Wagtail collects them into the group's
  submenu through its ``submenu_hook``). Sites can do the same to put their own views in the CRM menu, or
  return a plain ``MenuItem`` from a function registered with ``@hooks.register(CRM_MENU_HOOK)``.
"""

from django.contrib.auth import get_permission_codename
from django.urls import path
from django.utils.translation import gettext_lazy as _
from wagtail.admin.admin_url_finder import ModelAdminURLFinder
from wagtail.admin.viewsets.base import ViewSetGroup
from wagtail.admin.viewsets.model import ModelViewSet

from wagtail_crm.profiles import admin_views
from wagtail_crm.profiles.filters import InteractionFilterSet, VisitorProfileFilterSet
from wagtail_crm.profiles.forms import profile_edit_handler
from wagtail_crm.profiles.models import Interaction, VisitorProfile

CRM_MENU_HOOK = "register_wagtail_crm_menu_item"

PROFILES = "wagtail_crm_profiles"
INTERACTIONS = "wagtail_crm_interactions"


class VisitorProfileViewSet(ModelViewSet):
    model = VisitorProfile
    name = PROFILES
    url_prefix = "crm/profiles"
    icon = "user"
    menu_label = _("Profiles")
    menu_name = "wagtail_crm_profiles"

    index_view_class = admin_views.ProfileIndexView
    add_view_class = admin_views.ProfileCreateView
    edit_view_class = admin_views.ProfileEditView
    delete_view_class = admin_views.ProfileDeleteView
    inspect_view_class = admin_views.ProfileDetailView
    inspect_view_enabled = True
    copy_view_enabled = False  # a copy of a person is never what anyone wants
    add_to_reference_index = False  # profiles are not content other objects "use"

    edit_handler = profile_edit_handler
    filterset_class = VisitorProfileFilterSet
    # Plain database search (no search index to keep up to date for a table this busy).
    search_fields = ["first_name", "last_name", "email", "phone"]
    search_backend_name = None
    ordering = "-last_seen"
    list_per_page = 50

    list_export = [
        "visitor_id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "user",
        "email_consent",
        "email_consent_at",
        "phone_consent",
        "phone_consent_at",
        "first_seen",
        "last_seen",
        "visit_count",
        "orders",
        "spend",
        "first_utm_source",
        "first_utm_medium",
        "first_utm_campaign",
        "last_utm_source",
        "last_utm_medium",
        "last_utm_campaign",
    ]
    export_headings = {
        "visitor_id": _("Visitor id"),
        "user": _("User"),
        "orders": _("Orders"),
        "spend": _("Total spend"),
    }
    export_filename = "visitor-profiles"

    def get_common_view_kwargs(self, **kwargs):
        return super().get_common_view_kwargs(
            import_url_name=self.get_url_name("import"),
            add_interaction_url_name=self.get_url_name("add_interaction"),
            **kwargs,
        )

    @property
    def add_interaction_view(self):
        return self.construct_view(admin_views.AddInteractionView)

    @property
    def import_view(self):
        return self.construct_view(admin_views.ImportTransactionsView)

    def get_urlpatterns(self):
        return [
            *super().get_urlpatterns(),
            path("import/", self.import_view, name="import"),
            path("add-interaction/<int:pk>/", self.add_interaction_view, name="add_interaction"),
        ]


class InteractionURLFinder(ModelAdminURLFinder):
    """Interactions cannot be edited: "edit" links (e.g. from the log) go to the read-only detail page."""

    edit_url_name = f"{INTERACTIONS}:inspect"

    def get_edit_url(self, instance):
        from wagtail.permissions import policy_registry

        policy = policy_registry.get_by_type(Interaction)
        if self.user and not policy.user_has_any_permission(self.user, ["add", "view"]):
            return None
        return self.construct_edit_url(instance)


class InteractionViewSet(ModelViewSet):
    """The timeline of every profile in one listing. Read-only: interactions are append-only."""

    model = Interaction
    name = INTERACTIONS
    url_prefix = "crm/interactions"
    icon = "list-ul"
    menu_label = _("Interactions")
    menu_name = "wagtail_crm_interactions"

    index_view_class = admin_views.InteractionIndexView
    inspect_view_class = admin_views.InteractionInspectView
    inspect_view_enabled = True
    copy_view_enabled = False
    add_to_reference_index = False  # millions of page views: never worth indexing their references
    url_finder_class = InteractionURLFinder

    filterset_class = InteractionFilterSet
    ordering = "-occurred_at"
    list_per_page = 50
    inspect_view_fields = [
        "profile",
        "kind",
        "channel",
        "occurred_at",
        "page",
        "data",
        "recorded_by",
        "created_at",
        "event_id",
    ]
    list_export = [
        "occurred_at",
        "profile",
        "profile_email",
        "kind",
        "channel",
        "page",
        "data",
        "recorded_by",
        "event_id",
    ]
    export_headings = {"profile": _("Profile"), "profile_email": _("Email"), "page": _("Page")}
    export_filename = "interactions"

    def get_common_view_kwargs(self, **kwargs):
        view_kwargs = super().get_common_view_kwargs(
            profile_inspect_url_name=f"{PROFILES}:inspect",
            **kwargs,
        )
        # No add, edit, delete, copy or history views: nothing links to them.
        for name in ("add_url_name", "edit_url_name", "delete_url_name", "copy_url_name", "history_url_name"):
            view_kwargs[name] = None
        view_kwargs["usage_url_name"] = None
        return view_kwargs

    def get_urlpatterns(self):
        return [
            path("", self.index_view, name="index"),
            path("results/", self.index_results_view, name="index_results"),
            path("inspect/<int:pk>/", self.inspect_view, name="inspect"),
        ]

    def get_permissions_to_register(self):
        # "Add" lets staff record offline interactions; "view" opens this listing. Nobody changes or deletes.
        codenames = [get_permission_codename(action, self.model_opts) for action in ("add", "view")]
        return super().get_permissions_to_register().filter(codename__in=codenames)


class CRMViewSetGroup(ViewSetGroup):
    menu_label = _("CRM")
    menu_name = "wagtail_crm"
    menu_icon = "group"
    menu_order = 250
    submenu_hook = CRM_MENU_HOOK
    items = (VisitorProfileViewSet, InteractionViewSet)
