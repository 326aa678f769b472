"""The optional wagtail-modeladmin integration (``wagtail_crm.contrib.modeladmin``)."""

import csv
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.utils import timezone

from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles.events import make_event
from wagtail_crm.profiles.ingest import ingest_events

PROFILES = "/admin/wagtail_crm_modeladmin/visitorprofile/"
INTERACTIONS = "/admin/wagtail_crm_modeladmin/interaction/"


@pytest.fixture
def ann(db):
    profile = VisitorProfile.objects.create(
        first_name="Ann", last_name="Lovelace", email="ann@example.com", first_utm_source="newsletter"
    )
    VisitorProfile.objects.create(first_name="Merged Ghost", merged_into=profile)
    ingest_events(
        [
            make_event(
                "offline_purchase",
                profile_id=profile.pk,
                channel="store",
                occurred_at=timezone.now(),
                data={"amount": "9.99", "note": "Umbrella"},
            )
        ]
    )
    return profile


def test_profile_index_and_inspect_render(admin_client, ann):
    response = admin_client.get(PROFILES)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Ann Lovelace" in content and "ann@example.com" in content and "newsletter" in content
    assert "Merged Ghost" not in content

    response = admin_client.get(f"{PROFILES}inspect/{ann.pk}/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Lovelace" in content and "ann@example.com" in content


def test_interaction_index_and_inspect_render_read_only(admin_client, ann):
    interaction = Interaction.objects.get(profile=ann)
    response = admin_client.get(INTERACTIONS)
    assert response.status_code == 200
    assert "In-store purchase" in response.content.decode()
    assert f"{INTERACTIONS}create/" not in response.content.decode()

    response = admin_client.get(f"{INTERACTIONS}inspect/{interaction.pk}/")
    assert response.status_code == 200
    assert "Umbrella" in response.content.decode()

    # Append-only: even a superuser cannot create, edit or delete interactions here.
    for target in (
        f"{INTERACTIONS}create/",
        f"{INTERACTIONS}edit/{interaction.pk}/",
        f"{INTERACTIONS}delete/{interaction.pk}/",
    ):
        assert admin_client.get(target).status_code in (302, 403), target
    assert admin_client.post(f"{INTERACTIONS}delete/{interaction.pk}/").status_code in (302, 403)
    assert Interaction.objects.filter(pk=interaction.pk).exists()


def test_profile_edit_uses_the_crm_form_and_records_consent_time(admin_client, ann):
    response = admin_client.get(f"{PROFILES}edit/{ann.pk}/")
    assert response.status_code == 200
    assert set(response.context["form"].fields) == {
        "first_name",
        "last_name",
        "email",
        "phone",
        "email_consent",
        "phone_consent",
    }
    response = admin_client.post(
        f"{PROFILES}edit/{ann.pk}/",
        {
            "first_name": "Ann",
            "last_name": "Lovelace",
            "email": "ann@example.com",
            "phone": "",
            "email_consent": "on",
        },
    )
    assert response.status_code == 302
    ann.refresh_from_db()
    assert ann.email_consent is True and ann.email_consent_at is not None
    assert ann.facts["spend"] == 9.99  # recorded activity is untouched


def test_tombstones_cannot_be_edited(admin_client, ann):
    tombstone = VisitorProfile.objects.get(merged_into=ann)
    assert admin_client.get(f"{PROFILES}edit/{tombstone.pk}/").status_code in (302, 403)


def test_csv_export_is_formula_safe(admin_client, ann):
    VisitorProfile.objects.create(first_name="=1+2", email="eve@example.com")
    response = admin_client.get(PROFILES, {"export": "csv"})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {row["Email"]: row["First Name"] for row in rows} == {
        "ann@example.com": "Ann",
        "eve@example.com": "'=1+2",
    }


def test_the_crm_works_without_wagtail_modeladmin(tmp_path):
    """Sites that do not install the extra: neither app in INSTALLED_APPS, the package not importable."""
    (tmp_path / "settings_without_modeladmin.py").write_text(
        textwrap.dedent(
            """
            from tests.settings import *  # noqa: F403

            INSTALLED_APPS = [
                app
                for app in INSTALLED_APPS  # noqa: F405
                if app not in ("wagtail_modeladmin", "wagtail_crm.contrib.modeladmin")
            ]
            DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
            """
        )
    )
    script = textwrap.dedent(
        """
        import sys

        sys.modules["wagtail_modeladmin"] = None  # importing it now fails, as if it were not installed
        import django

        django.setup()
        from django.core.management import call_command
        from django.urls import NoReverseMatch, reverse

        call_command("check")
        print(reverse("wagtail_crm_profiles:index"))
        try:
            reverse("wagtail_crm_modeladmin_visitorprofile_modeladmin_index")
        except NoReverseMatch:
            print("no modeladmin urls")
        """
    )
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings_without_modeladmin",
        "PYTHONPATH": os.pathsep.join([str(root), str(tmp_path)]),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["/admin/crm/profiles/", "no modeladmin urls"]
