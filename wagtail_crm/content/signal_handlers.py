from django.db import IntegrityError, transaction

from wagtail_crm.signals import profiles_merged


def move_offer_codes(sender, source_id, target, **kwargs):
    """Codes issued to a profile merged into another (a login) now belong to the surviving profile.

    Where the target already holds a code of the same pool, the source's code stays issued (it may have been
    handed out, so it is never issued again) but belongs to nobody: one code per person and pool.
    """
    from wagtail_crm.content.models import OfferCode

    for code in OfferCode.objects.filter(issued_to_id=source_id):
        try:
            with transaction.atomic():
                OfferCode.objects.filter(pk=code.pk).update(issued_to=target)
        except IntegrityError:
            OfferCode.objects.filter(pk=code.pk).update(issued_to=None)


def register_signal_handlers():
    profiles_merged.connect(move_offer_codes, dispatch_uid="wagtail_crm_move_offer_codes")
