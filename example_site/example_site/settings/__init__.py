"""Settings of the example site: ``base`` (shared), ``dev`` (``make demo``) and ``test`` (the smoke test)."""
