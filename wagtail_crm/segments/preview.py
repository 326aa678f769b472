"""Previewing a page as a segment: one Wagtail preview mode per live segment.

Add :class:`SegmentPreviewMixin` to a page model and the preview panel's mode menu offers "As segment: …"
for every live segment. A preview renders for a :class:`~wagtail_crm.profiles.visitor.PreviewVisitor`, so
``wagtail_crm.segments_for(request)`` returns the chosen segment, nothing is recorded and no cookie is set.
The default mode renders for a visitor in no segment: what everyone else sees.

Pages without the mixin are previewed through the admin's "Preview as…" view (``preview_views.py``), which
also previews as several segments or as one visitor profile.
"""

from django.http import Http404
from django.utils.translation import gettext_lazy as _

from wagtail_crm.profiles.visitor import REQUEST_ATTRIBUTE, PreviewVisitor

SEGMENT_MODE_PREFIX = "crm-segment:"


def segment_preview_mode(segment):
    """The preview mode name that previews a page as ``segment``."""
    return f"{SEGMENT_MODE_PREFIX}{segment.pk}"


def is_segment_preview_mode(mode_name):
    return bool(mode_name) and mode_name.startswith(SEGMENT_MODE_PREFIX)


def _is_number(text):
    """A database id: ASCII digits, few enough for a 64-bit integer."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def segment_for_preview_mode(mode_name):
    """The segment a preview mode stands for; ``None`` for other modes; 404 for a segment that is gone.

    A segment that stopped being live after the editor opened the preview still previews (its mode is no
    longer offered, but an open preview panel keeps working).
    """
    if not is_segment_preview_mode(mode_name):
        return None
    from wagtail_crm.segments.evaluation import active_segments
    from wagtail_crm.segments.models import Segment

    pk = mode_name[len(SEGMENT_MODE_PREFIX) :]
    for segment in active_segments():
        if str(segment.pk) == pk:
            return segment
    segment = Segment.objects.filter(pk=int(pk)).first() if _is_number(pk) else None
    if segment is None:
        raise Http404("No such segment")
    return segment


def install_preview_visitor(request, visitor):
    """Make ``visitor`` the visitor of ``request`` (what ``get_visitor`` and ``segments_for`` return)."""
    setattr(request, REQUEST_ATTRIBUTE, visitor)
    return visitor


class SegmentPreviewMixin:
    """Page mixin: preview the page as each live segment, from Wagtail's preview panel.

    Put it before ``Page`` in the bases: ``class LandingPage(SegmentPreviewMixin, Page)``.
    """

    @property
    def preview_modes(self):
        base_modes = list(super().preview_modes)
        if not base_modes:
            return base_modes  # the page opted out of previews
        from wagtail.models import PreviewableMixin

        from wagtail_crm.segments.evaluation import active_segments

        if base_modes == list(PreviewableMixin.DEFAULT_PREVIEW_MODES):
            base_modes = [("", _("Default (no segment)"))]
        return base_modes + [
            (segment_preview_mode(segment), _("As segment: %(name)s") % {"name": segment.name})
            for segment in active_segments()
        ]

    def get_preview_visitor(self, request, mode_name):
        """The visitor a preview in ``mode_name`` renders for: the mode's segment, or no segment at all."""
        segment = segment_for_preview_mode(mode_name)
        return PreviewVisitor(request, segments=[segment] if segment is not None else [])

    def make_preview_request(self, original_request=None, preview_mode=None, extra_request_attrs=None):
        # Install the preview visitor before the middleware runs: the middleware then sees a visitor that is
        # never tracked, and sets no cookie on the preview response (not even a refresh of the editor's own).
        attrs = dict(extra_request_attrs or {})
        if original_request is not None and REQUEST_ATTRIBUTE not in attrs:
            attrs[REQUEST_ATTRIBUTE] = self.get_preview_visitor(original_request, preview_mode)
        return super().make_preview_request(original_request, preview_mode, attrs)

    def serve_preview(self, request, mode_name):
        # A visitor chosen by the caller (the "Preview as…" view, make_preview_request above) is kept.
        if not isinstance(getattr(request, REQUEST_ATTRIBUTE, None), PreviewVisitor):
            install_preview_visitor(request, self.get_preview_visitor(request, mode_name))
        if is_segment_preview_mode(mode_name):
            mode_name = super().preview_modes[0][0]  # render the segment in the page's own default mode
        return super().serve_preview(request, mode_name)
