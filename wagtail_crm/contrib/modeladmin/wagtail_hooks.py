"""Visitor profiles and interactions in wagtail-modeladmin, for sites that standardise on it.

Installed with ``pip install wagtail-crm[modeladmin]`` and ``"wagtail_crm.contrib.modeladmin"`` plus
``"wagtail_modeladmin"`` in ``INSTALLED_APPS``. Wagtail imports this module only for installed apps, so sites
without wagtail-modeladmin never import it. The "CRM" menu of ``wagtail_crm`` stays the primary admin: it has
the timeline, offline interactions and the CSV import.
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from wagtail_modeladmin.helpers import PermissionHelper
from wagtail_modeladmin.options import ModelAdmin, ModelAdminGroup, modeladmin_register
from wagtail_modeladmin.views import IndexView

from wagtail_crm.profiles.admin_views import FormulaSafeExportMixin
from wagtail_crm.profiles.forms import profile_edit_handler
from wagtail_crm.profiles.models import Interaction, VisitorProfile


class SafeExportIndexView(FormulaSafeExportMixin, IndexView):
    pass


class VisitorProfilePermissionHelper(PermissionHelper):
    # Merge tombstones are bookkeeping: nobody edits or deletes them by hand.
    def user_can_edit_obj(self, user, obj):
        return obj.merged_into_id is None and super().user_can_edit_obj(user, obj)

    def user_can_delete_obj(self, user, obj):
        return obj.merged_into_id is None and super().user_can_delete_obj(user, obj)


class ReadOnlyPermissionHelper(PermissionHelper):
    """Interactions are append-only: listed and inspected, never created, edited or deleted here."""

    def user_can_create(self, user):
        return False

    def user_can_edit_obj(self, user, obj):
        return False

    def user_can_delete_obj(self, user, obj):
        return False


class CRMModelAdminMixin:
    # The CRM viewsets own the admin URL finders and reference indexing of these models.
    def register_admin_url_finders(self):
        pass

    def register_indexing(self):
        pass


class VisitorProfileAdmin(CRMModelAdminMixin, ModelAdmin):
    model = VisitorProfile
    menu_label = _("Visitor profiles")
    menu_icon = "user"
    base_url_path = "wagtail_crm_modeladmin/visitorprofile"
    permission_helper_class = VisitorProfilePermissionHelper
    index_view_class = SafeExportIndexView
    edit_handler = profile_edit_handler
    list_display = (
        "display_name",
        "email",
        "phone",
        "first_utm_source",
        "last_utm_campaign",
        "visit_count",
        "last_seen",
    )
    list_filter = ("email_consent", "phone_consent", "first_utm_source", "last_utm_campaign")
    search_fields = ("first_name", "last_name", "email", "phone")
    ordering = ("-last_seen",)
    list_per_page = 50
    inspect_view_enabled = True
    inspect_view_fields = [
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
        "first_utm_source",
        "first_utm_medium",
        "first_utm_campaign",
        "last_utm_source",
        "last_utm_medium",
        "last_utm_campaign",
    ]
    list_export = (
        "first_name",
        "last_name",
        "email",
        "phone",
        "email_consent",
        "phone_consent",
        "first_seen",
        "last_seen",
        "visit_count",
        "first_utm_source",
        "last_utm_campaign",
    )
    export_filename = "visitor-profiles"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(merged_into__isnull=True).select_related("user")


class InteractionAdmin(CRMModelAdminMixin, ModelAdmin):
    model = Interaction
    menu_label = _("Interactions")
    menu_icon = "list-ul"
    base_url_path = "wagtail_crm_modeladmin/interaction"
    permission_helper_class = ReadOnlyPermissionHelper
    index_view_class = SafeExportIndexView
    list_display = ("kind_label", "profile", "channel", "occurred_at", "page")
    list_filter = ("kind", "channel", "occurred_at")
    search_fields = ("kind", "profile__email")
    ordering = ("-occurred_at",)
    list_select_related = ("profile", "page")
    list_per_page = 50
    inspect_view_enabled = True
    inspect_view_fields = [
        "profile",
        "kind",
        "channel",
        "occurred_at",
        "page",
        "data",
        "recorded_by",
        "created_at",
    ]
    list_export = ("occurred_at", "profile", "kind", "channel", "data")
    export_filename = "interactions"

    @admin.display(description=_("Kind"), ordering="kind")
    def kind_label(self, obj):
        return obj.get_kind_display()

    def get_permissions_for_registration(self):
        # Only "add" (record offline interactions) and "view" mean anything for an append-only timeline.
        codenames = [self.permission_helper.get_perm_codename(action) for action in ("add", "view")]
        return super().get_permissions_for_registration().filter(codename__in=codenames)


class CRMModelAdminGroup(ModelAdminGroup):
    menu_label = _("CRM records")
    menu_icon = "group"
    menu_order = 260
    items = (VisitorProfileAdmin, InteractionAdmin)


modeladmin_register(CRMModelAdminGroup)
