"""The one place that runs background work.

``WAGTAIL_CRM["RQ_QUEUE"]`` names a django-rq queue (a key of ``RQ_QUEUES``): jobs go to Redis after the
current transaction commits and ``manage.py rqworker <queue>`` runs them. Without it (the default) jobs run
in-process after commit, so a site works with no Redis at all.

Jobs take ids and plain data, never model instances, and are idempotent. Job functions are referenced by
dotted path, so enqueueing never imports a capability's models.
"""

import logging
from functools import partial

from django.core.signals import setting_changed
from django.db import transaction
from django.utils.module_loading import import_string

from wagtail_crm.conf import get_setting

logger = logging.getLogger("wagtail_crm.jobs")

_queues = {}


def queue_name():
    return get_setting("RQ_QUEUE")


def get_queue():
    """The configured django-rq queue, created once per process; ``None`` when jobs run inline."""
    name = queue_name()
    if not name:
        return None
    if name not in _queues:
        import django_rq

        _queues[name] = django_rq.get_queue(name)
    return _queues[name]


def _reset_queues(*, setting, **kwargs):
    if setting in ("WAGTAIL_CRM", "RQ_QUEUES"):
        _queues.clear()


setting_changed.connect(_reset_queues)


def redis_errors():
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def run_inline(func_path, *args, **kwargs):
    return import_string(func_path)(*args, **kwargs)


def _dispatch(func_path, args, kwargs):
    queue = get_queue()
    if queue is not None:
        try:
            queue.enqueue(func_path, *args, **kwargs)
            return
        except redis_errors():
            logger.warning(
                "Redis unreachable: running %s inline instead of on queue %r",
                func_path,
                queue_name(),
                exc_info=True,
            )
    try:
        run_inline(func_path, *args, **kwargs)
    except Exception:
        # A failing background job must not turn the visitor's page into a 500, exactly as if it had
        # failed on a worker.
        logger.exception("Job %s failed", func_path)


def enqueue(func_path, *args, **kwargs):
    """Run ``func_path(*args, **kwargs)`` after the current transaction commits, on RQ or inline."""
    transaction.on_commit(partial(_dispatch, func_path, args, kwargs))
