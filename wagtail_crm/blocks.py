"""The blocks sites use in their StreamFields: ``from wagtail_crm.blocks import PersonalisedBlock, OfferBlock``."""

from wagtail_crm.content.blocks import (
    CallToActionBlock,
    PersonalisedBlock,
    PersonalisedContentBlock,
    VariantBlock,
)
from wagtail_crm.content.offers import OfferBlock

__all__ = ["CallToActionBlock", "OfferBlock", "PersonalisedBlock", "PersonalisedContentBlock", "VariantBlock"]
