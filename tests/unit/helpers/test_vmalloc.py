"""vmalloc helpers on a synthetic kernel: the busy areas of vmap_area_list sorted by address with
their vm_struct (flags, pages, caller), lookup by bisection (start inclusive, end exclusive, areas
without a vm_struct included), the per-program cache, and a broken list ending in a truncation."""

from __future__ import annotations

from kcrash.helpers.linux.vmalloc import find_vmap_area, for_each_vmap_area, vmap_areas
from support.mm_kernel import BASE, GLOBALS, PAGE, VMALLOC, Kernel


def _kernel() -> Kernel:
    k = Kernel()
    # list order is not address order
    k.vmap_area(VMALLOC + 4 * PAGE, VMALLOC + 9 * PAGE, caller=BASE + 0x10, nr_pages=4)
    k.vmap_area(VMALLOC, VMALLOC + 2 * PAGE, caller=BASE + 0x20, flags=1)
    k.vmap_area(VMALLOC + 2 * PAGE, VMALLOC + 3 * PAGE, vm=False)
    return k


def test_areas_sorted_with_their_vm_struct() -> None:
    prog = _kernel().prog
    areas = list(for_each_vmap_area(prog))
    assert [(a.start - VMALLOC, a.end - VMALLOC) for a in areas] == [(0, 2 * PAGE), (2 * PAGE, 3 * PAGE),
                                                                      (4 * PAGE, 9 * PAGE)]
    first, bare, big = areas
    assert (first.flag_names, first.caller, first.size) == (("ioremap",), BASE + 0x20, 2 * PAGE)
    assert (bare.vm, bare.flag_names) == (0, ())
    assert (big.flag_names, big.nr_pages, big.caller) == (("vmalloc",), 4, BASE + 0x10)
    assert vmap_areas(prog).truncated is None
    assert vmap_areas(prog) is vmap_areas(prog)


def test_find_vmap_area() -> None:
    prog = _kernel().prog
    assert find_vmap_area(prog, VMALLOC).start == VMALLOC
    assert find_vmap_area(prog, VMALLOC + 2 * PAGE - 1).start == VMALLOC
    assert find_vmap_area(prog, VMALLOC + 2 * PAGE).vm == 0
    assert find_vmap_area(prog, VMALLOC + 3 * PAGE) is None  # a hole
    assert find_vmap_area(prog, VMALLOC + 9 * PAGE - 1).nr_pages == 4
    assert find_vmap_area(prog, VMALLOC + 9 * PAGE) is None
    assert find_vmap_area(prog, VMALLOC - 1) is None


def test_a_broken_list_is_truncated() -> None:
    k = _kernel()
    head = GLOBALS["vmap_area_list"]
    second_node = k.prog.read_u64(k.prog.read_u64(head))  # the second area's list node
    k.u64(second_node, 0xDEAD000000000000)  # its next pointer leads nowhere
    found = vmap_areas(k.prog)
    assert found.truncated is not None
    assert len(found.areas) == 2


def test_exports_and_docstring() -> None:
    import inspect

    from kcrash.helpers.linux import vmalloc as module

    public = {n for n, v in vars(module).items() if not n.startswith("_") and getattr(v, "__module__", None)
              == module.__name__ and (inspect.isfunction(v) or inspect.isclass(v))}
    assert public <= set(module.__all__)
    assert module.__doc__ is not None and "include/linux/" in module.__doc__
