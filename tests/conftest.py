import os

import pytest
from django.conf import settings as django_settings

REQUIRE_SERVICES = os.environ.get("CRM_REQUIRE_SERVICES") == "1"


def _redis_available():
    try:
        import redis

        redis.Redis.from_url(django_settings.REDIS_URL, socket_connect_timeout=1).ping()
        return True
    except Exception:
        return False


@pytest.fixture
def redis_url():
    """A real Redis (flushed test database). Fails in CI (CRM_REQUIRE_SERVICES=1) instead of skipping."""
    if not _redis_available():
        if REQUIRE_SERVICES:
            pytest.fail(
                f"Redis is required (CRM_REQUIRE_SERVICES=1) but unreachable at {django_settings.REDIS_URL}"
            )
        pytest.skip("Redis not available")
    import redis

    redis.Redis.from_url(django_settings.REDIS_URL).flushdb()
    yield django_settings.REDIS_URL
    redis.Redis.from_url(django_settings.REDIS_URL).flushdb()


@pytest.fixture
def postgres():
    if django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        if REQUIRE_SERVICES and os.environ.get("CRM_TEST_DB") == "postgres":
            pytest.fail("PostgreSQL is required but not configured")
        pytest.skip("needs PostgreSQL (CRM_TEST_DB=postgres)")


@pytest.fixture
def home(transactional_db):
    """A site whose root page is a ContentPage with two children: /shop/ (with /shop/shoes/) and /about/.

    Tests that go through HTTP use real transactions (``transactional_db``) so that jobs run after commit,
    as they do in production, instead of being discarded with a test's rolled-back transaction.
    """
    from wagtail.models import Locale, Page, Site

    from tests.testapp.models import ContentPage

    Locale.objects.get_or_create(language_code="en")
    root = Page.get_first_root_node() or Page.add_root(instance=Page(title="Root", slug="root"))
    Site.objects.all().delete()
    for page in root.get_children():
        page.delete()
    home = root.add_child(instance=ContentPage(title="Home", slug="home", body="<p>Welcome</p>"))
    Site.objects.create(hostname="testserver", root_page=home, is_default_site=True)
    shop = home.add_child(instance=ContentPage(title="Shop", slug="shop"))
    shop.add_child(instance=ContentPage(title="Shoes", slug="shoes"))
    home.add_child(instance=ContentPage(title="About", slug="about"))
    return home


BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"


@pytest.fixture
def browser(client):
    """The Django test client dressed as a real browser (our bot filter ignores agent-less requests)."""
    client.defaults["HTTP_USER_AGENT"] = BROWSER
    return client


@pytest.fixture(autouse=True)
def fresh_segment_cache():
    """Each test starts with no cached segments (a rolled-back test leaves no save signal behind)."""
    from wagtail_crm.segments.evaluation import invalidate_segment_cache

    invalidate_segment_cache()
    yield
    invalidate_segment_cache()


@pytest.fixture
def newsletter(db):
    """A live segment of visitors whose first or last campaign source is "newsletter"."""
    from wagtail_crm.segments.models import Segment

    rule = {"parameter": "utm_source", "touch": "either", "operator": "equals", "value": "newsletter"}
    return Segment.objects.create(
        name="Newsletter readers", slug="newsletter-readers", rules=[{"type": "campaign", "value": rule}]
    )


def staff_user(django_user_model, username, *codenames):
    """A staff user who may use the admin, with the given ``wagtail_crm`` permissions (codenames)."""
    from django.contrib.auth.models import Group, Permission

    user = django_user_model.objects.create_user(username, f"{username}@example.com", "secret", is_staff=True)
    group = Group.objects.create(name=f"{username}-group")
    group.permissions.add(Permission.objects.get(codename="access_admin"))
    for codename in codenames:
        group.permissions.add(
            Permission.objects.get(content_type__app_label="wagtail_crm", codename=codename)
        )
    user.groups.add(group)
    return user
