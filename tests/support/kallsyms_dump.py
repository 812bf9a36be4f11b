"""A synthetic dump whose kernel text holds kallsyms tables (no vmlinux anywhere): for the CLI
commands that take symbols (``sym``, ``rd``, ``vtop``, ``search``)."""

from __future__ import annotations

from pathlib import Path

from kcrash.debuginfo.kallsyms import encode_kallsyms
from support.synthetic import SyntheticKernel, make_synthetic_kernel

KASLR = 0x1E00000
TEXT_PHYS = 0x200000  # where make_synthetic_kernel puts _stext physically
TABLES_OFFSET = 0x100000
STEXT = 0xFFFFFFFF81000000 + KASLR


def kallsyms_rows(k: SyntheticKernel) -> list[tuple[str, str, int]]:
    """The symbols planted: (type letter, name, address)."""
    s = k.stext
    return [("A", "runqueues", 0x31C40), ("T", "startup_64", s), ("T", "_stext", s), ("T", "schedule", s + 0x100),
            ("t", "helper", s + 0x180), ("T", "dead", s + 0x200), ("t", "helper", s + 0x300),
            ("T", "_etext", s + 0x1000), ("D", "init_uts_ns", s + 0x1000), ("B", "_end", s + 0x200000)]


def write_kallsyms_dumps(tmp: Path) -> dict[str, Path]:
    """Write ``kallsyms`` (a flattened kdump with kallsyms), ``plain`` (ELF, no kallsyms) and
    ``no_vmcoreinfo`` (ELF without VMCOREINFO); return their paths by those names."""
    k = make_synthetic_kernel(kaslr_offset=KASLR)
    plain = tmp / "no-kallsyms.elf"
    k.write_elf(plain)
    no_vmcoreinfo = tmp / "no-vmcoreinfo.elf"
    k.write_elf(no_vmcoreinfo, with_vmcoreinfo=False)
    s = k.stext
    # words for rd -s: pointers into the symbols, and one that no symbol covers
    words = [s + 0x100, s + 0x185, 0x1234, s + 0x200]
    k.image.write(TEXT_PHYS + 0x1800, b"".join(w.to_bytes(8, "little") for w in words))
    image = encode_kallsyms(kallsyms_rows(k), base=s + TABLES_OFFSET, address_encoding="absolute-percpu",
                            percpu=frozenset({"runqueues"}))
    k.image.write(TEXT_PHYS + TABLES_OFFSET, image.data)
    k.vmcoreinfo += "\n".join(image.vmcoreinfo_lines()) + "\n"
    with_kallsyms = tmp / "vmcore.kdump"
    k.write_kdump(with_kallsyms, flattened=True, dump_level=1)
    return {"kallsyms": with_kallsyms, "plain": plain, "no_vmcoreinfo": no_vmcoreinfo}
