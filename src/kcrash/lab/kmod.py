"""
kcrash.lab.kmod
===============

Build the lab's own test module (``kcrash_test.ko``, C source shipped in ``kmod/``) out of tree
against a kernel's unpacked Debian headers, with module BTF when possible. Builds are cached by
kernel release and source hash. The module's runtime behaviour is described in its source.

For an arm64 kernel the module is cross-built (``ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-``,
Debian's ``gcc-12-aarch64-linux-gnu``); the headers tree then carries the machine's kbuild host
programs (see :func:`kcrash.lab.debian.fetch_headers`). Its module BTF needs a vmlinux in the headers
(Debian's arm64 6.12 headers ship one; an arm64 ``vmlinuz`` is a plain Image, with no ELF inside to
recover), so without one the module is built without BTF.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kcrash.errors import KernelPackageError, LabError, LabToolMissingError
from kcrash.lab.arches import HOST_ARCH, LAB_ARCHES
from kcrash.lab.vmlinux import extract_vmlinux

__all__ = ["CROSS_COMPILE", "MODULE_NAME", "BuiltModule", "build_module", "compiler_override", "cross_args",
           "module_source_hash"]

MODULE_NAME = "kcrash_test"
_SOURCES = ("kcrash_test.c", "Makefile")
# The compiler modules are built with when the one a kernel was built with is not installed.
_HOST_CC = "gcc-12"
#: cross-compiler prefix per foreign lab architecture (:mod:`kcrash.lab.arches`)
CROSS_COMPILE = {a.name: a.cross_compile for a in LAB_ARCHES.values() if a.cross_compile}


@dataclass(frozen=True, slots=True)
class BuiltModule:
    """A built ``.ko``: its path, whether it carries a ``.BTF`` section, and the source hash."""

    path: Path
    has_btf: bool
    source_hash: str


def _source_bytes() -> dict[str, bytes]:
    pkg = resources.files("kcrash.lab") / "kmod"
    return {name: (pkg / name).read_bytes() for name in _SOURCES}


def module_source_hash() -> str:
    """SHA-256 (16 hex digits) over the module's source files; part of every lab cache key."""
    digest = hashlib.sha256()
    for name, data in sorted(_source_bytes().items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:16]


def _ensure_btf_base(headers: Path, vmlinuz: Path, arch: str = "x86_64") -> None:
    # kbuild makes module BTF against $(objtree)/vmlinux; Debian ships one only for some ABIs.
    # The stripped vmlinux inside vmlinuz keeps .BTF, which is all pahole needs.
    target = headers / "vmlinux"
    if not target.exists():
        try:
            data = extract_vmlinux(vmlinuz.read_bytes())
        except KernelPackageError:
            if arch == HOST_ARCH:
                raise
            return  # an arm64 Image holds no ELF: kbuild skips the module's BTF
        tmp = target.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.rename(target)


def _has_section(path: Path, name: bytes) -> bool:
    # lazy: +52 ms CPU to import it after this module (measured, loaded host)
    from elftools.elf.elffile import ELFFile

    with path.open("rb") as f:
        return ELFFile(f).get_section_by_name(name.decode()) is not None


def build_module(cache: Path, release: str, headers: Path, vmlinuz: Path, arch: str = "x86_64") -> BuiltModule:
    """Build (or reuse) ``kcrash_test.ko`` for ``release`` against the unpacked ``headers``
    (cross-built for a foreign ``arch``)."""
    if shutil.which("make") is None or shutil.which(_HOST_CC) is None:
        raise LabToolMissingError(f"make/{_HOST_CC}", f"make {_HOST_CC}")
    if arch in CROSS_COMPILE and shutil.which(f"{CROSS_COMPILE[arch]}{_HOST_CC}") is None:
        raise LabToolMissingError(f"{CROSS_COMPILE[arch]}{_HOST_CC}", LAB_ARCHES[arch].cross_package)
    source_hash = module_source_hash()
    out = cache / "kmod" / f"{release}-{source_hash}"
    ko = out / f"{MODULE_NAME}.ko"
    if not ko.exists():
        _ensure_btf_base(headers, vmlinuz, arch)
        _compile(out, headers, cross_args(arch))
    return BuiltModule(ko, _has_section(ko, b".BTF"), source_hash)


def compiler_override(headers: Path) -> list[str]:
    """``make`` arguments that replace the compiler Debian's headers name (``.kernelvariables``:
    ``CC = ... gcc-N``, the one the kernel was built with) by the host's when it is not installed
    (Debian 11's gcc-10, unstable's newer gcc on a bookworm host). Empty when it is installed."""
    try:
        text = (headers / ".kernelvariables").read_text()
    except OSError:
        return []
    match = re.search(r"^CC\s*=.*?\b(gcc-\d+)\b", text, re.M)
    if match is None or shutil.which(match.group(1)) is not None:
        return []
    return [f"CC={_HOST_CC}"]


def cross_args(arch: str) -> list[str]:
    """``make`` arguments that cross-build for ``arch`` (none for the machine's x86_64)."""
    return [f"ARCH={arch}", f"CROSS_COMPILE={CROSS_COMPILE[arch]}"] if arch in CROSS_COMPILE else []


def _compile(out: Path, headers: Path, extra: list[str] | None = None) -> None:
    work = out.with_name(out.name + ".build")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name, data in _source_bytes().items():
        (work / name).write_bytes(data)
    cmd = ["make", "-C", str(headers), f"M={work}", "modules", *compiler_override(headers), *(extra or [])]
    if not (headers / "tools" / "bpf" / "resolve_btfids" / "resolve_btfids").exists():
        cmd.append("RESOLVE_BTFIDS=true")  # the module uses no BTF ids; the tool is optional
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not (work / f"{MODULE_NAME}.ko").exists():
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise LabError(f"building {MODULE_NAME}.ko failed: {tail}")
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
