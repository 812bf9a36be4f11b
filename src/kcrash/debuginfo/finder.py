"""
kcrash.debuginfo.finder
=======================

Finding the debug files of a kernel: the ``vmlinux`` with DWARF and the module ``.ko`` debug files,
from paths the user gives (files or directories) and from the standard Debian locations
(``/usr/lib/debug/boot/vmlinux-RELEASE``, ``/usr/lib/debug/lib/modules/RELEASE/…``). A vmlinux is
matched by GNU build-id and ``linux_banner`` (:mod:`kcrash.debuginfo.kernel_build`): one of another build
is refused unless forced. This module opens files only
to read their headers; symbolizing is :mod:`kcrash.debuginfo.symbolizer`'s job.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from kcrash.debuginfo.elf_symtab import open_elf_image
from kcrash.debuginfo.kernel_build import KernelBuild, kernel_build_mismatch_or_none, warn_forced
from kcrash.errors import CorruptDumpError, DebugInfoMismatchError, MissingDebugInfoError

__all__ = [
    "find_debuginfo",
    "find_module_debuginfo",
    "read_build_id_or_none",
]

_DEBUG_ROOT = Path("usr/lib/debug")


def read_build_id_or_none(path: Path) -> str | None:
    """The GNU build-id of an ELF file (hex), or None when it has none.

    :raises CorruptDumpError: the file is not an ELF file.
    """
    image = open_elf_image(path)
    try:
        return image.build_id_or_none()
    finally:
        image.close()


def find_debuginfo(release: str | None, build_id: str | None, paths: Sequence[Path] = (), force: bool = False,
                   *, root: Path = Path("/"), build: KernelBuild | None = None) -> Path:
    """The vmlinux with debug information for a kernel.

    :param release: ``uname -r`` of the kernel (from VMCOREINFO ``OSRELEASE`` or the log), if known.
    :param build_id: the kernel's GNU build-id (VMCOREINFO ``BUILD-ID``), if known; candidates of
        another build (:func:`~kcrash.debuginfo.kernel_build.check_kernel_build`: build-id, the
        ``linux_banner``'s release) are refused, or with ``force`` taken with a warning.
    :param paths: user-given files (a vmlinux; ``.ko`` files are skipped) and directories.
    :param root: the file-system root of the standard locations (for tests).
    :param build: what a log says of its build (banner, release, version), compared instead of
        ``release`` and ``build_id``.
    :raises MissingDebugInfoError: nothing found; :class:`~kcrash.errors.DebugInfoMismatchError` when
        only files of another build were.
    """
    expected = build if build is not None else KernelBuild(release=release, build_id=build_id)
    tried: list[str] = []
    refused: list[str] = []
    for candidate in _vmlinux_candidates(release, paths, root):
        tried.append(str(candidate))
        if not candidate.is_file():
            continue
        try:
            reason = _build_mismatch_or_none(candidate, expected)
        except CorruptDumpError:
            refused.append(f"{candidate} is not an ELF file")
            continue
        if reason is None or force:
            if reason is not None:
                warn_forced(candidate, reason)
            return candidate
        refused.append(f"{candidate} is another kernel build ({reason})")
    if refused:
        other_build = any("another kernel build" in r for r in refused)
        error = DebugInfoMismatchError if other_build else MissingDebugInfoError
        raise error("; ".join(refused) + " — pass the matching vmlinux, or --force to use it anyway")
    what = f"kernel {release}" if release else "this kernel"
    hint = f"apt-get install linux-image-{release}-dbg, " if release else ""
    raise MissingDebugInfoError(f"no vmlinux with debug information for {what} ({hint}or pass --debuginfo PATH);"
                                f" tried {', '.join(tried) or 'nothing'}")


def _build_mismatch_or_none(path: Path, expected: KernelBuild) -> str | None:
    image = open_elf_image(path)
    try:
        return kernel_build_mismatch_or_none(image, expected)
    finally:
        image.close()


def _vmlinux_candidates(release: str | None, paths: Sequence[Path], root: Path) -> Iterator[Path]:
    names = [f"vmlinux-{release}", "vmlinux"] if release else ["vmlinux"]
    for path in paths:
        if path.is_dir():
            for sub in (Path(), Path("boot"), _DEBUG_ROOT / "boot"):
                yield from (path / sub / n for n in names)
            if release:
                yield path / _DEBUG_ROOT / "lib/modules" / release / "vmlinux"
        elif not _is_module_name(path.name):
            yield path
    if release:
        yield root / _DEBUG_ROOT / "boot" / f"vmlinux-{release}"
        yield root / _DEBUG_ROOT / "lib/modules" / release / "vmlinux"
        yield root / "boot" / f"vmlinux-{release}"


def find_module_debuginfo(name: str, release: str | None, paths: Sequence[Path] = (), *,
                          root: Path = Path("/")) -> Path | None:
    """The debug ``.ko`` of module ``name`` (``-`` and ``_`` are the same), or None.

    Looks at user-given ``.ko`` files, then in user-given directories (recursively), then under
    ``/usr/lib/debug/lib/modules/RELEASE``.
    """
    key = _module_key(name)
    for path in paths:
        if path.is_file() and _is_module_name(path.name) and _module_key(path.name) == key:
            return path
    places = [p for p in paths if p.is_dir()]
    if release:
        places += [p / _DEBUG_ROOT / "lib/modules" / release for p in paths if p.is_dir()]
        places.append(root / _DEBUG_ROOT / "lib/modules" / release)
    for place in places:
        if place.is_dir():
            for found in place.rglob("*.ko"):
                if _module_key(found.name) == key:
                    return found
    return None


def _is_module_name(name: str) -> bool:
    return name.endswith(".ko") or name.endswith(".ko.debug")


def _module_key(name: str) -> str:
    for suffix in (".debug", ".ko"):
        name = name.removesuffix(suffix)
    return name.replace("-", "_")
