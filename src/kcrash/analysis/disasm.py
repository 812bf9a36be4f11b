"""
kcrash.analysis.disasm
======================

The instructions around a faulting IP for the report, decoded (capstone, through
:func:`kcrash.analysis.x86_disasm.disassemble`) from the kernel text in the dump itself. x86 code has
no fixed instruction boundaries, so decoding starts at the start of the function holding the IP
(from the symbol table) when it is near, and otherwise a little before the IP (then the first
instructions may be misdecoded and the IP may fall inside one; the model says so in ``error``).
:func:`target_labels` names what instructions refer to (``call 0x… <printk>``) for ``kcrash dis``,
whose target (:func:`resolve_dis_target`), instructions (:func:`disassemble_target`) and source
lines (:func:`source_lines`) are found here too. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kcrash import model
from kcrash.analysis.x86_disasm import Instruction, branch_target, disassemble, rip_relative_target
from kcrash.debuginfo.finder import find_debuginfo, find_module_debuginfo
from kcrash.debuginfo.symbolizer import SourceLocation, open_symbolizers
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.errors import (
    DebugInfoMismatchError,
    KcrashError,
    MissingDebugInfoError,
    SymbolNotFoundError,
    UnsupportedDumpFormat,
)
from kcrash.helpers.linux.module import find_module_or_none, module_base
from kcrash.types.program import Program

if TYPE_CHECKING:
    from kcrash.dumps.vmcoreinfo import VmcoreInfo
    from kcrash.memory import MemoryReader
    from kcrash.memory.kernel import KernelMemory

__all__ = [
    "DisTarget",
    "TargetLabel",
    "disassemble_around",
    "disassemble_target",
    "frame_disassemblies",
    "module_text_base",
    "resolve_dis_target",
    "source_lines",
    "target_labels",
]

_MAX_LEAD = 4096
_MAX_FUNCTION = 1 << 16
_GUESS_LEAD = 32
_TAIL = 48


def _start(prog: Program, ip: int) -> tuple[int, str | None]:
    found = prog.symbolize_or_none(ip)
    if found is None:
        return ip - _GUESS_LEAD, None
    symbol, offset = found
    # A long function (ksm_scan_thread is 9 KiB) is still decoded from its start when the symbol's
    # size (the next kallsyms symbol's address) covers the IP; a gap past the last symbol is not.
    inside = symbol.size is not None and offset < symbol.size <= _MAX_FUNCTION
    if offset > _MAX_LEAD and not inside:
        return ip - _GUESS_LEAD, None
    return symbol.address, symbol.name


def disassemble_around(prog: Program, ip: int, *, before: int = 12, after: int = 8) -> model.Disassembly:
    """Up to ``before`` instructions before the one at ``ip`` and ``after`` from it on."""
    start, function = _start(prog, ip)
    if prog.machine != "x86_64":
        return model.Disassembly(ip, function, (), f"the disassembler decodes x86-64 only, not {prog.machine}")
    try:
        data = prog.read(start, ip - start + _TAIL)
    except KcrashError as exc:
        return model.Disassembly(ip, function, (), f"cannot read the code at {start:#x}: {exc}")
    decoded = disassemble(data, start)
    at = next((i for i, insn in enumerate(decoded) if insn.address == ip), None)
    error = None
    if at is None:
        error = f"no instruction starts at {ip:#x} when decoding from {start:#x}"
        at = next((i for i, insn in enumerate(decoded) if insn.address > ip), len(decoded))
    elif function is None:
        error = f"the function of {ip:#x} is unknown: decoding started {_GUESS_LEAD} bytes before it"
    window = decoded[max(0, at - before) : at + after]
    return model.Disassembly(
        ip, function, tuple(model.Instruction(i.address, i.data.hex(), i.text, i.address == ip) for i in window), error
    )


def frame_disassemblies(
    prog: Program, traces: Iterable[model.Trace], *, limit: int = 4096
) -> tuple[model.Disassembly, ...]:
    """The instructions around the pc of every frame of ``traces``, one per distinct pc (at most
    ``limit``), by address; for a return address the instruction at the pc is the one after the call.

    >>> [d.ip for d in frame_disassemblies(prog, [trace])]  # doctest: +SKIP
    [18446744072635812112]
    """
    if prog.machine != "x86_64":
        return ()  # x86-64 code only; the faulting IP's section says so
    pcs = sorted({frame.pc for trace in traces for frame in trace.frames})[:limit]
    return tuple(disassemble_around(prog, pc) for pc in pcs)


@dataclass(frozen=True, slots=True)
class TargetLabel:
    """What an instruction refers to: the ``target`` of a direct branch (``branch``) or of a
    RIP-relative operand (not ``branch``), and the symbol covering it (``symbol`` empty: none)."""

    target: int
    branch: bool
    symbol: str = ""
    offset: int = 0
    module: str | None = None

    def text(self) -> str:
        """``<sym+off>`` (gdb's and crash's form, decimal offset; ``<sym>`` at offset 0)."""
        if not self.symbol:
            return ""
        return f"<{self.symbol}+{self.offset}>" if self.offset else f"<{self.symbol}>"


def target_labels(insns: Iterable[Instruction], symbols: SymbolTable | None) -> dict[int, TargetLabel]:
    """By instruction address, the branch or RIP-relative target of each instruction that has one,
    with its symbol (kernel or module) from ``symbols``."""
    labels = {}
    for insn in insns:
        target, branch = branch_target(insn), True
        if target is None:
            target, branch = rip_relative_target(insn), False
        if target is None:
            continue
        found = symbols.symbolize_or_none(target) if symbols is not None else None
        labels[insn.address] = (
            TargetLabel(target, branch)
            if found is None
            else TargetLabel(target, branch, found[0].name, found[1], found[0].module)
        )
    return labels


#: the most ``kcrash dis`` decodes of one function
_MAX_DIS_FUNCTION = 1 << 20


@dataclass(frozen=True, slots=True)
class DisTarget:
    """What ``kcrash dis`` decodes: the bytes ``start``..``end``, in the symbol ``name`` (empty: none)
    starting at ``symbol_start`` of ``module`` (empty: vmlinux); ``whole`` for a whole function, and
    ``last`` the last instruction's address for ``-r``."""

    start: int
    end: int
    name: str
    symbol_start: int
    module: str
    whole: bool = False
    last: int | None = None


def resolve_dis_target(
    symbols: SymbolTable | None,
    *,
    address: int | None = None,
    symbol: str | None = None,
    offset: int = 0,
    explicit_offset: bool = False,
    reverse: bool = False,
    count: int | None = None,
) -> DisTarget:
    """Where ``dis`` decodes for an ``address`` or a ``symbol`` (+ ``offset``): a symbol with no
    ``explicit_offset`` (and no ``reverse``) is its whole function; an address is ``count``
    instructions (16 bytes each at most) from it, or with ``reverse`` its function from the start.

    :param symbols: the kernel's and modules' symbols (None: no kallsyms, addresses only)
    :raises MissingDebugInfoError: a symbol without ``symbols``
    :raises SymbolNotFoundError: an unknown symbol, or ``reverse`` with no function around the address

    >>> resolve_dis_target(table, symbol="ksys_write").whole  # doctest: +SKIP
    True
    """
    if symbol is not None:
        if symbols is None:
            raise MissingDebugInfoError("no kallsyms in this dump: give an address (0x followed by hex digits)")
        found = symbols.get_symbol_by_name(symbol)
        address = found.address + offset
        if not explicit_offset and not reverse:
            end = min(found.address + found.size, address + _MAX_DIS_FUNCTION)
            return DisTarget(address, end, found.name, found.address, found.module or "", whole=True)
    if address is None:
        raise SymbolNotFoundError("dis needs a symbol or an address")
    return _dis_address(symbols, address, reverse, count)


def _dis_address(symbols: SymbolTable | None, address: int, reverse: bool, count: int | None) -> DisTarget:
    found = symbols.symbolize_or_none(address) if symbols is not None else None
    if found is None:
        if reverse:
            raise SymbolNotFoundError(f"no symbol covers {address:#x}: -r needs the function start")
        return DisTarget(address, address + 16 * (count or 1), "", address, "")
    symbol, _ = found
    if reverse:
        if address - symbol.address > _MAX_DIS_FUNCTION:
            raise SymbolNotFoundError(
                f"{address:#x} is {address - symbol.address:#x} bytes into {symbol.name}: too far for -r"
            )
        return DisTarget(symbol.address, address + 16, symbol.name, symbol.address, symbol.module or "", last=address)
    return DisTarget(address, address + 16 * (count or 1), symbol.name, symbol.address, symbol.module or "")


def disassemble_target(
    memory: MemoryReader, where: DisTarget, *, syntax: str = "intel", count: int | None = None,
    machine: str = "x86_64",
) -> tuple[Instruction, ...]:
    """The instructions ``dis`` shows for ``where``: with ``-r`` up to and including the one at the
    address; for a function all of it (or ``count``); for an address one (or ``count``). ``machine``
    is the dump's (:attr:`kcrash.dumps.base.DumpFormat.machine`).

    :raises FaultError: the code is not in the dump
    :raises UnsupportedDumpFormat: the dump is not of an x86-64 kernel (the decoder knows only x86-64)
    """
    if machine != "x86_64":
        raise UnsupportedDumpFormat(f"dis decodes x86-64 code only; this dump is of an {machine} kernel")
    insns = disassemble(memory.read(where.start, where.end - where.start), where.start, syntax)
    if where.last is not None:
        return tuple(i for i in insns if i.address <= where.last)
    return insns[:count] if where.whole else insns[: count or 1]


def module_text_base(prog: Program, name: str) -> int:
    """Where the dump says module ``name``'s text is (for ``dis -l`` without ``--module-base``).

    :raises SymbolNotFoundError: the module is not in the dump's module list
    """
    mod = find_module_or_none(prog, name)
    if mod is None:
        raise SymbolNotFoundError(f"module {name} is not in the dump's module list: give --module-base {name}=ADDR")
    return module_base(mod)


def source_lines(
    memory: KernelMemory,
    info: VmcoreInfo | None,
    insns: Iterable[Instruction],
    paths: list[Path],
    bases: dict[str, int],
    *,
    force: bool = False,
    cache: Path | None = None,
    module: str = "",
) -> dict[int, tuple[SourceLocation, ...]]:
    """By instruction address, the source lines (inlined ones first) from the vmlinux and the
    ``.ko`` files (of the modules in ``bases``, by text address) found in ``paths``; a ``module``'s
    function needs its ``.ko`` only.

    :raises MissingDebugInfoError: no matching vmlinux (or ``.ko`` for ``module``)
    """
    release = info.osrelease if info is not None else None
    modules = {}
    for name, base in bases.items():
        found = find_module_debuginfo(name, release, paths)
        if found is not None:
            modules[name] = (found, base)
    try:
        vmlinux: Path | None = find_debuginfo(release, info.build_id if info is not None else None, paths, force)
    except MissingDebugInfoError as exc:
        if not module or isinstance(exc, DebugInfoMismatchError):
            raise
        if module not in modules:
            raise MissingDebugInfoError(f"no {module}.ko with debug information: pass --debuginfo PATH") from None
        vmlinux = None  # a module's function needs its .ko only
    symbolizer = open_symbolizers(vmlinux, modules, cache_dir=cache, kaslr_offset=memory.layout.kaslr_offset or 0)
    try:
        return {i.address: symbolizer.symbolize(i.address) for i in insns}
    finally:
        symbolizer.close()
