"""CloudFormation's building blocks: intrinsic functions, logical ids, tags, typed properties.

The parts of the stack reuse the attribute builders of `orders infra up` (QueueSpec.attributes(),
subscription_attributes(), ...), which return the API's strings and take ARNs as arguments. Here
those builders get a placeholder string for an ARN that only CloudFormation knows, and
`typed` turns their output into template properties with the placeholder replaced by the
intrinsic function that yields it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from orders.settings import Settings
from orders.topology import tags

Resource = dict[str, Any]
Resources = dict[str, Resource]


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def get_att(name: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [name, attribute]}


def sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def arn(service: str, resource: str, regional: bool = True, region: str | None = None) -> dict[str, str]:
    """An ARN in the stack's own partition, region and account (known to CloudFormation only), or in
    another `region` of that account."""
    region = region or ("${AWS::Region}" if regional else "")
    return sub(f"arn:${{AWS::Partition}}:{service}:{region}:${{AWS::AccountId}}:{resource}")


def subbed(value: Any) -> Any:
    """`value` with every string that names a pseudo parameter (${AWS::AccountId}, ...) made an Fn::Sub."""
    if isinstance(value, str):
        whole = re.fullmatch(r"\$\{(AWS::\w+)\}", value)
        return ref(whole.group(1)) if whole else sub(value) if "${AWS::" in value else value
    if isinstance(value, list):
        return [subbed(item) for item in value]
    if isinstance(value, dict):
        return {key: subbed(item) for key, item in value.items()}
    return value


def logical_id(name: str, suffix: str = "") -> str:
    """A logical id (letters and digits) for a declared name: 'inventory.fifo' -> 'InventoryFifo'."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name)) + suffix


def tag_list(settings: Settings, service: str) -> list[dict[str, str]]:
    """The tags every resource carries (orders.topology.tags), as CloudFormation lists them."""
    return [{"Key": key, "Value": value} for key, value in tags(settings, service).items()]


def typed(attributes: dict[str, str], placeholders: dict[str, Any] | None = None) -> dict[str, Any]:
    """API attribute strings as template properties: numbers, booleans and JSON documents typed,
    and each placeholder string replaced by its intrinsic function."""
    return {key: replace(_typed(value), placeholders or {}) for key, value in attributes.items()}


def _typed(value: str) -> Any:
    if value.isdigit():
        return int(value)
    if value in ("true", "false"):
        return value == "true"
    if value.startswith(("{", "[")):
        return json.loads(value)
    return value


def replace(value: Any, placeholders: dict[str, Any]) -> Any:
    """`value` with every string equal to a placeholder replaced by its intrinsic function."""
    if isinstance(value, str):
        return placeholders.get(value, value)
    if isinstance(value, list):
        return [replace(item, placeholders) for item in value]
    if isinstance(value, dict):
        return {key: replace(item, placeholders) for key, item in value.items()}
    return value


def references(value: Any) -> set[str]:
    """Every logical id (resource, parameter or condition) that `value` names."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item[0])
            elif key == "Fn::Sub":
                text, variables = (item, {}) if isinstance(item, str) else item
                names = {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
                found |= (names - set(variables)) | references(variables)
            else:
                found |= references(item)
    return found
