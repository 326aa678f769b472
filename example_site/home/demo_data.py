"""Demo content for the example site: the page tree and a few hundred made-up visitors.

Everything is deterministic. Each demo visitor ``i`` is generated from its own ``random.Random`` seeded with
``i``, so visitor 17 is the same person whether 30 or 3000 visitors are loaded, and every id (visitor id,
event ids) is a ``uuid5`` of the visitor's number: loading again adds nothing twice. Times are offsets
before "now", so the timelines always cover the last ``DAYS`` days.

Visitors are written the way the site itself writes them: events built with ``make_event`` and written by
``ingest_events``, which also keeps visit counts, attribution and facts consistent. Contact details,
consent and user accounts are then set on the profiles, as a checkout or sign-up form would.
"""

import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from wagtail_crm.profiles.events import make_event
from wagtail_crm.profiles.models import Channel, InteractionKind

NAMESPACE = uuid.UUID("3a4f2c0e-9a7b-4d55-8f1e-5b2d6c7e8a90")
SEED = "wagtail-crm-demo"
DAYS = 120
CURRENCY = "GBP"

# ---------------------------------------------------------------------------------------------------------
# The page tree. ``key`` names a page for the visitor generator; ``parent`` is the key of its parent.

HOME_INTRO = (
    "<p>Shoes and bags cut, stitched and finished by hand in Yorkshire, made to be repaired rather than "
    "replaced.</p>"
)


def _paragraph(*paragraphs):
    return {"type": "paragraph", "value": "".join(f"<p>{text}</p>" for text in paragraphs)}


def _heading(text):
    return {"type": "heading", "value": text}


PAGES = [
    {
        "key": "about",
        "parent": "home",
        "title": "About us",
        "slug": "about",
        "intro": "A small workshop, three shops and one idea: leather goods that last.",
        "body": [
            _heading("Our workshop"),
            _paragraph(
                "We started in 2009 with two benches and a secondhand sewing machine. Today twelve of us "
                "cut, stitch and finish every pair of shoes and every bag we sell.",
                "You will find us in our shops in Leeds, York and Manchester, or right here online.",
            ),
        ],
    },
    {
        "key": "shop",
        "parent": "home",
        "title": "Shop",
        "slug": "shop",
        "intro": "Hand-finished shoes and bags, with free repairs for the first two years.",
        "body": [_paragraph("Pick a collection below. Every item ships within two working days.")],
    },
    {
        "key": "shoes",
        "parent": "shop",
        "title": "Shoes",
        "slug": "shoes",
        "intro": "Brogues, boots, loafers and trainers on Goodyear-welted soles.",
        "body": [
            _paragraph(
                "Oxford brogue £189 · Chelsea boot £219 · Everyday loafer £149 · Suede trainer £119",
                "Resoling is free for the first two years, and always available after that.",
            )
        ],
    },
    {
        "key": "bags",
        "parent": "shop",
        "title": "Bags",
        "slug": "bags",
        "intro": "Totes, holdalls and small leather goods in vegetable-tanned leather.",
        "body": [
            _paragraph(
                "Work tote £179 · Weekend holdall £249 · Crossbody bag £129 · Card holder £39",
                "Every bag is stamped with the initials of the person who made it.",
            )
        ],
    },
    {
        "key": "blog",
        "parent": "home",
        "title": "Blog",
        "slug": "blog",
        "intro": "News from the workshop, and how to look after what you bought from us.",
        "body": [],
    },
    {
        "key": "post-winter-care",
        "parent": "blog",
        "title": "Caring for leather in winter",
        "slug": "caring-for-leather-in-winter",
        "intro": "Salt, rain and radiators: what they do to leather, and a ten-minute routine against them.",
        "body": [
            _paragraph(
                "Wipe off road salt the same day with a damp cloth, let the shoes dry away from the "
                "radiator, then feed the leather with a thin coat of cream.",
                "Cedar shoe trees keep the shape and draw out moisture overnight.",
            )
        ],
    },
    {
        "key": "post-tanneries",
        "parent": "blog",
        "title": "How we choose our tanneries",
        "slug": "how-we-choose-our-tanneries",
        "intro": "Why we buy vegetable-tanned hides from two family tanneries, and what we ask them.",
        "body": [
            _paragraph(
                "We visit both tanneries every year. We ask where the hides come from, how the water is "
                "treated and how long the tanning takes: weeks, not hours."
            )
        ],
    },
    {
        "key": "post-commutes",
        "parent": "blog",
        "title": "Five bags for five commutes",
        "slug": "five-bags-for-five-commutes",
        "intro": "By bike, by train, on foot: which of our bags suits which journey.",
        "body": [
            _paragraph(
                "Cyclists like the crossbody bag, train commuters the work tote with its laptop sleeve, "
                "and weekenders never leave without the holdall."
            )
        ],
    },
    {
        "key": "post-200-steps",
        "parent": "blog",
        "title": "Behind the scenes: a shoe in 200 steps",
        "slug": "a-shoe-in-200-steps",
        "intro": "From pattern to polish: the making of one pair of Oxford brogues.",
        "body": [
            _paragraph(
                "Cutting, closing, lasting, welting, soling, finishing: each step has its own bench and "
                "its own person, and a pair takes about two weeks."
            )
        ],
    },
    {
        "key": "newsletter",
        "parent": "home",
        "title": "Newsletter",
        "slug": "newsletter",
        "intro": "One email a month: new designs, care tips and early access to our sales.",
        "body": [
            _paragraph(
                "Sign up with your email address and get 10% off your first order. You can unsubscribe "
                "with one click at any time; we never share your address."
            )
        ],
    },
]

MENU_PAGES = {"about", "shop", "blog", "newsletter"}


def _call_to_action(heading, text, button_label, page):
    return {
        "type": "call_to_action",
        "value": {
            "heading": heading,
            "text": text,
            "button_label": button_label,
            "page": page.pk,
            "link_url": "",
        },
    }


# The home page's personalised hero: (segment slug, variant id, heading, text). The first match wins, so a
# newsletter reader who is also a customer, or on a first visit, sees the newsletter variant.
HERO_VARIANTS = [
    ("newsletter-readers", "hero-newsletter", "Thanks for reading our newsletter",
     "This month: <a href='/blog/caring-for-leather-in-winter/'>a ten-minute winter routine</a> for your "
     "shoes, and the Chelsea boot in three new colours."),
    ("returning-customers", "hero-returning", "Good to see you again",
     "Everything you bought from us is repaired free for two years, and resoled at any time after that: "
     "bring it to Leeds, York or Manchester, or post it to the workshop. <a href='/shop/'>See what is new</a>."),
    ("first-time-visitors", "hero-first-time", "New here? We make shoes and bags by hand",
     "Twelve of us cut, stitch and finish everything we sell in our Yorkshire workshop, and we repair "
     "whatever we make. <a href='/about/'>Meet the workshop</a>."),
]  # fmt: skip
HERO_DEFAULT = (
    "Made to last, made to mend",
    "Every pair of shoes and every bag is made in our own workshop, and we repair whatever we make. Browse "
    "the <a href='/shop/'>shop</a>, or read how we work on the <a href='/blog/'>blog</a>.",
)
# The limited-time offer: for lapsed visitors only, from the moment the demo is loaded, for OFFER_DAYS.
OFFER_SEGMENT = "lapsed"
OFFER_CODE = "COMEBACK15"
OFFER_HEADLINE = "We have missed you: 15% off for two weeks"
OFFER_DAYS = 14


def home_body(pages, segments, now):
    """The home page's StreamField: a personalised hero, a limited-time offer, two calls to action.

    It links to pages and names segments created after the home page: ``pages`` maps page keys to pages,
    ``segments`` slugs to segments; the offer ends ``OFFER_DAYS`` after ``now``.
    """
    variants = [
        {
            "type": "item",
            "id": variant_id,
            "value": {
                "segments": [str(segments[slug].pk)],
                "hide_from": [],
                "content": [_heading(heading), _paragraph(text)],
            },
        }
        for slug, variant_id, heading, text in HERO_VARIANTS
    ]
    return [
        {
            "type": "personalised",
            "id": "home-hero",
            "value": {
                "variants": variants,
                "default": [_heading(HERO_DEFAULT[0]), _paragraph(HERO_DEFAULT[1])],
                "name": "Home hero",
                "goal": "checkout_completed",
                "goal_days": 30,
            },
        },
        {
            "type": "offer",
            "id": "home-comeback-offer",
            "value": {
                "headline": OFFER_HEADLINE,
                "body": "<p>It has been a while. Use the code at checkout, online or in our shops.</p>",
                "incentive": "limited_time",
                "code_source": "single",
                "code": OFFER_CODE,
                "pool": None,
                "starts_at": None,
                "ends_at": (now + timedelta(days=OFFER_DAYS)).isoformat(),
                "segments": [str(segments[OFFER_SEGMENT].pk)],
            },
        },
        _call_to_action(
            "New: the autumn collection",
            "Chelsea boots in three new colours, and a work tote with a padded laptop sleeve.",
            "Shop now",
            pages["shop"],
        ),
        _call_to_action(
            "10% off your first order",
            "Join our monthly newsletter for care tips, new designs and early access to sales.",
            "Sign up",
            pages["newsletter"],
        ),
    ]


# ---------------------------------------------------------------------------------------------------------
# Visitors

SHOES = [
    ("Oxford brogue", "189.00"),
    ("Chelsea boot", "219.00"),
    ("Everyday loafer", "149.00"),
    ("Suede trainer", "119.00"),
]
BAGS = [
    ("Work tote", "179.00"),
    ("Weekend holdall", "249.00"),
    ("Crossbody bag", "129.00"),
    ("Card holder", "39.00"),
]

FIRST_NAMES = [
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Grace", "Freya", "Lily", "Ella", "Sophie", "Chloe", "Ruby",
    "Zara", "Priya", "Aisha", "Hannah", "Noah", "Oliver", "George", "Arthur", "Leo", "Harry", "Jack",
    "Oscar", "Charlie", "Jacob", "Thomas", "Samuel", "Daniel", "Yusuf", "Omar", "Ravi", "Tom", "Ben",
    "Lewis", "Callum", "Ewan", "Finn", "Max", "Adam",
]  # fmt: skip
LAST_NAMES = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson",
    "Clarke", "Hughes", "Edwards", "Khan", "Lewis", "Harris", "Martin", "Cooper", "King", "Lee", "Baker",
    "Shaw", "Ahmed", "Holmes", "Mills", "Fletcher", "Lowe", "Barker", "Nolan", "Hussain",
]  # fmt: skip
EMAIL_DOMAINS = ["example.com", "example.org", "example.net"]
STORES = ["Leeds", "York", "Manchester"]
PARTNER_HOSTS = ["stylejournal.example", "citywalker.example.org", "deals-daily.example.net"]
CALL_NOTES = {
    "reached": [
        "Asked about resoling; booked in at the York shop.",
        "Happy with the boots; interested in the autumn colours.",
        "Wants a reminder when the holdall is back in stock.",
    ],
    "voicemail": ["Left a message about the autumn collection."],
    "no_answer": ["No answer; try again next week."],
}

# Campaigns by name (utm_campaign): source and medium, the window in which it ran (from, to: days ago), the
# section it advertised, its search terms or ad variants, and the offer code some of its links carried.
CAMPAIGNS = {
    "spring-sale": {"source": "newsletter", "medium": "email", "window": (115, 95), "section": "shop",
                    "content": ["header-link", "product-grid"], "offer": "SPRING20"},
    "welcome-series": {"source": "newsletter", "medium": "email", "window": (120, 1), "section": "blog",
                       "content": ["care-guide", "our-story"], "offer": "WELCOME10"},
    "autumn-edit": {"source": "newsletter", "medium": "email", "window": (30, 5), "section": "shoes",
                    "content": ["hero", "boots-grid"], "offer": None},
    "brand-search": {"source": "google", "medium": "cpc", "window": (120, 1), "section": "home",
                     "terms": ["northwind leather", "northwind shoes"], "offer": None},
    "leather-boots": {"source": "google", "medium": "cpc", "window": (80, 20), "section": "shoes",
                      "terms": ["chelsea boots leather", "handmade brogues", "goodyear welted shoes"],
                      "offer": None},
    "work-bags": {"source": "google", "medium": "cpc", "window": (60, 10), "section": "bags",
                  "terms": ["leather work tote", "laptop bag leather"], "offer": None},
    "summer-bags": {"source": "facebook", "medium": "social", "window": (75, 45), "section": "bags",
                    "content": ["carousel", "video", "story"], "offer": "SUMMER15"},
    "new-season": {"source": "facebook", "medium": "social", "window": (35, 2), "section": "shoes",
                   "content": ["carousel", "video"], "offer": None},
}  # fmt: skip
OFFER_DISCOUNTS = {"SPRING20": 20, "WELCOME10": 10, "SUMMER15": 15, "PARTNER10": 10}

# The survey linked from every newsletter, the newsletter welcome page and the order confirmation:
# "What do you do in your shoes?" (multiple choice: answer, share of people ticking it) and
# "What should we make next?" (one choice, with weights).
SURVEY_NAME = "what-next"
SURVEY_ACTIVITIES = [
    ("walking", 0.6),
    ("commuting", 0.45),
    ("running", 0.3),
    ("hiking", 0.25),
    ("cycling", 0.2),
]
SURVEY_NEXT = [("running shoes", 30), ("hiking boots", 25), ("a backpack", 25), ("kids' shoes", 20)]

# How visitors first arrived, with weights.
SOURCES = [("newsletter", 18), ("google", 22), ("facebook", 18), ("direct", 27), ("partner", 15)]


@dataclass
class Contact:
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone: str = ""
    # channel -> (granted, seconds before now); only channels the person was asked about
    consent: dict = field(default_factory=dict)


@dataclass
class DemoVisitor:
    number: int
    visitor_id: str
    source: str
    events: list = field(default_factory=list)  # (seconds before now, kind, fields) before make_event
    contact: Contact = field(default_factory=Contact)
    username: str = ""  # set when the visitor has a user account

    def build_events(self, now, pages, staff_id=None):
        """``make_event`` dicts with deterministic ids, oldest first; ``staff_id`` logged the phone calls."""
        ordered = sorted(self.events, key=lambda item: -item[0])
        built = []
        for position, (ago, kind, fields) in enumerate(ordered):
            fields = dict(fields)
            if fields.pop("by_staff", False):
                fields["recorded_by_id"] = staff_id
            page_key = fields.pop("page", None)
            if page_key is not None:
                page_id, path = pages[page_key]
                fields["page_id"] = page_id
                fields["data"] = {"path": path, **fields.get("data", {})}
            built.append(
                make_event(
                    kind,
                    visitor_id=self.visitor_id,
                    occurred_at=now - timedelta(seconds=ago),
                    event_id=uuid.uuid5(NAMESPACE, f"visitor:{self.number}:event:{position}"),
                    **fields,
                )
            )
        return built


def visitor_id_for(number):
    return uuid.uuid5(NAMESPACE, f"visitor:{number}").hex


SECTION_PAGES = {
    "home": ["home"],
    "shop": ["shop", "shoes", "bags"],
    "shoes": ["shoes", "shoes", "shop"],
    "bags": ["bags", "bags", "shop"],
    "blog": ["blog", "post-winter-care", "post-tanneries", "post-commutes", "post-200-steps"],
}
DAY = 24 * 60 * 60


class VisitorGenerator:
    """Builds one ``DemoVisitor`` from its number; all randomness comes from that visitor's own seed."""

    def __init__(self, number):
        self.rng = random.Random(f"{SEED}:{number}")
        self.visitor = DemoVisitor(number=number, visitor_id=visitor_id_for(number), source="")
        self.orders = 0
        self.name = None  # (first, last), chosen the first time the visitor gives any detail
        self.survey_links = []  # times (seconds ago) the visitor was shown a link to the survey

    def build(self):
        rng = self.rng
        visitor = self.visitor
        visitor.source = rng.choices([s for s, _ in SOURCES], [w for _, w in SOURCES])[0]
        campaign_name, attribution, landing, interest = self._acquisition(visitor.source)
        first_ago = self._first_visit_ago(campaign_name)

        # Visit start times, oldest first, all at least an hour ago.
        starts = [first_ago]
        for _ in range(rng.choices([0, 1, 2, 3, 4, 5, 7, 9], [30, 20, 15, 10, 8, 7, 6, 4])[0]):
            nxt = starts[-1] - rng.uniform(0.4, 20) * DAY
            if nxt < 3600:
                break
            starts.append(nxt)

        subscribed = visitor.source == "newsletter"
        if subscribed:
            self._identify(full_name=rng.random() < 0.7)
            # They joined the newsletter before this demo's window opens.
            visitor.contact.consent["email"] = (True, first_ago + rng.uniform(10, 300) * DAY)
        will_sign_up = not subscribed and rng.random() < 0.22
        shopper = interest in ("shoes", "bags", "shop") or rng.random() < 0.25
        will_checkout = shopper and rng.random() < (0.55 if attribution.get("offer_code") else 0.4)
        account = False
        checkout_visit = None

        for index, start in enumerate(starts):
            last = index == len(starts) - 1
            if index == 0:
                visit_attribution, visit_landing = attribution, landing
            elif subscribed and rng.random() < 0.35 and (touch := self._newsletter_touch(start)):
                visit_attribution, visit_landing = touch
            else:
                visit_attribution, visit_landing = {}, rng.choice(["home", "home", interest_page(interest)])
            if account:
                self._add(start - 1, InteractionKind.LOGIN)
            ago = self._browse(start, visit_landing, visit_attribution, interest)
            if visit_attribution.get("utm_source") == "newsletter":
                self.survey_links.append(ago)  # every newsletter ends with the survey link

            if will_sign_up and (last or rng.random() < 0.4):
                will_sign_up = False
                subscribed = True
                ago = self._view(ago, "newsletter")
                self._identify(full_name=rng.random() < 0.6)
                self._add(ago - 20, InteractionKind.SIGNUP, data={"form": "newsletter"})
                visitor.contact.consent["email"] = (True, ago - 20)
                ago -= 20
                self.survey_links.append(ago)  # the welcome page links to it
            if will_checkout and (last or rng.random() < 0.35):
                will_checkout = False
                checkout_visit = index
                ago = self._checkout(
                    ago, visit_attribution.get("offer_code") or attribution.get("offer_code")
                )
            if not account and visitor.contact.email and rng.random() < 0.12:
                account = True
                visitor.username = self._username()
                self._add(ago - 30, InteractionKind.SIGNUP, data={"form": "account"})

        if rng.random() < (0.25 if self.orders else 0.04):
            self._store_purchase(first_ago)
        phone_consent = visitor.contact.consent.get("phone")
        if visitor.contact.phone and phone_consent and phone_consent[0] and rng.random() < 0.6:
            self._phone_call(phone_consent[1])
        # Drawn last, so that adding them changed none of the choices above for any visitor.
        self._survey()
        if shopper and checkout_visit != len(starts) - 1:
            self._left_in_basket(starts[-1], ago)
        return visitor

    # -- acquisition ----------------------------------------------------------------------------------

    def _acquisition(self, source):
        """Campaign name, landing attribution, landing page key and main interest for the first visit."""
        rng = self.rng
        if source == "direct":
            interest = rng.choices(["shoes", "bags", "blog", "shop"], [30, 25, 20, 25])[0]
            return None, {}, rng.choice(["home", "home", interest_page(interest)]), interest
        if source == "partner":
            host = rng.choice(PARTNER_HOSTS)
            attribution = {"referrer_host": host}
            if host.startswith("deals") or rng.random() < 0.3:
                attribution["offer_code"] = "PARTNER10"
            interest = rng.choice(["shoes", "bags", "blog"])
            return None, attribution, interest_page(interest), interest

        name = rng.choice([name for name, c in CAMPAIGNS.items() if c["source"] == source])
        campaign = CAMPAIGNS[name]
        attribution = {
            "utm_source": campaign["source"],
            "utm_medium": campaign["medium"],
            "utm_campaign": name,
        }
        if "terms" in campaign:
            attribution["utm_term"] = rng.choice(campaign["terms"])
            attribution["referrer_host"] = "www.google.com"
        if "content" in campaign:
            attribution["utm_content"] = rng.choice(campaign["content"])
        if source == "facebook":
            attribution["referrer_host"] = rng.choice(["m.facebook.com", "l.facebook.com"])
        if campaign["offer"] and rng.random() < 0.6:
            attribution["offer_code"] = campaign["offer"]
        section = campaign["section"]
        interest = section if section in ("shoes", "bags", "blog") else rng.choice(["shoes", "bags"])
        return name, attribution, interest_page(section), interest

    def _first_visit_ago(self, campaign_name):
        newest, oldest = 1, DAYS
        if campaign_name:
            oldest, newest = CAMPAIGNS[campaign_name]["window"]
        return self.rng.uniform(newest, oldest) * DAY

    def _newsletter_touch(self, ago):
        """A subscriber's visit from a newsletter sent at that time: (attribution, landing page), or None."""
        running = [
            name
            for name, campaign in CAMPAIGNS.items()
            if campaign["source"] == "newsletter"
            and campaign["window"][1] * DAY <= ago <= campaign["window"][0] * DAY
        ]
        if not running:
            return None
        name = self.rng.choice(running)
        campaign = CAMPAIGNS[name]
        attribution = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": name}
        attribution["utm_content"] = self.rng.choice(campaign["content"])
        return attribution, interest_page(campaign["section"])

    # -- online behaviour -----------------------------------------------------------------------------

    def _add(self, ago, kind, **fields):
        self.visitor.events.append((ago, kind, fields))

    def _view(self, ago, page_key, attribution=None):
        fields = {"page": page_key}
        if attribution:
            fields["attribution"] = attribution
        self._add(ago, InteractionKind.PAGE_VIEW, **fields)
        return ago - self.rng.uniform(20, 240)

    def _browse(self, start, landing, attribution, interest):
        """A visit: the landing page, then a few pages mostly in the visitor's section of interest."""
        rng = self.rng
        ago = self._view(start, landing, attribution)
        for _ in range(rng.choices([0, 1, 2, 3, 4, 5], [20, 25, 22, 15, 10, 8])[0]):
            roll = rng.random()
            if roll < 0.65:
                page = rng.choice(SECTION_PAGES[interest])
            elif roll < 0.8:
                page = "home"
            elif roll < 0.9:
                page = rng.choice(SECTION_PAGES["blog"])
            else:
                page = "about"
            ago = self._view(ago, page)
        return ago

    def _basket(self):
        rng = self.rng
        items = rng.sample(SHOES + BAGS, k=rng.choices([1, 2, 3], [65, 28, 7])[0])
        return [{"name": name, "price": price} for name, price in items]

    def _checkout(self, ago, offer_code, abandon=False):
        rng = self.rng
        visitor = self.visitor
        self.orders += 1
        order_id = f"NW-{visitor.number:04d}-{self.orders}"
        items = self._basket()
        total = sum(Decimal(item["price"]) for item in items)
        if offer_code:
            total = total * (100 - OFFER_DISCOUNTS.get(offer_code, 10)) / 100
        data = {"order_id": order_id, "amount": f"{total:.2f}", "currency": CURRENCY, "items": items}
        if offer_code:
            data["offer_code"] = offer_code
        self._add(ago, InteractionKind.CHECKOUT_STARTED, data=data)
        ago -= rng.uniform(60, 400)
        if not abandon and rng.random() < 0.6:
            # Completed: the checkout asked for contact details and (unticked by default) for consent.
            self._identify(phone=rng.random() < 0.45)
            self._add(ago, InteractionKind.CHECKOUT_COMPLETED, data=data)
            self.survey_links.append(ago)  # the order confirmation links to it
            if "email" not in visitor.contact.consent:
                visitor.contact.consent["email"] = (rng.random() < 0.35, ago)
            if visitor.contact.phone and "phone" not in visitor.contact.consent:
                visitor.contact.consent["phone"] = (rng.random() < 0.5, ago)
        else:
            step = rng.choice(["basket", "shipping", "payment"])
            self._add(ago, InteractionKind.CHECKOUT_ABANDONED, data={**data, "step": step})
        return ago - 30

    def _survey(self):
        """About half of those shown the survey link answer it, a few minutes later."""
        rng = self.rng
        if not self.survey_links or rng.random() >= 0.5:
            return
        ago = rng.choice(self.survey_links) - rng.uniform(30, 300)
        activities = [answer for answer, share in SURVEY_ACTIVITIES if rng.random() < share]
        answers = {
            "activities": activities or ["walking"],
            "next_design": rng.choices([a for a, _ in SURVEY_NEXT], [w for _, w in SURVEY_NEXT])[0],
        }
        self._add(ago, InteractionKind.SURVEY_SUBMITTED, data={"survey": SURVEY_NAME, "answers": answers})

    def _left_in_basket(self, start, ago):
        """A shopper back in the last week who fills a basket and leaves at checkout (the reminder's audience)."""
        rng = self.rng
        if start > 7 * DAY or rng.random() >= 0.4:
            return
        ago = self._view(ago - 60, rng.choice(["shoes", "bags"]))
        self._checkout(ago, None, abandon=True)

    # -- offline --------------------------------------------------------------------------------------

    def _store_purchase(self, first_ago):
        rng = self.rng
        contact = self.visitor.contact
        ago = rng.uniform(3600, first_ago)
        # The till asks for a name and email for the receipt, and maybe a phone number for repairs.
        self._identify(phone=rng.random() < 0.5)
        if contact.phone and "phone" not in contact.consent:
            contact.consent["phone"] = (rng.random() < 0.6, ago)
        items = self._basket()
        total = sum(Decimal(item["price"]) for item in items)
        store = rng.choice(STORES)
        self.orders += 1
        data = {
            "order_id": f"NW-{self.visitor.number:04d}-{self.orders}",
            "amount": f"{total:.2f}",
            "currency": CURRENCY,
            "items": items,
            "store": store,
        }
        self._add(ago, InteractionKind.OFFLINE_PURCHASE, channel=Channel.STORE, data=data)

    def _phone_call(self, consent_ago):
        rng = self.rng
        outcome = rng.choices(["reached", "voicemail", "no_answer"], [60, 25, 15])[0]
        data = {"outcome": outcome, "note": rng.choice(CALL_NOTES[outcome]), "campaign": "autumn-edit"}
        # A call after the person gave consent, in the last few weeks (the autumn campaign's follow-up).
        newest, oldest = 600, min(consent_ago, 25 * DAY) - 600
        if oldest <= newest:
            return
        ago = rng.uniform(newest, oldest)
        self._add(ago, InteractionKind.CALL_LOGGED, channel=Channel.PHONE, data=data, by_staff=True)

    # -- identity -------------------------------------------------------------------------------------

    def _identify(self, full_name=True, phone=False):
        """Give the visitor an email address, their name when ``full_name`` and a phone number if ``phone``.

        Details already given are kept: a person who signed up with an email only adds a name at checkout.
        """
        rng = self.rng
        contact = self.visitor.contact
        if not self.name:
            self.name = (rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES))
            local = f"{self.name[0]}.{self.name[1]}{self.visitor.number}".lower()
            contact.email = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
        if full_name:
            contact.first_name, contact.last_name = self.name
        if phone and not contact.phone:
            # 020 7946 0000-0999: a London range reserved for drama, never a real subscriber.
            contact.phone = f"+44 20 7946 0{self.visitor.number % 1000:03d}"

    def _username(self):
        contact = self.visitor.contact
        return contact.email.split("@")[0]


def interest_page(interest):
    return {"shop": "shop", "shoes": "shoes", "bags": "bags", "blog": "blog", "home": "home"}[interest]


def generate_visitors(count):
    """The first ``count`` demo visitors."""
    return [VisitorGenerator(number).build() for number in range(count)]


# ---------------------------------------------------------------------------------------------------------
# Segments: what an editor of this shop would set up in CRM › Segments. Rules are stored the way the admin
# stores them: ``{"type": <rule type>, "value": {...}}`` (see docs/how-to/segments.md for every rule type).


def _rule(rule_type, **value):
    return {"type": rule_type, "value": value}


def segments(pages):
    """The demo segments, as field values by slug; ``pages`` maps page keys to pages (for page rules)."""
    return {
        "newsletter-readers": {
            "name": "Newsletter readers",
            "description": "Came to the site from the newsletter, on their first visit or a later one.",
            "rules": [_rule("campaign", parameter="utm_source", touch="either", operator="equals",
                            value="newsletter")],
        },
        "returning-customers": {
            "name": "Returning customers",
            "description": "Bought from us at least once, online or in one of the shops.",
            "rules": [_rule("purchases", measure="orders", amount="1", within_days=None)],
        },
        "first-time-visitors": {
            "name": "First-time visitors",
            "description": "On their first visit: tell them who we are and about free repairs.",
            "rules": [_rule("visitor_type", visitor="first_time")],
        },
        "lapsed": {
            "name": "Lapsed",
            "description": "Not seen for 60 days or more: welcome them back.",
            "rules": [_rule("days_since_last_visit", operator="gte", days=60)],
        },
        "survey-running": {
            "name": "Survey: interested in running",
            "description": "Ticked “running” in the what-next survey: first to hear about the leather trainer.",
            "rules": [_rule("survey_answer", question="activities", answer="running")],
        },
        "big-spenders-this-quarter": {
            "name": "Big spenders this quarter",
            "description": "Spent £300 or more in the last 90 days.",
            "rules": [_rule("purchases", measure="spend", amount="300", within_days=90)],
        },
        "abandoned-checkout-this-week": {
            "name": "Abandoned a checkout this week",
            "description": "Left a checkout unfinished in the last 7 days and have not ordered since.",
            "rules": [_rule("abandoned_checkout", within_days=7)],
            "exclude_rules": [_rule("purchases", measure="orders", amount="1", within_days=7)],
        },
        "window-shoppers": {
            "name": "Window shoppers",
            "description": "Looked around the shop (any page in it) 3 times or more this month without buying.",
            "rules": [_rule("page_views", page=pages["shop"].pk, count=3, within_days=30)],
            "exclude_rules": [_rule("purchases", measure="orders", amount="1", within_days=None)],
        },
        "deal-seekers": {
            "name": "Deal seekers",
            "description": "Arrived with an offer code, or from a deals site.",
            "match": "any",
            "rules": [
                _rule("offer_code", touch="either", code=""),
                _rule("referrer", touch="either", host="deals"),
            ],
        },
        "weekend-customers": {
            "name": "Customers at the weekend",
            "description": "Customers visiting on a Saturday or Sunday: the workshop is open for tours.",
            "rules": [
                _rule("time_window", days=["5", "6"], start=None, end=None),
                _rule("purchases", measure="orders", amount="1", within_days=None),
            ],
        },
    }  # fmt: skip
