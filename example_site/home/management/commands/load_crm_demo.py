"""``manage.py load_crm_demo``: the demo page tree, an admin login, a few hundred CRM visitors and segments.

Safe to run again: pages, users, visitors and segments that already exist are kept as they are (an editor's
changes survive), and only what is missing is added. ``--visitors 500`` after a first run with 300 adds 200.
"""

import time
from collections import Counter
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from wagtail.actions.create import CreateAction
from wagtail.models import Page, Site

from home import demo_data
from home.models import ContentPage, HomePage
from wagtail_crm.profiles.ingest import ingest_events
from wagtail_crm.profiles.models import Interaction, VisitorProfile
from wagtail_crm.segments.jobs import count_segments
from wagtail_crm.segments.models import Segment

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "changeme"
ADMIN_EMAIL = "admin@example.com"
SITE_NAME = "Northwind Leather"
# Events written per ingest call: whole visitors per batch, so a visitor's visits are counted in order.
BATCH_EVENTS = 2000


class Command(BaseCommand):
    help = (
        "Load the wagtail_crm demo: pages, the default site, an admin login (admin / changeme, for local "
        "demos only), demo visitors with campaign attribution and timelines, and audience segments. "
        "Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--visitors",
            type=int,
            default=300,
            help="How many demo visitors to have (default 300). Existing demo visitors are kept.",
        )

    def handle(self, *args, visitors, **options):
        if visitors < 0:
            raise CommandError("--visitors must be 0 or more.")
        started = time.monotonic()
        pages, pages_created, home_created = self.load_pages()
        admin = self.load_admin()
        added, kept = self.load_visitors(visitors, pages, admin)
        segments_created = self.load_segments(pages, admin)
        if home_created:
            # The home page's personalised hero and offer name segments, which exist only now.
            self.load_home_body(pages, admin)
        # The admin listing shows stored counts: count now rather than on the first visit to the listing.
        member_counts = count_segments()
        self.print_summary(
            pages, pages_created, added, kept, segments_created, member_counts, time.monotonic() - started
        )

    # -- pages ----------------------------------------------------------------------------------------

    def load_pages(self):
        """Create the page tree where missing; returns ({key: page}, number of pages created, whether the
        home page was created)."""
        created = 0
        home = HomePage.objects.first()
        if home is None:
            root = Page.get_first_root_node()
            if root is None:
                raise CommandError("The page tree has no root: run `manage.py migrate` first.")
            slug = self._free_home_slug(root)
            home = root.add_child(
                instance=HomePage(
                    title="Home",
                    slug=slug,
                    hero_heading="Leather goods that last",
                    intro=demo_data.HOME_INTRO,
                )
            )
            created += 1
            home_created = True
        else:
            home_created = False
        self._set_default_site(home)

        pages = {"home": home}
        for spec in demo_data.PAGES:
            parent = pages[spec["parent"]]
            page = ContentPage.objects.child_of(parent).filter(slug=spec["slug"]).first()
            if page is None:
                page = parent.add_child(
                    instance=ContentPage(
                        title=spec["title"],
                        slug=spec["slug"],
                        intro=spec["intro"],
                        body=spec["body"],
                        show_in_menus=spec["key"] in demo_data.MENU_PAGES,
                    )
                )
                page.save_revision().publish()
                created += 1
            pages[spec["key"]] = page
        return pages, created, home_created

    def load_home_body(self, pages, admin):
        """Give the new home page its body, validated as the page editor would, as a revision by admin."""
        home = pages["home"]
        segments = Segment.objects.in_bulk(field_name="slug")
        home.body = demo_data.home_body(pages, segments, timezone.now().replace(microsecond=0))
        stream_block = HomePage._meta.get_field("body").stream_block
        stream_block.clean(home.body)
        home.save_revision(user=admin, log_action=True).publish(user=admin)

    def _free_home_slug(self, root):
        """Wagtail's installer leaves a plain "Welcome" page at /home/: replace it if it is untouched."""
        welcome = root.get_children().filter(slug="home").first()
        if welcome is None:
            return "home"
        page_type = ContentType.objects.get_for_model(Page)
        if welcome.content_type_id == page_type.id and welcome.numchild == 0:
            Site.objects.filter(root_page=welcome).delete()
            welcome.delete()
            return "home"
        return "northwind"

    def _set_default_site(self, home):
        site = Site.objects.filter(is_default_site=True).first()
        if site is None:
            Site.objects.create(
                hostname="localhost", port=80, root_page=home, is_default_site=True, site_name=SITE_NAME
            )
        elif site.root_page_id != home.pk or not site.site_name:
            site.root_page = home
            site.site_name = site.site_name or SITE_NAME
            site.save()

    # -- users ----------------------------------------------------------------------------------------

    def load_admin(self):
        User = get_user_model()
        admin = User.objects.filter(username=ADMIN_USERNAME).first()
        if admin is None:
            admin = User.objects.create_superuser(ADMIN_USERNAME, ADMIN_EMAIL, ADMIN_PASSWORD)
            self.admin_created = True
        else:
            self.admin_created = False
        return admin

    def _load_demo_users(self, demo_visitors):
        """The demo visitors' user accounts (no usable password); returns {username: user id}."""
        User = get_user_model()
        wanted = {v.username: v.contact for v in demo_visitors if v.username}
        existing = set(User.objects.filter(username__in=wanted).values_list("username", flat=True))
        new_users = []
        for username in sorted(set(wanted) - existing):
            contact = wanted[username]
            user = User(
                username=username,
                email=contact.email,
                first_name=contact.first_name,
                last_name=contact.last_name,
            )
            user.set_unusable_password()
            new_users.append(user)
        User.objects.bulk_create(new_users)
        return dict(User.objects.filter(username__in=wanted).values_list("username", "pk"))

    # -- visitors -------------------------------------------------------------------------------------

    @transaction.atomic  # all or nothing: a visitor is never left stored without its contact details
    def load_visitors(self, count, pages, admin):
        """Write the demo visitors that are not stored yet; returns (added, kept)."""
        candidates = demo_data.generate_visitors(count)
        stored = set(
            VisitorProfile.objects.filter(visitor_id__in=[v.visitor_id for v in candidates]).values_list(
                "visitor_id", flat=True
            )
        )
        todo = [v for v in candidates if v.visitor_id not in stored]
        if not todo:
            return 0, len(stored)

        now = timezone.now().replace(microsecond=0)
        # (page id, path) per page, as the middleware would record them when the page is served
        page_info = {key: (page.pk, page.get_url_parts()[2]) for key, page in pages.items()}
        batch = []
        for visitor in todo:
            events = visitor.build_events(now, page_info, staff_id=admin.pk)
            if batch and len(batch) + len(events) > BATCH_EVENTS:
                ingest_events(batch)
                batch = []
            batch.extend(events)
        if batch:
            ingest_events(batch)

        self._save_contacts(todo, now)
        return len(todo), len(stored)

    def _save_contacts(self, demo_visitors, now):
        user_ids = self._load_demo_users(demo_visitors)
        taken_users = set(
            VisitorProfile.objects.filter(user_id__in=user_ids.values()).values_list("user_id", flat=True)
        )
        profiles = VisitorProfile.objects.in_bulk(
            [v.visitor_id for v in demo_visitors], field_name="visitor_id"
        )
        changed = []
        for visitor in demo_visitors:
            profile = profiles.get(visitor.visitor_id)
            contact = visitor.contact
            if profile is None or not contact.email:
                continue
            profile.first_name = contact.first_name
            profile.last_name = contact.last_name
            profile.email = contact.email
            profile.phone = contact.phone
            for channel, (granted, ago) in sorted(contact.consent.items()):
                profile.set_consent(channel, granted, when=now - timedelta(seconds=ago))
            user_id = user_ids.get(visitor.username)
            if user_id and user_id not in taken_users:
                profile.user_id = user_id
            changed.append(profile)
        fields = ["first_name", "last_name", "email", "phone", "user"]
        fields += ["email_consent", "email_consent_at", "phone_consent", "phone_consent_at"]
        VisitorProfile.objects.bulk_update(changed, fields, batch_size=500)

    # -- segments -------------------------------------------------------------------------------------

    def load_segments(self, pages, admin):
        """Create the demo segments that are missing, as the admin would; returns how many were created."""
        created = 0
        for slug, fields in demo_data.segments(pages).items():
            if Segment.objects.filter(slug=slug).exists():
                continue  # an editor may have changed it: keep their version
            # Validated, saved with a first revision and logged as created by admin, like the admin's form.
            CreateAction(Segment(slug=slug, **fields), user=admin).execute(skip_permission_checks=True)
            created += 1
        return created

    # -- summary --------------------------------------------------------------------------------------

    def print_summary(self, pages, pages_created, added, kept, segments_created, member_counts, seconds):
        write = self.stdout.write
        style = self.style
        profiles = VisitorProfile.objects.filter(merged_into__isnull=True)
        kinds = Counter(dict(Interaction.objects.order_by().values_list("kind").annotate(n=Count("id"))))
        identified = profiles.exclude(email="").count()
        write(style.MIGRATE_HEADING("wagtail_crm demo loaded"))
        write(f"  Pages: {len(pages)} in the demo tree ({pages_created} created now)")
        write(f"  Demo visitors: {added} added, {kept} already there")
        write(f"  The CRM now holds {profiles.count()} visitor profiles and {kinds.total()} interactions")
        write(
            f"  Known by email: {identified} · email consent: {profiles.filter(email_consent=True).count()}"
            f" · phone consent: {profiles.filter(phone_consent=True).count()}"
            f" · with a user account: {profiles.filter(user__isnull=False).count()}"
        )
        if kinds:
            write("  By kind: " + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()))
        self.print_segments(segments_created, member_counts)
        write(f"  Took {seconds:.1f} s")
        write("")
        write(style.SUCCESS("Admin login: http://127.0.0.1:8000/admin/  username: admin  password: changeme"))
        if not self.admin_created:
            write("  (the user 'admin' already existed: its password was left unchanged)")
        write(
            style.WARNING(
                "This login is for a local demo only: never load the demo on a site reachable by others."
            )
        )

    def print_segments(self, created, member_counts):
        write = self.stdout.write
        segments = list(Segment.objects.order_by("name"))
        write(f"  Segments: {created} created, {len(segments) - created} already there (CRM › Segments)")
        for segment in segments:
            line = f"    {segment.name}: {member_counts.get(segment.pk, 0)} members"
            if any(child.block_type == "time_window" for child in segment.rules):
                line += " now (a day-and-time rule: the count depends on when it is counted)"
            write(line)
