"""Which API client placed each order: a client reads only the orders it placed.

The `api-orders` table holds one item per order placed through the API, keyed by
the order id alone, so that an order id belongs to one client at most: a
conditional write reserves it before the order is sent, and a client that
names an id another client (or a producer other than the API) already used is
refused. The order store itself is not changed: its records know no clients.
"""

from __future__ import annotations

from typing import Any

from orders.aws import clients
from orders.aws.tables import aws_errors, condition_failed, table_name, to_item
from orders.domain.errors import PermanentError
from orders.domain.times import now_iso
from orders.settings import Settings

TABLE = "api-orders"


class OrderOwners:
    """The owners of one environment's orders placed through the API."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.table = table_name(settings, TABLE)

    def _ddb(self) -> Any:
        return clients.client("dynamodb", self.settings)

    def owner(self, order_id: str) -> str | None:
        """The client that placed `order_id` through the API, if one did."""
        with aws_errors():
            item = self._ddb().get_item(TableName=self.table, Key=to_item({"orderId": order_id}),
                                        ConsistentRead=True).get("Item")
        return None if item is None else str(item["client"]["S"])

    def reserve(self, order_id: str, client: str) -> bool:
        """Make `client` the owner of `order_id`; False if another client already is.

        Reserving again for the same client is harmless (a retry places the same id again).
        """
        item = to_item({"orderId": order_id, "client": client, "reservedAt": now_iso()})
        try:
            with aws_errors():
                self._ddb().put_item(TableName=self.table, Item=item,
                                     ConditionExpression="attribute_not_exists(orderId) OR #c = :client",
                                     ExpressionAttributeNames={"#c": "client"},
                                     ExpressionAttributeValues=to_item({":client": client}))
        except PermanentError as exc:
            if condition_failed(exc):
                return False
            raise
        return True
