"""Importing offline transactions from CSV: the Python API and the admin page."""

import base64
import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles.importers import ImportFileError, import_offline_transactions

IMPORT_URL = "wagtail_crm_profiles:import"


@pytest.fixture
def customers(db):
    ann = VisitorProfile.objects.create(
        first_name="Ann", email="Ann@Example.com", phone="+44 (0)7700 900-123"
    )
    bob = VisitorProfile.objects.create(first_name="Bob", email="bob@example.org", phone="0113 496 0000")
    # A merged-away profile with the same email must never receive anything.
    VisitorProfile.objects.create(email="bob@example.org", merged_into=bob)
    return ann, bob


def csv_bytes(*rows, header="email,phone,occurred_at,kind,channel,amount,currency,reference,note", bom=False):
    text = "\n".join([header, *rows]) + "\n"
    return ("\ufeff" if bom else "").encode() + text.encode("utf-8")


def run(data, **kwargs):
    return import_offline_transactions(io.BytesIO(data), **kwargs)


# --- the Python API ---------------------------------------------------------------------------------------


def test_rows_are_matched_by_email_then_phone_and_update_facts(customers, admin_user):
    ann, bob = customers
    result = run(
        csv_bytes(
            "ANN@example.COM,,2025-03-01,,,19.90,GBP,T-1,Boots",
            ",441134960000,2025-03-02T15:30:00+00:00,offline_purchase,store,5,GBP,T-2,",
            ",0113 496 0000,2025-03-03 10:00,call_logged,phone,,,,Asked about sizes",
            "unknown@example.com,+44 (0) 7700-900123,2025-03-04,,,1,,T-4,",
        ),
        recorded_by=admin_user,
    )
    assert (result.rows, result.imported, result.duplicates, result.errors) == (4, 3, 0, [])
    # Bob's number is stored as "0113 496 0000": the same digits are needed, not just the same line.
    assert [(row.row_number, row.email, row.phone) for row in result.unmatched] == [(3, "", "441134960000")]
    assert result.unmatched[0].reason == "No profile has this phone number."

    purchase = Interaction.objects.get(data__reference="T-1")
    assert purchase.profile == ann
    assert (purchase.kind, purchase.channel) == ("offline_purchase", "store")
    assert purchase.data == {
        "source": "import",
        "amount": "19.90",
        "currency": "GBP",
        "reference": "T-1",
        "note": "Boots",
    }
    assert purchase.recorded_by == admin_user
    assert timezone.localtime(purchase.occurred_at).date().isoformat() == "2025-03-01"

    call = Interaction.objects.get(kind="call_logged")
    assert (call.profile, call.channel, call.data["note"]) == (bob, "phone", "Asked about sizes")
    # The email matches no profile, so the phone decides.
    assert Interaction.objects.get(data__reference="T-4").profile == ann
    ann.refresh_from_db()
    bob.refresh_from_db()
    assert ann.facts["orders"] == 2 and ann.facts["spend"] == 20.9
    assert bob.facts.get("orders", 0) == 0
    assert ann.visit_count == 0  # offline purchases are not web visits


def test_phone_matching_ignores_formatting(customers):
    ann, bob = customers
    result = run(
        csv_bytes(
            ",+44 (0) 7700 900123,2025-01-05,,,10,,,",
            ",01134960000,2025-01-06,,,20,,,",
            ",0113-496-0000,2025-01-07,,,30,,,",
        )
    )
    assert result.imported == 3 and not result.unmatched
    assert Interaction.objects.filter(profile=ann).count() == 1
    assert Interaction.objects.filter(profile=bob).count() == 2


def test_unmatched_rows_are_reported_with_reasons_and_downloadable(customers):
    result = run(
        csv_bytes(
            "carol@example.com,,2025-01-01,,,12,EUR,R-1,first",
            ",+1 202 555 0100,2025-01-02,,,13,EUR,R-2,second",
            "dave@example.com,+1 202 555 0101,2025-01-03,,,14,EUR,R-3,=cmd()",
        )
    )
    assert result.imported == 0
    assert [(row.row_number, row.email, row.phone, row.reason) for row in result.unmatched] == [
        (2, "carol@example.com", "", "No profile has this email."),
        (3, "", "+1 202 555 0100", "No profile has this phone number."),
        (4, "dave@example.com", "+1 202 555 0101", "No profile has this email or this phone number."),
    ]
    rows = list(csv.DictReader(io.StringIO(result.unmatched_csv())))
    assert [row["row"] for row in rows] == ["2", "3", "4"]
    assert rows[0]["reference"] == "R-1" and rows[0]["reason"] == "No profile has this email."
    assert rows[1]["phone"] == "'+1 202 555 0100"  # formula-safe for spreadsheets
    assert rows[2]["note"] == "'=cmd()"

    # Once the customer exists, the downloaded file imports as it is.
    VisitorProfile.objects.create(email="carol@example.com")
    again = run(result.unmatched_csv().encode())
    assert again.imported == 1
    assert Interaction.objects.get().data["reference"] == "R-1"


@pytest.mark.parametrize(
    "row, message",
    [
        ("ann@example.com,,yesterday,,,1,,,", "“yesterday” is not a date"),
        ("ann@example.com,,2025-02-30,,,1,,,", "is not a date"),
        ("ann@example.com,,,,,1,,,", "The date (occurred_at) is missing."),
        ("ann@example.com,,2999-01-01,,,1,,,", "is in the future"),
        ("ann@example.com,,2025-01-01,,,12.3.4,,,", "“12.3.4” is not an amount"),
        ("ann@example.com,,2025-01-01,,,NaN,,,", "is not an amount"),
        ("ann@example.com,,2025-01-01,,online,1,,,", "Unknown channel “online”"),
        ("ann@example.com,,2025-01-01,,carrier-pigeon,1,,,", "Unknown channel"),
        ("ann@example.com,,2025-01-01,Big Sale!,,1,,,", "Invalid kind “big sale!”"),
        ("ann@example.com,,2025-01-01,page_view,,1,,,", "recorded by the website"),
        ("ann@example.com,,2025-01-01,,,1,euros,,", "is not a currency code"),
        ("not-an-email,,2025-01-01,,,1,,,", "is not an email address"),
        (",,2025-01-01,,,1,,,", "neither an email nor a phone number"),
        ("ann@example.com,,2025-01-01,,,1,,,,surplus", "more values than the header"),
    ],
)
def test_bad_rows_get_an_error_and_good_rows_are_still_written(customers, row, message):
    result = run(csv_bytes("ann@example.com,,2025-01-01,,,7,,OK-1,", row))
    assert result.imported == 1
    assert Interaction.objects.get().data["reference"] == "OK-1"
    assert len(result.errors) == 1
    error = result.errors[0]
    assert error.row_number == 3
    assert message in error.reason


def test_reimporting_the_same_file_imports_nothing_twice(customers):
    data = csv_bytes(
        "ann@example.com,,2025-01-01,,,10,,REF-1,",
        "bob@example.org,,2025-01-02,,,20,,,no reference",
        "bob@example.org,,2025-01-03,call_logged,phone,,,,",
    )
    first = run(data)
    assert (first.imported, first.duplicates) == (3, 0)
    second = run(data)
    assert (second.imported, second.duplicates) == (0, 3)
    assert Interaction.objects.count() == 3
    ann, bob = customers
    bob.refresh_from_db()
    assert bob.facts["spend"] == 20.0 and bob.facts["orders"] == 1

    # The same reference is the same transaction, however its row is written.
    third = run(csv_bytes("ANN@EXAMPLE.COM,,2025-01-01T00:00,,,10.00,,REF-1,edited note"))
    assert (third.imported, third.duplicates) == (0, 1)
    # Without a reference the row's content identifies it: 20 vs 20.0 is the same amount.
    fourth = run(csv_bytes("Bob@Example.org,,2025-01-02,,,20.0,,,no reference"))
    assert (fourth.imported, fourth.duplicates) == (0, 1)


def test_duplicate_rows_within_one_file_count_once(customers):
    result = run(
        csv_bytes("ann@example.com,,2025-01-01,,,10,,R-9,", "ann@example.com,,2025-01-01,,,10,,R-9,"),
        batch_size=1,
    )
    assert (result.imported, result.duplicates) == (1, 1)


def test_rows_are_written_in_batches_and_unknown_columns_are_ignored(customers):
    rows = [f"ann@example.com,,2025-01-{day:02d},,,{day},,B-{day},," for day in range(1, 29)]
    result = run(
        csv_bytes(*rows, header="email,phone,occurred_at,kind,channel,amount,currency,reference,note,extra"),
        batch_size=10,
    )
    assert result.imported == 28
    ann = customers[0]
    ann.refresh_from_db()
    assert ann.facts["orders"] == 28 and ann.facts["spend"] == float(sum(range(1, 29)))


def test_semicolon_files_bom_decimal_commas_and_any_column_order(customers):
    data = csv_bytes(
        "12,50;2025-01-01;ANN@example.com;Caf\u00e9",
        "3;2025-01-02;bob@example.org;Br\u00f6tchen",
        header="Amount;Occurred_At;EMAIL;note",
        bom=True,
    )
    result = run(data)
    assert result.imported == 2 and not result.errors
    assert Interaction.objects.get(profile=customers[0]).data["amount"] == "12.50"
    assert Interaction.objects.get(profile=customers[1]).data["note"] == "Br\u00f6tchen"


def test_a_text_stream_works_too(customers):
    result = import_offline_transactions(
        io.StringIO("email,occurred_at,amount\nann@example.com,2025-01-01,4\n")
    )
    assert result.imported == 1


def test_missing_columns_raise_a_clear_error(customers):
    with pytest.raises(ImportFileError, match="occurred_at"):
        run(b"email,date,amount\nann@example.com,2025-01-01,4\n")
    with pytest.raises(ImportFileError, match="“email” or “phone”"):
        run(b"occurred_at,amount\n2025-01-01,4\n")
    with pytest.raises(ImportFileError, match="more than once"):
        run(b"email,occurred_at,email\nann@example.com,2025-01-01,x\n")


def test_blank_lines_are_skipped_not_reported(customers):
    result = run(csv_bytes("", "ann@example.com,,2025-01-01,,,1,,,", ",,,,,,,,", ""))
    assert (result.rows, result.imported, result.errors, result.unmatched) == (1, 1, [], [])


def test_naive_datetimes_are_in_the_site_time_zone(customers):
    with override_settings(TIME_ZONE="Europe/Berlin"):
        run(csv_bytes("ann@example.com,,2025-07-01 12:00,,,1,,,"))
    assert Interaction.objects.get().occurred_at == datetime(2025, 7, 1, 10, 0, tzinfo=UTC)


def test_amounts_are_stored_exactly(customers):
    run(csv_bytes("ann@example.com,,2025-01-01,,,0.10,,A,", "ann@example.com,,2025-01-02,,,0.20,,B,"))
    amounts = sorted(Decimal(i.data["amount"]) for i in Interaction.objects.all())
    assert amounts == [Decimal("0.10"), Decimal("0.20")]
    ann = customers[0]
    ann.refresh_from_db()
    assert ann.facts["spend"] == 0.3


# --- the admin page ---------------------------------------------------------------------------------------


def upload(client, data, name="transactions.csv"):
    return client.post(reverse(IMPORT_URL), {"file": SimpleUploadedFile(name, data, content_type="text/csv")})


def data_url_csv(content, link_id):
    match = re.search(rf'id="{link_id}" href="data:text/csv;charset=utf-8;base64,([^"]+)"', content)
    assert match, f"no {link_id} link"
    return base64.b64decode(match.group(1)).decode("utf-8-sig")


def test_import_page_is_reachable_from_the_profiles_listing(admin_client, db):
    listing = admin_client.get(reverse("wagtail_crm_profiles:index"))
    assert reverse(IMPORT_URL) in listing.content.decode()
    page = admin_client.get(reverse(IMPORT_URL))
    assert page.status_code == 200
    content = page.content.decode()
    assert 'enctype="multipart/form-data"' in content
    assert "occurred_at" in content and "reference" in content


def test_upload_imports_and_lists_unmatched_rows_and_errors(admin_client, customers):
    data = csv_bytes(
        "ann@example.com,,2025-01-01,,,10,GBP,W-1,",
        "bob@example.org,,2025-01-02,,,20,GBP,W-2,",
        "zed@example.com,,2025-01-03,,,30,GBP,W-3,",
        "bob@example.org,,not a date,,,40,GBP,W-4,",
    )
    response = upload(admin_client, data)
    assert response.status_code == 200
    content = response.content.decode()
    assert "2 transactions imported" in content
    assert "1 row matched no profile" in content
    assert "1 row has errors" in content
    table = content[content.index('id="crm-unmatched-table"') :]
    table = table[: table.index("</table>")]
    assert "zed@example.com" in table and "No profile has this email." in table and "<td>4</td>" in table
    errors = content[content.index('id="crm-errors-table"') :]
    assert "“not a date” is not a date" in errors[: errors.index("</table>")]

    unmatched = list(csv.DictReader(io.StringIO(data_url_csv(content, "crm-unmatched-download"))))
    assert [(row["row"], row["email"], row["reference"]) for row in unmatched] == [
        ("4", "zed@example.com", "W-3")
    ]
    invalid = list(csv.DictReader(io.StringIO(data_url_csv(content, "crm-errors-download"))))
    assert [row["reference"] for row in invalid] == ["W-4"]
    assert Interaction.objects.count() == 2

    again = upload(admin_client, data)
    assert "0 transactions imported" in again.content.decode()
    assert "2 rows skipped: already imported" in again.content.decode()
    assert Interaction.objects.count() == 2


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "Choose a .csv file."),
        ("sneaky.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        (
            "latin1.csv",
            "email,occurred_at\nren\u00e9@example.com,2025-01-01\n".encode("latin-1"),
            "not UTF-8",
        ),
        ("empty.csv", b"", "empty"),
        ("columns.csv", b"name,date\nAnn,2025-01-01\n", "occurred_at"),
    ],
)
def test_unusable_files_get_a_form_error(admin_client, customers, name, data, message):
    response = upload(admin_client, data, name=name)
    assert response.status_code == 200
    errors = response.context["form"].errors["file"]
    assert any(message in error for error in errors), errors
    assert not Interaction.objects.exists()


@override_settings(WAGTAIL_CRM={"IMPORT_MAX_UPLOAD_SIZE": 100})
def test_upload_size_is_capped(admin_client, customers):
    data = csv_bytes(*[f"ann@example.com,,2025-01-{day:02d},,,1,,S-{day},," for day in range(1, 20)])
    response = upload(admin_client, data)
    errors = response.context["form"].errors["file"]
    assert any("too large" in error for error in errors), errors
    assert not Interaction.objects.exists()


def test_import_needs_the_add_interaction_permission(client, django_user_model, customers):
    user = django_user_model.objects.create_user("viewer", "v@example.com", "secret", is_staff=True)
    group = Group.objects.create(name="viewers")
    group.permissions.add(
        Permission.objects.get(codename="access_admin"),
        Permission.objects.get(content_type__app_label="wagtail_crm", codename="view_visitorprofile"),
    )
    user.groups.add(group)
    client.force_login(user)
    assert client.get(reverse(IMPORT_URL)).status_code == 302
    response = upload(client, csv_bytes("ann@example.com,,2025-01-01,,,10,,P-1,"))
    assert response.status_code == 302
    assert not Interaction.objects.exists()

    group.permissions.add(
        Permission.objects.get(content_type__app_label="wagtail_crm", codename="add_interaction")
    )
    response = upload(client, csv_bytes("ann@example.com,,2025-01-01,,,10,,P-1,"))
    assert response.status_code == 200
    assert Interaction.objects.get().recorded_by == user


def test_dates_of_today_and_full_timestamps_are_accepted(customers):
    today = timezone.localdate().isoformat()
    result = run(csv_bytes(f"ann@example.com,,{today},,,1,,,"))
    assert result.imported == 1
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()
    assert run(csv_bytes(f"ann@example.com,,{yesterday},,,1,,,")).imported == 1
