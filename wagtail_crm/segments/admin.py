"""The segments snippet in the admin: listing with member counts, editing with revisions."""

from django.utils.translation import gettext_lazy as _
from wagtail.admin.panels import FieldPanel, FieldRowPanel, MultiFieldPanel
from wagtail.snippets.views.snippets import SnippetViewSet

from wagtail_crm.segments.models import Segment


class SegmentViewSet(SnippetViewSet):
    model = Segment
    icon = "crosshairs"
    menu_label = _("Segments")
    menu_name = "wagtail_crm_segments"
    url_prefix = "crm/segments"
    admin_url_namespace = "wagtail_crm_segments"
    list_display = ["name", "slug", "active"]
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
