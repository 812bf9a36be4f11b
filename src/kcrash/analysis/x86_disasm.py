"""
kcrash.analysis.x86_disasm
==========================

x86-64 disassembly with capstone, for the report, ``kcrash dis`` and ``kcrash decode``. A leaf module:
it imports nothing else of kcrash but the errors, so disassembling does not pull in the DWARF
symbolizer or the oops parser. capstone's C library is called through ctypes when it is the 5.0 API,
because importing the capstone package costs more than the rest of a warm ``kcrash decode`` (+93 ms
of CPU, bench/RESULTS.md "capstone"); otherwise the package's ``Cs.disasm_lite`` is used.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass

from kcrash.errors import KcrashError

__all__ = ["Instruction", "branch_target", "disassemble", "rip_relative_target"]

# A direct call/jump/loop with an absolute target (capstone prints the resolved address), in either syntax.
_BRANCH = re.compile(r"^(?:call|jmp|j[a-z]{1,4}|loop\w*|xbegin)q?\s+(?:\$)?(0x[0-9a-f]+)$")
# A RIP-relative memory operand: Intel "[rip + 0x10]", AT&T "0x10(%rip)".
_RIP_INTEL = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|\d+)\]")
_RIP_ATT = re.compile(r"(-?)(0x[0-9a-f]+|\d+)\(%rip\)")


@dataclass(frozen=True, slots=True)
class Instruction:
    """One disassembled instruction; ``address`` is absolute when the faulting RIP is known, else
    relative to the first ``Code:`` byte. ``faulting`` marks the instruction at the ``<..>`` byte."""

    address: int
    data: bytes
    text: str
    faulting: bool = False


def branch_target(insn: Instruction) -> int | None:
    """The target of a direct ``call``/``jmp``/``jcc``/``loop``, else None."""
    m = _BRANCH.match(insn.text)
    return int(m.group(1), 16) if m else None


def rip_relative_target(insn: Instruction) -> int | None:
    """The address a RIP-relative operand refers to (the next instruction's address plus the
    displacement, modulo 2**64: a ``gs:`` one is then a per-CPU offset), else None."""
    m = _RIP_INTEL.search(insn.text)
    if m is not None:
        sign, disp = m.group(1), int(m.group(2), 0)
    else:
        m = _RIP_ATT.search(insn.text)
        if m is None:
            return None
        sign, disp = ("-" if m.group(1) else "+"), int(m.group(2), 0)
    end = insn.address + len(insn.data)
    return (end + disp if sign == "+" else end - disp) & 0xFFFFFFFFFFFFFFFF


def disassemble(data: bytes, address: int, syntax: str = "intel") -> tuple[Instruction, ...]:
    """x86-64 instructions of ``data`` placed at ``address`` (capstone), stopping at the first byte
    that does not decode.

    :raises KcrashError: ``syntax`` is neither ``intel`` nor ``att``.
    """
    if syntax not in ("intel", "att"):
        raise KcrashError(f"unknown assembler syntax {syntax!r} (intel or att)")
    decoded = _capstone_lib_or_none()
    if decoded is not None:
        rows = decoded.disasm_lite(bytes(data), address, syntax == "att")
    else:
        # lazy: +94 ms CPU to import it after this module (measured, loaded host)
        import capstone  # type: ignore[import-untyped]

        engine = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        if syntax == "att":
            engine.syntax = capstone.CS_OPT_SYNTAX_ATT
        rows = list(engine.disasm_lite(data, address))
    return tuple(Instruction(a, bytes(data[a - address:a - address + size]), f"{m} {o}".strip())
                 for a, size, m, o in rows)


# capstone through its C library directly. The capstone Python package loads every architecture's
# module, ctypes.util and subprocess on import: +93 ms of CPU (1.36x) per warm ``kcrash decode``,
# whose target is <= 1.0x llvm-symbolizer (bench/ab_cpu.py, bench/RESULTS.md "capstone"); x86-64
# disassembly needs four C calls of capstone's public C API (include/capstone/capstone.h). The
# bindings' own library file is used, and only when it is the 5.0 API whose ``cs_insn`` layout is
# declared here; otherwise the package is imported (tests/unit/analysis/test_x86_disasm.py compares both).
_CS_ARCH_X86, _CS_MODE_64, _CS_OPT_SYNTAX, _CS_OPT_SYNTAX_ATT = 3, 1 << 3, 1, 2
_CS_LIB: list[_CapstoneLib | None] = []


class _CapstoneLib:
    def __init__(self, path: str) -> None:
        # lazy: +5 ms CPU to import it after this module (measured, loaded host)
        import ctypes

        class CsInsn(ctypes.Structure):  # cs_insn of capstone 5.0 (include/capstone/capstone.h)
            _fields_ = (("id", ctypes.c_uint), ("address", ctypes.c_uint64), ("size", ctypes.c_uint16),
                        ("bytes", ctypes.c_ubyte * 24), ("mnemonic", ctypes.c_char * 32),
                        ("op_str", ctypes.c_char * 160), ("detail", ctypes.c_void_p))

        self._ctypes, self._insn = ctypes, CsInsn
        lib = self._lib = ctypes.CDLL(path)
        handle_p = ctypes.POINTER(ctypes.c_size_t)
        for name, restype, argtypes in (
                ("cs_version", ctypes.c_int, (ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))),
                ("cs_open", ctypes.c_int, (ctypes.c_uint, ctypes.c_uint, handle_p)),
                ("cs_option", ctypes.c_int, (ctypes.c_size_t, ctypes.c_int, ctypes.c_size_t)),
                ("cs_disasm", ctypes.c_size_t, (ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64,
                                                ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(CsInsn)))),
                ("cs_free", None, (ctypes.c_void_p, ctypes.c_size_t)),
                ("cs_close", ctypes.c_int, (handle_p,))):
            getattr(lib, name).restype, getattr(lib, name).argtypes = restype, argtypes
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib.cs_version(ctypes.byref(major), ctypes.byref(minor))
        self.supported = (major.value, minor.value) == (5, 0)

    def disasm_lite(self, data: bytes, address: int, att: bool) -> list[tuple[int, int, str, str]]:
        # capstone's Cs.disasm_lite: (address, size, mnemonic, operands) until a byte does not decode.
        ctypes, lib = self._ctypes, self._lib
        handle = ctypes.c_size_t()
        if lib.cs_open(_CS_ARCH_X86, _CS_MODE_64, ctypes.byref(handle)) != 0:
            raise KcrashError("capstone: cannot open an x86-64 disassembler")
        try:
            if att and lib.cs_option(handle, _CS_OPT_SYNTAX, _CS_OPT_SYNTAX_ATT) != 0:
                raise KcrashError("capstone: AT&T syntax is not supported by this build")
            insns = ctypes.POINTER(self._insn)()
            count = lib.cs_disasm(handle, data, len(data), address, 0, ctypes.byref(insns))
            try:
                return [(i.address, i.size, i.mnemonic.decode("ascii"), i.op_str.decode("ascii"))
                        for i in (insns[k] for k in range(count))]
            finally:
                if count:
                    lib.cs_free(insns, count)
        finally:
            lib.cs_close(ctypes.byref(handle))


def _capstone_lib_or_none() -> _CapstoneLib | None:
    if not _CS_LIB:
        _CS_LIB.append(_load_capstone_lib())
    return _CS_LIB[0]


def _load_capstone_lib() -> _CapstoneLib | None:
    spec = importlib.util.find_spec("capstone")  # finds the package without running it
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "lib", "libcapstone.so")
    try:
        lib = _CapstoneLib(path) if os.path.exists(path) else None
    except (OSError, AttributeError):
        return None
    return lib if lib is not None and lib.supported else None
