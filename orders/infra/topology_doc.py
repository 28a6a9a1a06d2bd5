"""The topology as Markdown tables, for docs/architecture.md (`python -m orders.infra.topology_doc --write`).

The doc carries the generated tables between markers, and a test checks that
they still match the code, so the documented configuration cannot drift.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from orders.settings import Settings
from orders.topology import DAY, QUEUES, TOPICS, QueueSpec, subscriptions

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
#: Placeholder settings: every optional endpoint shown by the variable that configures it.
ALL_ENDPOINTS = Settings(customer_email="$ORDERS_CUSTOMER_EMAIL", alert_email="$ORDERS_ALERT_EMAIL",
                         alert_sms="$ORDERS_ALERT_SMS", lambda_arn="$ORDERS_LAMBDA_ARN")


def _kind(spec: QueueSpec) -> str:
    if not spec.fifo:
        return "standard"
    parts = ["FIFO", "content-based dedup" if spec.content_based_dedup else "explicit dedup ids"]
    if spec.high_throughput_fifo:
        parts.append("high throughput (dedup and throughput per message group)")
    return ", ".join(parts)


def _retention(seconds: int) -> str:
    return f"{seconds // DAY} days" if seconds >= DAY else f"{seconds // 3600} h"


def queue_table() -> str:
    rows = ["| queue (`-Q`) | type | visibility | retention | long poll | DLQ, after | "
            "task time limit (soft) | purpose |",
            "|---|---|---|---|---|---|---|---|"]
    rows += [f"| `{q.name}` | {_kind(q)} | {q.visibility_timeout} s | {_retention(q.retention)} | "
             f"{q.wait_time} s | `{q.dlq_name}`, {q.max_receive_count} receives | "
             f"{q.task_time_limit} s ({q.task_time_limit - 10} s) | {q.purpose} |" for q in QUEUES]
    return "\n".join(rows)


def topic_table() -> str:
    rows = ["| topic | carries |", "|---|---|"]
    rows += [f"| `{t.name}` | {t.purpose} |" for t in TOPICS]
    return "\n".join(rows)


def subscription_table() -> str:
    rows = ["| topic | protocol | endpoint | filter policy (message attributes) | raw delivery |",
            "|---|---|---|---|---|"]
    for s in subscriptions(ALL_ENDPOINTS):
        policy = "; ".join(f"`{k}` in {', '.join(v)}" for k, v in s.filter_policy.items()) or "none"
        endpoint = f"queue `{s.endpoint}`" if s.protocol == "sqs" else s.endpoint
        raw = ("yes" if s.raw_delivery else "no") if s.protocol == "sqs" else "n/a"
        rows.append(f"| `{s.topic}` | {s.protocol} | {endpoint} | {policy} | {raw} |")
    return "\n".join(rows)


TABLES = {"queues": queue_table, "topics": topic_table, "subscriptions": subscription_table}


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated:{name} -->\n)(.*?)(\n<!-- /generated:{name} -->)", re.S)


def documented(text: str, name: str) -> str | None:
    """The table the doc currently carries between the markers of `name`."""
    found = _block(name).search(text)
    return found.group(2) if found else None


def rewrite(text: str) -> str:
    """The doc with every generated block replaced by the code's current tables."""
    for name, table in TABLES.items():
        generated = table()
        text = _block(name).sub(lambda m: m.group(1) + generated + m.group(3), text)  # noqa: B023
    return text


def main(argv: list[str]) -> None:
    if "--write" in argv:
        DOC.write_text(rewrite(DOC.read_text()))
    else:
        print("\n\n".join(table() for table in TABLES.values()))


if __name__ == "__main__":
    main(sys.argv[1:])
