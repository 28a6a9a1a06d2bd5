"""The Celery application: `celery -A orders worker -Q payments`."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import Any, cast

from botocore.exceptions import BotoCoreError, ClientError
from celery import Celery, signals
from kombu.pools import ProducerPool

from orders.aws import clients
from orders.runtime import tracing
from orders.runtime.amqp import AMQP
from orders.runtime.config import celery_settings
from orders.runtime.control_plane import ControlPlaneApp
from orders.runtime.logs import connect_signals
from orders.runtime.queue_urls import queue_urls
from orders.runtime.routing import time_limit_problems, unknown_queues
from orders.settings import ConfigurationError, Settings, get_settings
from orders.topology import QUEUES_BY_NAME, topology_problems


def _task_modules() -> list[str]:
    # Found on disk, not imported: the tasks import this app (Celery imports them by name).
    spec = importlib.util.find_spec("tasks")
    assert spec is not None and spec.submodule_search_locations is not None, "no tasks package"
    return sorted(f"tasks.{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations))


#: Every module of the `tasks` package: one per service, found rather than listed
#: so that adding a service is adding a module.
TASK_MODULES = _task_modules()


class OrdersCelery(ControlPlaneApp, Celery):
    """Celery on SQS, configured from `orders.settings`; monitoring over the control plane."""

    # Its pools and task-sent dispatcher follow the configuration: see `reconfigure`.
    amqp_cls = "orders.runtime.amqp:AMQP"
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The settings this app runs with: the environment's, unless `reconfigure`d.

        Tasks read their settings here, so that a process serving one environment
        (a test, the stack of a demo) never mixes in another's.
        """
        return self._settings or get_settings()

    def reconfigure(self, settings: Settings) -> None:
        """Point this app at another environment (tests use one per test).

        Only the configuration changes: what was built from the old one (broker and
        producer pools, the task-sent dispatcher) is rebuilt on next use by
        orders.runtime.amqp, and clients are keyed by the settings they were made for.
        """
        self._settings = settings
        self.conf.update(celery_settings(settings))

    @property
    def pool(self) -> Any:
        """Celery's broker connection pool, for the configuration in force."""
        return cast(AMQP, self.amqp).connection_pool

    def producer_pool_for(self, settings: Settings) -> ProducerPool:
        """A producer pool into `settings`' environment, whatever this app is configured for.

        `task.apply_async(..., producer=producer)` with one of its producers sends to
        that environment's queues (the HTTP API bound to other settings does). One pool
        per distinct settings, credentials included (orders.runtime.amqp).
        """
        return cast(AMQP, self.amqp).producer_pool_for(settings)


app = OrdersCelery("orders", include=TASK_MODULES)
app.config_from_object("celeryconfig")
tracing.install()  # OpenTelemetry, only when OTEL_TRACES_EXPORTER asks for it


def configuration_problems(queues: list[str], include: list[str] | None = None) -> list[str]:
    """What stops this process from working, in words an operator can act on."""
    problems = [f"-Q {name}: no such queue in the topology (declared: {', '.join(QUEUES_BY_NAME)})"
                for name in unknown_queues(queues)]
    problems += topology_problems()
    app.loader.import_default_modules()
    for module in include or []:  # `-I` modules: the worker would import them a moment later
        importlib.import_module(module)
    problems += time_limit_problems(dict(app.tasks))
    try:
        settings = app.settings
        clients.require_aws(settings)
        if not problems:
            # Resolving the URLs now (kombu would on its first receive anyway) turns a
            # missing queue or an unreachable endpoint into a message, not a retry loop.
            queue_urls(settings).resolve()
    except ConfigurationError as exc:
        problems.append(str(exc))
    except (BotoCoreError, ClientError) as exc:
        problems.append(f"cannot look the SQS queues up: {exc}")
    return problems


connect_signals()  # log lines as JSON or text, in every worker and beat (orders.runtime.logs)


@signals.celeryd_init.connect
def check_configuration(options: dict[str, Any] | None = None, **_: Any) -> None:
    """Fail fast, with one readable message, on a configuration that cannot work."""
    options = options or {}
    problems = configuration_problems(_as_list(options.get("queues")), _as_list(options.get("include")))
    if problems:
        raise SystemExit("orders: cannot start the worker:\n  - " + "\n  - ".join(problems))


def _as_list(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [v for item in value or () for v in _as_list(item)]
