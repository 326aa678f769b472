"""``OfferBlock`` in real pages through HTTP: the start/end window, targeting, one code for everyone and unique
pool codes (issued once, never to bots, safe under concurrency), previews, the timeline, ``redeem_offer_code``,
codes following a login, and the offer code pools in the admin (listing counts, uploading codes)."""

import threading
from datetime import timedelta

import pytest
from bs4 import BeautifulSoup
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from wagtail.blocks import StructBlockValidationError

import wagtail_crm
from tests.testapp.models import StreamTestPage
from wagtail_crm.blocks import OfferBlock
from wagtail_crm.content.models import OfferCode, OfferCodePool
from wagtail_crm.models import Interaction, VisitorProfile
from wagtail_crm.profiles.identity import new_visitor_id, sign_visitor_id

from .conftest import BROWSER, staff_user

COOKIE = "wagtail_crm_vid"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
LIST = reverse("wagtail_crm_offer_codes:list")


def offer(block_id="offer", **value):
    return {
        "type": "offer",
        "id": block_id,
        "value": {
            "headline": "Free tote bag",
            "body": "<p>With any order this week</p>",
            "incentive": "free_gift",
            "code_source": "none",
            "code": "",
            "pool": None,
            "starts_at": None,
            "ends_at": None,
            "segments": [],
            **value,
        },
    }


def iso(delta):
    return (timezone.now() + delta).isoformat()


def offer_page(home, *blocks, slug="offers"):
    return home.add_child(instance=StreamTestPage(title="Offers", slug=slug, body=list(blocks)))


def make_pool(name="Spring", count=3):
    pool = OfferCodePool.objects.create(name=name)
    OfferCode.objects.bulk_create(OfferCode(pool=pool, code=f"{name.upper()}-{n:03d}") for n in range(count))
    return pool


def offers(response):
    soup = BeautifulSoup(response.content, "html.parser")
    return soup.select("section.block-offer .crm-offer")


def shown_code(response):
    """The code the page's (only) offer shows, None when it shows no offer."""
    found = offers(response)
    assert len(found) <= 1, found
    code = found[0].select_one("code") if found else None
    return code.get_text() if code else None


def visitor(**headers):
    return Client(HTTP_USER_AGENT=BROWSER, **headers)


# -- what everyone sees ---------------------------------------------------------------------------------


def test_an_offer_for_everyone_shows_its_code_and_end_and_keeps_the_page_cacheable(home):
    page = offer_page(
        home,
        offer(
            incentive="discount",
            code_source="single",
            code=" WELCOME10 ",
            ends_at="2099-06-30T16:00:00+00:00",
        ),
    )
    bot = Client(HTTP_USER_AGENT=GOOGLEBOT)
    response = bot.get(page.url)

    (shown,) = offers(response)
    assert shown["class"] == ["crm-offer", "crm-offer--discount"]
    assert shown.select_one("h2").get_text() == "Free tote bag"
    assert shown.select_one(".crm-offer__incentive").get_text() == "Discount"
    assert shown.select_one(".crm-offer__body").get_text() == "With any order this week"
    assert shown.select_one("code").get_text() == "WELCOME10"
    ends = shown.select_one(".crm-offer__ends time")
    assert ends["datetime"] == "2099-06-30T16:00:00+00:00"
    assert shown["aria-labelledby"] == shown.select_one("h2")["id"]
    # The same for everyone: nothing marks the response private.
    assert "private" not in response.get("Cache-Control", "")
    assert "Cookie" not in response.get("Vary", "")


@override_settings(TIME_ZONE="Europe/Paris")
def test_the_end_date_is_shown_in_the_sites_time_zone(home):
    page = offer_page(home, offer(ends_at="2099-06-30T16:00:00+00:00"))
    ends = offers(visitor().get(page.url))[0].select_one(".crm-offer__ends time")
    assert ends["datetime"] == "2099-06-30T18:00:00+02:00"
    assert "6 p.m." in ends.get_text()


def test_an_offer_shows_only_inside_its_window(home):
    page = offer_page(
        home,
        offer("soon", headline="Soon", starts_at=iso(timedelta(hours=1))),
        offer("over", headline="Over", ends_at=iso(-timedelta(minutes=1))),
        offer("now", headline="Now", starts_at=iso(-timedelta(hours=1)), ends_at=iso(timedelta(hours=1))),
    )
    shown = [o.select_one("h2").get_text() for o in offers(visitor().get(page.url))]
    assert shown == ["Now"]
    # No time zone stored (an import): read in the site's time zone, not an error.
    naive = (timezone.localtime() - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    page = offer_page(home, offer(starts_at=naive), slug="naive")
    assert len(offers(visitor().get(page.url))) == 1


@override_settings(WAGTAIL_CRM={"CACHE_MODE": "edge"})
def test_edge_mode_leaves_a_slot_only_for_a_personal_offer_inside_its_window(home, newsletter):
    pool = make_pool()
    page = offer_page(
        home,
        offer("all", headline="For everyone"),
        offer("news", headline="Readers only", segments=[str(newsletter.pk)]),
        offer("mine", headline="Your code", code_source="pool", pool=pool.pk),
        offer("later", code_source="pool", pool=pool.pk, starts_at=iso(timedelta(days=1))),
    )
    response = visitor().get(page.url)
    soup = BeautifulSoup(response.content, "html.parser")
    assert [o.select_one("h2").get_text() for o in offers(response)] == ["For everyone"]
    assert [slot["data-crm-slot"] for slot in soup.select("[data-crm-slot]")] == ["news", "mine"]
    assert all(slot.get_text() == "" for slot in soup.select("[data-crm-slot]"))
    assert not OfferCode.objects.filter(issued_at__isnull=False).exists()


@override_settings(WAGTAIL_CRM={"CACHE_MODE": "edge"})
def test_edge_mode_fills_the_slot_with_the_visitors_own_code(home):
    pool = make_pool()
    page = offer_page(home, offer("mine", headline="Your code", code_source="pool", pool=pool.pk))
    client = visitor()
    fragments = reverse("wagtail_crm:fragments")

    first = client.get(fragments, {"page": page.pk, "slot": "mine"})
    html = first.json()["slots"]["mine"]
    assert BeautifulSoup(html, "html.parser").select_one(".crm-offer code").get_text() == "SPRING-000"
    assert COOKIE in first.cookies  # the code is this browser's: it must keep its visitor id
    again = client.get(fragments, {"page": page.pk, "slot": "mine"}).json()["slots"]["mine"]
    assert again == html
    (entry,) = Interaction.objects.filter(kind="offer_code_issued")
    assert entry.page_id == page.pk


# -- targeting ------------------------------------------------------------------------------------------


def test_a_targeted_offer_shows_only_to_its_segments_and_marks_the_page_private(home, newsletter):
    page = offer_page(home, offer(code_source="single", code="NEWS5", segments=[str(newsletter.pk)]))

    reader = visitor().get(page.url, {"utm_source": "newsletter"})
    assert shown_code(reader) == "NEWS5"
    assert "private" in reader["Cache-Control"]
    assert "Cookie" in reader["Vary"]

    other = visitor().get(page.url)
    assert offers(other) == []
    assert "private" in other["Cache-Control"]  # it differs per visitor, even where it shows nothing


def test_without_a_request_a_targeted_or_pool_offer_renders_nothing(db, newsletter):
    block = OfferBlock()
    pool = make_pool()
    everyone = block.to_python(offer(code_source="single", code="ALL10")["value"])
    targeted = block.to_python(offer(segments=[str(newsletter.pk)])["value"])
    personal = block.to_python(offer(code_source="pool", pool=pool.pk)["value"])

    assert "ALL10" in block.render(everyone)
    assert block.render(targeted) == ""
    assert block.render(personal) == ""
    assert not OfferCode.objects.filter(issued_at__isnull=False).exists()


# -- codes from a pool ----------------------------------------------------------------------------------


def test_each_visitor_gets_their_own_code_and_keeps_it(home):
    pool = make_pool(count=5)
    page = offer_page(home, offer(code_source="pool", pool=pool.pk))
    ann, bob = visitor(), visitor()

    first = shown_code(ann.get(page.url))
    assert first is not None
    assert shown_code(ann.get(page.url)) == first
    assert shown_code(ann.get(page.url)) == first
    second = shown_code(bob.get(page.url))
    assert second not in (None, first)

    issued = OfferCode.objects.filter(issued_at__isnull=False)
    assert sorted(issued.values_list("code", flat=True)) == sorted([first, second])
    # The code's profile is the one the visitor's page views were written to: no second profile.
    ann_profile = VisitorProfile.objects.get(visitor_id=ann.cookies[COOKIE].value.split(":")[0])
    assert OfferCode.objects.get(code=first).issued_to == ann_profile
    assert VisitorProfile.objects.count() == 2
    assert ann_profile.interactions.filter(kind="page_view").count() == 3


def test_an_issued_code_is_on_the_timeline_once(home):
    pool = make_pool()
    page = offer_page(home, offer(headline="Spring sale", code_source="pool", pool=pool.pk))
    client = visitor()
    code = shown_code(client.get(page.url))
    client.get(page.url)

    (entry,) = Interaction.objects.filter(kind="offer_code_issued")
    assert entry.data == {"code": code, "pool": "Spring", "offer": "Spring sale"}
    assert entry.page_id == page.pk
    assert entry.profile == OfferCode.objects.get(code=code).issued_to
    assert entry.get_kind_display() == "Offer code issued"


def test_a_pool_code_shows_only_to_the_offers_segments(home, newsletter):
    pool = make_pool()
    page = offer_page(home, offer(code_source="pool", pool=pool.pk, segments=[str(newsletter.pk)]))
    assert shown_code(visitor().get(page.url)) is None
    assert not OfferCode.objects.filter(issued_at__isnull=False).exists()
    assert shown_code(visitor().get(page.url, {"utm_source": "newsletter"})) == "SPRING-000"


def test_the_same_pool_twice_on_a_page_shows_one_code(home):
    pool = make_pool()
    page = offer_page(
        home, offer("a", code_source="pool", pool=pool.pk), offer("b", code_source="pool", pool=pool.pk)
    )
    codes = {o.select_one("code").get_text() for o in offers(visitor().get(page.url))}
    assert codes == {"SPRING-000"}
    assert OfferCode.objects.filter(issued_at__isnull=False).count() == 1


@pytest.mark.parametrize(
    "headers", [{"HTTP_USER_AGENT": GOOGLEBOT}, {"HTTP_USER_AGENT": BROWSER, "HTTP_DNT": "1"}]
)
def test_bots_and_do_not_track_get_no_code_and_drain_nothing(home, headers):
    pool = make_pool()
    page = offer_page(home, offer(code_source="pool", pool=pool.pk))
    client = Client(**headers)
    for _ in range(3):
        response = client.get(page.url)
        assert response.status_code == 200
        assert offers(response) == []
    assert not OfferCode.objects.filter(issued_at__isnull=False).exists()
    assert not VisitorProfile.objects.exists()
    assert COOKIE not in response.cookies
    assert "private" in response["Cache-Control"]


def test_an_exhausted_pool_shows_nothing_and_is_logged(home, caplog):
    pool = make_pool(count=1)
    page = offer_page(home, offer(code_source="pool", pool=pool.pk))
    assert shown_code(visitor().get(page.url)) == "SPRING-000"

    with caplog.at_level("WARNING", logger="wagtail_crm.offers"):
        assert offers(visitor().get(page.url)) == []
    assert "Offer code pool 'Spring' is exhausted" in caplog.text


def test_a_deleted_pool_shows_nothing(home):
    pool = make_pool()
    page = offer_page(home, offer(code_source="pool", pool=pool.pk))
    pool.delete()
    response = visitor().get(page.url)
    assert response.status_code == 200
    assert offers(response) == []


def test_a_logged_in_visitor_new_to_the_crm_gets_a_code_on_their_account(home, django_user_model):
    user = django_user_model.objects.create_user("cy", password="secret")
    pool = make_pool()
    page = offer_page(home, offer(code_source="pool", pool=pool.pk))
    client = visitor()
    client.force_login(user)  # no CRM profile yet: this browser had no cookie when they logged in
    code = shown_code(client.get(page.url))
    assert shown_code(client.get(page.url)) == code
    profile = VisitorProfile.objects.get()
    assert profile.user == user
    assert OfferCode.objects.get(code=code).issued_to == profile


# -- previews ---------------------------------------------------------------------------------------------


def test_previews_show_a_placeholder_code_and_issue_nothing(home, newsletter, django_user_model):
    pool = make_pool()
    page = offer_page(
        home,
        offer("mine", headline="Yours", code_source="pool", pool=pool.pk),
        offer("news", headline="Readers", code_source="pool", pool=pool.pk, segments=[str(newsletter.pk)]),
    )
    preview = page.make_preview_request()
    assert [o.select_one("code").get_text() for o in offers(preview)] == ["PREVIEW-CODE"]

    editor = visitor()
    editor.force_login(django_user_model.objects.create_superuser("editor", "editor@example.com", "secret"))
    chooser = editor.get(
        reverse("wagtail_crm_preview:preview_as", args=[page.pk]),
        {"preview": "1", "segments": [newsletter.pk]},
    )
    iframe = BeautifulSoup(chooser.content, "html.parser").select_one("[data-crm-preview] iframe")
    as_reader = editor.get(iframe["src"])
    assert [o.select_one("h2").get_text() for o in offers(as_reader)] == ["Yours", "Readers"]
    assert {o.select_one("code").get_text() for o in offers(as_reader)} == {"PREVIEW-CODE"}

    assert not OfferCode.objects.filter(issued_at__isnull=False).exists()
    assert not Interaction.objects.filter(kind="offer_code_issued").exists()


# -- redeeming --------------------------------------------------------------------------------------------


def issue_to_a_visitor(home, pool):
    page = offer_page(home, offer(code_source="pool", pool=pool.pk), slug=f"offer-{pool.pk}")
    code = shown_code(visitor().get(page.url))
    return OfferCode.objects.select_related("issued_to").get(pool=pool, code=code)


def test_redeeming_a_code_is_recorded_once_on_the_holders_timeline(home):
    issued = issue_to_a_visitor(home, make_pool())

    redeemed = wagtail_crm.redeem_offer_code(f" {issued.code} ")
    assert redeemed.pk == issued.pk
    assert redeemed.redeemed_at is not None
    again = wagtail_crm.redeem_offer_code(issued.code)
    assert again.redeemed_at == redeemed.redeemed_at

    (entry,) = Interaction.objects.filter(kind="offer_code_redeemed")
    assert entry.profile == issued.issued_to
    assert entry.data == {"code": issued.code, "pool": "Spring"}
    assert OfferCode.objects.get(pk=issued.pk).redeemed_at == redeemed.redeemed_at


def test_a_code_can_be_redeemed_on_the_buyers_profile(home):
    issued = issue_to_a_visitor(home, make_pool())
    buyer = VisitorProfile.objects.create(email="friend@example.com")
    wagtail_crm.redeem_offer_code(issued.code, profile=buyer)
    assert list(buyer.interactions.values_list("kind", flat=True)) == ["offer_code_redeemed"]
    assert not issued.issued_to.interactions.filter(kind="offer_code_redeemed").exists()


def test_redeeming_an_unknown_or_unissued_code_is_a_clear_error(home):
    make_pool()
    with pytest.raises(ValueError, match="Unknown offer code 'NOPE'"):
        wagtail_crm.redeem_offer_code("NOPE")
    with pytest.raises(ValueError, match="was never issued"):
        wagtail_crm.redeem_offer_code("SPRING-001")
    with pytest.raises(ValueError, match="No offer code given"):
        wagtail_crm.redeem_offer_code("  ")
    assert not OfferCode.objects.filter(redeemed_at__isnull=False).exists()
    assert not Interaction.objects.exists()


def test_a_code_in_two_pools_needs_the_pool(home):
    spring, summer = make_pool("Spring"), make_pool("Summer")
    OfferCode.objects.create(pool=summer, code="SPRING-000")
    issued = issue_to_a_visitor(home, spring)
    with pytest.raises(ValueError, match="several pools"):
        wagtail_crm.redeem_offer_code("SPRING-000")
    with pytest.raises(ValueError, match="never issued"):
        wagtail_crm.redeem_offer_code("SPRING-000", pool="Summer")
    assert wagtail_crm.redeem_offer_code("SPRING-000", pool=spring).pk == issued.pk
    assert wagtail_crm.redeem_offer_code("SPRING-000", pool=spring.pk).pk == issued.pk


# -- login --------------------------------------------------------------------------------------------------


def login(client, username):
    response = client.post("/accounts/login/", {"username": username, "password": "secret"})
    assert response.status_code == 302, response.content


def test_logging_in_moves_the_code_to_the_users_profile(home, django_user_model):
    django_user_model.objects.create_user("ann", password="secret")
    elsewhere = visitor()
    elsewhere.get("/")
    login(elsewhere, "ann")  # Ann has a profile from another device
    account = VisitorProfile.objects.get(user__username="ann")

    pool = make_pool()
    page = offer_page(home, offer(code_source="pool", pool=pool.pk))
    browser = visitor()
    code = shown_code(browser.get(page.url))
    login(browser, "ann")

    assert OfferCode.objects.get(code=code).issued_to == account
    assert shown_code(browser.get(page.url)) == code
    assert shown_code(elsewhere.get(page.url)) == code
    assert OfferCode.objects.filter(issued_at__isnull=False).count() == 1


def test_logging_in_keeps_the_users_own_code_and_retires_the_browsers(home, django_user_model):
    django_user_model.objects.create_user("ann", password="secret")
    pool = make_pool()
    page = offer_page(home, offer(code_source="pool", pool=pool.pk))
    elsewhere = visitor()
    elsewhere.get("/")
    login(elsewhere, "ann")
    own = shown_code(elsewhere.get(page.url))

    browser = visitor()
    browsers = shown_code(browser.get(page.url))
    assert browsers != own
    login(browser, "ann")

    assert shown_code(browser.get(page.url)) == own
    retired = OfferCode.objects.get(code=browsers)
    assert retired.issued_to is None and retired.issued_at is not None  # never handed out again
    assert shown_code(visitor().get(page.url)) not in (own, browsers)


# -- concurrency (PostgreSQL) -------------------------------------------------------------------------------


def run_in_threads(count, work):
    """Run ``work(n)`` in ``count`` threads started together, each with its own database connection."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(n):
        try:
            barrier.wait()
            results[n] = work(n)
        except Exception as exc:  # reported by the test, not lost in a thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_concurrent_visitors_never_share_a_code(postgres, home):
    pool = make_pool("Race", count=20)
    page = offer_page(home, offer(code_source="pool", pool=pool.pk))
    url = page.url

    results = run_in_threads(8, lambda n: [shown_code(visitor().get(url)) for _ in range(5)])

    shown = [code for codes in results for code in codes if code is not None]
    assert len(shown) == 20 and len(set(shown)) == 20  # every code issued, none to two visitors
    assert not OfferCode.objects.filter(pool=pool, issued_at__isnull=True).exists()
    holders = list(OfferCode.objects.filter(pool=pool).values_list("issued_to", flat=True))
    assert None not in holders and len(set(holders)) == 20
    assert VisitorProfile.objects.count() == 40  # one per visitor, the code holders' included
    assert Interaction.objects.filter(kind="offer_code_issued").count() == 20


def test_a_visitor_racing_themselves_gets_one_code(postgres, home):
    pool = make_pool("Race", count=10)
    page = offer_page(home, offer(code_source="pool", pool=pool.pk))
    visitor_id = new_visitor_id()  # a cookie whose profile is not written yet

    def load(n):
        client = visitor()
        client.cookies[COOKIE] = sign_visitor_id(visitor_id)
        return shown_code(client.get(page.url))

    codes = run_in_threads(8, load)

    assert len(set(codes)) == 1 and codes[0] is not None
    (profile,) = VisitorProfile.objects.all()
    assert profile.visitor_id == visitor_id
    assert list(OfferCode.objects.filter(issued_at__isnull=False).values_list("code", "issued_to")) == [
        (codes[0], profile.pk)
    ]
    assert Interaction.objects.filter(kind="offer_code_issued").count() == 1
    assert profile.interactions.filter(kind="page_view").count() == 8


# -- block validation -----------------------------------------------------------------------------------------


def block_errors(**value):
    block = OfferBlock()
    with pytest.raises(StructBlockValidationError) as caught:
        block.clean(block.to_python(offer(**value)["value"]))
    return {name: error.messages for name, error in caught.value.block_errors.items()}


def test_the_block_form_explains_what_is_missing(db):
    assert block_errors(code_source="single", code="  ") == {
        "code": ["Enter the code everyone gets, or choose another kind of code."]
    }
    assert block_errors(code_source="pool") == {"pool": ["Choose the pool the codes come from."]}
    assert block_errors(starts_at=iso(timedelta(days=2)), ends_at=iso(timedelta(days=1))) == {
        "ends_at": ["The offer must end after it starts."]
    }
    pool = make_pool()
    block = OfferBlock()
    value = block.to_python(offer(code_source="pool", pool=pool.pk, ends_at=iso(timedelta(days=1)))["value"])
    assert block.clean(value)["pool"] == pool


def test_the_page_editor_shows_the_offer_form(admin_client, home):
    page = offer_page(home, offer(code_source="single", code="WELCOME10"))
    response = admin_client.get(reverse("wagtailadmin_pages:edit", args=[page.pk]))
    assert response.status_code == 200
    assert "WELCOME10" in response.content.decode()


# -- admin: listing and uploads -----------------------------------------------------------------------------


def upload_url(pool):
    return reverse("wagtail_crm_offer_codes:upload", args=[pool.pk])


def staff(django_user_model, username, *codenames):
    user = staff_user(django_user_model, username, *codenames)
    client = Client()
    client.force_login(user)
    return client


def listing_rows(response):
    soup = BeautifulSoup(response.content, "html.parser")
    return [
        [" ".join(cell.get_text(" ", strip=True).split()) for cell in row.select("td")][1:6]
        for row in soup.select("table tbody tr")
    ]


def test_the_listing_counts_codes_in_one_query(admin_client, db):
    spring = make_pool("Spring", count=4)
    OfferCode.objects.filter(code__in=["SPRING-000", "SPRING-001"]).update(issued_at=timezone.now())
    OfferCode.objects.filter(code="SPRING-000").update(redeemed_at=timezone.now())
    make_pool("Autumn", count=0)

    response = admin_client.get(LIST)
    assert response.status_code == 200
    rows = listing_rows(response)
    assert [row[0].split(" ")[0] for row in rows] == ["Autumn", "Spring"]
    assert [row[1:] for row in rows] == [["0", "0", "0", "0"], ["4", "2", "1", "2"]]
    assert upload_url(spring) in response.content.decode()

    with CaptureQueriesContext(connection) as two_pools:
        admin_client.get(LIST)
    for n in range(5):
        make_pool(f"Extra{n}", count=2)
    with CaptureQueriesContext(connection) as seven_pools:
        admin_client.get(LIST)
    assert len(seven_pools) == len(two_pools)


def test_the_edit_page_links_to_the_upload(admin_client, db):
    pool = make_pool()
    response = admin_client.get(reverse("wagtail_crm_offer_codes:edit", args=[pool.pk]))
    assert upload_url(pool) in response.content.decode()


def test_uploading_codes_skips_blanks_and_duplicates(admin_client, db):
    pool = make_pool(count=0)
    csv_file = SimpleUploadedFile("codes.csv", b'\xef\xbb\xbfcode,value\nBETA,10%\n"GAMMA",5%\n DELTA ,1%\n')
    response = admin_client.post(
        upload_url(pool), {"codes": "ALPHA\n\n  BETA  \nALPHA\n", "file": csv_file}, follow=True
    )
    assert response.redirect_chain[-1][0] == LIST
    assert "Added 4 codes; 2 duplicates skipped." in response.content.decode()
    assert sorted(pool.codes.values_list("code", flat=True)) == ["ALPHA", "BETA", "DELTA", "GAMMA"]

    text = SimpleUploadedFile("more.txt", b"DELTA\r\nEPSILON\r\n")
    response = admin_client.post(upload_url(pool), {"file": text}, follow=True)
    assert "Added 1 code; 1 duplicate skipped." in response.content.decode()
    assert pool.codes.count() == 5


def test_semicolon_separated_csv_files_give_their_first_column(admin_client, db):
    pool = make_pool(count=0)
    csv_file = SimpleUploadedFile("codes.csv", b"ONE;first\nTWO;second\n")
    admin_client.post(upload_url(pool), {"file": csv_file})
    assert sorted(pool.codes.values_list("code", flat=True)) == ["ONE", "TWO"]


def form_errors(response):
    assert response.status_code == 200
    return {name: list(errors) for name, errors in response.context["form"].errors.items()}


def test_bad_uploads_are_form_errors_and_add_nothing(admin_client, db):
    pool = make_pool(count=0)
    post = lambda data: form_errors(admin_client.post(upload_url(pool), data))  # noqa: E731

    assert post({"codes": "OK\n" + "X" * 65 + "\nFINE\n"}) == {
        "codes": ["Line 2: the code is longer than 64 characters."]
    }
    assert post({"file": SimpleUploadedFile("codes.txt", b"A\nB\x00C\n")}) == {
        "file": ["Line 2: the code contains a control character."]
    }
    assert post({"codes": "  \n\n"}) == {"__all__": ["Paste some codes or choose a file with codes in it."]}
    assert post({"file": SimpleUploadedFile("codes.csv", "CAFÉ\n".encode("latin-1"))}) == {
        "file": ["The file is not UTF-8 text; save it as UTF-8 and try again."]
    }
    assert post({"file": SimpleUploadedFile("codes.xlsx", b"PK\x03\x04")}) == {
        "file": ["Choose a .txt or .csv file."]
    }
    many = "\n".join("Y" * 70 for _ in range(12))
    assert len(post({"codes": many})["codes"]) == 11  # ten lines named, then "… and 2 more lines."
    with override_settings(WAGTAIL_CRM={"IMPORT_MAX_UPLOAD_SIZE": 10}):
        assert post({"file": SimpleUploadedFile("codes.txt", b"A\nB\nC\nD\nE\nF\n")}) == {
            "file": ["The file is too large (at most 10\xa0bytes); split it into smaller files."]
        }
    assert not pool.codes.exists()


def test_uploads_need_permission_to_add_or_change_pools(django_user_model, db):
    pool = make_pool(count=0)
    reader = staff(django_user_model, "reader", "view_offercodepool")
    for response in (reader.get(upload_url(pool)), reader.post(upload_url(pool), {"codes": "SNEAKY"})):
        assert response.status_code == 302
        assert response["Location"] == reverse("wagtailadmin_home")
    assert upload_url(pool) not in reader.get(LIST).content.decode()
    assert not pool.codes.exists()

    changer = staff(django_user_model, "changer", "change_offercodepool")
    assert changer.get(upload_url(pool)).status_code == 200
    changer.post(upload_url(pool), {"codes": "FAIR"})
    assert list(pool.codes.values_list("code", flat=True)) == ["FAIR"]

    assert changer.get(reverse("wagtail_crm_offer_codes:upload", args=[pool.pk + 1000])).status_code == 404
