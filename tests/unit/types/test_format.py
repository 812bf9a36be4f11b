"""Text and JSON forms of layouts and objects."""

from __future__ import annotations

import json

from conftest import Kernel
from kcrash.types.format import format_layout, format_object, layout_to_json, object_to_json


def test_layout_text_like_crash_struct_o(kernel: Kernel) -> None:
    assert format_layout(kernel.prog.type("struct item")) == """\
struct item {
       [0] u32 magic;
       [4] int id;
       [8] char tag[16];
      [24] struct list_head node;
    [40:0] unsigned int a : 1;
    [40:1] unsigned int b : 3;
    [40:4] unsigned int c : 4;
    [41:0] int neg : 5;
      [48] struct hlist_node hnode;
      [64] union {
        [64] long int x;
        [64] int y;
           };
      [72] enum color col;
      [80] const char *name;
      [88] enum huge big;
      [96] double ratio;
}
SIZE: 104"""
    fn = format_layout(kernel.prog.type("struct task_struct"))
    assert "int (*fn)(const char *, ...);" in fn


def test_layout_json(kernel: Kernel) -> None:
    data = layout_to_json(kernel.prog.type("item_t"))
    assert data["size"] == 104 and data["type"] == "item_t"
    rows = {m["name"]: m for m in data["members"]}
    assert rows["neg"]["bit_offset"] == 328 and rows["neg"]["bit_size"] == 5
    assert rows["y"]["offset"] == 64 and rows["tag"]["size"] == 16


def test_object_text_and_json(kernel: Kernel) -> None:
    item = kernel.prog.object("struct item", kernel.notes["item0"])
    text = format_object(item)
    assert text.startswith("(struct item){\n")
    assert '\t.tag = "obj-0",' in text and "\t.col = BLUE," in text and "\t.neg = -3," in text
    assert f"\t.next = {kernel.notes['item1'] + 24:#x}," in text
    data = object_to_json(item)
    assert data["tag"] == "obj-0" and data["node"]["prev"] == hex(kernel.notes["head"]) and data["ratio"] == 1.5
    # pointers and 64-bit integers are "0x..." strings (JSON numbers are doubles); narrower ints stay ints
    assert data["node"]["next"] == hex(kernel.notes["item1"] + 24) and data["neg"] == -3 and data["id"] == 0


def test_faults_inside_objects_are_marked(kernel: Kernel) -> None:
    bad = kernel.prog.object("struct item *[2]", kernel.notes["item0"] + 80)  # name pointer, then big
    assert format_object(bad).count("0x") == 2
    # an array of items whose second element runs off mapped memory
    edge = kernel.prog.object("struct item [2]", 0xFFFF888000010000 - 104)
    text = format_object(edge, max_elements=2)
    assert "<fault at 0xffff888000010000>" in text
    assert object_to_json(edge)[1] == {"fault": "0xffff888000010000"}


def test_hexadecimal_integers_in_their_width(kernel: Kernel) -> None:
    item = kernel.prog.object("struct item", kernel.notes["item0"])
    text = format_object(item, radix=16)
    for line in ("\t.magic = 0xc0ffee01,", "\t.id = 0x0,", "\t.neg = 0x1d,", "\t.x = 0xffffffffffffcfc7,",
                 "\t.y = 0xffffcfc7,", "\t.col = BLUE,", "\t.ratio = 1.5,", '\t.tag = "obj-0",'):
        assert line in text.splitlines(), line
    assert format_object(item.id, radix=16) == "(int)0x0"
    assert format_object(item.magic) == "(u32)3237998081"


def test_json_integers_follow_the_c_type(kernel: Kernel) -> None:
    # issue 22 item 7: through the one JSON rule (json_ready) a C value keeps its type's shape
    # whatever the key: u32/int/enum stay integers, long and pointers are "0x..." strings
    from kcrash.report.json import dumps

    item = kernel.prog.object("struct item", kernel.notes["item0"])
    data = json.loads(dumps({"value": object_to_json(item.member_("magic")),
                             "flags": object_to_json(item.member_("neg")),
                             "start": object_to_json(item), "address": item.address_}))
    assert data["value"] == 0xC0FFEE01 and data["flags"] == -3 and data["address"] == hex(kernel.notes["item0"])
    assert data["start"]["x"] == "-0x3039" and data["start"]["y"] == -12345 and data["start"]["id"] == 0
    assert data["start"]["node"]["prev"] == hex(kernel.notes["head"])
