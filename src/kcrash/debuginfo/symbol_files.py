"""
kcrash.debuginfo.symbol_files
=============================

Kernel symbols from files the user has, for dumps whose own kallsyms cannot be read (VMCOREINFO
without the ``kallsyms_*`` lines, as before Linux 6.0; kallsyms pages missing or filtered): a
``System.map`` (in every distribution's kernel image package, no debug package needed) or a
vmlinux's ``.symtab``. Kernel-image addresses are moved by the dump's KASLR offset (VMCOREINFO
``KERNELOFFSET``); the zero-based per-CPU symbols are not. Before the file is trusted it must agree
with the dump: a vmlinux's build-id with VMCOREINFO ``BUILD-ID``, and every ``SYMBOL(name)`` VMCOREINFO
lists that the file also has (at least one must be checked). :func:`find_symbol_file_or_none` looks
for one in the usual places. This module does not read DWARF (see :mod:`kcrash.debuginfo.dwarf_index`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kcrash.debuginfo.elf_symtab import (
    SHF_EXECINSTR,
    SHF_WRITE,
    SHN_UNDEF,
    SHT_NOBITS,
    STB_LOCAL,
    ElfSection,
    open_elf_image,
)
from kcrash.debuginfo.kernel_build import KernelBuild, check_kernel_build
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.errors import CorruptDumpError, MissingDebugInfoError
from kcrash.memory.translate.x86_64 import START_KERNEL_MAP  # kernel-image symbols lie above it, moved by KASLR

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from kcrash.dumps.vmcoreinfo import VmcoreInfo

__all__ = ["find_symbol_file_or_none", "load_symbol_file"]

_LINE = re.compile(rb"^([0-9a-fA-F]{1,16}) ([A-Za-z?]) (\S+)", re.MULTILINE)
_MAX_MAP_BYTES = 256 << 20
_MIN_SYMBOLS = 1000  # a kernel has tens of thousands; fewer is a stub or another file
_DEBUG_ROOT = Path("usr/lib/debug")


def load_symbol_file(path: Path, vmcoreinfo: VmcoreInfo | None, *, force: bool = False,
                     image_start: int = START_KERNEL_MAP) -> SymbolTable:
    """The kernel symbols of ``path`` (a System.map or a vmlinux ELF file), at the dump's addresses.

    ``image_start``: where the kernel image's mapping starts (the architecture's; x86-64's
    ``__START_KERNEL_map`` by default): symbols at or above it are moved by KASLR and checked
    against VMCOREINFO.

    :raises MissingDebugInfoError: the file does not belong to the dump (another build-id, symbols
        that disagree with VMCOREINFO), unless ``force``; or it holds no symbols.
    """
    with open(path, "rb") as f:
        is_elf = f.read(4) == b"\x7fELF"
    names, addresses, kinds = _read_elf(path, vmcoreinfo, force) if is_elf else _read_map(path)
    if len(names) < _MIN_SYMBOLS:
        raise MissingDebugInfoError(f"{path}: {len(names)} symbol(s), not a kernel's symbol table (Debian's "
                                    "image package ships a stub System.map; the real one is in the -dbg package)")

    offset = (vmcoreinfo.kerneloffset or 0) if vmcoreinfo is not None else 0
    raw = np.array(addresses, dtype=np.uint64)
    moved = np.where(raw >= np.uint64(image_start), raw + np.uint64(offset), raw)
    if not force:
        _check_against_vmcoreinfo(path, names, moved.tolist(), vmcoreinfo, image_start)
    order = np.argsort(moved, kind="stable").tolist()
    return SymbolTable([names[i] for i in order], moved[order], [kinds[i] for i in order],
                       source=f"{'vmlinux' if is_elf else 'System.map'} {path}")


def _read_map(path: Path) -> tuple[list[str], list[int], list[str]]:
    if path.stat().st_size > _MAX_MAP_BYTES:
        raise MissingDebugInfoError(f"{path}: {path.stat().st_size} bytes is too large for a System.map")
    data = path.read_bytes()
    names, addresses, kinds = [], [], []
    for match in _LINE.finditer(data):
        addresses.append(int(match.group(1), 16))
        kinds.append(match.group(2).decode())
        names.append(match.group(3).decode("utf-8", "replace"))
    if data.strip() and not names:
        raise MissingDebugInfoError(f"{path}: neither an ELF file nor a System.map ('ADDRESS TYPE NAME' lines)")
    return names, addresses, kinds


def _read_elf(path: Path, vmcoreinfo: VmcoreInfo | None, force: bool) -> tuple[list[str], list[int], list[str]]:
    try:
        image = open_elf_image(path)
    except CorruptDumpError as exc:
        raise MissingDebugInfoError(f"{path}: {exc}") from None
    try:
        if vmcoreinfo is not None:
            check_kernel_build(image, KernelBuild(release=vmcoreinfo.osrelease, build_id=vmcoreinfo.build_id), force)
        symtab = image.find_section_or_none(".symtab")
        if symtab is None or symtab.sh_link >= len(image.sections):
            return [], [], []
        strtab = bytes(image.section_bytes(image.sections[symtab.sh_link]))
        sym = np.dtype([("st_name", "<u4"), ("st_info", "u1"), ("st_other", "u1"), ("st_shndx", "<u2"),
                        ("st_value", "<u8"), ("st_size", "<u8")])
        # copied out of the mapping, which must have no views left when the image is closed
        syms = np.frombuffer(bytes(image.section_bytes(symtab)), sym, symtab.sh_size // sym.itemsize)
        letters = np.array([ord(_letter(section)) for section in image.sections] + [ord("A")], dtype=np.uint8)
        return _columns(syms, strtab, letters)
    finally:
        image.close()


def _columns(syms: npt.NDArray[Any], strtab: bytes,
             letters: npt.NDArray[np.uint8]) -> tuple[list[str], list[int], list[str]]:
    # Named symbols of a section or SHN_ABS (not SECTION/FILE entries), vectorized: 200k symbols.
    keep = (syms["st_shndx"] != SHN_UNDEF) & ~np.isin(syms["st_info"] & 0xF, (3, 4)) & \
        (syms["st_name"] > 0) & (syms["st_name"] < len(strtab))
    syms = syms[keep]
    shndx = np.minimum(syms["st_shndx"].astype(np.int64), len(letters) - 1)
    kind = letters[shndx]
    kind = np.where(syms["st_info"] >> 4 == STB_LOCAL, kind | 0x20, kind).astype(np.uint8)  # lower case
    text = strtab.decode("latin-1")  # one character per byte: offsets stay byte offsets
    names = [text[o:text.find("\0", o)] for o in syms["st_name"].tolist()]
    # ARM/AArch64 mapping symbols ($x, $d, $x.12: where code or data starts) name no function;
    # scripts/kallsyms.c and mksysmap leave them out, and so do we.
    mapping = [name.startswith("$") for name in names]
    if any(mapping):
        keep_rows = [i for i, drop in enumerate(mapping) if not drop]
        values, kinds = syms["st_value"].tolist(), kind.tolist()
        return ([names[i] for i in keep_rows], [values[i] for i in keep_rows], [chr(kinds[i]) for i in keep_rows])
    return names, syms["st_value"].tolist(), [chr(k) for k in kind.tolist()]


def _letter(section: ElfSection) -> str:
    # nm's letter for a symbol in ``section``
    if section.sh_flags & SHF_EXECINSTR:
        return "T"
    if section.sh_type == SHT_NOBITS:
        return "B"
    return "D" if section.sh_flags & SHF_WRITE else "R"


def _check_against_vmcoreinfo(path: Path, names: Sequence[str], addresses: Sequence[int],
                              vmcoreinfo: VmcoreInfo | None, image_start: int) -> None:
    # Every kernel-image symbol VMCOREINFO names and the file has must sit at the same address (some
    # SYMBOL() lines hold a pointer's value instead, e.g. mem_section with SPARSEMEM_EXTREME: skipped).
    if vmcoreinfo is None:
        raise MissingDebugInfoError(f"{path}: the dump has no VMCOREINFO to check the symbols against "
                                    "(use --force to trust them)")
    where = dict(zip(names, addresses, strict=True))
    checked = 0
    for name, address in vmcoreinfo.symbols.items():
        if name in where and address >= image_start:
            if where[name] != address:
                raise MissingDebugInfoError(
                    f"{path} does not match the dump: {name} is at {where[name]:#x} in it, at {address:#x} "
                    "in the dump's VMCOREINFO (another kernel build?)")
            checked += 1
    if not checked:
        raise MissingDebugInfoError(f"{path}: none of the dump's VMCOREINFO symbols is in it, so it cannot be "
                                    "checked against the dump (use --force to trust it)")


def find_symbol_file_or_none(release: str | None, build_id: str | None = None, *,
                             root: Path = Path("/")) -> Path | None:
    """A vmlinux or System.map for kernel ``release`` in the usual places: by build-id under
    ``.build-id/`` of ``/usr/lib/debug`` and of each ``$KCRASH_DEBUGINFO_PATH`` directory
    (``:``-separated), then by release in those directories, ``/usr/lib/debug/boot``,
    ``/usr/lib/debug/lib/modules`` and ``/boot``. The caller checks it against the dump
    (:func:`load_symbol_file`)."""
    for candidate in _candidates(release, build_id, root):
        if candidate.is_file():
            return candidate
    return None


def _candidates(release: str | None, build_id: str | None, root: Path) -> Iterator[Path]:
    dirs = [Path(d) for d in os.environ.get("KCRASH_DEBUGINFO_PATH", "").split(":") if d]
    if build_id and len(build_id) > 2:
        tail = Path(".build-id") / build_id[:2].lower() / f"{build_id[2:].lower()}.debug"
        yield from (d / tail for d in (*dirs, root / _DEBUG_ROOT))
    if not release:
        return
    for d in dirs:
        yield from (d / f"vmlinux-{release}", d / f"System.map-{release}", d / release / "vmlinux",
                    d / release / "System.map")
    yield root / _DEBUG_ROOT / "boot" / f"vmlinux-{release}"
    yield root / _DEBUG_ROOT / "lib/modules" / release / "vmlinux"
    yield root / "boot" / f"System.map-{release}"
    yield root / "boot" / f"vmlinux-{release}"
