# Django discovers models through this module; each capability keeps its own models module.
from wagtail_crm.content.models import OfferCode, OfferCodePool, VariantStats  # noqa: F401
from wagtail_crm.profiles.models import Interaction, InteractionKind, VisitorProfile  # noqa: F401
from wagtail_crm.segments.models import Segment, SegmentMemberCount  # noqa: F401
