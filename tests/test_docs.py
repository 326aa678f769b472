"""The documentation stays true to the code: every setting is documented with its real default, and no page
links to a page that does not exist."""

import ast
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from wagtail_crm.conf import DEFAULTS

DOCS = Path(__file__).resolve().parent.parent / "docs"
SETTINGS_DOC = DOCS / "reference" / "settings.md"

# [text](target) and [text]: target — images too; the target ends at whitespace or the closing parenthesis.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def markdown_files():
    return sorted(DOCS.rglob("*.md"))


def settings_sections():
    """``{key: section text}`` for every ``### `KEY``` heading of the settings reference."""
    text = SETTINGS_DOC.read_text()
    parts = re.split(r"^### `([A-Z0-9_]+)`\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def documented_default(section):
    inline = re.search(r"\*\*Default:\*\*[ \t]*`([^`\n]+)`", section)
    if inline:
        return ast.literal_eval(inline.group(1))
    block = re.search(r"\*\*Default:\*\*\s*\n+```python\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    assert block, "no **Default:** value"
    return ast.literal_eval(block.group(1))


def links(path):
    """``(target, path part, fragment)`` of every link outside code, in the page's Markdown."""
    text = FENCE.sub("", path.read_text())
    text = INLINE_CODE.sub("", text)  # code may hold brackets; a link's text survives as []
    for target in INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or target.startswith("/"):
            continue  # external
        yield target, unquote(parts.path), unquote(parts.fragment)


def relative_links(path):
    for target, file_part, _fragment in links(path):
        if file_part:
            yield target, file_part


def anchors(path):
    """The anchors GitHub renders for a Markdown page: heading slugs (numbered when repeated) and HTML ids."""
    text = FENCE.sub("", path.read_text())
    found = set(re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", text))
    seen = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE):
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_every_setting_is_documented_and_nothing_else():
    documented = set(settings_sections())
    assert sorted(set(DEFAULTS) - documented) == [], "settings missing from the settings reference"
    assert sorted(documented - set(DEFAULTS)) == [], (
        "documented settings that wagtail_crm.conf.DEFAULTS lacks"
    )


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_documented_default_is_the_real_default(key):
    section = settings_sections().get(key)
    assert section is not None, f"{key} is not documented in {SETTINGS_DOC.name}"
    assert documented_default(section) == DEFAULTS[key]


def test_docs_exist():
    names = {path.relative_to(DOCS).as_posix() for path in markdown_files()}
    assert {"index.md", "installation.md", "reference/settings.md", "reference/api.md"} <= names


@pytest.mark.parametrize("page", markdown_files(), ids=lambda path: path.relative_to(DOCS).as_posix())
def test_relative_links_point_to_existing_files(page):
    broken = [target for target, path in relative_links(page) if not (page.parent / path).exists()]
    assert broken == [], f"{page.relative_to(DOCS)} links to missing files"


@pytest.mark.parametrize("page", markdown_files(), ids=lambda path: path.relative_to(DOCS).as_posix())
def test_anchors_point_to_existing_headings(page):
    broken = []
    for target, file_part, fragment in links(page):
        linked = (page.parent / file_part) if file_part else page
        if fragment and linked.suffix == ".md" and linked.exists() and fragment not in anchors(linked):
            broken.append(target)
    assert broken == [], f"{page.relative_to(DOCS)} links to headings that do not exist"


def test_index_links_every_page():
    index = DOCS / "index.md"
    linked = {(DOCS / path).resolve() for _target, path in relative_links(index)}
    unlinked = [
        path.relative_to(DOCS).as_posix()
        for path in markdown_files()
        if path != index and path.resolve() not in linked
    ]
    assert unlinked == [], "pages missing from the table of contents in docs/index.md"
