from django.contrib.auth.signals import user_logged_in, user_logged_out

from wagtail_crm.profiles.models import InteractionKind
from wagtail_crm.profiles.visitor import get_visitor


def merge_on_login(sender, request, user, **kwargs):
    if request is None:
        return
    from wagtail_crm.profiles.merge import profile_for_login
    from wagtail_crm.profiles.tracking import track

    visitor = get_visitor(request)
    # Only a browser we may identify and already know (it has our cookie) has history to merge.
    if not visitor.may_identify or visitor.is_new:
        return
    profile = profile_for_login(visitor.visitor_id, user)
    visitor.switch_to(profile.visitor_id)
    track(profile, InteractionKind.LOGIN)
    visitor.events_recorded = True


def fresh_visitor_on_logout(sender, request, user, **kwargs):
    if request is not None:
        get_visitor(request).start_fresh()


def register_signal_handlers():
    user_logged_in.connect(merge_on_login, dispatch_uid="wagtail_crm_merge_on_login")
    user_logged_out.connect(fresh_visitor_on_logout, dispatch_uid="wagtail_crm_logout")
