"""
kcrash.collect.qemu
===================

Collect a filtered dump of a QEMU guest over QMP, without QEMU's ``dump-guest-memory`` (which cannot
filter): freeze the guest (``stop``), capture every vCPU's registers, read guest RAM ourselves, find
VMCOREINFO in it, and write a filtered dump through :mod:`kcrash.collect.convert`.

**Requirement: guest RAM must be a shared memory-backend file**, for example
``-object memory-backend-file,id=ram0,size=256M,mem-path=/dev/shm/guest.ram,share=on
-machine memory-backend=ram0`` (``-m`` must give the same size). ``share=on`` makes QEMU's guest
RAM the file's pages, so another process reads them coherently while the VM is stopped. The
backend is found with ``query-memdev`` (it must say ``share``) and its file with ``qom-get
mem-path``. Guest-physical layout: the flat view of the ``memory`` address space (HMP ``info mtree
-f``) lists every range mapped from the backend with its offset in it (``@offset``), so holes (the
legacy VGA window at 0xa0000) and the RAM split around the 32-bit PCI hole of big guests (pc: RAM
above 3 GiB moves to 4 GiB; q35: above 2 GiB) are followed as QEMU maps them, whatever the machine.

Registers come from HMP ``info registers -a`` (every vCPU, general registers, RIP, RFLAGS, segment
selectors and bases, CR0–CR4), parsed into ``NT_PRSTATUS`` and QEMU CPU-state notes as QEMU's own
dump writes them (``pr_pid`` = vCPU index + 1). VMCOREINFO: the guest's ``VMCOREINFO`` ELF note is
found by scanning RAM for its header, and a candidate is accepted only if the kernel it describes
reads back its own ``OSRELEASE`` from ``init_uts_ns`` through its page tables.

The VM stays stopped while the dump is written (the RAM file is read in place), then resumes if it
was running before, unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kcrash.collect.convert import ConvertOptions, ConvertResult, convert_dump
from kcrash.collect.source import RamFileSource, RamRange
from kcrash.dumps.base import DumpDescription, MemorySegment, PageCounts
from kcrash.dumps.notes import Note, parse_notes
from kcrash.dumps.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo
from kcrash.dumps.write.notes import build_prstatus, build_qemu_cpu_state, build_vmcoreinfo_note
from kcrash.dumps.write.stream import Progress
from kcrash.errors import FaultError, LiveTargetError
from kcrash.memory.kernel import open_kernel_memory
from kcrash.metrics import phase

__all__ = [
    "CollectResult",
    "GuestCapture",
    "GuestRamDump",
    "VcpuRegisters",
    "capture_guest",
    "collect_qemu",
    "find_vmcoreinfo",
    "parse_info_registers",
    "parse_mtree_ram",
    "write_capture",
]

#: ``execute(command, arguments)`` of a QMP connection
Execute = Callable[[str, "dict[str, Any] | None"], Awaitable[Any]]
_NOTE_HEAD = b"VMCOREINFO\0\0OSRELEASE="
_MAX_VMCOREINFO = 1 << 20
_SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs", "ldt", "tr")


@dataclass(frozen=True, slots=True)
class VcpuRegisters:
    """One vCPU's registers: general (``rax``…, ``rip``, ``rflags``), ``cr`` (0–4), segments
    (name → (selector, base))."""

    cpu: int
    regs: dict[str, int]
    cr: tuple[int, int, int, int, int]
    segments: dict[str, tuple[int, int]]


_REG = re.compile(r"\b(R[A-Z0-9]{1,2}|RFL|CR[0-4])\s*=\s*([0-9a-fA-F]+)")
_SEG = re.compile(r"^(ES|CS|SS|DS|FS|GS|LDT|TR)\s*=\s*([0-9a-fA-F]+) ([0-9a-fA-F]+)", re.M)


def parse_info_registers(text: str) -> list[VcpuRegisters]:
    """Parse HMP ``info registers -a`` output (x86-64) into one record per ``CPU#n`` block."""
    blocks = re.split(r"^CPU#(\d+)\s*$", text, flags=re.M)
    out = []
    for number, body in zip(blocks[1::2], blocks[2::2], strict=True):
        values = {name.lower(): int(value, 16) for name, value in _REG.findall(body)}
        regs = {("rflags" if k == "rfl" else k): v for k, v in values.items() if not k.startswith("cr")}
        cr = tuple(values.get(f"cr{i}", 0) for i in range(5))
        segs = {m.group(1).lower(): (int(m.group(2), 16), int(m.group(3), 16)) for m in _SEG.finditer(body)}
        if "rip" not in regs:
            raise LiveTargetError(f"'info registers' output for CPU#{number} has no RIP")
        out.append(VcpuRegisters(int(number), regs, cr, segs))  # type: ignore[arg-type]
    if not out:
        raise LiveTargetError("'info registers -a' printed no CPU#n block")
    return out


_RANGE = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, (\w+)\): (\S+)(?: @([0-9a-f]+))?", re.M)


def parse_mtree_ram(text: str, backend: str) -> list[RamRange]:
    """Return the guest-physical ranges of ``info mtree -f``'s ``memory`` flat view that map the RAM
    region ``backend`` (each with its offset in the backend)."""
    views = re.split(r"^FlatView #\d+\s*$", text, flags=re.M)
    view = next((v for v in views if re.search(r'AS "memory"', v)), text)
    ranges = []
    for m in _RANGE.finditer(view):
        start, end, kind, name, offset = m.groups()
        if name == backend and kind in ("ram", "rom", "romd"):  # PAM-shadowed BIOS areas show as rom
            ranges.append(RamRange(int(start, 16), int(end, 16) + 1 - int(start, 16), int(offset or "0", 16)))
    return _merge(ranges)


def _merge(ranges: list[RamRange]) -> list[RamRange]:
    out: list[RamRange] = []
    for r in sorted(ranges, key=lambda r: r.start):
        last = out[-1] if out else None
        if last and last.start + last.size == r.start and last.file_offset + last.size == r.file_offset:
            out[-1] = RamRange(last.start, last.size + r.size, last.file_offset)
        else:
            out.append(r)
    return out


@dataclass(frozen=True, slots=True)
class GuestCapture:
    """What :func:`capture_guest` took from a stopped guest."""

    ram_file: Path
    ranges: list[RamRange]
    cpus: list[VcpuRegisters]
    status: str
    was_running: bool


def _notes(cpus: Sequence[VcpuRegisters], vmcoreinfo: str | None) -> bytes:
    notes = b"".join(build_prstatus(c.cpu + 1, {**c.regs, "eflags": c.regs.get("rflags", 0),
                                                **{s: c.segments.get(s, (0, 0))[0] for s in ("cs", "ss", "ds",
                                                                                               "es", "fs", "gs")},
                                                "fs_base": c.segments.get("fs", (0, 0))[1],
                                                "gs_base": c.segments.get("gs", (0, 0))[1]}) for c in cpus)
    for c in cpus:
        state = build_qemu_cpu_state(c.regs, cr3=c.cr[3], cr4=c.cr[4],
                                     segment_bases={s: b for s, (_sel, b) in c.segments.items()})
        notes += state
    if vmcoreinfo is not None:
        notes += build_vmcoreinfo_note(vmcoreinfo)
    return notes


class GuestRamDump:
    """A :class:`~kcrash.dumps.base.DumpFormat` over a stopped guest's RAM file and captured registers."""

    format_name: ClassVar[str] = "qemu-guest-ram"

    def __init__(self, capture: GuestCapture, vmcoreinfo: str | None) -> None:
        self.path = capture.ram_file
        self.capture = capture
        self.source = RamFileSource(capture.ram_file, capture.ranges)
        self._text = vmcoreinfo
        self._notes = parse_notes(_notes(capture.cpus, vmcoreinfo), 0)

    @property
    def machine(self) -> str:
        """Return ``"x86_64"``: the only guest architecture this target supports."""
        return "x86_64"

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Never: this dump is built, not opened from a file."""
        return False

    def segments(self) -> Sequence[MemorySegment]:
        """Return one physical segment per guest RAM range."""
        return [MemorySegment(r.start, r.size, self.source.read, True) for r in self.capture.ranges]

    def notes(self) -> Sequence[Note]:
        """Return PRSTATUS and QEMU CPU-state notes per vCPU, then VMCOREINFO."""
        return self._notes

    def vmcoreinfo_or_none(self) -> VmcoreInfo | None:
        """Return the VMCOREINFO found in guest RAM, or None."""
        return parse_vmcoreinfo(self._text) if self._text is not None else None

    def describe(self) -> DumpDescription:
        """Return minimal facts (4 KiB pages, every RAM page present)."""
        pages = sum(r.size for r in self.capture.ranges) // 4096
        return DumpDescription(path=str(self.path), format=self.format_name, codecs=("raw",),
                               pages=PageCounts(4096, present=pages, raw=pages), nr_cpus=len(self.capture.cpus))

    def close(self) -> None:
        """Close the RAM file."""
        self.source.close()


def _candidates(ram: mmap.mmap) -> Iterator[tuple[int, str]]:
    pos = ram.find(_NOTE_HEAD)
    while pos >= 12:
        namesz, descsz, n_type = (int.from_bytes(ram[pos - 12 + i:pos - 8 + i], "little") for i in (0, 4, 8))
        if namesz == 11 and n_type == 0 and 0 < descsz <= _MAX_VMCOREINFO:
            desc = bytes(ram[pos + 12:pos + 12 + descsz]).split(b"\0", 1)[0]
            yield pos, desc.decode("ascii", "replace")
        pos = ram.find(_NOTE_HEAD, pos + 1)


def _self_consistent(capture: GuestCapture, text: str) -> bool:
    info = parse_vmcoreinfo(text)
    if info.osrelease is None or "init_uts_ns" not in info.symbols:
        return False
    dump = GuestRamDump(capture, text)
    try:
        mem = open_kernel_memory(dump)
        uts = mem.read(info.get_symbol("init_uts_ns") + info.offsets.get("uts_namespace.name", 0), 6 * 65)
    except (FaultError, LiveTargetError, ValueError):
        return False
    finally:
        dump.close()
    return uts[130:195].split(b"\0", 1)[0].decode("ascii", "replace") == info.osrelease


def find_vmcoreinfo(capture: GuestCapture) -> str | None:
    """Return the guest kernel's VMCOREINFO text found in RAM (validated, see the module doc), or None."""
    with capture.ram_file.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as ram:
        for _pos, text in _candidates(ram):
            if _self_consistent(capture, text):
                return text
    return None


async def _hmp(execute: Execute, command: str) -> str:
    return str(await execute("human-monitor-command", {"command-line": command}))


async def _ram_backend(execute: Execute) -> tuple[str, Path]:
    memdevs = await execute("query-memdev", None)
    for dev in memdevs if isinstance(memdevs, list) else []:  # QMP replies are checked, not trusted
        name = dev.get("id") if isinstance(dev, dict) else None
        if not name or not isinstance(name, str):
            continue
        path = None
        with contextlib.suppress(Exception):  # not a memory-backend-file: no mem-path property
            path = await execute("qom-get", {"path": f"/objects/{name}", "property": "mem-path"})
        if not isinstance(path, str) or not path:
            continue
        if not dev.get("share"):
            raise LiveTargetError(f"memory backend {name} is not shared (add share=on): its file does "
                                  "not show guest RAM")
        return name, Path(path)
    raise LiveTargetError("guest RAM is not a memory-backend-file: start QEMU with -object memory-backend-file,"
                          "id=ram0,size=SIZE,mem-path=FILE,share=on -machine memory-backend=ram0")


async def capture_guest(execute: Execute) -> GuestCapture:
    """Stop the guest and capture its registers and RAM layout (the VM is left stopped)."""
    reply = await execute("query-status", None)
    status = reply.get("status") if isinstance(reply, dict) else None
    if not isinstance(status, str):
        raise LiveTargetError(f"unexpected QMP reply to query-status: {str(reply)[:80]}")
    was_running = status == "running"
    await execute("stop", None)
    backend, ram_file = await _ram_backend(execute)
    ranges = parse_mtree_ram(await _hmp(execute, "info mtree -f"), backend)
    if not ranges:
        raise LiveTargetError(f"'info mtree -f' maps no range of {backend}")
    cpus = parse_info_registers(await _hmp(execute, "info registers -a"))
    return GuestCapture(ram_file, ranges, cpus, status, was_running)


def write_capture(capture: GuestCapture, out: Path, opts: ConvertOptions, progress: Progress | None = None
                  ) -> tuple[ConvertResult, bool]:
    """Write a filtered dump of a captured guest; return it and whether VMCOREINFO was found in RAM
    (without it only zero pages can be filtered)."""
    text = find_vmcoreinfo(capture)
    dump = GuestRamDump(capture, text)
    try:
        if text is None:
            opts = ConvertOptions(opts.dump_level & 1, opts.codec, opts.format, opts.threads)
        return convert_dump(dump, out, opts, progress), text is not None
    finally:
        dump.close()


@dataclass(frozen=True, slots=True)
class CollectResult:
    """A collection: the conversion result and the guest state before and after."""

    result: ConvertResult
    status_before: str
    resumed: bool
    cpus: int
    vmcoreinfo: bool = field(default=True)


async def collect_qemu(execute: Execute, out: Path, opts: ConvertOptions, *, resume: bool | None = None,
                       progress: Progress | None = None) -> CollectResult:
    """Stop the guest, capture it, write ``out`` and resume it if it was running (``resume`` forces
    either way). The guest is resumed even when writing fails."""
    opts.validate()
    with phase("collect"):
        return await _collect(execute, out, opts, resume, progress)


async def _collect(execute: Execute, out: Path, opts: ConvertOptions, resume: bool | None,
                   progress: Progress | None) -> CollectResult:
    capture = await capture_guest(execute)
    do_resume = capture.was_running if resume is None else resume
    try:
        result, has_info = await asyncio.to_thread(write_capture, capture, out, opts, progress)
    finally:
        if do_resume:
            await execute("cont", None)
    return CollectResult(result, capture.status, do_resume, len(capture.cpus), has_info)

