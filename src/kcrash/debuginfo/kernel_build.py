"""
kcrash.debuginfo.kernel_build
=============================

Whether a vmlinux is of the kernel build a dump or a log comes from. A vmlinux says what it is in
two places: its GNU build-id (``.notes``) and its ``linux_banner`` string (init/version.c:
``"Linux version " UTS_RELEASE " (" LINUX_COMPILE_BY "@" LINUX_COMPILE_HOST ") (" LINUX_COMPILER ")
" UTS_VERSION "\\n"``, the first line the kernel logs). A dump says ``OSRELEASE`` and ``BUILD-ID`` in
VMCOREINFO; a log says its banner line and, in every oops header, ``RELEASE VERSION`` (lib/dump_stack.c
dump_stack_print_info(): the release, then ``UTS_VERSION`` up to its first space, ``#1``; Debian
adds its package version, ``Debian 6.12.118-1~deb12u1``; with ``CONFIG_STACKTRACE_BUILD_ID`` the
build-id follows). The release alone does not tell builds apart: Debian's 6.1.0-56-amd64 is the
release of several package versions. A mismatch is refused, or with ``force`` one warning
(:class:`~kcrash.dumps.base.DumpWarning`). Finding the files is :mod:`kcrash.debuginfo.finder`'s job.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from kcrash.debuginfo.elf_symtab import ElfImage
from kcrash.dumps.base import DumpWarning
from kcrash.errors import DebugInfoMismatchError

__all__ = [
    "KernelBuild",
    "check_kernel_build",
    "kernel_build_mismatch_or_none",
    "linux_banner_or_none",
    "warn_forced",
]

_BANNER = "Linux version "
_MAX_BANNER = 1024
_SYM_SIZE = 24  # sizeof(Elf64_Sym)
_HEX_ID = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True, slots=True)
class KernelBuild:
    """What a dump or a log says of its kernel build; each part None when it does not say.

    ``banner`` is the log's ``Linux version …`` line from ``Linux version`` on; ``version`` the
    oops header's words after the release (``#1 Debian 6.12.118-1~deb12u1``)."""

    release: str | None = None
    version: str | None = None
    banner: str | None = None
    build_id: str | None = None


def linux_banner_or_none(image: ElfImage) -> str | None:
    """The ``linux_banner`` string of a vmlinux (without its newline), or None when its symbol table
    has no such data symbol.

    :param image: the vmlinux, mapped.
    :return: ``Linux version 6.12.118+deb12-amd64 (…) #1 SMP PREEMPT_DYNAMIC Debian … (2026-11-28)``.
    """
    symtab = image.find_section_or_none(".symtab")
    if symtab is None or symtab.sh_link >= len(image.sections):
        return None
    strtab = image.section_bytes(image.sections[symtab.sh_link]).tobytes()
    name = strtab.find(b"\0linux_banner\0") + 1
    if name <= 0:
        return None
    table = image.section_bytes(symtab).tobytes()
    key = name.to_bytes(4, "little")  # st_name, the first field of an Elf64_Sym
    at = table.find(key)
    while at >= 0 and at % _SYM_SIZE:
        at = table.find(key, at + 1)
    if at < 0 or at + _SYM_SIZE > len(table):
        return None
    return _string_at(image, int.from_bytes(table[at + 6:at + 8], "little"),
                      int.from_bytes(table[at + 8:at + 16], "little"))


def _string_at(image: ElfImage, shndx: int, address: int) -> str | None:
    if not 0 < shndx < len(image.sections):
        return None
    section = image.sections[shndx]
    data = image.section_bytes(section)[address - section.sh_addr:][:_MAX_BANNER].tobytes()
    text = data.split(b"\0", 1)[0].decode("latin-1").rstrip("\n")
    return text if text.startswith(_BANNER) else None


def kernel_build_mismatch_or_none(image: ElfImage, expected: KernelBuild) -> str | None:
    """Why the vmlinux ``image`` is not of the build ``expected`` describes, or None when nothing
    it says disagrees (what either side does not say is not compared).

    :param image: the vmlinux, mapped.
    :param expected: what the dump (VMCOREINFO) or the log says.
    :return: e.g. ``it is 6.1.0-56-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-30), the
        log's kernel 6.1.0-56-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.191-1 (2026-10-02)``.
    """
    found_id = image.build_id_or_none()
    if expected.build_id and found_id and found_id != expected.build_id.lower():
        return f"build-id {found_id}, the kernel's is {expected.build_id.lower()}"
    banner = linux_banner_or_none(image)
    if banner is None:
        return None
    words = banner.split()
    if expected.banner and " ".join(expected.banner.split()) != " ".join(words):
        return f"it is {_short(banner)}, the log's kernel {_short(expected.banner)}"
    if expected.release and words[2:3] != [expected.release]:
        return f"it is {_short(banner)}, the kernel is {expected.release}"
    missing = [w for w in (expected.version or "").split() if w not in words and not _HEX_ID.fullmatch(w)]
    if missing:
        return f"it is {_short(banner)}, the kernel is {expected.release or ''} {expected.version}".replace("  ", " ")
    return None


def _short(banner: str) -> str:
    # The release and UTS_VERSION of a banner (the compiler and host parts left out).
    words = banner.removeprefix(_BANNER).split()
    tail = banner.rfind(") #")
    return " ".join(words[:1]) + (" " + banner[tail + 2:].strip() if tail >= 0 else "")


def check_kernel_build(image: ElfImage, expected: KernelBuild, force: bool = False) -> None:
    """Refuse a vmlinux of another build; with ``force`` warn once instead.

    :raises DebugInfoMismatchError: it is of another build and ``force`` is False.
    """
    reason = kernel_build_mismatch_or_none(image, expected)
    if reason is None:
        return
    if not force:
        raise DebugInfoMismatchError(f"{image.path} is another kernel build ({reason}); pass the matching vmlinux, "
                                    "or --force to use it anyway")
    warn_forced(image.path, reason)


def warn_forced(path: Path, reason: str) -> None:
    """The one warning for a vmlinux of another build used because of ``--force``.

    :param reason: :func:`kernel_build_mismatch_or_none`'s answer."""
    warnings.warn(f"{path} is another kernel build ({reason}); used anyway (--force)", DumpWarning, stacklevel=3)
