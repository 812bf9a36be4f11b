"""
kcrash.cli.kmem
===============

``kcrash kmem`` like crash's ``kmem``: ``-s [CACHE...]`` every slab cache (or the named ones) with
its object size, allocated and total objects, slabs and slab size; ``-S CACHE...`` the objects of
each slab, free ones plain and allocated ones in brackets as crash marks them; ``-i`` memory usage;
``ADDR...`` (``-`` reads addresses from stdin) what each address is. Argument parsing and output
only: the slab work is :mod:`kcrash.helpers.linux.slab`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import click

from kcrash.cli.common import echo_json, opened_target
from kcrash.cli.params import DumpOrLive, parse_number
from kcrash.errors import CliError, KcrashError
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = ["kmem"]


@click.command("kmem")
@click.argument("path", metavar="DUMP", type=DumpOrLive())
@click.argument("addresses", metavar="[ADDR...|CACHE...]", nargs=-1)
@click.option("-s", "slabs", is_flag=True, help="Every slab cache (or the CACHEs named): objects, slabs, sizes.")
@click.option("-S", "slab_objects", is_flag=True, help="The objects of each slab of the CACHEs named.")
@click.option("-i", "usage", is_flag=True, help="Memory usage summary.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def kmem(path: str, addresses: tuple[str, ...], slabs: bool, slab_objects: bool, usage: bool, as_json: bool) -> None:
    """Kernel memory: slab caches (-s, -S), usage (-i), or what each ADDR is."""
    if slabs + slab_objects + usage > 1:
        raise CliError("choose one of -s, -S and -i", 2)
    if usage:
        _kmem_usage(path, addresses, as_json)
    elif slabs:
        _kmem_slab_caches(path, addresses, as_json)
    elif slab_objects:
        _kmem_slab_objects(path, addresses, as_json)
    else:
        _kmem_addresses(path, addresses, as_json)


# -- kmem -i ----------------------------------------------------------------------------------------


_USAGE_HEADER = "                 PAGES        TOTAL      PERCENTAGE"


def _pages_to_size(pages: int, page_size: int) -> str:
    # crash's pages_to_size() (tools.c): "0", "N KB", "N.N MB" or "N.N GB", a ".0" dropped
    if not pages:
        return "0"
    total = pages * page_size
    if total >= 1 << 30:
        text = f"{total / (1 << 30):.1f} GB"
    elif total >= 1 << 20:
        text = f"{total / (1 << 20):.1f} MB"
    else:
        text = f"{total // 1024} KB"
    return text.replace(".0 ", " ")


def _kmem_usage(path: str, args: tuple[str, ...], as_json: bool) -> None:
    # kmem -i [shared]: "shared" also counts shared pages (crash's kmem -i=shared), a pass over
    # every struct page
    # lazy: +91 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.memory_usage import memory_usage

    if args not in ((), ("shared",)):
        raise CliError(f"kmem -i takes no argument but 'shared', not {' '.join(args)!r}", 2)
    with opened_target(path, orc=False) as prog:
        usage = memory_usage(prog, shared=bool(args))
    for note in usage.notes:
        click.echo(f"kcrash: warning: {note}", err=True)
    if as_json:
        rows = [{"label": r.label, "pages": r.pages, "bytes": r.pages * usage.page_size,
                 "percent": usage.percent(r), "of": r.of} for group in usage.groups() for r in group]
        counts = asdict(usage)
        # "slab" is an address wherever else it appears (kmem ADDR, -S): here the pages are "slab_pages"
        counts["slab_pages"] = counts.pop("slab")
        echo_json({**counts, "rows": rows})
        return
    click.echo(_USAGE_HEADER)
    for i, group in enumerate(usage.groups()):
        if i:
            click.echo()
        for row in group:
            size = _pages_to_size(row.pages, usage.page_size)
            pct = usage.percent(row)
            tail = "        ----" if pct is None else f" {pct:>3}% of {row.of}"
            click.echo(f"{row.label:>13}  {row.pages:>7}  {size:>11} {tail}")


# -- kmem ADDR... -----------------------------------------------------------------------------------


def _address_words(args: tuple[str, ...]) -> list[str]:
    # the ADDR arguments, "-" standing for the lines of stdin (blank lines skipped)
    words: list[str] = []
    for arg in args:
        if arg == "-":
            text = sys.stdin.read()
            words.extend(word for word in (line.strip() for line in text.splitlines()) if word)
        else:
            words.append(arg)
    if not words:
        raise CliError("kmem needs an ADDR (or -s, -S, -i); '-' reads addresses from stdin", 2)
    return words


def _resolve_address(prog: Program, word: str) -> int:
    # an address, SYMBOL or SYMBOL+OFF (kcrash.cli.params has the rule); module symbols too
    arg = parse_number(word, "symbol", "address")

    def lookup(name: str) -> int:
        try:
            return prog.symbol_address(name)
        except KcrashError:
            raise CliError(f"no symbol {name!r} (an address is 0x followed by hex digits, "
                           "or 8 to 16 hex digits)", 1) from None

    return int(arg.resolve(lookup))


_PAGE_HEADER = "      PAGE        PHYSICAL      MAPPING       INDEX CNT FLAGS"


def _print_identity(found: Any) -> None:
    # The one-line answer (drgn's words), then crash's kmem blocks for what the address is in.
    click.echo(f"{found.address:016x}  {found.describe()}")
    _DETAILS.get(found.kind, lambda f: None)(found)
    page = found.page
    if page is not None:
        names = ",".join(n.removeprefix("PG_") for n in page.flag_names)
        words = [f"{page.flags:x}", *(w for w in (names, f"[{page.page_type}]" if page.page_type else "") if w)]
        click.echo(f"\n{_PAGE_HEADER}")
        click.echo(f"{page.address:016x} {page.pfn << 12:>8x} {page.mapping:>16x} {page.index:>8x} {page.refcount:>2} "
                   f"{' '.join(words)}")
    if found.note:
        click.echo(f"  ({found.note})")


def _print_vmap(found: Any) -> None:
    va = found.vmap
    if va is None:
        return
    click.echo(f"\n{'VMAP_AREA':>13}{'VM_STRUCT':>18}{'ADDRESS RANGE':>29}{'SIZE':>20}  FLAGS")
    click.echo(f"{va.address:016x}  {va.vm:016x}  {va.start:016x} - {va.end:016x}  {va.end - va.start:>7}  "
               f"{','.join(va.flag_names) or hex(va.flags)}")


def _print_slab(found: Any) -> None:
    slab = found.slab
    if slab is None:
        return
    mark = {True: f"[{slab.address:x}]", False: f" {slab.address:x}", None: f"?{slab.address:x}?"}[slab.allocated]
    size = (found.end or slab.address) - slab.address
    click.echo(f"\n{'CACHE':<16}  {'OBJSIZE':>7}  NAME")
    click.echo(f"{slab.cache:016x}  {size:>7}  {slab.cache_name}")
    click.echo(f"  {'SLAB':<16}  FREE / [ALLOCATED]")
    click.echo(f"  {slab.slab:016x}  {mark}")


def _print_task(found: Any) -> None:
    what = "STACK" if found.kind == "task_stack" else "TASK_STRUCT"
    click.echo(f"\nPID: {found.pid:<7} TASK: {found.task:016x}  COMMAND: \"{found.name}\"")
    click.echo(f"{what}: {found.start:016x} - {found.end:016x}")
    if found.vmap is not None:
        _print_vmap(found)


def _print_percpu(found: Any) -> None:
    where = f"{found.name}+{found.offset:#x}" if found.name else f"unit offset {found.offset:#x}"
    module = f" [{found.module}]" if found.module else ""
    click.echo(f"\nPER-CPU: CPU {found.cpu}  {where}{module}")


_DETAILS = {"vmap": _print_vmap, "slab": _print_slab, "task": _print_task, "task_stack": _print_task,
            "percpu": _print_percpu}


def _identity_json(found: Any) -> dict[str, Any]:
    out = asdict(found)
    out["description"] = found.describe()
    if found.page is not None:
        out["page"]["flag_names"] = list(found.page.flag_names)
    if found.vmap is not None:
        out["vmap"]["flag_names"] = list(found.vmap.flag_names)
    return out


def _kmem_addresses(path: str, args: tuple[str, ...], as_json: bool) -> None:
    # lazy: +127 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.identify import identify_address

    words = _address_words(args)
    with opened_target(path) as prog:
        found = [identify_address(prog, _resolve_address(prog, word)) for word in words]
    if as_json:
        echo_json({"addresses": [_identity_json(f) for f in found]})
        return
    for i, f in enumerate(found):
        if i:
            click.echo()
        _print_identity(f)


# -- kmem -s / -S (slab caches) ---------------------------------------------------------------------

_SLAB_HEADER = f"{'CACHE':<16}  {'OBJSIZE':>7}  {'ALLOCATED':>9}  {'TOTAL':>9}  {'SLABS':>6}  {'SSIZE':>5}  NAME"


def _named_caches(prog: Program, names: tuple[str, ...]) -> Iterator[Object]:
    # Every cache (no names), else each named cache; an unknown name is an error.
    # lazy: +56 ms CPU to import it after this module (measured, loaded host)
    from kcrash.helpers.linux.slab import find_slab_cache, for_each_slab_cache

    if not names:
        walk = for_each_slab_cache(prog)
        yield from walk
        if walk.truncated:
            click.echo(f"kcrash: warning: slab_caches walk stopped early: {walk.truncated}", err=True)
        return
    for name in names:
        cache = find_slab_cache(prog, name)
        if cache is None:
            raise CliError(f"no slab cache named {name!r}", 1)
        yield cache


def _slab_cache_row(prog: Program, cache: Object) -> dict[str, Any]:
    # lazy: +56 ms CPU to import it after this module (measured, loaded host)
    from kcrash.helpers.linux.slab import slab_cache_info, slab_cache_usage

    info, usage = slab_cache_info(prog, cache), slab_cache_usage(prog, cache)
    return {"cache": info.address, "name": info.name, "object_size": info.object_size, "size": info.size,
            "objects_per_slab": info.objects_per_slab, "order": info.order, "slab_size": info.slab_size,
            "slabs": usage.num_slabs, "total": usage.num_objs, "free": usage.free_objs,
            "allocated": usage.active_objs, "error": usage.error}


def _ssize(size: int) -> str:
    return f"{size >> 10}k"


def _print_slab_row(row: dict[str, Any]) -> None:
    click.echo(f"{row['cache']:016x}  {row['object_size']:>7}  {row['allocated']:>9}  {row['total']:>9}  "
               f"{row['slabs']:>6}  {_ssize(row['slab_size']):>5}  {row['name']}")
    if row["error"]:
        click.echo(f"kcrash: warning: {row['name']}: {row['error']}", err=True)


def _readable_rows(prog: Program, names: tuple[str, ...]) -> list[dict[str, Any]]:
    # one row per cache; a cache whose kmem_cache cannot be read is a warning, not the end of the list
    rows = []
    for cache in _named_caches(prog, names):
        try:
            rows.append(_slab_cache_row(prog, cache))
        except KcrashError as exc:
            click.echo(f"kcrash: warning: slab cache {int(cache):#x}: {exc}", err=True)
    return rows


def _kmem_slab_caches(path: str, names: tuple[str, ...], as_json: bool) -> None:
    with opened_target(path, orc=False) as prog:
        rows = _readable_rows(prog, names)
    if as_json:
        echo_json({"caches": rows})
        return
    click.echo(_SLAB_HEADER)
    for row in rows:
        _print_slab_row(row)


def _slab_objects_json(prog: Program, cache: Object) -> dict[str, Any]:
    # lazy: +56 ms CPU to import it after this module (measured, loaded host)
    from kcrash.helpers.linux.slab import slab_cache_for_each_object, slab_cache_slab_locations

    row = _slab_cache_row(prog, cache)
    slabs: dict[int, list[dict[str, Any]]] = {}
    for obj in slab_cache_for_each_object(prog, cache):
        slabs.setdefault(obj.slab, []).append({"address": obj.address, "allocated": obj.allocated})
    where = slab_cache_slab_locations(prog, cache)
    row["slab_list"] = sorted(({"slab": slab, "where": where.get(slab), "objects": objects}
                               for slab, objects in slabs.items()), key=_location_order)
    return row


def _location_order(slab: dict[str, Any]) -> tuple[int, int, int, int]:
    # crash's order: each CPU's slab and partial slabs, then each node's partial slabs, then the rest
    where = slab["where"]
    if where is None:
        return 2, 0, 0, slab["slab"]
    kind, number, *rest = where.split()
    return (1 if kind == "node" else 0), int(number), 1 if rest and kind == "cpu" else 0, slab["slab"]


def _location_title(where: str | None) -> str:
    if where is None:
        return "ON NO LIST (FULL):"
    kind, number, *rest = where.split()
    return f"{kind.upper()} {number} {'PARTIAL' if rest else 'SLAB'}:"


def _print_slab_objects(row: dict[str, Any]) -> None:
    click.echo(_SLAB_HEADER)
    _print_slab_row(row)
    title = ""
    for slab in row["slab_list"]:
        if _location_title(slab["where"]) != title:
            title = _location_title(slab["where"])
            click.echo(title)
        objects = slab["objects"]
        used = sum(1 for o in objects if o["allocated"])
        click.echo(f"  {'SLAB':<16}  {'MEMORY':<16}  {'TOTAL':>5}  {'ALLOCATED':>9}  {'FREE':>4}")
        click.echo(f"  {slab['slab']:016x}  {objects[0]['address'] if objects else 0:016x}  {len(objects):>5}  "
                   f"{used:>9}  {len(objects) - used:>4}")
        click.echo("  FREE / [ALLOCATED]")
        for o in objects:
            mark = {True: f"[{o['address']:x}]", False: f" {o['address']:x}", None: f"?{o['address']:x}?"}
            click.echo(f"  {mark[o['allocated']]}")


def _kmem_slab_objects(path: str, names: tuple[str, ...], as_json: bool) -> None:
    if not names:
        raise CliError("kmem -S needs a CACHE name", 2)
    with opened_target(path, orc=False) as prog:
        rows = [_slab_objects_json(prog, cache) for cache in _named_caches(prog, names)]
    if as_json:
        echo_json({"caches": rows})
        return
    for row in rows:
        _print_slab_objects(row)
