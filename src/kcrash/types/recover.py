"""
kcrash.types.recover
====================

Data symbols recovered from the dump itself when its kallsyms holds text symbols only (a kernel
built without ``CONFIG_KALLSYMS_ALL``, e.g. Debian's 6.1 arm64): each is found by structure and
validated, never guessed from a version.

- ``__start_BTF``/``__stop_BTF``: a BTF header (magic 0xeB9F, version 1, a 24-byte header, the type
  and string sections in bounds and adjacent) in the read-only data between ``_etext`` and
  ``__init_begin`` (``.BTF`` is part of ``RO_DATA``), whose blob parses and holds ``struct
  task_struct``.
- ``init_task``: a ``struct task_struct`` in the image's data (from ``__init_begin`` up to the image's
  mapped end) whose ``comm`` is ``swapper/0``, ``pid`` 0, and whose ``tasks`` list is a consistent
  ring (each ``next->prev`` is the node) returning to it.
- ``modules``: a ``list_head`` in the image's data whose ring passes, besides itself, only through
  ``struct module.list`` members in the module area, each module with a valid ``state`` and a
  printable name. No module loaded: no ``modules`` (the list is empty anyway).

- ``__per_cpu_offset``, ``__per_cpu_start``/``__per_cpu_end`` and every per-CPU variable: see
  :func:`find_per_cpu_offset_or_none`; the variables' offsets come from BTF's ``.data..percpu``.
- exported symbols (``__cpu_online_mask``, ``nr_cpu_ids``, ``system_wq`` ...): see :func:`find_ksymtab`.
- ``taint_flags``: see :func:`find_taint_flags_or_none`.
- VMCOREINFO's ``SYMBOL()`` lines inside the image (``init_uts_ns``, ``prb``, ``swapper_pg_dir`` ...).
"""

from __future__ import annotations

import re
import struct
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.dumps.base import DumpWarning
from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.errors import CorruptDumpError, FaultError, KcrashError
from kcrash.memory.kernel import KernelMemory
from kcrash.memory.reader import MemoryReader
from kcrash.types.btf import Btf, parse_btf
from kcrash.types.model import Type, TypeKind

__all__ = ["ImageData", "RecoveredSymbol", "find_btf_or_none", "find_init_task_or_none", "find_ksymtab",
           "find_modules_head_or_none", "find_per_cpu_offset_or_none", "find_taint_flags_or_none",
           "percpu_variables", "read_image_data", "recover_missing_symbols", "recover_symbols",
           "runqueues_by_cpu"]

_BTF_MAGIC = b"\x9f\xeb\x01"
_BTF_HEADER = struct.Struct("<HBBIIIII")
#: the largest vmlinux BTF accepted (Debian's are 2.5-6 MB)
_MAX_BTF = 64 << 20
#: how far past ``__init_begin`` the image's data is read (Debian arm64: 10 MB)
_DATA_SPAN = 96 << 20
_CHUNK = 1 << 16
_RING_LIMIT = 100_000
_MODULE_STATES = range(4)  # MODULE_STATE_LIVE, COMING, GOING, UNFORMED
_MODULE_NAME_LEN = 56
_MODULE_WINDOW = 2 << 30
#: VMCOREINFO symbols further than this from _stext are not the image's (mem_section's value is a pointer)
_IMAGE_SPAN = 256 << 20
#: the fewest consecutive entries taken for a __ksymtab table (Debian 6.1 arm64: ~10k and ~12k)
_KSYMTAB_RUN = 64


@dataclass(frozen=True, slots=True)
class RecoveredSymbol:
    """A symbol found by structure: its name, address and how it was found and checked."""

    name: str
    address: int
    how: str


@dataclass(frozen=True, slots=True)
class ImageData:
    """Bytes of the image from ``base`` (unmapped pages read as zeros); ``end`` is past the last
    mapped chunk."""

    base: int
    data: bytes

    @property
    def end(self) -> int:
        return self.base + len(self.data)


def read_image_data(memory: MemoryReader, start: int, span: int = _DATA_SPAN) -> ImageData:
    """Read ``[start, start + span)`` in 64 KiB chunks, skipping unmapped ones (freed init memory);
    the result starts at the first mapped chunk and ends after the last."""
    chunks: list[tuple[int, bytes]] = []
    for address in range(start, start + span, _CHUNK):
        try:
            chunks.append((address, memory.read(address, _CHUNK)))
        except FaultError:
            continue
    if not chunks:
        return ImageData(start, b"")
    base = chunks[0][0]
    buf = bytearray(chunks[-1][0] + _CHUNK - base)
    for address, chunk in chunks:
        buf[address - base:address - base + _CHUNK] = chunk
    return ImageData(base, bytes(buf))


def find_btf_or_none(data: bytes, base: int) -> tuple[int, int, Btf] | None:
    """Find the vmlinux BTF in ``data`` (at address ``base``): ``(start, stop, parsed)`` or None.

    A candidate header must say version 1, flags 0, ``hdr_len`` 24, type section at 0, string
    section right after it, both inside ``data``; the blob must parse and define ``struct task_struct``.
    """
    pos = data.find(_BTF_MAGIC)
    while pos >= 0:
        found = _btf_at_or_none(data, pos)
        if found is not None:
            return base + pos, base + pos + found[0], found[1]
        pos = data.find(_BTF_MAGIC, pos + 1)
    return None


def _btf_at_or_none(data: bytes, pos: int) -> tuple[int, Btf] | None:
    if pos + _BTF_HEADER.size > len(data):
        return None
    _, version, flags, hdr_len, type_off, type_len, str_off, str_len = _BTF_HEADER.unpack_from(data, pos)
    if version != 1 or flags != 0 or hdr_len != _BTF_HEADER.size or type_off != 0 or str_off != type_len:
        return None
    size = hdr_len + str_off + str_len
    if not type_len > 0 or not str_len > 0 or size > _MAX_BTF or pos + size > len(data):
        return None
    try:
        btf = parse_btf(data[pos:pos + size], name="vmlinux")
        task = btf.find_type_or_none("task_struct", TypeKind.STRUCT)
    except (CorruptDumpError, KcrashError, ValueError, IndexError, struct.error):
        return None
    if task is None or not task.has_member("comm") or not task.has_member("tasks"):
        return None
    return size, btf


def _offset(t: Type, path: str) -> int:
    return t.bit_offset_of(path) // 8


def find_init_task_or_none(image: ImageData, btf: Btf, read_u64: Callable[[int], int]) -> int | None:
    """Return the address of ``init_task`` in ``image`` (see the module doc), or None."""
    task = btf.find_type_or_none("task_struct", TypeKind.STRUCT)
    if task is None:
        return None
    comm, pid, tasks = _offset(task, "comm"), _offset(task, "pid"), _offset(task, "tasks")
    pos = image.data.find(b"swapper/0\x00")
    while pos >= 0:
        start = pos - comm
        if start >= 0 and start + pid + 4 <= len(image.data) \
                and struct.unpack_from("<i", image.data, start + pid)[0] == 0:
            address = image.base + start
            if _ring_or_none(address + tasks, read_u64) is not None:
                return address
        pos = image.data.find(b"swapper/0\x00", pos + 1)
    return None


def _ring_or_none(head: int, read_u64: Callable[[int], int]) -> list[int] | None:
    # The nodes after ``head`` when ``next`` returns to it with every ``next->prev`` consistent.
    nodes: list[int] = []
    node = head
    try:
        for _ in range(_RING_LIMIT):
            nxt = read_u64(node)
            if nxt == 0 or read_u64(nxt + 8) != node:
                return None
            if nxt == head:
                return nodes
            nodes.append(nxt)
            node = nxt
    except FaultError:
        return None
    return None


def _module_ok(read: Callable[[int, int], bytes], module: int, state_off: int, name_off: int) -> bool:
    try:
        state = int.from_bytes(read(module + state_off, 4), "little")
        name = read(module + name_off, _MODULE_NAME_LEN)
    except FaultError:
        return False
    text = name.split(b"\0", 1)[0]
    return state in _MODULE_STATES and b"\0" in name and len(text) > 0 and all(33 <= c < 127 for c in text)


def find_modules_head_or_none(image: ImageData, btf: Btf, memory: MemoryReader,
                              module_ranges: Sequence[tuple[int, int]]) -> int | None:
    """Return the address of ``modules`` in ``image`` (see the module doc), or None.

    :param module_ranges: where modules may be (a head's ``next``/``prev`` and every node must be in one)
    """
    module = btf.find_type_or_none("module", TypeKind.STRUCT)
    if module is None:
        return None
    list_off, state_off, name_off = _offset(module, "list"), _offset(module, "state"), _offset(module, "name")
    usable = len(image.data) // 16 * 16
    words = np.frombuffer(image.data[:usable], dtype="<u8")
    inside = np.zeros(len(words), dtype=bool)
    for lo, hi in module_ranges:
        inside |= (words >= lo) & (words < hi)

    def in_area(address: int) -> bool:
        return any(lo <= address < hi for lo, hi in module_ranges)
    # a head with modules on it: next and prev both in the module area
    candidates = np.flatnonzero(inside[0::2] & inside[1::2]) * 2

    def read_u64(address: int) -> int:
        return int.from_bytes(memory.read(address, 8), "little")

    for index in candidates.tolist():
        head = image.base + index * 8
        nodes = _ring_or_none(head, read_u64)
        if not nodes:
            continue
        if all(in_area(n) and _module_ok(memory.read, n - list_off, state_off, name_off) for n in nodes):
            return head
    return None


def percpu_variables(btf: Btf) -> dict[str, tuple[int, int]]:
    """The VARs of BTF DATASEC ``.data..percpu``: name -> (offset in the section, size)."""
    out: dict[str, tuple[int, int]] = {}
    for sec_id in btf.ids_named(".data..percpu", (15,)):  # BTF_KIND_DATASEC
        record = btf._record(sec_id)  # DATASEC entries are not in the Type model
        for i in range(record[3]):
            var_id, offset, size = (btf._words[record[0] + 3 + 3 * i + k] for k in range(3))
            if btf.first_id <= var_id < btf.end_id:
                out[btf.string(btf._record(var_id)[1])] = (offset, size)
    return out


def runqueues_by_cpu(btf: Btf, tasks: Sequence[int], read_u64: Callable[[int], int],
                     read_u32: Callable[[int], int]) -> dict[int, int]:
    """Each CPU's ``struct rq`` as the tasks show it: a task's ``se.cfs_rq->rq`` (or the ``rq`` that
    embeds its ``cfs_rq``) whose ``cpu`` is the task's ``thread_info.cpu`` (or ``cpu``)."""
    task = btf.find_type_or_none("task_struct", TypeKind.STRUCT)
    rq = btf.find_type_or_none("rq", TypeKind.STRUCT)
    cfs_rq = btf.find_type_or_none("cfs_rq", TypeKind.STRUCT)
    if task is None or rq is None or cfs_rq is None or not rq.has_member("cpu"):
        return {}
    cpu_path = "cpu" if task.has_member("cpu") else "thread_info.cpu"
    task_cpu, se_cfs_rq, rq_cpu = _offset(task, cpu_path), _offset(task, "se.cfs_rq"), _offset(rq, "cpu")
    rq_of = _offset(cfs_rq, "rq") if cfs_rq.has_member("rq") else None
    rq_cfs = _offset(rq, "cfs")
    found: dict[int, int] = {}
    for t in tasks:
        try:
            cpu, cfs = read_u32(t + task_cpu), read_u64(t + se_cfs_rq)
            if cfs == 0 or cpu in found:
                continue
            address = read_u64(cfs + rq_of) if rq_of is not None else cfs - rq_cfs
            if read_u32(address + rq_cpu) == cpu and read_u64(address + rq_cfs + (rq_of or 0)) != 0:
                found[cpu] = address
        except FaultError:
            continue
    return found


def find_per_cpu_offset_or_none(image: ImageData, runqueues: dict[int, int], runqueues_offset: int,
                                image_start: int, page_size: int = 4096) -> tuple[int, int] | None:
    """Find ``__per_cpu_offset`` in ``image``: ``(its address, __per_cpu_start)`` or None.

    For CPUs ``c`` with a known runqueue ``rq[c]``, ``__per_cpu_start + runqueues_offset +
    __per_cpu_offset[c] == rq[c]``, so the array is the one place where ``e[c] - e[c0] == rq[c] - rq[c0]``
    for every known CPU (at least two, all entries non-zero); ``__per_cpu_start`` then follows and must be
    page-aligned, in the image (from ``image_start``) and below the array. Exactly one such place is
    accepted: where the known CPUs leave gaps among evenly spaced areas, a shifted array fits too and
    the answer is None.
    """
    if len(runqueues) < 2:
        return None
    cpus = sorted(runqueues)
    c0, top = cpus[0], cpus[-1]
    words = np.frombuffer(image.data[:len(image.data) // 8 * 8], dtype="<u8")
    n = len(words) - top
    if n <= 0:
        return None
    ok = words[c0:c0 + n] != 0
    for c in cpus[1:]:
        delta = np.uint64((runqueues[c] - runqueues[c0]) % (1 << 64))
        ok &= (words[c:c + n] - words[c0:c0 + n] == delta) & (words[c:c + n] != 0)
    hits = []
    for index in np.flatnonzero(ok).tolist():
        start = (runqueues[c0] - runqueues_offset - int(words[index + c0])) % (1 << 64)
        if start % page_size == 0 and image_start <= start < image.base + index * 8:
            hits.append((image.base + index * 8, start))
    return hits[0] if len(hits) == 1 else None


def find_ksymtab(data: bytes, base: int, entry_size: int, known: Callable[[str], int | None],
                 minimum: int = 100) -> dict[str, int]:
    """Exported symbols from the ``__ksymtab``/``__ksymtab_gpl`` tables in ``data`` (at ``base``):
    ``name -> address``.

    With ``CONFIG_HAVE_ARCH_PREL32_RELOCATIONS`` an entry (``struct kernel_symbol``, ``entry_size``
    bytes) starts with two self-relative ``int``s: ``value_offset`` and ``name_offset`` (to the name in
    ``__kstrtab``). Runs of at least four entries whose names are NUL-terminated C identifiers inside
    ``data`` are read; a run of at least 64 is taken when every entry (of up to 256 evenly spaced) whose
    name ``known`` resolves (kallsyms' text symbols) agrees with it, and the result when at least
    ``minimum`` agreed. Names kallsyms has are returned too (lookups find kallsyms' first).
    """
    words = np.frombuffer(data[:len(data) // 4 * 4], dtype="<i4").astype(np.int64)
    step = entry_size // 4
    if entry_size % 4 or step < 2 or len(words) <= 4 * step:
        return {}
    positions = np.arange(len(words), dtype=np.int64) * 4
    targets = positions[:-1] + 4 + words[1:]
    raw = np.frombuffer(data, dtype=np.uint8)
    inside = (targets >= 0) & (targets < len(data))
    first = np.zeros(len(targets), dtype=np.uint8)
    first[inside] = raw[targets[inside]]
    ident = inside & (((first >= 65) & (first <= 90)) | ((first >= 97) & (first <= 122)) | (first == 95))
    n = len(ident) - 3 * step
    run = ident[:n] & ident[step:n + step] & ident[2 * step:n + 2 * step] & ident[3 * step:n + 3 * step]
    entries: dict[int, tuple[str, int]] = {}
    for k in sorted({int(i) + j * step for i in np.flatnonzero(run) for j in range(4)}):
        target = int(targets[k])
        end = data.find(b"\0", target, target + 256)
        name = data[target:end].decode("ascii", "replace") if end > target else ""
        if name.isidentifier() and name.isascii():
            entries[k] = (name, (base + k * 4 + int(words[k])) % (1 << 64))
    # the tables are long runs of entries; other self-relative tables (BPF's, ...) make short ones.
    # A run is checked on up to 256 evenly spaced entries (each kallsyms lookup costs ~40 us)
    found: dict[str, int] = {}
    agree = 0
    for table in _runs(sorted(entries), step):
        if len(table) < _KSYMTAB_RUN:
            continue
        sample = [entries[k] for k in table[::max(1, len(table) // 256)]]
        verdicts = [expected == value for name, value in sample if (expected := known(name)) is not None]
        if not verdicts or not all(verdicts):
            continue
        agree += len(verdicts)
        for k in table:
            found.setdefault(*entries[k])
    return found if agree >= minimum else {}


def find_taint_flags_or_none(data: bytes, base: int, entry_size: int) -> int | None:
    """Find ``taint_flags[]`` (``kernel/panic.c``) in ``data``: ``struct taint_flag`` entries
    (``c_true``, ``c_false``, ``module``, ``entry_size`` bytes) starting ``'P','G'``, ``'F',' '``,
    ``'S',' '``, ``'R',' '``, ``'M',' '`` (the letters every kernel since v4.6 has first), found once."""
    if entry_size < 3:
        return None
    pad = b"[\x00\x01]" + b"." * (entry_size - 3)
    pattern = re.compile(pad.join([b"PG", b"F ", b"S ", b"R ", b"M ", b""]), re.DOTALL)
    hits = [m.start() for m in pattern.finditer(data)]
    return base + hits[0] if len(hits) == 1 else None


def _runs(keys: list[int], step: int) -> list[list[int]]:
    runs: list[list[int]] = []
    for k in keys:
        if runs and runs[-1][-1] + step == k:
            runs[-1].append(k)
        else:
            runs.append([k])
    return runs


def _aarch64_module_window(init_begin: int) -> tuple[int, int]:
    # arm64 with KASLR (before v6.5) allocates modules within 2 GiB below the kernel's text
    # (module_alloc_base, arch/arm64/kernel/kaslr.c), outside MODULES_VADDR..MODULES_END
    return max(init_begin - _MODULE_WINDOW, 0), init_begin


def recover_symbols(memory: MemoryReader, address_of: Callable[[str], int],
                    module_range: tuple[int, int]) -> Sequence[RecoveredSymbol]:
    """Recover ``__start_BTF``/``__stop_BTF``, ``init_task`` and ``modules`` (see the module doc).

    :param memory: the kernel address space
    :param address_of: kallsyms lookups (``_etext``, ``__init_begin`` are text-section symbols)
    :param module_range: the module area
    :return: what was found, each validated; empty when the BTF is not found
    """
    etext, init_begin = address_of("_etext"), address_of("__init_begin")
    if not 0 < init_begin - etext <= 4 * _MAX_BTF:
        return []
    try:
        rodata = memory.read(etext, init_begin - etext)
    except FaultError:
        rodata = read_image_data(memory, etext, init_begin - etext).data
    found = find_btf_or_none(rodata, etext)
    if found is None:
        return []
    start, stop, btf = found
    rule = "a BTF header in .rodata (_etext.._init_begin) whose types parse and hold struct task_struct"
    out = [RecoveredSymbol("__start_BTF", start, rule), RecoveredSymbol("__stop_BTF", stop, rule)]
    image = read_image_data(memory, init_begin)
    out.extend(_recover_ksymtab(rodata, etext, btf, address_of))
    taint = btf.find_type_or_none("taint_flag", TypeKind.STRUCT)
    flags = find_taint_flags_or_none(rodata, etext, taint.sizeof()) if taint is not None else None
    if flags is not None:
        out.append(RecoveredSymbol("taint_flags", flags, "the one struct taint_flag array in .rodata "
                                   "starting P/G, F, S, R, M"))

    def read_u64(address: int) -> int:
        return int.from_bytes(memory.read(address, 8), "little")

    init_task = find_init_task_or_none(image, btf, read_u64)
    if init_task is not None:
        out.append(RecoveredSymbol("init_task", init_task,
                                   "the task_struct in .data with comm swapper/0, pid 0 and a consistent tasks ring"))
    head = find_modules_head_or_none(image, btf, memory, [module_range, _aarch64_module_window(init_begin)])
    if head is not None:
        out.append(RecoveredSymbol("modules", head, "the list_head in .data whose ring holds only struct "
                                   "modules (valid state, printable name) in the module area"))
    if init_task is not None:
        out.extend(_recover_percpu(image, btf, init_task, read_u64, memory, address_of("_stext")))
    return out


def _recover_ksymtab(rodata: bytes, base: int, btf: Btf,
                     address_of: Callable[[str], int]) -> list[RecoveredSymbol]:
    entry = btf.find_type_or_none("kernel_symbol", TypeKind.STRUCT)
    if entry is None or not entry.has_member("value_offset") or not entry.has_member("name_offset"):
        return []

    def known(name: str) -> int | None:
        try:
            return address_of(name)
        except KcrashError:
            return None

    how = ("__ksymtab: exported symbols, each entry's self-relative value and name (every kallsyms "
           "symbol among them at kallsyms' address)")
    return [RecoveredSymbol(name, address, how)
            for name, address in sorted(find_ksymtab(rodata, base, entry.sizeof(), known).items())]


def _recover_percpu(image: ImageData, btf: Btf, init_task: int, read_u64: Callable[[int], int],
                    memory: MemoryReader, image_start: int) -> list[RecoveredSymbol]:
    variables = percpu_variables(btf)
    task = btf.find_type_or_none("task_struct", TypeKind.STRUCT)
    if "runqueues" not in variables or task is None:
        return []
    tasks_off = _offset(task, "tasks")
    ring = _ring_or_none(init_task + tasks_off, read_u64) or []

    def read_u32(address: int) -> int:
        return int.from_bytes(memory.read(address, 4), "little")

    runqueues = runqueues_by_cpu(btf, [n - tasks_off for n in ring], read_u64, read_u32)
    found = find_per_cpu_offset_or_none(image, runqueues, variables["runqueues"][0], image_start)
    if found is None:
        return []
    array, start = found
    how = (f"__per_cpu_offset: the one array in .data whose entries differ as the runqueues of CPUs "
           f"{sorted(runqueues)} (tasks' se.cfs_rq->rq with rq.cpu) do; per-CPU variables at "
           f"__per_cpu_start + their BTF .data..percpu offset")
    end = start + max(offset + size for offset, size in variables.values())
    out = [RecoveredSymbol("__per_cpu_offset", array, how), RecoveredSymbol("__per_cpu_start", start, how),
           RecoveredSymbol("__per_cpu_end", end, how)]
    out.extend(RecoveredSymbol(name, start + offset, how) for name, (offset, _) in sorted(variables.items()))
    return out


def recover_missing_symbols(memory: MemoryReader, symbols: object,
                            info: VmcoreInfo | None = None) -> Sequence[RecoveredSymbol]:
    """Add :func:`recover_symbols`' finds to a kallsyms table that lacks ``__start_BTF`` and ``init_task``
    (text symbols only), with a warning naming them; any other symbol source is left as it is.

    :param memory: the kernel address space (a :class:`~kcrash.memory.kernel.KernelMemory`)
    :param symbols: the program's symbol source
    :param info: VMCOREINFO, whose ``SYMBOL()`` lines inside the image (``init_uts_ns``, ``prb`` ...) are
        taken as they are
    :return: what was added (empty when nothing was missing or nothing was found)
    """
    if not isinstance(symbols, SymbolTable) or not isinstance(memory, KernelMemory) \
            or symbols.has_symbol("__start_BTF") or symbols.has_symbol("init_task") \
            or not symbols.has_symbol("_etext") or not symbols.has_symbol("__init_begin"):
        return []
    found = list(recover_symbols(memory, symbols.address_of, memory.module_range()))
    if info is not None:
        stext, known = symbols.address_of("_stext"), {s.name for s in found}
        found.extend(RecoveredSymbol(name, address, "VMCOREINFO SYMBOL()") for name, address in info.symbols.items()
                     if name not in known and not symbols.has_symbol(name) and stext <= address < stext + _IMAGE_SPAN)
    if found:
        symbols.add_recovered((s.name, s.address, "D") for s in found)
        hows: dict[str, list[str]] = {}
        for s in found:
            hows.setdefault(s.how, []).append(f"{s.name} at {s.address:#x}")
        named = "; ".join(f"{', '.join(names) if len(names) <= 4 else f'{len(names)} symbols ({names[0]} ...)'}: {how}"
                          for how, names in hows.items())
        warnings.warn(f"kallsyms holds text symbols only; recovered from the dump by structure: {named}",
                      DumpWarning, stacklevel=3)
    return found
