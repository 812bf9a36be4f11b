"""identify_address on a synthetic kernel, in drgn's order: a symbol (init_task as a task), a
struct page, a slab object (allocated, free, a task_struct), a task's vmap'd stack, a vmalloc area
with its caller, a CPU's per-CPU variable, other direct-map memory, user space and the unknown. The
slab walker and the task list are stand-ins here (they have tests of their own); the answers'
one-line descriptions are drgn's words."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from kcrash.analysis import identify
from kcrash.analysis.identify import KINDS, identify_address, identify_addresses
from kcrash.helpers.linux.list import ListWalk
from kcrash.helpers.linux.slab import SlabObjectInfo
from kcrash.types.object import Object
from support.mm_kernel import BASE, GLOBALS, PAGE, PAGE_OFFSET, UNIT_PFN, VMALLOC, VMEMMAP, Kernel

KMALLOC, TASK_CACHE = 0xFFFF888000002000, 0xFFFF888000002100


def _task(k: Kernel, pid: int, comm: bytes, stack: int, at: int | None = None) -> int:
    addr = at if at is not None else k.alloc(0x40)
    k.u32(addr, pid)
    k.put(addr + 4, comm.ljust(16, b"\0"))
    k.u64(addr + 32, stack)
    return addr


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Kernel:
    k = Kernel()
    init_task = _task(k, 0, b"swapper/0", BASE + 0x8000, at=GLOBALS["init_task"])
    worker = _task(k, 42, b"kworker/1:0", VMALLOC + 4 * PAGE)
    k.u64(GLOBALS["task_struct_cachep"], TASK_CACHE)
    k.vmap_area(VMALLOC, VMALLOC + 2 * PAGE, caller=BASE + 0x20, nr_pages=1)
    k.vmap_area(VMALLOC + 2 * PAGE, VMALLOC + 3 * PAGE, vm=False)
    k.vmap_area(VMALLOC + 4 * PAGE, VMALLOC + 9 * PAGE, caller=BASE + 0x30, nr_pages=4)
    tasks = [Object(k.prog, k.prog.pointer_type("struct task_struct"), t) for t in (init_task, worker)]

    def for_each_task(prog: object, *, idle: bool = False) -> ListWalk:
        def nodes(walk: ListWalk) -> Iterator[Object]:
            return iter(tasks)
        return ListWalk(nodes)

    def slab_object_info(prog: object, address: int) -> SlabObjectInfo | None:
        # page 3 holds a kmalloc-64 slab (even objects allocated), page 5 a task_struct slab
        if PAGE_OFFSET + 3 * PAGE <= address < PAGE_OFFSET + 4 * PAGE:
            start = address - address % 64
            return SlabObjectInfo("kmalloc-64", KMALLOC, VMEMMAP + 3 * 64, start, address - start,
                                  (start // 64) % 2 == 0)
        if PAGE_OFFSET + 5 * PAGE <= address < PAGE_OFFSET + 6 * PAGE:
            start = address - address % 0x40
            return SlabObjectInfo("task_struct", TASK_CACHE, VMEMMAP + 5 * 64, start, address - start, True)
        return None

    monkeypatch.setattr(identify, "for_each_task", for_each_task)
    monkeypatch.setattr(identify, "slab_object_info", slab_object_info)
    monkeypatch.setattr(identify, "kernel_unwinder", lambda prog: SimpleNamespace(thread_size=4 * PAGE))
    return k


def test_each_kind(kernel: Kernel) -> None:
    prog = kernel.prog
    task_in_slab = PAGE_OFFSET + 5 * PAGE + 0x40
    _task(kernel, 77, b"exiting", 0, at=task_in_slab)
    cases = {
        GLOBALS["max_pfn"] + 4: "object symbol: max_pfn+0x4",
        GLOBALS["init_task"] + 8: "task: 0 (swapper/0) +0x8",
        VMEMMAP + 5 * 64 + 3: "page: pfn 5 +0x3",
        PAGE_OFFSET + 3 * PAGE + 0x10: "slab object: kmalloc-64+0x10",
        PAGE_OFFSET + 3 * PAGE + 0x48: "free slab object: kmalloc-64+0x8",
        task_in_slab + 4: "task: 77 (exiting) +0x4",
        VMALLOC + 4 * PAGE + 0x10: "task stack: 42 (kworker/1:0) +0x10",
        VMALLOC + 0x10: f"vmap: {VMALLOC:#x}-{VMALLOC + 2 * PAGE:#x} caller _stext+0x20",
        PAGE_OFFSET + UNIT_PFN[1] * PAGE + 0x104: "per-cpu: CPU 1 runqueues+0x4",
        PAGE_OFFSET + 2 * PAGE + 5: "direct map: pfn 2",
        0x1000: "user address",
        VMALLOC + 2 * PAGE + 8: "unknown",  # a vmap area without a vm_struct: drgn names none either
        0xFFFFFFFFFF000000: "unknown",
    }
    found = identify_addresses(prog, list(cases))
    assert [f.describe() for f in found] == list(cases.values())
    assert all(f.kind in KINDS for f in found)


def test_details(kernel: Kernel) -> None:
    prog = kernel.prog
    page = identify_address(prog, VMEMMAP + 5 * 64 + 3)
    assert (page.pfn, page.offset, page.start, page.page is not None and page.page.pfn) == (5, 3, VMEMMAP + 320, 5)
    stack = identify_address(prog, VMALLOC + 4 * PAGE + 0x10)
    assert (stack.pid, stack.start, stack.end, stack.caller) == (42, VMALLOC + 4 * PAGE, VMALLOC + 8 * PAGE,
                                                                  "_stext+0x30")
    assert stack.vmap is not None and stack.vmap.nr_pages == 4
    slab = identify_address(prog, PAGE_OFFSET + 3 * PAGE + 0x10)
    assert (slab.kind, slab.allocated, slab.start, slab.pfn) == ("slab", True, PAGE_OFFSET + 3 * PAGE, 3)
    percpu = identify_address(prog, PAGE_OFFSET + UNIT_PFN[0] * PAGE + 0x3000)
    assert (percpu.kind, percpu.cpu, percpu.name, percpu.offset) == ("percpu", 0, None, 0x3000)
    assert percpu.describe() == "per-cpu: CPU 0 unit +0x3000"


def test_a_slab_walker_error_is_a_note(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    from kcrash.errors import FaultError

    def broken(prog: object, address: int) -> None:
        raise FaultError(address, False, "slab page missing")

    monkeypatch.setattr(identify, "slab_object_info", broken)
    found = identify_address(kernel.prog, PAGE_OFFSET + 2 * PAGE)
    assert found.kind == "direct_map" and found.note is not None


def test_a_module_address_past_its_sized_symbol_is_the_modules_vmap_area(kernel: Kernel) -> None:
    # A module keeps its ELF symbol table (st_size) in memory: past a symbol's end (alignment
    # padding, unnamed data) the address is in no symbol, and what follows answers: the vmap area
    # the module was loaded into (drgn says the same with the .ko's sizes).
    from kcrash.debuginfo.symbols import Symbol

    module = VMALLOC + 16 * PAGE
    kernel.vmap_area(module, module + 3 * PAGE, caller=BASE + 0x20, nr_pages=2)
    kernel.symbols.add_module("m", module, 2 * PAGE, [Symbol("m_func", module + 0x10, 0x20, "t", "m"),
                                                      Symbol("m_next", module + 0x100, 0x8, "t", "m")], sized=True)
    inside = identify_address(kernel.prog, module + 0x2F)
    assert inside.describe() == "function symbol: m_func+0x1f [m]"
    assert (inside.start, inside.end) == (module + 0x10, module + 0x30)
    past = identify_address(kernel.prog, module + 0x30)
    assert past.describe() == f"vmap: {module:#x}-{module + 3 * PAGE:#x} caller _stext+0x20"
    assert past.offset == 0x30
    # sym and backtraces keep the kernel's %pS (next-symbol rule) for the same address
    assert kernel.symbols.format_address(module + 0x30) == "m_func+0x20/0xf0 [m]"


class _Bytes:
    """A memory of one buffer at ``base`` (reads outside it fault)."""

    def __init__(self, base: int, data: bytes) -> None:
        self.base, self.data = base, data

    def read(self, address: int, size: int) -> bytes:
        from kcrash.errors import FaultError

        if address < self.base or address + size > self.base + len(self.data):
            raise FaultError(address)
        return self.data[address - self.base:address - self.base + size]


def test_text_fill_is_a_run_of_int3_reaching_the_next_symbol() -> None:
    from kcrash.analysis.identify import _in_text_fill

    base = 0xFFFFFFFF81000000
    # ret; int3 (SLS) | mov ... with a 0xcc byte inside | fill up to the next symbol at base + 16
    code = bytes.fromhex("c3cc" "b8cc000000" "cccccccccccccccccc")
    mem = _Bytes(base, code)
    end = base + len(code)
    assert all(_in_text_fill(mem, base, a, end) for a in range(base + 7, end))  # type: ignore[arg-type]
    assert not _in_text_fill(mem, base, base + 3, end)  # type: ignore[arg-type]  # an immediate's 0xcc
    assert not _in_text_fill(mem, base, base + 1, end)  # type: ignore[arg-type]  # the SLS int3: code follows
    # a marker symbol placed in the fill (its first byte is fill) runs to the next symbol
    assert not _in_text_fill(mem, base + 7, base + 9, end)  # type: ignore[arg-type]
    one = _Bytes(base, bytes.fromhex("c3cc"))  # a single int3 before the next symbol is no fill run
    assert not _in_text_fill(one, base, base + 1, base + 2)  # type: ignore[arg-type]
    assert not _in_text_fill(_Bytes(base, b""), base, base, base + 8)  # type: ignore[arg-type]  # unreadable
    assert not _in_text_fill(mem, base, base, base + (8 << 20))  # type: ignore[arg-type]  # too far
