"""Log lines for machines or for people: one JSON object a line off a terminal, Celery's text on one.

A JSON line (python-json-logger) carries what a log platform filters on: the time (ISO-8601,
UTC), level, logger, message, the process's service (a worker's, "beat", "api"), and within a
task its queue, task id and name, order id, correlation id (Celery's root id: one per order's
chain), the current OpenTelemetry span's trace and span ids, the step and, on the line that
ends a task, its outcome. Fields with no value are left out.

    {"time": "2026-...Z", "level": "INFO", "logger": "celery.app.trace", "message": "Task
     payments.charge[9f...] succeeded in 0.04s: {...}", "service": "payments", "queue": "payments",
     "task_id": "9f...", "task_name": "payments.charge", "order_id": "ord-123",
     "correlation_id": "51...", "step": "charge", "outcome": "succeeded"}

Which: ORDERS_LOG_FORMAT (settings.log_format) json or text, or by default JSON unless the
stream the lines go to is a terminal. Celery keeps making its handlers (its stream, --logfile,
stdout redirection); the signals below only give them a formatter. Every message and
traceback passes through `mask_text`, in both formats: a net under the rule that no log
quotes a token, an email, a phone number or an address. The order id is read from a task's
arguments as orders.runtime.redaction shows them; the order itself is never logged.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from logging.handlers import WatchedFileHandler
from typing import Any

import celery.apps.worker
import click
from celery import signals
from celery._state import get_current_task
from celery.app import trace
from celery.utils.log import get_multiprocessing_logger
from pythonjsonlogger.json import JsonFormatter

from orders.runtime.redaction import ORDER_TASKS, mask_text, order_id, order_of
from orders.settings import get_settings
from orders.steps.flow import STEP_OF_TASK
from orders.topology import QUEUES_BY_NAME

JSON, TEXT, AUTO = "json", "text", "auto"
#: What the line that ends a task says happened (Celery's own templates, as its tracer logs them).
OUTCOMES = {trace.LOG_SUCCESS: "succeeded", trace.LOG_FAILURE: "failed", trace.LOG_RETRY: "retried",
            trace.LOG_IGNORED: "ignored", trace.LOG_REJECTED: "rejected"}
#: Loggers of a WSGI server that keep their own handlers (gunicorn's error and access logs): formatted too.
SERVER_LOGGERS = ("gunicorn.error", "gunicorn.access")
# Celery's (UUIDs) and ours: letters, digits and a few separators, never an '@' or a space.
_TASK_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
# Terminal colours some servers put in their messages (Werkzeug's): noise in JSON.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A received message's line has only its argsrepr, which redaction.describe wrote:
# ('ord-1',) / (order ord-1: ...) / (event OrderShipped of ord-1,).
_ORDER_IN_ARGSREPR = re.compile(
    r"\A\((?:'|order |event \w+ of )([A-Za-z0-9][A-Za-z0-9_.:-]{0,63}?)(?=',|: |,|\))")


@dataclass
class _Process:
    """What this process is, for every line: set once the process knows (a worker's -Q, beat...)."""

    service: str | None = None
    queues: list[str] = field(default_factory=list)
    banner: bool = False  # a worker whose banner we turned into one line
    handler: logging.Handler | None = None  # the root's handler `setup_process` added


_process = _Process()


def wants_json(setting: str, stream: Any) -> bool:
    """Whether lines written to `stream` should be JSON: forced by the setting, else off a terminal."""
    if setting in (JSON, TEXT):
        return setting == JSON
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # no stream (a file handler) or a closed one
        return True


def task_id(value: Any) -> str | None:
    """A task id as a line may carry it: a message's id is whatever its sender wrote (an email,
    a page of text), so one that is not an id's shape is shown as `?`."""
    if value is None:
        return None
    return value if isinstance(value, str) and _TASK_ID.match(value) else "?"


def context(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record gets from where it was logged: the process, the task, the span."""
    fields: dict[str, Any] = {"service": _process.service, "queue": ",".join(_process.queues) or None}
    data: Mapping[str, Any] = record.args if isinstance(record.args, Mapping) else {}
    if isinstance(data.get("name"), str):  # Celery's own task lines: received, succeeded, failed...
        fields.update(task_id=task_id(data.get("id")), task_name=data["name"],
                      step=STEP_OF_TASK.get(data["name"]))
        fields["order_id"] = _order_in_line(data["name"], data.get("args"))
        fields["outcome"] = OUTCOMES.get(str(record.msg))
    fields.update({key: value for key, value in _task_fields().items() if value is not None})
    fields.update(span_ids())
    return {key: value for key, value in fields.items() if value is not None}


def span_ids() -> dict[str, str]:
    """The current OpenTelemetry span's trace and span ids (hex), if there is one."""
    # Never imported here: with tracing off nothing imports OpenTelemetry (orders.runtime.tracing),
    # and then there is no span to read.
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return {}
    span = otel.get_current_span().get_span_context()
    if not span.is_valid:
        return {}
    return {"trace_id": otel.format_trace_id(span.trace_id), "span_id": otel.format_span_id(span.span_id)}


def _order_in_line(task: str, argsrepr: Any) -> str | None:
    found = _ORDER_IN_ARGSREPR.match(argsrepr) if isinstance(argsrepr, str) else None
    if found is None or task not in ORDER_TASKS:
        return None
    return order_id(found.group(1)) if order_id(found.group(1)) != "?" else None


def _task_fields() -> dict[str, Any]:
    task = get_current_task()
    request = getattr(task, "request", None)
    if task is None or request is None or request.id is None:
        return {}
    queue = (request.delivery_info or {}).get("routing_key")
    return {"task_id": task_id(request.id), "task_name": task.name, "queue": queue or None,
            "order_id": order_of(task.name, request.args),
            "correlation_id": task_id(request.root_id or request.id),
            "step": STEP_OF_TASK.get(task.name)}


class JsonLines(JsonFormatter):
    """One JSON object per record: the fields above and nothing else (no record extras: Celery's
    carry the arguments' repr and the traceback twice)."""

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_data.update(
            time=datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            level=record.levelname, logger=record.name,
            message=mask_text(_ANSI.sub("", record.getMessage())))
        log_data.update(context(record))
        for key in ("exc_info", "stack_info"):
            if message_dict.get(key):
                log_data[key] = mask_text(str(message_dict[key]))


class MaskedText(logging.Formatter):
    """Another formatter's text (Celery's), masked."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(self.inner.format(record))


def formatter_for(stream: Any, inner: logging.Formatter | None = None,
                  setting: str | None = None) -> logging.Formatter:
    """The formatter for lines written to `stream`: JSON, or `inner`'s text masked."""
    setting = setting or get_settings().log_format
    if wants_json(setting, stream):
        return JsonLines()
    return inner if isinstance(inner, MaskedText) else MaskedText(inner)


def format_handlers(logger: logging.Logger) -> None:
    """Give each handler of `logger` that Celery or `setup_process` made the formatter its stream calls for.

    Others' handlers keep theirs (pytest's capture, when a test runs a worker in a thread).
    """
    for handler in logger.handlers:
        if type(handler) in (logging.StreamHandler, WatchedFileHandler):
            handler.setFormatter(formatter_for(getattr(handler, "stream", None), handler.formatter))


def setup_process(service: str, level: int = logging.INFO, stream: Any = None) -> None:
    """One handler on the root, formatted as the setting says (the API; a worker before Celery's setup)."""
    _process.service = service
    root = logging.getLogger()
    if _process.handler is None:  # once, however often called
        _process.handler = logging.StreamHandler(stream or sys.stderr)
        root.addHandler(_process.handler)
    root.setLevel(min(root.level, level))
    for logger in (root, *map(logging.getLogger, SERVER_LOGGERS)):
        format_handlers(logger)


def _services(queues: list[str]) -> str:
    return ",".join(dict.fromkeys(QUEUES_BY_NAME[q].service if q in QUEUES_BY_NAME else q for q in queues))


def _on_worker_init(sender: Any = None, instance: Any = None, options: Any = None, **_: Any) -> None:
    """A worker's service and queues (its -Q); in JSON its banner is logged as one line instead of printed."""
    queues = (options or {}).get("queues") or []
    _process.queues = [q.strip() for item in ([queues] if isinstance(queues, str) else queues)
                       for q in item.split(",") if q.strip()]
    _process.service = _services(_process.queues) or "worker"
    logfile = (options or {}).get("logfile")
    if logfile or not wants_json(get_settings().log_format, sys.__stderr__):
        return
    # Celery's handler would come after its privilege check's warning, printed as text: ours comes now
    # (Celery adds none to a root that has one), with Python's warnings as records, and the banner
    # as one line (`_on_worker_after_setup`).
    setup_process(_process.service, level=logging.WARNING, stream=sys.__stderr__)
    logging.captureWarnings(True)
    celery.apps.worker.safe_say = _say_as_json  # type: ignore[attr-defined]
    if instance is not None and not instance.quiet:
        instance.quiet = _process.banner = True


def _say_as_json(msg: str, f: Any = sys.__stderr__) -> None:
    """Celery's `safe_say` (its shutdown notices, printed from signal handlers) as a JSON line.

    Written as Celery writes it, with os.write: a signal handler that wrote through the
    logging stream could interrupt a write to it (a reentrant call is an error).
    """
    record = logging.LogRecord("celery.apps.worker", logging.INFO, __file__, 0, msg.strip(), None, None)
    try:
        os.write(f.fileno(), (JsonLines().format(record) + "\n").encode())
    except (AttributeError, OSError, ValueError):
        pass


def _on_worker_after_setup(sender: Any = None, instance: Any = None, **_: Any) -> None:
    if _process.banner and instance is not None:
        logging.getLogger("celery.apps.worker").info(
            "%s starting:\n%s%s", sender, instance.startup_info(artlines=False), instance.extra_info() or "")


def _on_after_setup_logger(logger: logging.Logger | None = None, **_: Any) -> None:
    if _process.service is None:  # not a worker (celeryd_init names those): the command, e.g. "beat"
        ctx = click.get_current_context(silent=True)
        _process.service = ctx.info_name if ctx is not None else "celery"
    for each in (logger, get_multiprocessing_logger()):
        if each is not None:
            format_handlers(each)


def _on_after_setup_task_logger(logger: logging.Logger | None = None, **_: Any) -> None:
    if logger is not None:
        format_handlers(logger)


def connect_signals() -> None:
    """Format Celery's handlers as the setting says, in every worker and beat (orders.celery calls it)."""
    for signal, receiver in ((signals.celeryd_init, _on_worker_init),
                             (signals.celeryd_after_setup, _on_worker_after_setup),
                             (signals.after_setup_logger, _on_after_setup_logger),
                             (signals.after_setup_task_logger, _on_after_setup_task_logger)):
        signal.connect(receiver, weak=False, dispatch_uid=f"orders.runtime.logs.{receiver.__name__}")
