#!/usr/bin/env python
"""Django's command-line utility for the wagtail_crm example site.

Runs from the repository root (``python example_site/manage.py ...``) or from this folder.
"""

import os
import sys
from pathlib import Path


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings.dev")
    try:
        import wagtail_crm  # noqa: F401
    except ImportError:
        # The demo normally runs with the package installed (``pip install -e .``); without that, use the
        # checkout this site lives in. Appended, so this folder's ``example_site`` package still wins.
        sys.path.append(str(Path(__file__).resolve().parent.parent))
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError(
            "Couldn't import Django. Is it installed and is your virtual environment active?"
        ) from exc
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
