"""Custom metrics reach CloudWatch from a real worker, in a few batched PutMetricData calls."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from celery.exceptions import Ignore

import tasks.ops  # noqa: F401  (connects the task metrics)
from orders.aws import clients, metrics
from orders.celery import app
from orders.settings import Settings, get_settings
from tests.helpers import calls, wait_for, worker

TASKS = 100
done: list[int] = []
lock = threading.Lock()


@app.task(name="ops.test_metered")
def metered(i: int) -> None:
    """Half the orders complete (10.50 USD, placed 1.5 s ago), half are cancelled; a quarter of the
    tasks raise Celery's Ignore as a pipeline step that branches off its chain does, which is a success
    too."""
    if i % 2 == 0:
        metrics.order_completed(Decimal("10.50"), "USD", placed_at=time.time() - 1.5)
    else:
        metrics.order_cancelled("payment-declined")
    with lock:
        done.append(i)
    if i % 4 == 3:
        raise Ignore("replaced by a branch")


def stat(settings: Settings, name: str, statistic: str, **dims: str) -> float:
    """One statistic of a metric over the last minutes, summed over its datapoints."""
    now = datetime.now(UTC)
    answer = clients.client("cloudwatch", settings).get_metric_statistics(
        Namespace=metrics.NAMESPACE, MetricName=name, StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=5), Period=60, Statistics=[statistic],
        Dimensions=[{"Name": k, "Value": v} for k, v in {"Environment": settings.env, **dims}.items()])
    points = answer["Datapoints"]
    if statistic in ("Minimum", "Maximum"):
        pick = min if statistic == "Minimum" else max
        return float(pick(p[statistic] for p in points)) if points else float("nan")
    return float(sum(p[statistic] for p in points))


def test_task_and_business_metrics_arrive_in_a_few_batched_calls(infra, emulator, monkeypatch):
    monkeypatch.setenv("ORDERS_METRICS_FLUSH_SECONDS", "2")
    get_settings.cache_clear()
    settings = get_settings()
    app.reconfigure(settings)  # the worker binds its metrics to the app's settings (2 s flushes)
    metrics.buffer().close()  # what earlier tests left is sent before the calls are counted
    done.clear()
    calls(emulator.endpoint, reset=True)
    with worker(["orders"]):
        for i in range(TASKS):
            metered.delay(i)
        wait_for(lambda: len(done) == TASKS, timeout=60)
        wait_for(lambda: stat(settings, "TaskSuccess", "SampleCount", Queue="orders") == TASKS, timeout=30)
    puts = sum(n for call, n in calls(emulator.endpoint).items() if call.endswith(":PutMetricData"))
    print(f"\n{puts} PutMetricData call(s) for {TASKS} tasks ({puts / TASKS:.3f} per task)")
    assert 0 < puts <= TASKS / 10

    assert stat(settings, "TaskSuccess", "Sum", Queue="orders") == TASKS
    assert stat(settings, "TaskDuration", "SampleCount", Task="ops.test_metered") == TASKS
    assert stat(settings, "OrdersCompleted", "Sum") == TASKS / 2
    assert stat(settings, "Revenue", "Sum", Currency="USD") == 10.5 * TASKS / 2
    assert stat(settings, "OrdersCancelled", "Sum", Reason="payment-declined") == TASKS / 2
    assert stat(settings, "EndToEndLatency", "SampleCount") == TASKS / 2
    assert stat(settings, "EndToEndLatency", "Minimum") >= 1.5


def test_queue_utilisation_is_sampled_by_the_ops_task(infra):
    from orders.runtime.queue_urls import queue_url

    sqs = clients.client("sqs", infra)
    sqs.send_message_batch(QueueUrl=queue_url(infra, "payments"),
                           Entries=[{"Id": str(i), "MessageBody": "waiting"} for i in range(5)])
    with worker(["orders"]):
        tasks.ops.sample_queues.delay()
        # 5 waiting of the 500 that payments drains within its 10 s target at 50/s: 1%.
        wait_for(lambda: stat(infra, "QueueUtilisation", "Maximum", Queue="payments") == 1.0, timeout=30)
