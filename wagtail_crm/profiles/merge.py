"""Merging profiles: an anonymous browser's history joins the user's profile at login."""

from django.db import transaction
from django.db.models import Q

from wagtail_crm.profiles.facts import merge_facts
from wagtail_crm.profiles.ingest import ATTRIBUTION_FIELDS
from wagtail_crm.profiles.models import Interaction, VisitorProfile
from wagtail_crm.signals import profiles_merged

CONTACT_FIELDS = ("first_name", "last_name", "email", "phone")


def profile_for_login(visitor_id, user):
    """Return the profile ``user`` continues with after logging in on a browser known as ``visitor_id``.

    * no profile for the user yet: the anonymous profile becomes theirs;
    * both exist: the anonymous one is merged into the user's (history moves over);
    * the anonymous profile belongs to another user: nothing is merged;
    * the anonymous profile is not written yet (events still queued): a tombstone is created so those
      events land on the user's profile when they are ingested.
    """
    with transaction.atomic():
        rows = list(
            VisitorProfile.objects.select_for_update()
            .filter(Q(visitor_id=visitor_id) | Q(user=user))
            .order_by("pk")
        )
        target = next((p for p in rows if p.user_id == user.pk), None)
        source = next((p for p in rows if p.visitor_id == visitor_id), None)
        while source is not None and source.merged_into_id:
            source = VisitorProfile.objects.select_for_update().get(pk=source.merged_into_id)

        if source is None:
            if target is None:
                return VisitorProfile.objects.create(visitor_id=visitor_id, user=user)
            VisitorProfile.objects.create(visitor_id=visitor_id, merged_into=target)
            return target
        if source.user_id == user.pk:
            return source
        if source.user_id is not None:
            # Two identified people share a browser: never merge their histories.
            return target or VisitorProfile.objects.create(user=user)
        if target is None:
            source.user = user
            source.save(update_fields=["user"])
            return source
        merge_profiles(source, target)
        return target


def merge_profiles(source, target):
    """Move everything of ``source`` (an anonymous profile) into ``target``; ``source`` becomes a tombstone.

    Call inside a transaction with both rows locked.
    """
    if source.user_id is not None and target.user_id is not None:
        raise ValueError("Two profiles that each have a user are never merged automatically.")
    Interaction.objects.filter(profile=source).update(profile=target)

    for name in CONTACT_FIELDS:
        if not getattr(target, name) and getattr(source, name):
            setattr(target, name, getattr(source, name))
    for channel in ("email", "phone"):
        source_at = getattr(source, f"{channel}_consent_at")
        target_at = getattr(target, f"{channel}_consent_at")
        if source_at and (target_at is None or source_at > target_at):  # the latest decision stands
            setattr(target, f"{channel}_consent", getattr(source, f"{channel}_consent"))
            setattr(target, f"{channel}_consent_at", source_at)

    target.first_seen = min(target.first_seen, source.first_seen)
    target.last_seen = max(target.last_seen, source.last_seen)
    target.visit_count += source.visit_count
    if source.first_touch_at and (
        target.first_touch_at is None or source.first_touch_at < target.first_touch_at
    ):
        for name in ATTRIBUTION_FIELDS:
            setattr(target, f"first_{name}", getattr(source, f"first_{name}"))
        target.first_touch_at = source.first_touch_at
    if source.last_touch_at and (target.last_touch_at is None or source.last_touch_at > target.last_touch_at):
        for name in ATTRIBUTION_FIELDS:
            setattr(target, f"last_{name}", getattr(source, f"last_{name}"))
        target.last_touch_at = source.last_touch_at
    target.facts = merge_facts(dict(target.facts or {}), source.facts or {})
    target.save()

    # Keep the tombstone as small as possible: it only routes late events to the target.
    VisitorProfile.objects.filter(pk=source.pk).update(
        merged_into=target, facts={}, visit_count=0, **{name: "" for name in CONTACT_FIELDS}
    )
    transaction.on_commit(
        lambda: profiles_merged.send(sender=VisitorProfile, source_id=source.pk, target=target)
    )
    return target
