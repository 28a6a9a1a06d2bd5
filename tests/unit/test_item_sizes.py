"""The item sizes the cost section is built on, counted as DynamoDB counts them (benchmarks.item_sizes)."""

import pytest

from benchmarks.item_sizes import item_size, kind_of, value_size


@pytest.mark.parametrize(("value", "size"), [
    ({"S": "abc"}, 3), ({"S": "é"}, 2),  # UTF-8 bytes
    ({"N": "12345"}, 3), ({"N": "-1.50"}, 2), ({"N": "0"}, 1),  # a byte per two significant digits, and one
    ({"BOOL": True}, 1), ({"NULL": True}, 1), ({"B": b"\x00\x01"}, 2),
    ({"L": [{"S": "ab"}, {"N": "7"}]}, 3 + (1 + 2) + (1 + 1)),  # 3 bytes a list, 1 an element
    ({"M": {"k": {"S": "v"}}}, 3 + 1 + 1 + 1),  # 3 bytes a map, 1 an element, its name
])
def test_each_value_type_counts_as_dynamodb_counts_it(value, size):
    assert value_size(value) == size


def test_an_item_is_its_names_and_values_and_is_told_by_kind():
    item = {"pk": {"S": "ord-1"}, "sk": {"S": "order"}, "status": {"S": "completed"}}
    assert item_size(item) == (2 + 5) + (2 + 5) + (6 + 9)
    assert kind_of("orders", item) == "orders: completed order"
    assert kind_of("orders", {"sk": {"S": "reservation"}}) == "orders: reservation"
    assert kind_of("stock", {}) == "stock"
    with pytest.raises(ValueError):
        value_size({"X": 1})
