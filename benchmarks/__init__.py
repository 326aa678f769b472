"""Benchmarks that measure wagtail_crm against plain Wagtail in the same run (see docs/performance.md)."""
