"""
kcrash.debuginfo.modules
========================

The symbols of a loaded module, read from the ELF symbol table the kernel keeps for it
(``kernel/module/kallsyms.c``): ``mod->kallsyms`` points at ``mod->core_kallsyms`` once the module
is live, whose ``symtab`` is an array of ``num_symtab`` ``Elf64_Sym`` (24 bytes; ``st_value``
already relocated to the runtime address) with names in ``strtab``. Only "core" symbols survive
(init-section symbols are dropped after init). Reading ``struct module`` itself needs types and is
the caller's job; this module only parses the arrays it is given.

Symbol kinds (``nm`` letters) come from ``mod_kallsyms.typetab`` when the caller passes it (Linux
≥ 5.2, commit 1c7651f43777); before that the kernel stored the letter in ``st_info``, recognised by
its impossible ELF binding; otherwise they are derived from the ELF binding and type (``T``/``t``
for functions, ``D``/``d`` for objects and untyped symbols, ``W``/``V`` for weak, ``A``/``a``
absolute), since section flags are not kept in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kcrash.debuginfo.symbols import Symbol
from kcrash.errors import CorruptDumpError, FaultError

if TYPE_CHECKING:
    from kcrash.memory.reader import MemoryReader

__all__ = ["Elf64_Sym", "module_symbols"]

#: ``Elf64_Sym`` (``include/uapi/linux/elf.h``), 24 bytes, little-endian
Elf64_Sym = np.dtype([("st_name", "<u4"), ("st_info", "u1"), ("st_other", "u1"), ("st_shndx", "<u2"),
                      ("st_value", "<u8"), ("st_size", "<u8")])
SHN_UNDEF = 0
SHN_ABS = 0xFFF1
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_FUNC, STT_OBJECT = 2, 1
_MAX_SYMS = 1 << 20
_KSYM_NAME_LEN = 512


def module_symbols(mem: MemoryReader, symtab: int, num_symtab: int, strtab: int, module: str, *,
                   typetab: int | None = None) -> list[Symbol]:
    """Return the named, defined symbols of a module in symbol-table order (``size`` is ``st_size``;
    :meth:`~kcrash.debuginfo.symbols.SymbolTable.add_module` recomputes it the kernel's way).

    :param symtab: ``Elf_Sym *`` (``mod->kallsyms->symtab``)
    :param num_symtab: ``unsigned int`` (``mod->kallsyms->num_symtab``)
    :param strtab: ``char *`` (``mod->kallsyms->strtab``)
    :param module: the module name (``mod->name``)
    :param typetab: ``char *`` (``mod->kallsyms->typetab``, Linux ≥ 5.2) or None
    """
    if not 0 <= num_symtab <= _MAX_SYMS:
        raise CorruptDumpError(f"module {module}: num_symtab is {num_symtab}")
    if num_symtab == 0:
        return []
    syms = np.frombuffer(mem.read(symtab, num_symtab * Elf64_Sym.itemsize), dtype=Elf64_Sym)
    strings = _read_strtab(mem, strtab, int(syms["st_name"].max()), num_symtab)
    types = mem.read(typetab, num_symtab) if typetab is not None else None
    out = []
    for i, row in enumerate(syms.tolist()):
        st_name, st_info, _other, st_shndx, st_value, st_size = row
        name = _name(strings, st_name, module)
        if i == 0 or st_shndx == SHN_UNDEF or not name or _is_mapping_symbol(name):
            continue
        kind = chr(types[i]) if types is not None else _kind(st_info, st_shndx)
        out.append(Symbol(name, st_value, st_size, kind, module))
    return out


def _read_strtab(mem: MemoryReader, strtab: int, last_offset: int, num_symtab: int) -> bytes:
    # Up to the last name plus the longest name the kernel allows, and never more than
    # ``num_symtab`` names of KSYM_NAME_LEN bytes (a larger st_name is corrupt and _name says so,
    # instead of a read of up to 4 GiB); less if memory ends sooner.
    size = min(last_offset + _KSYM_NAME_LEN, num_symtab * _KSYM_NAME_LEN)
    try:
        return mem.read(strtab, size)
    except FaultError:  # memory ends part-way: read up to the end of the last name's page
        page_end = (strtab + min(last_offset, size)) // 4096 * 4096 + 4096
        return mem.read(strtab, page_end - strtab)


def _name(strings: bytes, offset: int, module: str) -> str:
    if offset >= len(strings):
        raise CorruptDumpError(f"module {module}: symbol name at strtab+{offset:#x} is past the "
                               f"{len(strings):#x} bytes of strtab read")
    end = strings.find(b"\0", offset)
    if end < 0:
        raise CorruptDumpError(f"module {module}: symbol name at strtab+{offset:#x} is not NUL-terminated")
    return strings[offset:end].decode("ascii", "replace")


def _is_mapping_symbol(name: str) -> bool:
    # kernel/module/kallsyms.c is_mapping_symbol(): ".L…" and "L0…" locals, "$x"-style ARM mapping symbols
    return name.startswith((".L", "L0")) or (name[0] == "$" and len(name) > 1)


def _kind(st_info: int, st_shndx: int) -> str:
    binding, stype = st_info >> 4, st_info & 0xF
    if 4 <= binding <= 7 and chr(st_info).isalpha():
        return chr(st_info)  # before Linux 5.2 add_kallsyms() stored the nm letter in st_info
    if binding == STB_WEAK:
        return "V" if stype == STT_OBJECT else "W"
    if st_shndx == SHN_ABS:
        letter = "a"
    elif stype == STT_FUNC:
        letter = "t"
    else:
        letter = "d"
    return letter.upper() if binding == STB_GLOBAL else letter
