"""The segments snippet in the admin: listing with member counts, editing with revisions."""

from django.urls import path
from django.utils.translation import gettext_lazy as _
from wagtail import hooks
from wagtail.admin.panels import FieldPanel, FieldRowPanel, MultiFieldPanel
from wagtail.admin.ui.tables import Column
from wagtail.snippets.views.snippets import SnippetViewSet

from wagtail_crm.segments import views
from wagtail_crm.segments.models import Segment


class SegmentViewSet(SnippetViewSet):
    model = Segment
    icon = "crosshairs"
    menu_label = _("Segments")
    menu_name = "wagtail_crm_segments"
    # In the "CRM" menu group (wagtail_crm.admin_viewsets.CRMViewSetGroup), not under Snippets.
    menu_hook = "register_wagtail_crm_menu_item"
    menu_order = 300
    url_prefix = "crm/segments"
    admin_url_namespace = "wagtail_crm_segments"
    index_view_class = views.SegmentIndexView
    list_display = [
        "name",
        "slug",
        views.SegmentStatusColumn("status", label=_("Status")),
        "match",
        Column("rule_count", label=_("Rules"), accessor=views.rules_text),
        views.MemberCountColumn("members", label=_("Members"), sort_key="member_count__count"),
    ]
    list_filter = ["active", "match"]
    search_fields = ["name", "slug", "description"]
    search_backend_name = None
    ordering = ["name"]
    copy_view_enabled = True

    panels = [
        MultiFieldPanel(
            [FieldPanel("name"), FieldPanel("slug"), FieldPanel("description")],
            heading=_("Segment"),
        ),
        MultiFieldPanel(
            [FieldPanel("active"), FieldRowPanel([FieldPanel("starts_at"), FieldPanel("ends_at")])],
            heading=_("When it personalises"),
        ),
        FieldPanel("match"),
        FieldPanel("rules"),
        FieldPanel("exclude_rules"),
    ]

    def get_index_view_kwargs(self, **kwargs):
        return super().get_index_view_kwargs(recount_url_name=self.get_url_name("recount"), **kwargs)

    @property
    def recount_view(self):
        return self.construct_view(views.RecountMembersView)

    def get_urlpatterns(self):
        return [*super().get_urlpatterns(), path("recount/", self.recount_view, name="recount")]

    def on_register(self):
        super().on_register()
        # Like the permissions a model viewset registers: the bulk action belongs to this viewset.
        hooks.register("register_bulk_action", views.RecountMembersBulkAction)
