"""How the emulator's middlewares read a request: the AWS service it is for, or the emulator's own path."""

from __future__ import annotations

import re
from typing import Any

#: The emulator's call counts (orders.emulator.server).
STATS_PATH = "/_orders/calls"
_READ = "orders.signing_service"  # where the answer is kept in the request's environ
_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


def signing_service(environ: dict[str, Any]) -> str | None:
    """The service of a signed request's credential scope ('dynamodb', 'sqs', 'monitoring'...), else None.

    DynamoDB Streams signs as 'dynamodb' too, which is what keeps the two in one process.
    """
    if _READ in environ:  # read once per request: three middlewares ask
        return environ[_READ]  # type: ignore[no-any-return]
    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    environ[_READ] = service = match.group(1) if match else None
    return service
