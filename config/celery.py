"""The Celery application: two queues, `gpu` and `cpu`, routed by each task's declaration."""
import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("assay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = (Queue("gpu"), Queue("cpu"))
app.conf.task_default_queue = "cpu"
app.autodiscover_tasks()
