"""The install promise, for real: ``pip install`` the built wheel into a clean virtualenv, ``wagtail start`` a
site, add the documented settings lines and nothing else, and the site tracks its first visitor.

Slow (a wheel build, a fresh virtualenv and a dependency install from the package index): deselect with
``-m "not slow"``. Set ``CRM_WHEELHOUSE`` to a directory to keep the downloaded dependencies between runs.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import django
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
CRM_MIDDLEWARE = "wagtail_crm.middleware.VisitorMiddleware"
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
# The same Django line as the interpreter running the tests: each supported Django gets its own install run.
DJANGO_REQUIREMENT = "Django~={}.{}.0".format(*django.VERSION[:2])
# Files of a source checkout that are never part of a build.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".ruff_cache",
    ".pytest_cache",
    ".venv*",
    ".ci-venv*",
    "node_modules",
    "*.sqlite3",
    "static-collected",
    "static_collected",
)


def run(args, *, cwd, env=None, timeout=600, check=True):
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited with {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
    return result


def clean_env(venv_dir):
    """The environment of a developer's shell with the new virtualenv activated (none of the test run's)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
        and not key.startswith("CRM_")
    }
    env["VIRTUAL_ENV"] = str(venv_dir)
    env["PATH"] = os.pathsep.join([str(venv_dir / "bin"), env.get("PATH", "")])
    return env


def build_wheel(workdir):
    # Build from a copy so that the build's scratch files never land in the checkout.
    source = workdir / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    dist = workdir / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, source], cwd=workdir, timeout=900)
    wheels = sorted(dist.glob("wagtail_crm-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def install(venv_dir, wheel, env, *, cwd):
    python = venv_dir / "bin" / "python"
    requirements = [wheel, DJANGO_REQUIREMENT]
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    wheelhouse = os.environ.get("CRM_WHEELHOUSE")
    if not wheelhouse:
        run([*pip, *requirements], cwd=cwd, env=env, timeout=1200)
        return
    wheelhouse = Path(wheelhouse)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    offline = [*pip, "--no-index", "--find-links", wheelhouse, *requirements]
    if run(offline, cwd=cwd, env=env, timeout=1200, check=False).returncode != 0:
        # First run (or new dependencies): fill the wheelhouse from the index, then install from it alone.
        run(
            [python, "-m", "pip", "download", "--quiet", "--dest", wheelhouse, *requirements],
            cwd=cwd,
            env=env,
            timeout=1200,
        )
        for stale in wheelhouse.glob("wagtail_crm-*"):
            stale.unlink()  # the package under test always comes from this run's build
        run(offline, cwd=cwd, env=env, timeout=1200)


def add_crm_to_settings(site_dir):
    """Exactly the lines docs/installation.md tells a developer to add."""
    base = site_dir / "mysite" / "settings" / "base.py"
    text = base.read_text()
    edited = text.replace(
        "INSTALLED_APPS = [\n",
        'INSTALLED_APPS = [\n    "wagtail_crm",\n    "django_rq",\n',
        1,
    ).replace(
        f'    "{AUTH_MIDDLEWARE}",\n',
        f'    "{AUTH_MIDDLEWARE}",\n    "{CRM_MIDDLEWARE}",\n',
        1,
    )
    assert edited.count('"wagtail_crm"') == 1 and edited.count(CRM_MIDDLEWARE) == 1, "template changed"
    base.write_text(edited)

    urls = site_dir / "mysite" / "urls.py"
    text = urls.read_text()
    catch_all = '    path("", include(wagtail_urls)),\n'
    assert text.count(catch_all) == 1, "template changed"
    urls.write_text(text.replace(catch_all, '    path("crm/", include("wagtail_crm.urls")),\n' + catch_all))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A fresh ``wagtail start`` project in a clean virtualenv with the built wheel installed."""
    workdir = tmp_path_factory.mktemp("install")
    wheel = build_wheel(workdir)
    venv_dir = workdir / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    env = clean_env(venv_dir)
    install(venv_dir, wheel, env, cwd=workdir)

    site_dir = workdir / "mysite"
    site_dir.mkdir()
    run([venv_dir / "bin" / "wagtail", "start", "mysite", site_dir], cwd=workdir, env=env)
    add_crm_to_settings(site_dir)
    return {"wheel": wheel, "venv": venv_dir, "dir": site_dir, "env": env, "workdir": workdir}


def manage(site, *args, check=True):
    return run(
        [site["venv"] / "bin" / "python", "manage.py", *args],
        cwd=site["dir"],
        env=site["env"],
        timeout=300,
        check=check,
    )


@pytest.fixture(scope="module")
def migrated_site(site):
    manage(site, "migrate", "--no-input")
    return site


def test_wheel_ships_every_file_of_the_package(site):
    in_repo = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "wagtail_crm").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    with zipfile.ZipFile(site["wheel"]) as wheel:
        in_wheel = set(wheel.namelist())
    assert in_repo - in_wheel == set(), "files a pip user would not get"


def test_installed_into_a_clean_environment(site):
    python = site["venv"] / "bin" / "python"
    result = run(
        [
            python,
            "-c",
            "import django, wagtail, wagtail_crm, sys;"
            "print(django.VERSION[0], django.VERSION[1], wagtail.VERSION[0], wagtail_crm.__file__)",
        ],
        cwd=site["workdir"],  # not the checkout: `python -c` imports from its working directory
        env=site["env"],
    )
    django_major, django_minor, wagtail_major, location = result.stdout.split()
    assert (int(django_major), int(django_minor)) == django.VERSION[:2]
    assert wagtail_major == "8"
    assert Path(location).is_relative_to(site["venv"]), "imported from the checkout, not the wheel"
    run([python, "-m", "pip", "check"], cwd=site["workdir"], env=site["env"])


def test_system_check_passes(site):
    result = manage(site, "check")
    assert "wagtail_crm." not in result.stdout + result.stderr


def test_migrations_apply_and_are_complete(migrated_site):
    result = manage(migrated_site, "makemigrations", "--check", "--dry-run")
    assert "No changes detected" in result.stdout


def test_home_page_is_served_and_tracks_the_visitor(migrated_site):
    script = textwrap.dedent(
        f"""
        import json
        from django.test import Client
        from wagtail.models import Site
        from wagtail_crm.models import Interaction, VisitorProfile

        home = Site.objects.get(is_default_site=True).root_page
        browser = Client(HTTP_USER_AGENT={BROWSER!r})
        first = browser.get("/")
        cookie = first.cookies.get("wagtail_crm_vid")
        after_first = {{
            "profiles": VisitorProfile.objects.count(),
            "home_views": Interaction.objects.filter(kind="page_view", page_id=home.pk).count(),
        }}
        second = browser.get("/")
        Client(HTTP_USER_AGENT="Mozilla/5.0 (compatible; Googlebot/2.1)").get("/")
        Client(HTTP_USER_AGENT={BROWSER!r}, HTTP_DNT="1").get("/")
        admin = Client(HTTP_USER_AGENT={BROWSER!r}).get("/admin/login/")
        profile = VisitorProfile.objects.get()
        profiles = VisitorProfile.objects.count()

        # An editor finds the visitor in the CRM admin (templates shipped in the wheel render).
        from django.contrib.auth import get_user_model
        from django.urls import reverse
        from wagtail_crm.admin_viewsets import PROFILES
        editor = Client(HTTP_USER_AGENT={BROWSER!r})
        editor.force_login(get_user_model().objects.create_superuser("editor", "editor@example.com", "x"))
        listing = editor.get(reverse(PROFILES + ":index"))
        detail = editor.get(reverse(PROFILES + ":inspect", args=[profile.pk]))
        print("RESULT " + json.dumps({{
            "status": first.status_code,
            "second_status": second.status_code,
            "admin_status": admin.status_code,
            "admin_cookie": "wagtail_crm_vid" in admin.cookies,
            "cookie_httponly": bool(cookie and cookie["httponly"]),
            "cookie_samesite": cookie["samesite"] if cookie else None,
            "has_cookie": cookie is not None,
            "after_first": after_first,
            "profiles": profiles,
            "visit_count": profile.visit_count,
            "kinds": sorted(profile.interactions.values_list("kind", flat=True)),
            "home_views": Interaction.objects.filter(kind="page_view", page_id=home.pk).count(),
            "profiles_after_admin": VisitorProfile.objects.count(),
            "admin_listing": listing.status_code,
            "admin_detail": detail.status_code,
            "timeline_shows_page_view": "Page view" in detail.content.decode(),
        }}))
        """
    )
    result = manage(migrated_site, "shell", "-c", script)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stdout + result.stderr
    seen = json.loads(lines[-1].removeprefix("RESULT "))

    assert seen["status"] == 200
    assert seen["has_cookie"] and seen["cookie_httponly"] and seen["cookie_samesite"] == "Lax"
    assert seen["after_first"] == {"profiles": 1, "home_views": 1}
    # The returning browser is the same visitor; the bot, the Do Not Track browser and the admin are not.
    assert seen["second_status"] == 200
    assert seen["profiles"] == 1
    assert seen["home_views"] == 2
    assert seen["visit_count"] == 1
    assert seen["kinds"] == ["page_view", "page_view", "visit_started"]
    assert seen["admin_status"] == 200 and not seen["admin_cookie"]
    # Staff working in the CRM admin see the visitor, and are not tracked themselves.
    assert seen["admin_listing"] == 200
    assert seen["admin_detail"] == 200 and seen["timeline_shows_page_view"]
    assert seen["profiles_after_admin"] == 1


def test_misordered_middleware_fails_the_system_check(site):
    override = site["dir"] / "mysite" / "settings" / "crm_misordered.py"
    override.write_text(
        textwrap.dedent(
            f"""
            from .dev import *  # noqa: F403

            MIDDLEWARE = [path for path in MIDDLEWARE if path != {CRM_MIDDLEWARE!r}]  # noqa: F405
            MIDDLEWARE.insert(MIDDLEWARE.index({AUTH_MIDDLEWARE!r}), {CRM_MIDDLEWARE!r})
            """
        )
    )
    result = manage(site, "check", "--settings", "mysite.settings.crm_misordered", check=False)
    assert result.returncode != 0
    assert "wagtail_crm.E003" in result.stderr
    assert "must come after AuthenticationMiddleware" in result.stderr
