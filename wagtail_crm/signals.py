"""Signals other code (and later capabilities) can connect to.

``interactions_recorded`` — sent after a batch of interactions is written, with ``interactions`` (a list of
``Interaction``) and ``profile_ids``.
``profiles_merged`` — sent after an anonymous profile is merged into another, with ``source_id`` and ``target``.
"""

from django.dispatch import Signal

interactions_recorded = Signal()
profiles_merged = Signal()
