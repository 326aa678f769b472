"""Filters of the profile and interaction listings in the admin."""

import django_filters
from django import forms
from django.utils.translation import gettext_lazy as _
from wagtail.admin.filters import DateRangePickerWidget, WagtailFilterSet
from wagtail.admin.widgets import BooleanRadioSelect

from wagtail_crm.profiles.models import Channel, Interaction, InteractionKind, VisitorProfile

# Enough for any real list of campaigns; keeps the drop-down usable if a tag was misused.
MAX_CHOICES = 500


def distinct_values(queryset, field_name):
    values = (
        queryset.exclude(**{field_name: ""})
        .order_by(field_name)
        .values_list(field_name, flat=True)
        .distinct()[:MAX_CHOICES]
    )
    return [(value, value) for value in values]


class VisitorProfileFilterSet(WagtailFilterSet):
    source = django_filters.ChoiceFilter(
        label=_("Source (first touch)"),
        field_name="first_utm_source",
        empty_label=_("All"),
        widget=forms.Select,
    )
    campaign = django_filters.ChoiceFilter(
        label=_("Campaign (last touch)"),
        field_name="last_utm_campaign",
        empty_label=_("All"),
        widget=forms.Select,
    )
    has_user = django_filters.BooleanFilter(
        label=_("Has a user account"),
        field_name="user",
        lookup_expr="isnull",
        exclude=True,
        widget=BooleanRadioSelect,
    )
    email_consent = django_filters.BooleanFilter(label=_("Email consent"), widget=BooleanRadioSelect)
    phone_consent = django_filters.BooleanFilter(label=_("Phone consent"), widget=BooleanRadioSelect)
    last_seen = django_filters.DateFromToRangeFilter(label=_("Last seen"), widget=DateRangePickerWidget)

    class Meta:
        model = VisitorProfile
        fields = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The choices are the values in use, read when the listing is shown (not at import time).
        live = VisitorProfile.objects.filter(merged_into__isnull=True)
        self.filters["source"].extra["choices"] = distinct_values(live, "first_utm_source")
        self.filters["campaign"].extra["choices"] = distinct_values(live, "last_utm_campaign")


def kind_choices():
    builtin = dict(InteractionKind.choices)
    custom = [
        (kind, Interaction(kind=kind).get_kind_display())
        for kind in Interaction.objects.exclude(kind__in=list(builtin))
        .order_by("kind")
        .values_list("kind", flat=True)
        .distinct()[:MAX_CHOICES]
    ]
    return sorted(builtin.items(), key=lambda item: str(item[1])) + custom


class InteractionFilterSet(WagtailFilterSet):
    kind = django_filters.ChoiceFilter(label=_("Kind"), empty_label=_("All"), widget=forms.Select)
    channel = django_filters.ChoiceFilter(
        label=_("Channel"), choices=Channel.choices, empty_label=_("All"), widget=forms.RadioSelect
    )
    occurred_at = django_filters.DateFromToRangeFilter(label=_("Date"), widget=DateRangePickerWidget)

    class Meta:
        model = Interaction
        fields = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["kind"].extra["choices"] = kind_choices()
