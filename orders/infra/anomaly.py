"""The anomaly detectors (CloudWatch's models) behind the predictive alarms' bands.

A detector has no name and no ARN: it is its metric (namespace, name, dimensions) and statistic,
which orders.infra.predictive derives from the alarms. `orders infra up` puts each missing one,
`check` reports it missing, `down` deletes them. The embedded emulator (moto 5.2) has no
anomaly-detector API (PutAnomalyDetector and DescribeAnomalyDetectors answer 500, "not
implemented"): on an emulator endpoint the step is skipped with a note in the command's output,
and the alarms that use the bands are created and checked as usual.
"""

from __future__ import annotations

from typing import Any

from orders.aws import clients
from orders.infra.converger import Converger
from orders.infra.predictive import anomaly_detectors
from orders.settings import Settings

Key = tuple[str, str, tuple[tuple[str, str], ...], str]


def key(detector: dict[str, Any]) -> Key:
    """What identifies a detector, whatever order its dimensions come in."""
    dims = tuple(sorted((d["Name"], d["Value"]) for d in detector.get("Dimensions") or []))
    return detector["Namespace"], detector["MetricName"], dims, detector["Stat"]


def label(detector: dict[str, Any]) -> str:
    dims = ",".join(f"{name}={value}" for name, value in key(detector)[2])
    return f"anomaly detector {detector['Namespace']}/{detector['MetricName']}[{dims}] {detector['Stat']}"


def live_detectors(settings: Settings) -> set[Key]:
    """The single-metric detectors of the declared metrics' namespaces (the account's, not only ours)."""
    cloudwatch = clients.client("cloudwatch", settings)
    found: set[Key] = set()
    for namespace in sorted({d["Namespace"] for d in anomaly_detectors(settings)}):
        token: dict[str, str] = {}
        while True:
            page = cloudwatch.describe_anomaly_detectors(
                Namespace=namespace, AnomalyDetectorTypes=["SINGLE_METRIC"], **token)
            for detector in page.get("AnomalyDetectors", []):
                found.add(key(detector.get("SingleMetricAnomalyDetector") or detector))
            if not page.get("NextToken"):
                break
            token = {"NextToken": page["NextToken"]}
    return found


def unsupported(settings: Settings) -> str:
    declared = len(anomaly_detectors(settings))
    return (f"anomaly detectors ({declared} declared): skipped, an emulator endpoint has no anomaly-detector "
            "API (moto: PutAnomalyDetector, DescribeAnomalyDetectors not implemented); the alarms that use "
            "their bands are converged and checked as usual")


def converge_detectors(converger: Converger) -> None:
    """Provisioning step: every model a predictive alarm's band needs exists."""
    settings = converger.settings
    if converger.on_emulator:
        converger.report.note(unsupported(settings))
        return
    live = live_detectors(settings)
    cloudwatch = clients.client("cloudwatch", settings)
    for detector in anomaly_detectors(settings):
        if key(detector) in live:
            continue
        converger.report.add(f"{label(detector)}: {'created' if converger.apply else 'missing'}")
        if converger.apply:
            cloudwatch.put_anomaly_detector(SingleMetricAnomalyDetector=detector)


def delete_detectors(settings: Settings) -> list[str]:
    """Teardown step (nothing on an emulator endpoint, which cannot have created any)."""
    if settings.has_endpoint:
        return []
    live = live_detectors(settings)
    cloudwatch = clients.client("cloudwatch", settings)
    deleted = []
    for detector in anomaly_detectors(settings):
        if key(detector) in live:
            cloudwatch.delete_anomaly_detector(SingleMetricAnomalyDetector=detector)
            deleted.append(label(detector))
    return deleted
