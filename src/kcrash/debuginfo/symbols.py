"""
kcrash.debuginfo.symbols
========================

:class:`Symbol` and :class:`SymbolTable`: the symbols of the kernel image (from kallsyms, a System.map
or an ELF symbol table) plus those of loaded modules, with lookup by name and by address and the
kernel's ``%pS`` formatting. Address lookup follows ``kernel/kallsyms.c``: the symbol of an address
is the last one at or below it, the first of several aliases (table order) wins, and its size is the
distance to the next higher symbol address (``kallsyms_lookup_size_offset``). Like ``is_ksym_addr``,
only addresses inside the kernel image (``[_stext, _end)``, or the text ranges without
``CONFIG_KALLSYMS_ALL``) or inside a registered module resolve, so per-CPU offsets and absolute
symbols are found by name but never by address. This module does not read memory.

Two questions, two methods, one answer each. :meth:`SymbolTable.symbolize_or_none` answers "how does
the kernel name this address" (its ``%pS``: the symbol below, sized to the next symbol; backtraces,
``sym``, oops text). :meth:`SymbolTable.containing_symbol_or_none` answers "is the address inside a
symbol": the same symbol, but where the table knows the symbol's real size (a module's ELF
``st_size``, kept in memory in ``mod->kallsyms->symtab``) an address at or past that end is in no
symbol (alignment padding, or the memory after a module's last object). The kernel image's kallsyms
keep no sizes, so there the two answers are the same.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from kcrash.errors import SymbolNotFoundError

__all__ = ["IndexedNames", "Symbol", "SymbolTable", "lookup_address"]

_U64 = np.uint64
_DATA_KINDS = frozenset("DdBbRr")


def lookup_address(address: int, *, interrupted: bool) -> int:
    """The address whose source line names a stack frame: the frame's own address when it is the
    interrupted one (its IP came from registers: the ``RIP:`` line, a ``struct pt_regs``), else the
    call site, one byte before the return address. A call can be a function's last instruction
    (``noreturn`` callees), so the return address may lie in the next function or on the line after
    the call; gdb looks callers up the same way (``get_frame_address_in_block``), and the kernel's
    ``%pB`` names the function of ``address - 1`` (``sprint_backtrace``, kernel/kallsyms.c).

    :param address: the frame's IP (interrupted) or return address.
    :param interrupted: whether the IP came from registers rather than from the stack.
    :return: the address to look up (:meth:`SymbolTable.symbolize_or_none`, a DWARF line table).

    >>> hex(lookup_address(0xffffffff81000105, interrupted=False))
    '0xffffffff81000104'
    """
    return address if interrupted else address - 1


@runtime_checkable
class IndexedNames(Protocol):
    """A sequence of names that finds a name's positions itself (ascending)."""

    def positions_of(self, name: str) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class Symbol:
    """One symbol: name, runtime address, size (distance to the next symbol, as the kernel computes
    it), ``kind`` (the ``nm`` letter: ``T t D d B b R r W V A`` …) and ``module`` (None for vmlinux)."""

    name: str
    address: int
    size: int
    kind: str
    module: str | None = None


class _Group:
    # The symbols of one image (vmlinux or one module), sorted by address with the original order
    # kept among aliases; ``ends[i]`` is where symbol i stops (the next higher address or the end
    # of its range). Symbol objects are made on demand: tables hold 100k+ entries.

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("_by_name", "_positions", "addrs", "ends", "kinds", "module", "names", "object_ends", "sorted_pos")
    names: Sequence[str]

    def __init__(self, module: str | None, names: Sequence[str], kinds: Sequence[str],
                 addrs: npt.NDArray[np.uint64], limits: Sequence[tuple[int, int]],
                 sizes: npt.NDArray[np.uint64] | None = None, sections: Sequence[int] = ()) -> None:
        identity = bool(np.all(addrs[1:] >= addrs[:-1]))
        order = np.arange(len(addrs)) if identity else np.argsort(addrs, kind="stable")
        self.module = module
        # a caller's sequence is kept as it is (kallsyms passes names decoded on demand)
        self.names = names if identity else [names[i] for i in order]
        if identity:
            self.kinds = kinds if isinstance(kinds, str) else "".join(kinds)
        else:
            self.kinds = "".join(kinds[i] for i in order)
        self.addrs = addrs if identity else addrs[order]
        # sorted_pos[k]: where the caller's k-th symbol went; None when the order was kept
        self.sorted_pos: list[int] | None = None if identity else np.argsort(order, kind="stable").tolist()
        self.ends = _ends(self.addrs, limits)
        # object_ends[i]: where symbol i's object ends by its own size or section (0: unknown), or None
        self.object_ends = None if sizes is None else \
            _object_ends(self.addrs, sizes if identity else sizes[order], self.ends, sections)
        self._by_name: dict[str, int] | None = None
        # names that index themselves answer lookups (valid when the caller's order was kept)
        self._positions = names.positions_of if identity and isinstance(names, IndexedNames) else None

    def __len__(self) -> int:
        return len(self.names)

    def symbol(self, i: int) -> Symbol:
        address = int(self.addrs[i])
        return Symbol(self.names[i], address, int(self.ends[i]) - address, self.kinds[i], self.module)

    def index_of_name(self, name: str) -> int | None:
        if self._positions is not None:
            found = self._positions(name)
            return found[0] if found else None
        if self._by_name is None:
            self._by_name = self._build_name_index()
        return self._by_name.get(name)

    def positions_of(self, name: str) -> list[int]:
        # every position of ``name``, ascending
        if self._positions is not None:
            return self._positions(name)
        if self.index_of_name(name) is None:
            return []
        return [i for i, n in enumerate(self.names) if n == name]

    def _build_name_index(self) -> dict[str, int]:
        # Walk the caller's order backwards so the first occurrence is written last and wins.
        n = len(self.names)
        positions = list(range(n - 1, -1, -1)) if self.sorted_pos is None else self.sorted_pos[::-1]
        return dict(zip([self.names[i] for i in positions], positions, strict=True))

    def index_at(self, address: int) -> int | None:
        # Last symbol at or below address, then back to the first alias at that address.
        i = int(np.searchsorted(self.addrs, _U64(address), side="right")) - 1
        if i < 0:
            return None
        return int(np.searchsorted(self.addrs, self.addrs[i], side="left"))

    def object_end(self, i: int) -> int:
        # where symbol i's object ends by the largest known size among its aliases; 0: unknown
        if self.object_ends is None:
            return 0
        return int(self.object_ends[self.aliases(i)].max())

    def contains(self, i: int, address: int) -> bool:
        # Whether address (at or above symbol i) is inside it: below its object's end, or where
        # no size is known, below the next symbol (capped at the end of its range, as kallsyms').
        return address < (self.object_end(i) or int(self.ends[i]))

    def aliases(self, i: int) -> range:
        lo = int(np.searchsorted(self.addrs, self.addrs[i], side="left"))
        hi = int(np.searchsorted(self.addrs, self.addrs[i], side="right"))
        return range(lo, hi)


def _ends(addrs: npt.NDArray[np.uint64], limits: Sequence[tuple[int, int]]) -> npt.NDArray[np.uint64]:
    # End of each symbol: the next strictly higher address, capped by the end of the range the
    # symbol lies in; the last symbol of a range ends at the range end (or is empty outside ranges).
    n = len(addrs)
    nxt = np.searchsorted(addrs, addrs, side="right")
    ends = np.where(nxt < n, addrs[np.minimum(nxt, max(n - 1, 0))], addrs).astype(_U64)
    for start, end in limits:
        inside = (addrs >= _U64(start)) & (addrs < _U64(end))
        capped = inside & ((ends > _U64(end)) | (ends <= addrs))
        ends[capped] = _U64(end)
    return ends


def _object_ends(addrs: npt.NDArray[np.uint64], sizes: npt.NDArray[np.uint64], ends: npt.NDArray[np.uint64],
                 sections: Sequence[int]) -> npt.NDArray[np.uint64]:
    # address + size where the ELF size is known (nonzero). A sizeless symbol (st_size 0: an
    # assembler label such as __crc_*/__kstrtab*) runs to the next symbol but not into the next
    # section (the first section start above it); 0 where no section start is known either.
    out = np.where(sizes > 0, addrs + sizes, _U64(0)).astype(_U64)
    if not sections or not len(addrs):
        return out
    starts = np.unique(np.asarray(sections, dtype=_U64))
    k = np.searchsorted(starts, addrs, side="right")
    bounded = (sizes == 0) & (k < len(starts))
    section_end = starts[np.minimum(k, len(starts) - 1)]
    out[bounded] = np.minimum(ends[bounded], section_end[bounded])
    return out


class SymbolTable:
    """Kernel and module symbols with lookup by name and address.

    :param names: symbol names of the kernel image, in table order (kallsyms order: sorted by
        address, aliases in the kernel's order)
    :param addresses: their runtime addresses
    :param kinds: their ``nm`` letters, one character each
    :param kernel_ranges: ``[start, end)`` ranges where an address resolves to a kernel symbol; None
        computes them from the symbols (see :meth:`kernel_ranges_for`)

    ``names`` may index itself (:class:`IndexedNames`, as kallsyms' compressed names do): name
    lookups then ask it instead of hashing every name into a dict.
    """

    def __init__(self, names: Sequence[str], addresses: npt.NDArray[np.uint64] | Sequence[int],
                 kinds: Sequence[str], *, kernel_ranges: Sequence[tuple[int, int]] | None = None,
                 source: str = "") -> None:
        #: where the kernel's symbols came from (``dump info`` says it), e.g. "kallsyms (VMCOREINFO)"
        self.source = source
        if not len(names) == len(addresses) == len(kinds):
            raise ValueError("names, addresses and kinds differ in length")
        addrs = np.asarray(addresses, dtype=_U64)
        ranges = list(kernel_ranges) if kernel_ranges is not None else self.kernel_ranges_for(names, addrs, kinds)
        self.kernel_ranges: list[tuple[int, int]] = sorted(ranges)
        self._vmlinux = _Group(None, names, kinds, addrs, self.kernel_ranges)
        self._modules: dict[str, _Group] = {}
        self._module_ranges: list[tuple[int, int, str]] = []
        # vmlinux symbols found by structure where kallsyms lacks them (kcrash.types.recover):
        # found by name only, after kallsyms; addresses never resolve to them
        self._recovered: _Group | None = None

    @classmethod
    def from_symbols(cls, symbols: Iterable[Symbol], *,
                     kernel_ranges: Sequence[tuple[int, int]] | None = None) -> SymbolTable:
        """Build a table of kernel symbols (their ``size`` is recomputed, ``module`` ignored)."""
        items = list(symbols)
        return cls([s.name for s in items], [s.address for s in items], [s.kind for s in items],
                   kernel_ranges=kernel_ranges)

    @staticmethod
    def kernel_ranges_for(names: Sequence[str], addresses: npt.NDArray[np.uint64] | Sequence[int],
                          kinds: Sequence[str]) -> list[tuple[int, int]]:
        """The kernel's ``is_ksym_addr`` ranges from the symbols themselves: ``[_stext, _end)`` when
        data symbols are present (``CONFIG_KALLSYMS_ALL``), else ``[_stext, _etext)`` and
        ``[_sinittext, _einittext)``. A missing bound falls back to the last symbol (inclusive)."""
        where = _first_addresses(names, addresses, ("_stext", "_text", "_end"))
        top = int(np.asarray(addresses, dtype=_U64).max()) + 1 if len(addresses) else 0
        start = where.get("_stext", where.get("_text", 0))
        if "_end" in where or _has_data_kinds(kinds):
            return [(start, where.get("_end", top))]
        where.update(_first_addresses(names, addresses, ("_etext", "_sinittext", "_einittext")))
        ranges = [(start, where.get("_etext", top))]
        if "_sinittext" in where:
            ranges.append((where["_sinittext"], where.get("_einittext", top)))
        return ranges

    # -- modules ------------------------------------------------------------------------------

    def add_module(self, name: str, base: int, size: int, symbols: Iterable[Symbol], *,
                   ranges: Iterable[tuple[int, int]] = (), sized: bool = False,
                   sections: Iterable[int] = ()) -> None:
        """Register module ``name`` mapped at ``[base, base + size)`` with its symbols (in symbol-table
        order; their ``size`` is recomputed). Linux ≥ 6.4 keeps text, rodata and data apart in
        ``mod->mem[]``: pass those as more ``(start, size)`` ``ranges``. With ``sized`` the symbols'
        ``size`` is their ELF ``st_size`` (0: unknown), which :meth:`containing_symbol_or_none`
        honours; ``sections`` are the module's section start addresses, which bound a sizeless
        symbol there. Registering a name again replaces it."""
        regions = [(base, base + size)] + [(s, s + n) for s, n in ranges]
        regions = [(s, e) for s, e in regions if e > s]
        items = list(symbols)
        addrs = np.fromiter((s.address for s in items), dtype=_U64, count=len(items))
        self.remove_module(name)
        sizes = np.fromiter((s.size for s in items), dtype=_U64, count=len(items)) if sized else None
        self._modules[name] = _Group(name, [s.name for s in items], [s.kind for s in items], addrs, regions, sizes,
                                     list(sections))
        for start, end in regions:
            bisect.insort(self._module_ranges, (start, end, name))

    def add_recovered(self, symbols: Iterable[tuple[str, int, str]]) -> None:
        """Add vmlinux symbols ``(name, address, kind)`` that kallsyms lacks (found by structure, see
        :mod:`kcrash.types.recover`): lookups by name find them after kallsyms; lookups by address
        never answer with them. Adding again replaces the earlier ones."""
        items = list(symbols)
        addrs = np.fromiter((a for _, a, _ in items), dtype=_U64, count=len(items))
        self._recovered = _Group(None, [n for n, _, _ in items], [k for _, _, k in items], addrs, [])

    def remove_module(self, name: str) -> None:
        """Forget module ``name`` (no error if unknown)."""
        self._modules.pop(name, None)
        self._module_ranges = [r for r in self._module_ranges if r[2] != name]

    def iter_modules(self) -> Iterator[str]:
        """Yield the names of registered modules."""
        yield from self._modules

    # -- by name --------------------------------------------------------------------------------

    def get_symbol_by_name(self, name: str, module: str | None = None) -> Symbol:
        """Return the symbol ``name``: from ``module`` when given (``"vmlinux"`` is the kernel),
        else from the kernel first, then modules in registration order. Among same-named symbols the
        first in table order wins (kernel: lowest address; module: symbol-table order), like the
        kernel's ``kallsyms_lookup_name``. Raise :class:`SymbolNotFoundError` if absent."""
        for group in self._groups_for(module):
            i = group.index_of_name(name)
            if i is not None:
                return group.symbol(i)
        where = f" in module {module}" if module else ""
        raise SymbolNotFoundError(f"symbol {name!r} not found{where}")

    def iter_symbols_by_name(self, name: str) -> Iterator[Symbol]:
        """Yield every symbol called ``name`` (kernel first), in address order within each image."""
        for group in self._groups_for(None):
            yield from (group.symbol(i) for i in group.positions_of(name))

    def has_symbol(self, name: str, module: str | None = None) -> bool:
        """Return True if :meth:`get_symbol_by_name` would find ``name``."""
        return any(g.index_of_name(name) is not None for g in self._groups_for(module))

    def address_of(self, name: str) -> int:
        """Return the address of symbol ``name`` (see :meth:`get_symbol_by_name`)."""
        return self.get_symbol_by_name(name).address

    def _groups_for(self, module: str | None) -> list[_Group]:
        vmlinux = [self._vmlinux] if self._recovered is None else [self._vmlinux, self._recovered]
        if module is None:
            return [*vmlinux, *self._modules.values()]
        if module == "vmlinux":
            return vmlinux
        group = self._modules.get(module)
        return [group] if group is not None else []

    # -- by address -----------------------------------------------------------------------------

    def symbolize(self, address: int) -> tuple[Symbol, int]:
        """Return ``(symbol, offset)`` of ``address``; raise :class:`SymbolNotFoundError` if no symbol
        covers it (outside the kernel image and every module)."""
        found = self.symbolize_or_none(address)
        if found is None:
            raise SymbolNotFoundError(f"no symbol at {address:#x}")
        return found

    def symbolize_or_none(self, address: int) -> tuple[Symbol, int] | None:
        """Like :meth:`symbolize`, returning None instead of raising."""
        group = self._group_at(address)
        if group is None:
            return None
        i = group.index_at(address)
        if i is None:
            return None
        symbol = group.symbol(i)
        return symbol, address - symbol.address

    def containing_symbol_or_none(self, address: int) -> tuple[Symbol, int] | None:
        """The symbol ``address`` is inside, and the offset, or None. It is
        :meth:`symbolize_or_none`'s symbol, but its ``size`` is the symbol's own where the table
        knows it (a module's ELF ``st_size``; the largest among aliases), and an address at or past
        that end, or past the symbol's range, is in no symbol. A sizeless module symbol runs to the
        next symbol or the next section start, whichever is first (the ELF rule drgn follows too);
        without sizes (the kernel's kallsyms) a symbol runs to the next one, as in
        :meth:`symbolize_or_none`."""
        group = self._group_at(address)
        i = None if group is None else group.index_at(address)
        if group is None or i is None or not group.contains(i, address):
            return None
        symbol, end = group.symbol(i), group.object_end(i)
        if end:
            symbol = replace(symbol, size=end - symbol.address)
        return symbol, address - symbol.address

    def get_aliases(self, symbol: Symbol) -> list[Symbol]:
        """Return every symbol of the same image at ``symbol.address`` (itself included), table order."""
        group = self._vmlinux if symbol.module is None else self._modules.get(symbol.module)
        if group is None:
            return []
        i = group.index_at(symbol.address)
        if i is None or int(group.addrs[i]) != symbol.address:
            return []
        return [group.symbol(j) for j in group.aliases(i)]

    def _group_at(self, address: int) -> _Group | None:
        if not 0 <= address < 1 << 64:
            return None
        # module ranges do not overlap: only the last one starting at or below address can hold it
        k = bisect.bisect_right(self._module_ranges, (address, 1 << 64, "")) - 1
        if k >= 0 and address < self._module_ranges[k][1]:
            return self._modules[self._module_ranges[k][2]]
        if any(start <= address < end for start, end in self.kernel_ranges):
            return self._vmlinux
        return None

    def format_address(self, address: int) -> str:
        """Format like the kernel's ``%pS``: ``func+0x12/0x40``, ``func+0x0/0x40 [module]``, or the
        bare ``0x…`` address when no symbol covers it."""
        found = self.symbolize_or_none(address)
        if found is None:
            return f"{address:#x}"
        symbol, offset = found
        text = f"{symbol.name}+{offset:#x}/{symbol.size:#x}"
        return f"{text} [{symbol.module}]" if symbol.module else text

    # -- iteration ------------------------------------------------------------------------------

    def iter_symbols(self) -> Iterator[Symbol]:
        """Yield kernel symbols in address order, then each module's."""
        for group in self._groups_for(None):
            yield from (group.symbol(i) for i in range(len(group)))

    def iter_symbols_where(self, match: Callable[[str], object]) -> Iterator[Symbol]:
        """Yield the symbols whose name ``match(name)`` accepts (a compiled pattern's ``fullmatch``
        or ``search``), kernel first in address order, then each module's; only matches become
        :class:`Symbol` objects."""
        for group in self._groups_for(None):
            yield from (group.symbol(i) for i, name in enumerate(group.names) if match(name))

    def num_symbols(self) -> int:
        """Return the number of symbols, modules included."""
        return sum(len(g) for g in self._groups_for(None))

    def kernel_addresses(self) -> npt.NDArray[np.uint64]:
        """Return the sorted addresses of the kernel symbols (read-only view, for bulk work)."""
        view = self._vmlinux.addrs.view()
        view.flags.writeable = False
        return view


def _has_data_kinds(kinds: Sequence[str]) -> bool:
    if isinstance(kinds, str):
        return any(k in kinds for k in _DATA_KINDS)
    return any(k in _DATA_KINDS for k in kinds)


def _first_addresses(names: Sequence[str], addresses: npt.NDArray[np.uint64] | Sequence[int],
                     wanted: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for name in wanted:
        try:
            found[name] = int(addresses[names.index(name)])
        except ValueError:
            continue
    return found
