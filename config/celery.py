"""The Celery application: two queues, `gpu` and `cpu`, routed by each task's declaration."""
import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("assay")
app.config_from_object("django.conf:settings", namespace="CELERY")
# One direct exchange per queue: a task routed to `gpu` must never also land in `cpu` (and run twice).
app.conf.task_queues = tuple(Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ("gpu", "cpu"))
app.conf.task_default_queue = "cpu"
app.autodiscover_tasks()
