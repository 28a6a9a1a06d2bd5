"""Draw one order's trace as a timeline (SVG), from spans an OTLP receiver decoded.

    .venv/bin/pytest tests/integration/test_tracing.py -s     # prints "spans: <file>"
    .venv/bin/python -m benchmarks.trace_picture <file> <order id> docs/img/order-trace.svg

One row per span, in tree order (a child under its parent, indented), its bar where
and as long as it ran, coloured by the process (OTEL_SERVICE_NAME) that recorded it.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Any

ROW, LABEL, WIDTH, TOP = 17, 430, 1180, 46
COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2"]


def order_trace(spans: list[dict[str, Any]], order_id: str) -> list[dict[str, Any]]:
    traces = {s["trace_id"] for s in spans if s["attributes"].get("order.id") == order_id}
    return [s for s in spans if s["trace_id"] in traces]


def tree_order(trace: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(depth, span) depth-first, children by start time."""
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in trace:
        children[span["parent_id"]].append(span)
    rows: list[tuple[int, dict[str, Any]]] = []
    stack = [(0, s) for s in sorted(children[""], key=lambda s: -s["start"])]
    while stack:
        depth, span = stack.pop()
        rows.append((depth, span))
        stack.extend((depth + 1, c) for c in sorted(children[span["span_id"]], key=lambda s: -s["start"]))
    return rows


def label(span: dict[str, Any]) -> str:
    attrs = span["attributes"]
    extra = [f"{k.removeprefix('order.')}={attrs[k]}" for k in ("order.outcome", "order.status")
             if k in attrs]
    return span["name"] + (f"  ({', '.join(extra)})" if extra else "")


def svg(trace: list[dict[str, Any]], title: str) -> str:
    rows = tree_order(trace)
    begin, end = min(s["start"] for s in trace), max(s["end"] for s in trace)
    scale = (WIDTH - LABEL - 20) / max(end - begin, 1)
    services = sorted({s["service"] for s in trace})
    colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(services)}
    height = TOP + ROW * len(rows) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="8" y="18" font-size="14" font-weight="bold">{escape(title)}</text>']
    x = 8
    for name in services:
        out.append(f'<rect x="{x}" y="26" width="10" height="10" fill="{colour[name]}"/>'
                   f'<text x="{x + 14}" y="35">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    for i, (depth, span) in enumerate(rows):
        y = TOP + i * ROW
        left = LABEL + (span["start"] - begin) * scale
        width = max((span["end"] - span["start"]) * scale, 1.5)
        millis = (span["end"] - span["start"]) / 1e6
        if i % 2:
            out.append(f'<rect x="0" y="{y - 2}" width="{WIDTH}" height="{ROW}" fill="#f4f4f4"/>')
        out.append(f'<text x="{8 + 12 * depth}" y="{y + 10}">{escape(label(span))}</text>')
        out.append(f'<rect x="{left:.1f}" y="{y}" width="{width:.1f}" height="{ROW - 5}" '
                   f'fill="{colour[span["service"]]}"/>')
        after = left + width + 3 < WIDTH - 55  # else before the bar
        out.append(f'<text x="{left + width + 3 if after else left - 3:.1f}" y="{y + 10}" fill="#555" '
                   f'text-anchor="{"start" if after else "end"}">{millis:.0f} ms</text>')
    axis = TOP + ROW * len(rows) + 14
    for step in range(6):
        t = (end - begin) * step / 5
        tx = LABEL + t * scale
        out.append(f'<line x1="{tx:.1f}" y1="{TOP - 4}" x2="{tx:.1f}" y2="{axis - 10}" stroke="#ddd"/>'
                   f'<text x="{tx:.1f}" y="{axis + 4}" text-anchor="middle">{t / 1e9:.2f} s</text>')
    out.append("</svg>")
    return "\n".join(out)


def main(spans_file: str, order_id: str, out: str) -> None:
    spans = json.loads(Path(spans_file).read_text())
    trace = order_trace(spans, order_id)
    if not trace:
        raise SystemExit(f"no span of order {order_id} in {spans_file}")
    title = f"Order {order_id}: one trace, {len(trace)} spans, {len({s['service'] for s in trace})} processes"
    Path(out).write_text(svg(trace, title))
    print(f"{out}: {len(trace)} spans")


if __name__ == "__main__":
    main(*sys.argv[1:4])
