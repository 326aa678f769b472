"""``Visitor``: who is making this request, as cheaply as possible.

Building a ``Visitor`` reads only the cookie (no query). ``visitor.profile`` costs one query the first time
it is used in a request, and none for a visitor we have never stored.
"""

from django.conf import settings
from django.utils.functional import cached_property

from wagtail_crm.conf import get_setting
from wagtail_crm.profiles import identity

REQUEST_ATTRIBUTE = "crm_visitor"
# Functions registered with this Wagtail hook take (queryset, request) and return the queryset the visitor's
# profile is loaded with: segment rules add the annotations they read (group membership) to that one query.
PROFILE_QUERYSET_HOOK = "construct_wagtail_crm_profile_queryset"


def _profile_queryset(request):
    from wagtail import hooks

    from wagtail_crm.profiles.models import VisitorProfile

    queryset = VisitorProfile.objects.all()
    for construct in hooks.get_hooks(PROFILE_QUERYSET_HOOK):
        queryset = construct(queryset, request)
    return queryset


class Visitor:
    def __init__(self, request):
        self._request = request
        cookie = request.COOKIES.get(get_setting("COOKIE_NAME"))
        visitor_id, age = identity.read_visitor_cookie(cookie)
        self.cookie_value_valid = visitor_id is not None
        #: True when the request carried no valid cookie: a first-time (or cookie-less) visitor.
        self.is_new = visitor_id is None
        self.visitor_id = visitor_id or identity.new_visitor_id()
        # The cookie is (re)sent when it is new, changed (login/logout) or getting old (sliding expiry).
        self.cookie_dirty = self.is_new or age > get_setting("COOKIE_REFRESH_AGE")
        #: Set when an event was recorded for this visitor during the request (the cookie must persist).
        self.events_recorded = False
        #: Set when login/logout changed who this browser is.
        self.identity_changed = False
        #: Set when something in the response depends on who the visitor is (their segments, their name):
        #: the middleware then keeps the response out of shared caches (see content/rendering.py).
        self.personalised = False
        #: Variants of personalised blocks shown in this response, recorded with the page view.
        self.impressions = []

    def __repr__(self):
        return f"<Visitor {self.visitor_id[:8]} new={self.is_new}>"

    @cached_property
    def may_identify(self):
        """False for bots, DNT/GPC requests, admin/static/media paths: no cookie, no row, no events."""
        return identity.may_identify(self._request)

    @cached_property
    def user_id(self):
        """The logged-in user's id, read without loading the user object when possible."""
        request = self._request
        user = getattr(request, "_cached_user", None)
        if user is not None:
            return user.pk if user.is_authenticated else None
        if not request.COOKIES.get(settings.SESSION_COOKIE_NAME) or not hasattr(request, "session"):
            return None
        from django.contrib.auth import SESSION_KEY, get_user_model

        raw = request.session.get(SESSION_KEY)
        if raw is None:
            return None
        try:
            return get_user_model()._meta.pk.to_python(raw)
        except Exception:  # a corrupt session is an anonymous one
            return None

    @cached_property
    def profile(self):
        """The stored ``VisitorProfile`` or, for a visitor not stored yet, an unsaved one (``pk is None``)."""
        from wagtail_crm.profiles.models import VisitorProfile

        profile = None
        if self.user_id is not None:
            profile = _profile_queryset(self._request).filter(user_id=self.user_id).first()
        elif self.may_identify and not self.is_new:
            profile = _profile_queryset(self._request).filter(visitor_id=self.visitor_id).first()
            if profile is not None and profile.merged_into_id:
                profile = _profile_queryset(self._request).filter(pk=profile.merged_into_id).first()
        if profile is None:
            profile = VisitorProfile(visitor_id=self.visitor_id, user_id=self.user_id)
            profile.visit_count = 0
        return profile

    @cached_property
    def segments(self):
        """The live segments this visitor is in, evaluated once per request over the loaded profile."""
        from wagtail_crm.segments.evaluation import evaluate_visitor

        # Whatever reads the segments may make the response differ per visitor.
        self.personalised = True
        return evaluate_visitor(self, self._request)

    @cached_property
    def segment_ids(self):
        """The ids (as strings, the form blocks store) of ``segments``."""
        return frozenset(str(segment.pk) for segment in self.segments)

    @property
    def is_known(self):
        return self.profile.pk is not None

    def start_fresh(self):
        """Forget this browser's identity (logout): the response carries a brand new visitor id."""
        self.visitor_id = identity.new_visitor_id()
        self.is_new = True
        self.cookie_dirty = True
        self.identity_changed = True
        self.__dict__.pop("profile", None)
        self.__dict__.pop("user_id", None)

    def switch_to(self, visitor_id):
        """Adopt another visitor id (the logged-in user's profile) for the rest of the request."""
        if visitor_id != self.visitor_id:
            self.visitor_id = visitor_id
            self.cookie_dirty = True
            self.identity_changed = True
        self.is_new = False
        self.__dict__.pop("profile", None)
        self.__dict__.pop("user_id", None)


class PreviewVisitor(Visitor):
    """The visitor of a preview: a chosen profile and/or chosen segments, and never tracked.

    ``may_identify`` is False, so ``track()`` records nothing and the middleware sets no cookie.
    """

    def __init__(self, request, *, profile=None, segments=None):
        super().__init__(request)
        from wagtail_crm.profiles.models import VisitorProfile

        self.__dict__["may_identify"] = False
        if profile is None:
            profile = VisitorProfile(visitor_id=self.visitor_id)
            profile.visit_count = 0
        self.__dict__["profile"] = profile
        self.__dict__["user_id"] = profile.user_id
        if segments is not None:
            self.__dict__["segments"] = list(segments)
        self.cookie_dirty = False

    def __repr__(self):
        return f"<PreviewVisitor profile={self.profile.pk} segments={len(self.segments)}>"


def get_visitor(request):
    """The request's ``Visitor``, created once per request (also without the middleware installed)."""
    visitor = getattr(request, REQUEST_ATTRIBUTE, None)
    if visitor is None:
        # Wagtail's preview requests (``is_dummy``) carry the editor's cookies: preview them as a visitor in no
        # segment, never tracked, unless a preview installed a visitor of its own (see segments/preview.py).
        visitor = (
            PreviewVisitor(request, segments=[]) if getattr(request, "is_dummy", False) else Visitor(request)
        )
        setattr(request, REQUEST_ATTRIBUTE, visitor)
    return visitor
