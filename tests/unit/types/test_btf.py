"""BTF parsing: every kind, bitfields, lookups, split BTF, and typed errors on bad blobs."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Kernel, build_types
from kcrash.errors import CorruptDumpError, TypeLookupError
from kcrash.types.btf import Btf, parse_btf
from kcrash.types.model import Qualifiers, TypeKind
from support.btf_write import BtfWriter


def test_every_kind_builds(kernel: Kernel) -> None:
    b, t = kernel.btf, kernel.ids
    assert b.num_types() == t["decl_tag"]
    i = b.type_by_id(t["int"])
    assert (i.kind, i.name, i.size, i.is_signed) == (TypeKind.INT, "int", 4, True)
    assert b.type_by_id(t["char"]).is_char
    assert b.type_by_id(t["bool"]).kind is TypeKind.BOOL
    assert b.type_by_id(t["double"]).kind is TypeKind.FLOAT
    assert b.type_by_id(t["lh_ptr"]).type is b.type_by_id(t["list_head"])
    arr = b.type_by_id(t["char16"])
    assert (arr.kind, arr.length, arr.sizeof()) == (TypeKind.ARRAY, 16, 16)
    fwd = b.type_by_id(t["opaque"])
    assert (fwd.kind, fwd.tag, fwd.is_complete()) == (TypeKind.STRUCT, "opaque", False)
    assert b.type_by_id(t["opaque_u"]).kind is TypeKind.UNION
    td = b.type_by_id(t["u64"])
    assert td.kind is TypeKind.TYPEDEF and td.strip_typedefs().name == "long unsigned int"
    assert b.type_by_id(t["const_char"]).qualifiers == Qualifiers.CONST
    assert b.type_by_id(t["vol_ulong"]).qualifiers == Qualifiers.VOLATILE
    assert b.type_by_id(t["restrict_ptr"]).qualifiers == Qualifiers.RESTRICT
    assert b.type_by_id(0).kind is TypeKind.VOID


def test_enums_signed_and_64bit(kernel: Kernel) -> None:
    color = kernel.btf.type_by_id(kernel.ids["color"])
    assert [(e.name, e.value) for e in color.enumerators or ()] == [("RED", 0), ("GREEN", 1), ("BLUE", -1)]
    huge = kernel.btf.type_by_id(kernel.ids["huge"])
    assert [e.value for e in huge.enumerators or ()] == [1 << 40, (1 << 64) - 2]
    assert huge.size == 8 and not huge.is_signed


def test_struct_members_and_bitfields(kernel: Kernel) -> None:
    item = kernel.btf.type_by_id(kernel.ids["item"])
    assert item.tag == "item" and item.size == 104
    rows = {m.name: (bits, m.bit_field_size) for m, bits in item.iter_members()}
    assert rows["a"] == (320, 1) and rows["b"] == (321, 3) and rows["c"] == (324, 4) and rows["neg"] == (328, 5)
    assert rows["x"] == (512, 0) and rows["y"] == (512, 0)  # anonymous union flattened
    member, bits = item.member("node")
    assert member.offset == 24 and bits == 192 and member.type.tag == "list_head"
    assert item.bit_offset_of("node.prev") == 256
    assert item.bit_offset_of("tag[3]") == 64 + 24
    with pytest.raises(TypeLookupError):
        item.member("nope")
    assert item.has_member("y") and not item.has_member("z")


def test_function_prototype(kernel: Kernel) -> None:
    proto = kernel.btf.type_by_id(kernel.ids["proto"])
    assert proto.kind is TypeKind.FUNCTION and proto.is_variadic
    assert [p.name for p in proto.parameters] == ["fmt"]
    assert proto.type.name == "int"
    assert kernel.btf.type_by_id(kernel.ids["fn_ptr"]).type_name() == "int (*)(const char *, ...)"


def test_lookup_by_name_and_kind(kernel: Kernel) -> None:
    b = kernel.btf
    assert b.get_type("item", TypeKind.STRUCT).size == 104
    assert b.find_type_or_none("item", TypeKind.UNION) is None
    assert b.get_type("u64", TypeKind.TYPEDEF).name == "u64"
    assert b.get_type("long unsigned int", TypeKind.INT).size == 8
    assert b.get_type("color", TypeKind.ENUM).size == 4
    assert b.get_type("huge", TypeKind.ENUM).size == 8
    assert b.get_type("opaque", TypeKind.STRUCT).is_complete() is False
    assert b.get_type("opaque_union", TypeKind.UNION).kind is TypeKind.UNION
    with pytest.raises(TypeLookupError):
        b.get_type("nonexistent", TypeKind.STRUCT)


def test_complete_definition_wins_over_forward() -> None:
    w = BtfWriter()
    w.add_fwd("thing")
    i = w.add_int("int", 4, signed=True)
    w.add_struct("thing", 4, [("v", i, 0, 0)])
    assert parse_btf(w.to_bytes()).get_type("thing", TypeKind.STRUCT).is_complete()


def test_variables_percpu_and_enumerators(kernel: Kernel) -> None:
    b = kernel.btf
    t = b.find_variable_type_or_none("runqueues")
    assert t is not None and t.tag == "item"
    assert b.find_variable_type_or_none("init_task") is None
    assert b.is_percpu_variable("runqueues") and not b.is_percpu_variable("jiffies")
    hit = b.find_enumerator_or_none("BLUE")
    assert hit is not None and hit[1] == -1 and hit[0].tag == "color"
    assert b.find_enumerator_or_none("PURPLE") is None


def test_types_are_built_once(kernel: Kernel) -> None:
    assert kernel.btf.type_by_id(kernel.ids["item"]) is kernel.btf.type_by_id(kernel.ids["item"])


def test_split_btf_continues_ids_and_strings() -> None:
    base_writer, ids = build_types()
    base = parse_btf(base_writer.to_bytes())
    w = BtfWriter(base=base_writer)
    obj = w.add_struct("mod_obj", 24, [("magic", ids["u32"], 0, 0), ("node", ids["list_head"], 64, 0),
                                       ("flag", ids["uint"], 32, 2)])
    assert obj == base.end_id
    w.add_typedef("mod_obj_t", obj)
    w.add_var("mod_var", obj)
    w.add_enum("mod_state", 4, [("MOD_LIVE", 3)])
    split = parse_btf(w.to_bytes(), base, name="mod")
    t = split.get_type("mod_obj", TypeKind.STRUCT)
    assert t.type_id == base.end_id
    assert t.member("node")[0].type is base.type_by_id(ids["list_head"])
    assert t.member("flag")[0].bit_field_size == 2
    assert split.get_type("list_head", TypeKind.STRUCT) is base.get_type("list_head", TypeKind.STRUCT)
    assert split.get_type("mod_obj_t", TypeKind.TYPEDEF).strip_typedefs() is t
    var = split.find_variable_type_or_none("mod_var")
    assert var is t
    assert split.find_enumerator_or_none("MOD_LIVE") is not None
    assert split.find_enumerator_or_none("GREEN") is not None  # from the base


def _header(blob: bytes, **fields: int) -> bytes:
    names = ["hdr_len", "type_off", "type_len", "str_off", "str_len"]
    out = bytearray(blob)
    for name, value in fields.items():
        i = 4 + 4 * names.index(name)
        out[i:i + 4] = value.to_bytes(4, "little")
    return bytes(out)


def test_bad_blobs_raise_corrupt_dump_error() -> None:
    good = build_types()[0].to_bytes()
    bad = [
        b"", good[:10], b"\xeb\x9f" + good[2:], good[:2] + b"\x02" + good[3:],
        _header(good, type_len=len(good)), _header(good, type_len=6), _header(good, str_len=len(good)),
        _header(good, hdr_len=3), good[:24 + 12 * 5 + 2],
    ]
    for blob in bad:
        with pytest.raises(CorruptDumpError):
            Btf(blob)


def test_truncated_type_section_is_reported_with_offset() -> None:
    w, _ = build_types()
    blob = w.to_bytes()
    type_len = int.from_bytes(blob[12:16], "little")
    strings = blob[24 + type_len:]
    cut = _header(blob[:24 + type_len - 8], type_len=type_len - 8, str_off=type_len - 8) + strings
    with pytest.raises(CorruptDumpError, match="ends inside a record") as exc:
        Btf(cut)
    assert exc.value.offset is not None


def test_unknown_kind_dangling_id_and_cycles() -> None:
    w = BtfWriter()
    w.record(25, "weird", 0, 0, [])
    with pytest.raises(CorruptDumpError, match="unknown kind"):
        parse_btf(w.to_bytes())
    w = BtfWriter()
    p = w.add_ptr(99)
    c = w.add_qualifier("CONST", 3)
    w.add_qualifier("VOLATILE", c)  # 3 -> 2 -> 3
    b = parse_btf(w.to_bytes())
    with pytest.raises(CorruptDumpError, match="out of range"):
        b.type_by_id(p).type  # noqa: B018
    with pytest.raises(CorruptDumpError, match="refers to itself"):
        b.type_by_id(c)
    w = BtfWriter()
    w.record(1, "", 0, 4, [32])
    w._records[-1][0] = 1 << 30  # name offset far past the strings
    with pytest.raises(CorruptDumpError, match="string offset"):
        parse_btf(w.to_bytes()).type_by_id(1)


def test_typedef_cycle_does_not_hang() -> None:
    w = BtfWriter()
    w.add_typedef("a", 2)
    w.add_typedef("b", 1)
    b = parse_btf(w.to_bytes())
    with pytest.raises(CorruptDumpError):
        b.type_by_id(1).strip_typedefs()


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzzed_blobs_raise_only_typed_errors(data: st.DataObject) -> None:
    blob = bytearray(build_types()[0].to_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(blob) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    try:
        b = Btf(bytes(blob))
    except CorruptDumpError:
        return
    with contextlib.suppress(CorruptDumpError, TypeLookupError):  # name lookups on damaged names
        for name in ("item", "list_head", "runqueues", "printk", "BLUE", "HUGE_B", "nope"):
            b.ids_named(name, range(1, 20))
            b.find_enumerator_or_none(name)
            b.find_variable_type_or_none(name)
            b.is_percpu_variable(name)
    with contextlib.suppress(CorruptDumpError, TypeLookupError):
        for type_id in range(b.end_id):
            t = b.type_by_id(type_id)
            t.type_name()
            for m in t.members or ():
                m.type.type_name()


BUILD_ID = "ab" * 20


def test_record_index_is_cached_by_build_id_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = build_types()[0].to_bytes()
    cold = parse_btf(blob, cache_dir=tmp_path, cache_key=BUILD_ID)
    assert (tmp_path / "btf-index" / f"{BUILD_ID}.bin").is_file()

    def no_walk(*_: object) -> list[int]:
        raise AssertionError("the warm open walked the type section")

    monkeypatch.setattr("kcrash.types.btf.record_offsets", no_walk)
    warm = parse_btf(blob, cache_dir=tmp_path, cache_key=BUILD_ID)
    assert warm.num_types() == cold.num_types()
    assert list(warm._offsets) == list(cold._offsets)
    assert list(warm._kinds) == list(cold._kinds)
    assert warm.get_type("list_head", TypeKind.STRUCT).members == cold.get_type("list_head", TypeKind.STRUCT).members


def test_cached_index_of_other_bytes_is_not_used(tmp_path: Path) -> None:
    blob = build_types()[0].to_bytes()
    parse_btf(blob, cache_dir=tmp_path, cache_key=BUILD_ID)
    writer = build_types()[0]
    writer.add_int("extra", 2)
    other = writer.to_bytes()
    btf = parse_btf(other, cache_dir=tmp_path, cache_key=BUILD_ID)  # same key, different bytes: re-indexed
    assert btf.get_type("extra", TypeKind.INT).size == 2
    assert btf.num_types() == parse_btf(other).num_types()


def test_an_index_that_does_not_fit_the_blob_is_corrupt() -> None:
    blob = build_types()[0].to_bytes()
    good = [int(o) for o in parse_btf(blob)._offsets]
    assert Btf(blob, offsets=good).num_types() == len(good)
    # short, shifted, repeated, a record left out (still increasing, still ending at the end),
    # two records merged the other way, out of range either side
    for bad in (good[:-1], [0, *(o + 1 for o in good[1:])], [0, 0, *good[2:]], good[:3] + good[4:],
                [*good[:3], good[3] + 1, *good[4:]], [0, -(10 ** 9), *good[2:]], [*good[:-1], 10 ** 9], []):
        with pytest.raises(CorruptDumpError, match="record index"):
            Btf(blob, offsets=bad)


ALL_KINDS = range(1, 20)


def _scan(btf: Btf, name: str) -> list[int]:
    # the definition: ids of the blob's records whose name string is ``name``
    return [i for i in range(btf.first_id, btf.end_id) if btf.string(btf._record(i)[1]) == name]


def test_name_lookups_find_what_a_scan_of_every_record_finds() -> None:
    writer, ids = build_types()
    prefix = "a_name_longer_than_the_24_bytes_a_key_reads_"
    for suffix in ("x", "y", "xy", ""):
        writer.add_struct(prefix + suffix, 0, [])
    writer.add_int("dup", 1)
    writer.add_typedef("dup", 1)  # the writer keeps one string per name; equal names share it
    again = writer.strings_size
    writer._strings += b"dup\0"  # the same name stored a second time
    writer.add_typedef("other", 1)
    writer._records[-1][0] = again
    writer.add_func("dup", ids["proto"])
    writer.add_struct("\u00e9t\u00e9", 0, [])
    writer.add_struct("zz", 0, [])  # the last string of the blob: its key is read near the end
    btf = parse_btf(writer.to_bytes())
    names = {btf.string(btf._record(i)[1]) for i in range(btf.first_id, btf.end_id)} - {""}
    assert prefix + "xy" in names and "zz" in names
    for name in [*sorted(names), "absent", "lis", "list_headx", prefix[:-1], "dup\0", "z"]:
        assert btf.ids_named(name, ALL_KINDS) == _scan(btf, name), name
    assert btf.ids_named("dup", [1, 8]) == [i for i in _scan(btf, "dup") if btf._record(i)[2] in (1, 8)]
    assert len(btf.ids_named("dup", ALL_KINDS)) == 4 and btf.ids_named("dup", [12]) == _scan(btf, "dup")[-1:]
    assert btf.ids_named("", ALL_KINDS) == []  # no record is named by the empty string


def test_split_name_lookups_find_what_a_scan_finds() -> None:
    base_writer, ids = build_types()
    base = parse_btf(base_writer.to_bytes())
    w = BtfWriter(base=base_writer)
    w.add_struct("list_head", 16, [])  # a name from the base's strings
    w.add_struct("mod_only", 8, [("magic", ids["u32"], 0, 0)])
    w.add_enum("mod_state", 4, [("RED", 7), ("MOD_LIVE", 3)])  # RED: also a base constant
    split = parse_btf(w.to_bytes(), base, name="mod")
    for name in ("list_head", "mod_only", "mod_state", "magic", "item", "absent"):
        assert split.ids_named(name, ALL_KINDS) == _scan(split, name), name
    assert split.ids_named("list_head", ALL_KINDS) == [base.end_id]
    red = split.find_enumerator_or_none("RED")
    assert red is not None and red[1] == 7 and red[0].tag == "mod_state"  # this blob before its base
    base_red = base.find_enumerator_or_none("RED")
    assert base_red is not None and base_red[1] == 0


def test_the_first_enum_by_id_gives_a_constant() -> None:
    w = BtfWriter()
    w.add_enum("first", 4, [("SAME", 1), ("ONLY_FIRST", 2)])
    w.add_enum("second", 4, [("SAME", 5)])
    btf = parse_btf(w.to_bytes())
    same = btf.find_enumerator_or_none("SAME")
    assert same is not None and (same[0].tag, same[1]) == ("first", 1)
    assert btf.find_enumerator_or_none("ONLY") is None and btf.find_enumerator_or_none("") is None


def test_an_index_cached_by_an_older_version_is_replaced(tmp_path: Path) -> None:
    blob = build_types()[0].to_bytes()
    path = tmp_path / "btf-index" / f"{BUILD_ID}.bin"
    path.parent.mkdir()
    path.write_bytes(b"KCRASH btf-index 2\n{}\n" + bytes(64))
    btf = parse_btf(blob, cache_dir=tmp_path, cache_key=BUILD_ID)
    assert btf.get_type("list_head", TypeKind.STRUCT).size == 16
    assert path.read_bytes().startswith(b"KCRASH btf-index 3\n")


def test_a_damaged_index_cache_is_rebuilt_not_blamed_on_the_dump(tmp_path: Path) -> None:
    blob = build_types()[0].to_bytes()
    parse_btf(blob, cache_dir=tmp_path, cache_key=BUILD_ID)
    path = tmp_path / "btf-index" / f"{BUILD_ID}.bin"
    good = path.read_bytes()
    head = good[:good.index(b"\n", good.index(b"\n") + 1) + 1]
    body = good[len(head):]
    for damaged in (head + body[:-8], head + bytes(len(body)), head + body[4:] + b"\0" * 4):
        path.write_bytes(damaged)
        btf = parse_btf(blob, cache_dir=tmp_path, cache_key=BUILD_ID)
        assert btf.get_type("list_head", TypeKind.STRUCT).size == 16
        assert list(btf._offsets) == list(parse_btf(blob)._offsets)
        assert path.read_bytes() == good  # rewritten


def test_an_array_of_itself_has_no_size() -> None:
    # Corrupt BTF: an ARRAY whose element type is the array itself (and a chain of 100 nested
    # arrays). sizeof() and is_complete() walk nested arrays in a bounded loop (it was a recursion
    # with no end) and report the corruption.
    w = BtfWriter()
    i = w.add_int("int", 4, signed=True)
    looped = w.add_array(w.next_id, 2, i)
    nested = [w.add_array(i, 2, i)]
    for _ in range(99):
        nested.append(w.add_array(nested[-1], 2, i))
    btf = parse_btf(w.to_bytes())
    began = time.monotonic()
    for type_id in (looped, nested[-1]):
        t = btf.type_by_id(type_id)
        with pytest.raises(CorruptDumpError, match="nested too deep"):
            t.sizeof()
        with pytest.raises(CorruptDumpError, match="nested too deep"):
            t.is_complete()
    assert time.monotonic() - began < 1.0
    assert btf.type_by_id(nested[10]).sizeof() == 4 * 2 ** 11


def test_a_long_chain_of_qualifiers_is_corrupt_not_a_recursion_error() -> None:
    # Corrupt BTF: 500 CONST records, each qualifying the next (a qualifier resolves its target at
    # once, so this recursed until RecursionError), and a VAR at the top of it. Nesting deeper than
    # 64 is CorruptDumpError; a chain of 60 still builds.
    w = BtfWriter()
    i = w.add_int("int", 4, signed=True)
    consts = [w.add_qualifier("CONST", i)]
    for _ in range(499):
        consts.append(w.add_qualifier("CONST", consts[-1]))
    var = w.add_var("v", consts[-1])
    short = w.add_qualifier("VOLATILE", consts[58])
    btf = parse_btf(w.to_bytes())
    began = time.monotonic()
    for type_id in (consts[-1], var, consts[100]):
        with pytest.raises(CorruptDumpError, match="nested more than 64 deep") as exc:
            btf.type_by_id(type_id)
        assert exc.value.offset is not None
    assert time.monotonic() - began < 1.0
    t = btf.type_by_id(short)
    assert (t.kind, t.name, t.qualifiers) == (TypeKind.INT, "int", Qualifiers.CONST | Qualifiers.VOLATILE)
