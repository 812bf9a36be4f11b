"""
kcrash.helpers.linux.module
===========================

Loaded kernel modules (``include/linux/module.h``, ``kernel/module/``): :func:`for_each_module`
walks the ``modules`` list (bounded); :func:`module_address_regions` gives where a module lives
(``mod->mem[]`` since v6.4, ``core_layout``/``init_layout`` before); :func:`module_taints` its taint
letters. :func:`load_module_debuginfo` makes a module's symbols (its own ELF symbol table,
``mod->kallsyms``) and its split BTF known to a :class:`~kcrash.types.program.Program`, so module
functions symbolize and module types resolve with no ``.ko`` on disk; the symbols keep their ELF
sizes (``st_size``) and the module's section starts (``mod->sect_attrs``,
:func:`module_section_starts`) bound the sizeless ones, for "is this address inside a symbol". The module's BTF is
``mod->btf_data`` while the module loads; the kernel clears that pointer once the module is live
(``do_init_module``), after ``btf_module_notify`` (``kernel/bpf/btf.c``) copied it into a
``struct btf`` on the ``btf_modules`` list, where it is found then.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kcrash.debuginfo.modules import module_symbols
from kcrash.debuginfo.symbols import Symbol
from kcrash.errors import FaultError, KcrashError, SymbolNotFoundError
from kcrash.helpers.linux.list import ListWalk, list_for_each_entry
from kcrash.helpers.linux.panic import taint_flags
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = [
    "ModuleDebugInfo",
    "find_module_or_none",
    "for_each_module",
    "load_module_debuginfo",
    "module_address_regions",
    "module_base",
    "module_btf_or_none",
    "module_name",
    "module_section_starts",
    "module_size",
    "module_symbols_of",
    "module_taints",
]

_MODULE_LIMIT = 100_000
_MAX_BTF = 64 << 20
_MAX_SECTIONS = 1 << 16


@dataclass(frozen=True, slots=True)
class ModuleDebugInfo:
    """What :func:`load_module_debuginfo` found for one module.

    :param name: the module's name
    :param num_symbols: how many symbols were read from ``mod->kallsyms``
    :param btf_size: the size of its split BTF (0: no BTF)
    :param error: why something could not be loaded, None if everything was

    >>> info = load_module_debuginfo(prog, find_module_or_none(prog, "kcrash_test"))
    >>> info.num_symbols > 0, info.error
    (True, None)
    """

    name: str
    num_symbols: int
    btf_size: int
    error: str | None = None


def for_each_module(prog: Program) -> ListWalk:
    """Iterate over every loaded module on the ``modules`` list (linked by ``module.list``), newest first.

    :param prog: the program
    :return: a bounded :class:`~kcrash.helpers.linux.list.ListWalk` of ``struct module *``
    :raises FaultError: if ``modules`` cannot be read

    >>> [module_name(mod) for mod in for_each_module(prog)]
    ['kcrash_test', 'pvpanic_mmio', 'pvpanic', 'qemu_fw_cfg']
    """
    return list_for_each_entry("struct module", prog["modules"].address_of_(), "list", limit=_MODULE_LIMIT)


def module_name(mod: Object) -> str:
    """Return a module's name (``mod->name``).

    :param mod: ``struct module *``
    :return: the name

    >>> module_name(next(iter(for_each_module(prog))))
    'kcrash_test'
    """
    return mod.name.string_().decode("utf-8", "replace")


def find_module_or_none(prog: Program, name: str) -> Object | None:
    """Return the loaded module called ``name``, like the kernel's ``find_module(name)``.

    :param prog: the program
    :param name: the module's name (``mod->name``)
    :return: ``struct module *``, or None if no module on the ``modules`` list has that name

    >>> hex(module_base(find_module_or_none(prog, "kcrash_test")))
    '0xffffffffc0216000'
    """
    return next((m for m in for_each_module(prog) if module_name(m) == name), None)


def module_address_regions(mod: Object) -> list[tuple[int, int]]:
    """Return every ``(start, size)`` of a module's memory.

    From ``mod->mem[]`` since v6.4 (Linux kernel commit ac3b43283923), ``core_layout``/``init_layout``
    before; text first, empty regions included.

    :param mod: ``struct module *``
    :return: the regions
    :raises FaultError: if the module cannot be read

    >>> module_address_regions(find_module_or_none(prog, "kcrash_test"))[0]
    (18446744072637997056, 4096)
    """
    # Since Linux kernel commit ac3b43283923 (v6.4) the module memory is mod->mem[MOD_*];
    # before it was core_layout (text, rodata, data) and init_layout.
    try:
        regions = mod.mem
    except AttributeError:
        core, init = mod.core_layout, mod.init_layout
        return [(int(core.base), int(core.size)), (int(init.base), int(init.size))]
    return [(int(r.base), int(r.size)) for r in regions]


def module_base(mod: Object) -> int:
    """Return where a module's text starts (``mod->mem[MOD_TEXT].base`` or ``mod->core_layout.base``).

    :param mod: ``struct module *``
    :return: the address
    :raises FaultError: if the module cannot be read

    >>> hex(module_base(find_module_or_none(prog, "kcrash_test")))
    '0xffffffffc0216000'
    """
    return module_address_regions(mod)[0][0]


def module_size(mod: Object) -> int:
    """Return the total size of a module's core memory (init memory excluded).

    The sum of the core ``mod->mem[]`` regions, or ``mod->core_layout.size`` before v6.4.

    :param mod: ``struct module *``
    :return: the size in bytes
    :raises FaultError: if the module cannot be read

    >>> module_size(find_module_or_none(prog, "kcrash_test"))
    16384
    """
    try:
        regions = mod.mem
    except AttributeError:
        return int(mod.core_layout.size)
    return sum(int(regions[i].size) for i in _core_mem_types(mod.prog_))


#: ``enum mod_mem_type``'s core types as Linux kernel commit ac3b43283923 (v6.4) introduced them
#: (MOD_TEXT, MOD_DATA, MOD_RODATA, MOD_RO_AFTER_INIT), for a BTF without the enum
_CORE_MEM_TYPES_V6_4 = (0, 1, 2, 3)


def _core_mem_types(prog: Program) -> tuple[int, ...]:
    # The mod->mem[] indexes of core memory: the enum mod_mem_type constants below
    # MOD_MEM_NUM_TYPES that are not MOD_INIT_* (mod_mem_type_is_init() in include/linux/module.h).
    enum = prog.find_type_or_none("enum mod_mem_type")
    if enum is None or not enum.enumerators:
        return _CORE_MEM_TYPES_V6_4
    values = {e.name: e.value for e in enum.enumerators}
    count = values.get("MOD_MEM_NUM_TYPES", len(values))
    return tuple(v for name, v in values.items() if 0 <= v < count and not name.startswith("MOD_INIT_"))


def module_taints(mod: Object) -> str:
    """Return a module's taint letters (``mod->taints``), as ``lsmod`` and oops lines print them.

    :param mod: ``struct module *``
    :return: the letters (``"O"`` for an out-of-tree module), ``""`` for none

    >>> module_taints(find_module_or_none(prog, "kcrash_test"))
    'OE'
    """
    mask = int(mod.taints)
    return "".join(true for i, (true, _false) in enumerate(taint_flags(mod.prog_)) if mask >> i & 1)


def module_symbols_of(mod: Object) -> list[Symbol]:
    """Return a module's symbols from its in-memory ELF symbol table.

    Read from ``mod->kallsyms``: ``symtab``, ``strtab``, ``typetab``.

    :param mod: ``struct module *``
    :return: the symbols
    :raises FaultError: if the symbol table cannot be read

    >>> [s.name for s in module_symbols_of(find_module_or_none(prog, "kcrash_test"))][:2]
    ['kcrash_test_hrtimer_fn', 'kcrash_test_do_null_write']
    """
    ks = mod.kallsyms
    typetab = _member_or_none(ks, "typetab")
    return module_symbols(mod.prog_.memory, int(ks.symtab), int(ks.num_symtab), int(ks.strtab),
                          module_name(mod), typetab=None if typetab is None else int(typetab))


def module_section_starts(mod: Object) -> list[tuple[str, int]]:
    """Return each section of a module as ``(name, address)``, from ``mod->sect_attrs``.

    That is what ``/sys/module/NAME/sections/`` shows (``CONFIG_KALLSYMS`` and ``CONFIG_SYSFS``), in
    the kernel's order (init sections included, with their freed addresses); empty when the kernel
    keeps none.

    :param mod: ``struct module *``
    :return: the sections
    :raises FaultError: if the attributes cannot be read

    >>> dict(module_section_starts(find_module_or_none(prog, "kcrash_test")))[".text"]
    18446744072637997056
    """
    attrs = _member_or_none(mod, "sect_attrs")
    if attrs is None or not int(attrs):
        return []
    prog = mod.prog_
    layout = _sect_layout(prog)
    # grp.bin_attrs: the NULL-terminated array of the section files (kernel/module/sysfs.c add_sect_attrs)
    files = _null_terminated(prog, prog.read_u64(int(attrs) + layout.bin_attrs))
    out = []
    for file in files:
        raw = prog.read(file, layout.read_size)
        name = int.from_bytes(raw[layout.name:layout.name + 8], "little")
        address = int.from_bytes(raw[layout.address:layout.address + 8], "little")
        out.append((_c_string(prog, name), address))
    return out


@dataclass(frozen=True, slots=True)
class _SectLayout:
    # byte offsets: grp.bin_attrs in module_sect_attrs; attr.name in bin_attribute; the address in a file
    bin_attrs: int
    name: int
    address: int

    @property
    def read_size(self) -> int:
        return max(self.name, self.address) + 8


_SECT_LAYOUT = "kcrash.helpers.linux.module.sect_layout"  # prog.cache key


def _sect_layout(prog: Program) -> _SectLayout:
    found: _SectLayout | None = prog.cache.get(_SECT_LAYOUT)
    if found is None:
        bin_attrs = prog.type("struct module_sect_attrs").walk_path("grp.bin_attrs")[0] // 8
        name = prog.type("struct bin_attribute").walk_path("attr.name")[0] // 8
        # struct module_sect_attr { struct bin_attribute battr; unsigned long address; } wraps each
        # file; Linux v6.14 (kernel/module/sysfs.c, "module: sysfs: Drop 'struct module_sect_attr'")
        # dropped it and keeps the address in battr.private.
        try:
            address = prog.type("struct module_sect_attr").walk_path("address")[0] // 8
        except KcrashError:
            address = prog.type("struct bin_attribute").walk_path("private")[0] // 8
        found = prog.cache[_SECT_LAYOUT] = _SectLayout(bin_attrs, name, address)
    return found


def _null_terminated(prog: Program, array: int) -> list[int]:
    # the pointers of a NULL-terminated array, read a page's worth at a time
    out: list[int] = []
    while len(out) < _MAX_SECTIONS:
        chunk = min(4096 - array % 4096, 4096) // 8 or 1
        words = prog.read(array, 8 * chunk)
        for k in range(chunk):
            value = int.from_bytes(words[8 * k:8 * k + 8], "little")
            if not value:
                return out
            out.append(value)
        array += 8 * chunk
    return out


def _c_string(prog: Program, address: int) -> str:
    # a short C string (a section name), read up to its page end at most 256 bytes at a time
    data = b""
    while b"\0" not in data and len(data) < 4096:
        size = min(256, 4096 - (address + len(data)) % 4096)
        data += prog.read(address + len(data), size)
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def _member_or_none(obj: Object, name: str) -> Object | None:
    try:
        return obj.member_(name)
    except KcrashError:
        return None


def module_btf_or_none(mod: Object) -> bytes | None:
    """Return a module's split BTF.

    That is ``mod->btf_data`` or, where the kernel freed it after loading, its copy on ``btf_modules``.

    :param mod: ``struct module *``
    :return: the raw BTF, or None if the module has none (or an implausible size)
    :raises FaultError: if the BTF cannot be read

    >>> len(module_btf_or_none(find_module_or_none(prog, "kcrash_test")))
    2009
    """
    prog = mod.prog_
    size = _member_or_none(mod, "btf_data_size")
    data = _member_or_none(mod, "btf_data")
    if data is not None and size is not None and int(data) and 0 < int(size) <= _MAX_BTF:
        return prog.read(int(data), int(size))
    btf = _btf_of_module_or_none(prog, int(mod))
    if btf is None or not 0 < int(btf.data_size) <= _MAX_BTF:
        return None
    return prog.read(int(btf.data), int(btf.data_size))


def _btf_of_module_or_none(prog: Program, mod: int) -> Object | None:
    for btf_mod in _btf_modules(prog):
        if int(btf_mod.module) == mod:
            return btf_mod.btf
    return None


def _btf_modules(prog: Program) -> Iterator[Object]:
    # static LIST_HEAD(btf_modules) of struct btf_module (kernel/bpf/btf.c, CONFIG_DEBUG_INFO_BTF_MODULES)
    try:
        head = prog.object("struct list_head", prog.symbol_address("btf_modules"))
    except (SymbolNotFoundError, KcrashError):
        return iter(())
    return iter(list_for_each_entry("struct btf_module", head, "list", limit=_MODULE_LIMIT))


def load_module_debuginfo(prog: Program, mod: Object) -> ModuleDebugInfo:
    """Add a module's symbols to ``prog.symbol_table`` (when it has one) and its split BTF to ``prog``.

    The symbols come from the module's in-memory ELF symbol table (:func:`module_symbols_of`), the
    BTF from :func:`module_btf_or_none`; what could not be read is reported in the result, not raised.

    :param prog: the program
    :param mod: ``struct module *``
    :return: what was found and what failed

    >>> load_module_debuginfo(prog, find_module_or_none(prog, "kcrash_test")).btf_size
    2009
    """
    name = module_name(mod)
    errors: list[str] = []
    symbols: list[Symbol] = []
    try:
        symbols = module_symbols_of(mod)
        regions = [(start, size) for start, size in module_address_regions(mod) if size]
        table = prog.symbol_table
        if table is not None and regions:
            base, size = regions[0]
            table.add_module(name, base, size, symbols, ranges=regions[1:], sized=True,
                                    sections=_live_section_starts(mod, errors))
    except (FaultError, KcrashError) as exc:
        errors.append(f"symbols: {exc}")
    btf_size = _load_btf(prog, mod, name, errors)
    return ModuleDebugInfo(name, len(symbols), btf_size, "; ".join(errors) or None)


def _live_section_starts(mod: Object, errors: list[str]) -> list[int]:
    # the start of every section but the init ones (".init*", freed after init: stale addresses)
    try:
        return [address for name, address in module_section_starts(mod) if not name.startswith(".init")]
    except (FaultError, KcrashError) as exc:
        errors.append(f"sections: {exc}")
        return []


def _load_btf(prog: Program, mod: Object, name: str, errors: list[str]) -> int:
    try:
        data = module_btf_or_none(mod)
        if data is None:
            return 0
        prog.add_module_types(name, data)
    except (FaultError, KcrashError) as exc:
        errors.append(f"BTF: {exc}")
        return 0
    return len(data)
