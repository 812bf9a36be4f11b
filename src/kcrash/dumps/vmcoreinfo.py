"""
kcrash.dumps.vmcoreinfo
=======================

The VMCOREINFO note: ``KEY=value`` lines written by the kernel (``kernel/vmcore_info.c``). Keys come
in kinds: ``SYMBOL(name)`` (hex address, no ``0x``), ``SIZE(type)``, ``OFFSET(type.member)``,
``LENGTH(sym)`` (decimal), ``NUMBER(name)`` (decimal, may be negative, some arch code writes
``0x…``), ``CONFIG_*`` flags and plain keys (``OSRELEASE``, ``PAGESIZE``, ``KERNELOFFSET`` in hex,
``CRASHTIME``, ``BUILD-ID``). This module parses text; it does not know what the symbols mean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["VmcoreInfo", "parse_vmcoreinfo"]

_KIND = re.compile(r"^(SYMBOL|SIZE|OFFSET|LENGTH|NUMBER|SRCFILE)\((.*)\)$")
_HEX_PLAIN_KEYS = frozenset({"KERNELOFFSET", "KERNELOFFPHYS"})


def _parse_int(text: str, base: int) -> int | None:
    text = text.strip()
    try:
        if base == 16:
            return int(text, 16)
        return int(text, 0) if text.lower().lstrip("-").startswith("0x") else int(text, 10)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class VmcoreInfo:
    """Parsed VMCOREINFO. ``raw`` keeps every line's text; typed views are filled per key kind.

    ``get_*`` raise :class:`KeyError` (a :class:`LookupError`) when the key is absent;
    ``get_*_or_none`` return None.
    """

    text: str
    raw: dict[str, str] = field(default_factory=dict)
    symbols: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)
    srcfiles: dict[str, str] = field(default_factory=dict)
    plain: dict[str, str] = field(default_factory=dict)

    def get_symbol(self, name: str) -> int:
        """Return ``SYMBOL(name)`` (a runtime address, KASLR already applied)."""
        return self.symbols[name]

    def get_size(self, type_name: str) -> int:
        """Return ``SIZE(type_name)``."""
        return self.sizes[type_name]

    def get_offset(self, member: str) -> int:
        """Return ``OFFSET(type.member)`` for ``member`` given as ``"type.member"``."""
        return self.offsets[member]

    def get_length(self, name: str) -> int:
        """Return ``LENGTH(name)``."""
        return self.lengths[name]

    def get_number(self, name: str) -> int:
        """Return ``NUMBER(name)``."""
        return self.numbers[name]

    def get_number_or_none(self, name: str) -> int | None:
        """Return ``NUMBER(name)`` or None."""
        return self.numbers.get(name)

    def get_symbol_or_none(self, name: str) -> int | None:
        """Return ``SYMBOL(name)`` or None."""
        return self.symbols.get(name)

    def has_config(self, name: str) -> bool:
        """Return True if ``CONFIG_<name>=y`` (``name`` with or without the ``CONFIG_`` prefix)."""
        key = name if name.startswith("CONFIG_") else f"CONFIG_{name}"
        return self.configs.get(key) == "y"

    @property
    def osrelease(self) -> str | None:
        """Return ``OSRELEASE`` (the kernel release) or None."""
        return self.plain.get("OSRELEASE")

    @property
    def build_id(self) -> str | None:
        """Return ``BUILD-ID`` as lower-case hex or None (absent before Linux 5.9)."""
        value = self.plain.get("BUILD-ID")
        return value.lower() if value else None

    @property
    def page_size(self) -> int | None:
        """Return ``PAGESIZE`` or None."""
        return self._plain_int("PAGESIZE")

    @property
    def kerneloffset(self) -> int | None:
        """Return ``KERNELOFFSET`` (the KASLR text offset, written in hex) or None."""
        return self._plain_int("KERNELOFFSET")

    @property
    def crashtime(self) -> int | None:
        """Return ``CRASHTIME`` (seconds since the epoch; written only on the kernel's kdump path) or None."""
        return self._plain_int("CRASHTIME")

    def _plain_int(self, key: str) -> int | None:
        value = self.plain.get(key)
        if value is None:
            return None
        return _parse_int(value, 16 if key in _HEX_PLAIN_KEYS else 10)


def parse_vmcoreinfo(data: bytes | str) -> VmcoreInfo:
    """Parse VMCOREINFO text. Unparseable values stay in ``raw`` only; this never raises."""
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    text = text.split("\0", 1)[0]
    info = VmcoreInfo(text)
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            info.raw[key] = value
            _classify(info, key, value)
    return info


def _classify(info: VmcoreInfo, key: str, value: str) -> None:
    match = _KIND.match(key)
    if match is None:
        target = info.configs if key.startswith("CONFIG_") else info.plain
        target[key] = value
        return
    kind, name = match.groups()
    if kind == "SRCFILE":
        info.srcfiles[name] = value
        return
    number = _parse_int(value, 16 if kind == "SYMBOL" else 10)
    if number is None:
        return
    tables = {"SYMBOL": info.symbols, "SIZE": info.sizes, "OFFSET": info.offsets,
              "LENGTH": info.lengths, "NUMBER": info.numbers}
    tables[kind][name] = number
