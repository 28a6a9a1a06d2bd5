"""The Celery application: `celery -A orders worker -Q payments`."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery import Celery, signals

import tasks
from orders.runtime.config import celery_settings
from orders.runtime.control_plane import ControlPlaneApp
from orders.runtime.queue_urls import queue_urls
from orders.runtime.routing import time_limit_problems, unknown_queues
from orders.settings import ConfigurationError, Settings, get_settings
from orders.topology import QUEUES_BY_NAME, topology_problems

#: Every module of the `tasks` package: one per service, found rather than listed
#: so that adding a service is adding a module.
TASK_MODULES = sorted(f"tasks.{m.name}" for m in pkgutil.iter_modules(tasks.__path__))


class OrdersCelery(ControlPlaneApp, Celery):
    """Celery on SQS, configured from `orders.settings`; monitoring over the control plane."""

    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The settings this app runs with: the environment's, unless `reconfigure`d.

        Tasks read their settings here, so that a process serving one environment
        (a test, the API bound to another) never mixes in another's.
        """
        return self._settings or get_settings()

    def reconfigure(self, settings: Settings) -> None:
        """Point this app at another environment (tests use one per test)."""
        self._settings = settings
        self.conf.update(celery_settings(settings))
        self._pool = None  # the broker pool was built for the old transport options
        if "amqp" in self.__dict__:
            # So was the producer pool: kept, it would send to the old environment's queues.
            self.amqp._producer_pool = None  # type: ignore[attr-defined]
        self.forget_control_plane()
        if "amqp" in self.__dict__:
            self.amqp.queues = self.amqp.Queues(self.conf.task_queues)  # type: ignore[misc]


app = OrdersCelery("orders", include=TASK_MODULES)
app.config_from_object("celeryconfig")


def configuration_problems(queues: list[str], include: list[str] | None = None) -> list[str]:
    """What stops this process from working, in words an operator can act on."""
    from orders.aws import clients

    problems = [f"-Q {name}: no such queue in the topology (declared: {', '.join(QUEUES_BY_NAME)})"
                for name in unknown_queues(queues)]
    problems += topology_problems()
    app.loader.import_default_modules()
    for module in include or []:  # `-I` modules: the worker would import them a moment later
        importlib.import_module(module)
    problems += time_limit_problems(dict(app.tasks))
    try:
        settings = get_settings()
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
