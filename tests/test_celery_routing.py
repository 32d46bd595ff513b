"""Each queue has its own exchange, and every task goes to the queue it declares (never to both)."""
from __future__ import annotations

import pytest

from config.celery import app


def test_each_queue_is_bound_to_its_own_exchange_and_key():
    bindings = {q.name: (q.exchange.name, q.routing_key) for q in app.amqp.queues.values()}
    assert bindings == {"gpu": ("gpu", "gpu"), "cpu": ("cpu", "cpu")}


@pytest.mark.parametrize(("task", "queue"), [
    ("reconstruction.render_thumbnail", "cpu"),
    ("reconstruction.postprocess_version", "cpu"),
    ("governance.sign_tree_head", "cpu"),
])
def test_tasks_route_to_their_declared_queue(task, queue):
    app.loader.import_default_modules()
    declared = app.tasks[task].queue
    route = app.amqp.router.route({"queue": declared}, task)
    assert (route["queue"].name, route["queue"].exchange.name, route["queue"].routing_key) == (queue, queue, queue)
