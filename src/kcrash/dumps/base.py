"""
kcrash.dumps.base
=================

What every dump format provides: the :class:`DumpFormat` protocol (``sniff(head)``, ``segments()``,
``notes()``, ``vmcoreinfo()``, ``describe()``), the :class:`MemorySegment` records a format hands to
the memory layer, and the :class:`DumpDescription` model of header facts. Formats know nothing of
kernel symbols; address translation lives in :mod:`kcrash.memory`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from kcrash.dumps.notes import Note
    from kcrash.dumps.vmcoreinfo import VmcoreInfo

__all__ = [
    "MACHINE_AARCH64",
    "MACHINE_X86_64",
    "DumpDescription",
    "DumpFormat",
    "DumpWarning",
    "MemorySegment",
    "PageCounts",
    "ReadFn",
    "machine_from_e_machine",
    "machine_from_notes_or_none",
    "machine_from_uname",
    "missing_pages_warning",
]

#: the canonical machine names a dump reports (``uname -m`` spelling)
MACHINE_X86_64 = "x86_64"
MACHINE_AARCH64 = "aarch64"
# ELF e_machine -> canonical name (EM_X86_64, EM_AARCH64)
_E_MACHINES = {62: MACHINE_X86_64, 183: MACHINE_AARCH64}
# utsname.machine spellings -> canonical name
_UNAME_MACHINES = {"x86_64": MACHINE_X86_64, "amd64": MACHINE_X86_64, "aarch64": MACHINE_AARCH64,
                   "arm64": MACHINE_AARCH64}


def machine_from_e_machine(e_machine: int) -> str:
    """Return the canonical machine of an ELF ``e_machine`` (``"x86_64"``, ``"aarch64"``; another
    machine as ``"elf-machine-<n>"``)."""
    return _E_MACHINES.get(e_machine, f"elf-machine-{e_machine}")


def machine_from_uname(machine: str) -> str:
    """Return the canonical machine of a ``utsname.machine`` string (unknown ones unchanged)."""
    return _UNAME_MACHINES.get(machine, machine)


#: ``sizeof(struct elf_prstatus)`` of a 64-bit kernel -> machine (``pr_reg`` of 27 or 34 words)
_PRSTATUS_SIZES = {336: MACHINE_X86_64, 392: MACHINE_AARCH64}


def machine_from_notes_or_none(notes: Sequence[Note]) -> str | None:
    """Return the machine the ``CORE``/``NT_PRSTATUS`` notes' size implies, or None.

    For a header that does not name its machine: QEMU's kdump-compressed writer stores
    ``utsname.machine`` ``"Unknown"`` for targets without ``ELF_MACHINE_UNAME`` (aarch64 in 7.2).
    """
    sizes = {len(n.desc) for n in notes if n.name == "CORE" and n.n_type == 1}
    found = {_PRSTATUS_SIZES[size] for size in sizes if size in _PRSTATUS_SIZES}
    return found.pop() if len(found) == 1 else None

#: ``read_fn(address, size) -> bytes``: ``address`` is absolute (inside the segment), ``size`` > 0.
#: It raises :class:`~kcrash.errors.FaultError` for pages it cannot supply.
ReadFn = Callable[[int, int], bytes]


class DumpWarning(UserWarning):
    """A dump is usable but not whole (incomplete flag, short page table); the CLI shows it as one line."""


def missing_pages_warning(path: object, why: str, missing: int, total: int) -> str:
    """The one line a dump with pages missing (``why``: cut short, flagged incomplete) warns with."""
    kept = 100 * (total - missing) // total if total else 0
    return (f"{path}: {why} — {missing:,} of {total:,} pages missing ({kept} % present); "
            "what lay in them (tasks, log records, stacks) may be incomplete")


@dataclass(frozen=True, slots=True)
class MemorySegment:
    """``size`` bytes of memory at ``start``, physical or virtual, read through ``read_fn``."""

    start: int
    size: int
    read_fn: ReadFn
    physical: bool

    @property
    def end(self) -> int:
        """Return the first address after the segment."""
        return self.start + self.size


@dataclass(frozen=True, slots=True)
class PageCounts:
    """Page statistics of a dump (``page_size``-sized pages)."""

    page_size: int
    present: int = 0
    excluded: int = 0
    zero: int = 0
    lost: int = 0  # in the dump's range but not in the file: cut short, or flagged incomplete
    compressed: int = 0
    raw: int = 0


@dataclass(frozen=True, slots=True)
class DumpDescription:
    """Header facts of one opened dump, as stored (no kernel knowledge)."""

    path: str
    format: str
    codecs: tuple[str, ...]
    pages: PageCounts
    dump_level: int | None = None
    header_version: int | None = None
    nr_cpus: int | None = None
    status: int | None = None
    status_flags: tuple[str, ...] = ()
    incomplete: bool = False
    utsname: dict[str, str] = field(default_factory=dict)
    timestamp: int | None = None
    phys_base: int | None = None
    split: tuple[int, int] | None = None
    files: tuple[str, ...] = ()


class DumpFormat(Protocol):
    """An opened dump. Format classes also have ``open(path, *, zero_fill)`` and register with
    :func:`kcrash.dumps.registry.register_format`."""

    format_name: ClassVar[str]
    path: Path

    @property
    def machine(self) -> str:
        """Return the dumped machine: ``"x86_64"`` or ``"aarch64"`` (ELF ``e_machine``, kdump ``utsname``)."""
        ...

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Return True if ``head`` (the first bytes of the file, up to 4 KiB) looks like this format."""
        ...

    def segments(self) -> Sequence[MemorySegment]:
        """Return the memory segments, physical and (when the file has them) virtual."""
        ...

    def notes(self) -> Sequence[Note]:
        """Return the ELF notes (PRSTATUS, QEMU CPU state, VMCOREINFO, …) in file order."""
        ...

    def vmcoreinfo_or_none(self) -> VmcoreInfo | None:
        """Return the parsed VMCOREINFO, or None when the dump has none."""
        ...

    def describe(self) -> DumpDescription:
        """Return the header facts."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...
