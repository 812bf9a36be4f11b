"""
kcrash.live.gdbremote.tdesc
===========================

The target description XML (``qXfer:features:read:target.xml``): which registers the stub has,
their numbers, sizes and order in the ``g`` packet. Pure: :func:`parse_target_xml` takes the text
of one document and returns its registers and ``xi:include`` references; the client fetches the
included annexes and calls :func:`number_registers` on the concatenation. Register order is read
from the stub, never hard-coded.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from kcrash.errors import GdbRemoteProtocolError

__all__ = ["RegisterInfo", "TargetDescription", "number_registers", "parse_target_xml"]

_XINCLUDE = ("{http://www.w3.org/2001/XInclude}include", "include")
_MAX_BITSIZE = 1 << 16  # bits; the widest registers (SVE Z) have 2048


@dataclass(frozen=True, slots=True)
class RegisterInfo:
    """One register: ``name``, ``bitsize``, the stub's ``regnum``, ``type`` and ``group`` as given."""

    name: str
    bitsize: int
    regnum: int
    type: str = "int"
    group: str = ""

    @property
    def size(self) -> int:
        """Return the size in bytes."""
        return (self.bitsize + 7) // 8


@dataclass(frozen=True, slots=True)
class TargetDescription:
    """One parsed document: its ``architecture``, registers (``regnum`` -1 = take the next number)
    and the annexes it includes."""

    architecture: str | None
    registers: tuple[RegisterInfo, ...]
    includes: tuple[str, ...]


def parse_target_xml(text: bytes, annex: str = "target.xml") -> TargetDescription:
    """Parse one target description document (``annex`` names it in errors)."""
    # Stubs (QEMU among them) often use ``xi:include`` without declaring the xi namespace.
    if b"xmlns:xi" not in text:
        text = text.replace(b"<xi:include", b"<include")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise GdbRemoteProtocolError(f"malformed target description {annex}: {exc}") from exc
    arch_el = root.find("architecture")
    arch = arch_el.text.strip() if arch_el is not None and arch_el.text else None
    registers: list[RegisterInfo] = []
    includes: list[str] = []
    for el in root.iter():
        if el.tag in _XINCLUDE and el.get("href"):
            includes.append(str(el.get("href")))
        elif el.tag == "reg":
            registers.append(_register(el, annex))
    return TargetDescription(arch, tuple(registers), tuple(includes))


def _register(el: ET.Element, annex: str) -> RegisterInfo:
    name, bits = el.get("name"), el.get("bitsize")
    try:
        bitsize = int(bits or "")
        regnum = int(el.get("regnum") or "-1")
    except ValueError:
        raise GdbRemoteProtocolError(f"register {name!r} in {annex} has a bad bitsize/regnum") from None
    if not name or bitsize <= 0:
        raise GdbRemoteProtocolError(f"register without name or size in {annex}")
    if bitsize > _MAX_BITSIZE:
        raise GdbRemoteProtocolError(f"register {name!r} in {annex} has an impossible bitsize {bitsize}")
    return RegisterInfo(name, bitsize, regnum, el.get("type") or "int", el.get("group") or "")


def number_registers(registers: list[RegisterInfo]) -> list[RegisterInfo]:
    """Assign numbers in document order (an explicit ``regnum`` restarts the count) and return
    the registers sorted by number."""
    out: list[RegisterInfo] = []
    nxt = 0
    for reg in registers:
        num = reg.regnum if reg.regnum >= 0 else nxt
        out.append(RegisterInfo(reg.name, reg.bitsize, num, reg.type, reg.group))
        nxt = num + 1
    return sorted(out, key=lambda r: r.regnum)
