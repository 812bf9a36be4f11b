"""The one number rule of every ``--json`` output (kcrash.report.json.json_ready; issue 22 item 7):
addresses and other 64-bit values are "0x..." strings, small counts stay integers, and nothing
JavaScript would round (2^53 and up) is written as a number."""

from __future__ import annotations

import json

from kcrash.report.json import JSON_SAFE_INTEGER, dumps, is_hex_field, json_ready
from kcrash.types.format import CInt


def test_fields_by_meaning() -> None:
    assert all(is_hex_field(k) for k in ("address", "pc", "sp", "task", "flags", "mask", "offset", "ts_nsec", "value"))
    assert not any(is_hex_field(k) for k in ("pid", "cpu", "size", "count", "seq", "level", "line", "bytes"))
    assert is_hex_field("rip", "registers") and is_hex_field("gdt", "segment_bases")
    assert is_hex_field("global_address") and is_hex_field("stack_addr") and not is_hex_field("addresses")
    # a struct layout's member offsets are small byte counts; an xarray index is any unsigned long
    assert not is_hex_field("offset", "members") and is_hex_field("index", "entries") and not is_hex_field("index")


def test_json_ready_rewrites_only_integers() -> None:
    data = {"pid": 7, "task": 0xFFFF888004000000, "function": "schedule", "flags": None, "active": True,
            "registers": [["rip", 0xFFFFFFFF81000000], ["eflags", 0x246]], "values": [1, 2],
            "members": [{"name": "x", "offset": 24}], "entries": [{"index": 8, "value": -1}]}
    assert json_ready(data) == {
        "pid": 7, "task": "0xffff888004000000", "function": "schedule", "flags": None, "active": True,
        "registers": [["rip", "0xffffffff81000000"], ["eflags", "0x246"]], "values": ["0x1", "0x2"],
        "members": [{"name": "x", "offset": 24}], "entries": [{"index": "0x8", "value": "-0x1"}]}


def test_no_unsafe_integer_survives() -> None:
    # a field the table does not name still never carries a number JavaScript would round
    out = json.loads(dumps({"count": JSON_SAFE_INTEGER, "small": JSON_SAFE_INTEGER - 1, "t": (1, 2)}))
    assert out == {"count": hex(JSON_SAFE_INTEGER), "small": JSON_SAFE_INTEGER - 1, "t": [1, 2]}


def test_counts_inside_count_objects_stay_integers() -> None:
    # dump convert / collect vmcore: "excluded" maps a page class to a page count; its "cache" class
    # is a count of page-cache pages, not a kmem cache address (issue 22 item 7)
    data = {"excluded": {"cache": 0x247, "free": 3}, "cache": 0xFFFF888004000000}
    assert json_ready(data) == {"excluded": {"cache": 0x247, "free": 3}, "cache": "0xffff888004000000"}
    assert not is_hex_field("cache", "excluded") and is_hex_field("cache")


def test_c_values_follow_their_type_not_the_member_name() -> None:
    # object_to_json marks C integers of 32 bits or less as CInt: json_ready keeps them integers
    # even in a field named like an address ("value", "flags", "start"); plain ints there are hex
    data = {"value": CInt(1), "flags": [CInt(0x400100), 0x400100], "start": {"start": CInt(-3)}}
    out = json.loads(dumps(data))
    assert out == {"value": 1, "flags": [0x400100, "0x400100"], "start": {"start": -3}}
    assert type(json_ready(CInt(5))) is int
