"""
kcrash.cli.params
=================

The one parser of addresses and numbers on the command line, for every command (``rd``, ``vtop``,
``dis``, ``sym``, ``struct``, ``addr2line``, the ``live`` commands): :class:`Number`, a click
parameter type, and :func:`parse_number` for words that are not click parameters (the ``live``
command language). The rule, the same everywhere:

* **Address**: ``0x`` followed by hex digits (``0xffffffff81000000``, ``0x1000``), or a word of
  8 to 16 hex digits and nothing else (``ffffffff81000000``, ``00001000``). A shorter bare word
  (``ffff``, ``1000``) is never an address: write ``0x1000``.
* **Symbol**: any other word, where the command takes symbols: ``NAME`` or ``NAME+OFFSET``
  (``ksys_write+0x10``), the offset a number as below. ``struct`` takes a C expression instead.
* **Number** (counts, lengths, breakpoint numbers, offsets, PIDs): decimal digits, or ``0x`` and
  hex digits.
* **Seconds**: a decimal number, a fraction allowed.
* **PID or task address** (``bt``): an address as above is a task address, a number of up to 7
  digits a PID.
* **Target** (the ``DUMP`` of every analysis command, :class:`DumpOrLive`): a dump file that exists,
  or a running kernel ``gdb:HOST:PORT`` (QEMU's gdbstub), ``gdb:HOST:PORT?qmp=SOCKET`` to read
  VMCOREINFO from QEMU's QMP socket (without it, VMCOREINFO is searched in guest memory).
* ``addr2line`` alone reads every word as hex (``0x`` optional), as binutils' ``addr2line`` does.

Parsing only; what a symbol or expression means is the command's business (:meth:`AddressArg.resolve`).
A word that breaks the rule is a usage error (exit status 2).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import click

from kcrash.errors import CliError

__all__ = ["LIVE_PREFIX", "AddressArg", "DumpOrLive", "LiveTarget", "Mode", "Number", "parse_live_target",
           "parse_number"]

#: what a :class:`Number` reads: see the module docstring
Mode = Literal["address", "symbol", "expression", "number", "seconds", "pid_or_address", "hex"]

_HEX = frozenset(string.hexdigits)
_SYMBOL = re.compile(r"[A-Za-z_.$][\w.$]*\Z")
_SECONDS = re.compile(r"(\d+(\.\d*)?|\.\d+)\Z")
_MAX_ADDRESS = (1 << 64) - 1
_MAX_PID_DIGITS = 7
_ADDRESS_HINT = "0x and hex digits, or 8 to 16 hex digits"


class _Invalid(ValueError):
    # A word that breaks the rule; the message says which rule.
    pass


@dataclass(frozen=True, slots=True)
class AddressArg:
    """An address argument as given: a number (``address``), or a name to resolve (``symbol``:
    a symbol name, or a C expression where the command takes one) plus ``offset``."""

    text: str
    address: int | None = None
    symbol: str | None = None
    offset: int = 0

    def resolve(self, lookup: Callable[[str], int]) -> int:
        """Return the address; a symbol goes through ``lookup(name)`` (which raises when it has none)."""
        if self.address is not None:
            return self.address
        assert self.symbol is not None
        return lookup(self.symbol) + self.offset


def _address_or_none(text: str) -> int | None:
    digits = text[2:] if text[:2].lower() == "0x" else text
    if digits is not text and digits.replace("_", "a").isalnum() and not set(digits) <= _HEX:
        raise _Invalid(f"{text!r} is not an address: {digits!r} after 0x is not hex")
    if not digits or not set(digits) <= _HEX or (digits is text and not 8 <= len(text) <= 16):
        return None
    value = int(digits, 16)
    if value > _MAX_ADDRESS:
        raise _Invalid(f"{text!r} is wider than 64 bits")
    return value


def _number(text: str) -> int:
    if text.isdecimal() and text.isascii():
        return int(text)
    if text[:2].lower() == "0x" and text[2:] and set(text[2:]) <= _HEX:
        return int(text[2:], 16)
    raise _Invalid(f"{text!r} is not a number (decimal digits, or 0x and hex digits)")


def _address(text: str) -> int:
    value = _address_or_none(text)
    if value is None:
        hint = f"; for hex write 0x{text}" if text and set(text) <= _HEX else ""
        raise _Invalid(f"{text!r} is not an address ({_ADDRESS_HINT}){hint}")
    return value


def _symbol(text: str) -> AddressArg:
    value = _address_or_none(text)
    if value is not None:
        return AddressArg(text, address=value)
    name, plus, off = text.partition("+")
    if not _SYMBOL.match(name) or (plus and not off):
        hint = f"; for hex write 0x{text}" if text and set(text) <= _HEX else ""
        raise _Invalid(f"{text!r} is neither an address ({_ADDRESS_HINT}) nor SYMBOL[+OFFSET]{hint}")
    return AddressArg(text, symbol=name, offset=_number(off) if plus else 0)


def _hex(text: str) -> int:
    digits = text[2:] if text[:2].lower() == "0x" else text
    if not digits or not set(digits) <= _HEX or int(digits, 16) > _MAX_ADDRESS:
        raise _Invalid(f"{text!r} is not a hexadecimal address")
    return int(digits, 16)


def _seconds(text: str) -> float:
    if not _SECONDS.match(text):
        raise _Invalid(f"{text!r} is not a number of seconds")
    return float(text)


def _pid_or_address(text: str) -> int:
    value = _address_or_none(text)
    if value is not None:
        return value
    if text.isdecimal() and text.isascii() and len(text) <= _MAX_PID_DIGITS:
        return int(text)
    raise _Invalid(f"{text!r} is neither a PID (decimal) nor a task address ({_ADDRESS_HINT})")


def _expression(text: str) -> AddressArg:
    value = _address_or_none(text)
    if value is not None:
        return AddressArg(text, address=value)
    if not text.strip():
        raise _Invalid("an empty expression")
    return AddressArg(text, symbol=text)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "address": _address, "symbol": _symbol, "expression": _expression, "number": _number,
    "seconds": _seconds, "pid_or_address": _pid_or_address, "hex": _hex,
}


def parse_number(text: str, mode: Mode, what: str) -> Any:
    """Parse ``text`` by the rule of ``mode`` (see the module docstring); ``what`` names it in the
    :class:`~kcrash.errors.CliError` (exit status 2) raised for a word that breaks the rule.

    :return: ``int`` (``address``, ``number``, ``pid_or_address``, ``hex``), ``float`` (``seconds``)
        or :class:`AddressArg` (``symbol``, ``expression``)
    """
    try:
        return _PARSERS[mode](text.strip())
    except _Invalid as exc:
        raise CliError(f"invalid {what}: {exc}", 2) from None


class Number(click.ParamType[Any, Any]):
    """A click parameter type for an address, symbol or number (``mode``; see the module docstring)."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.name = mode.replace("_", " ")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse a command-line word (values already parsed, e.g. defaults, pass through)."""
        if not isinstance(value, str):
            return value
        try:
            return _PARSERS[self.mode](value.strip())
        except _Invalid as exc:
            self.fail(str(exc), param, ctx)


#: how a running kernel is named where a dump path is expected
LIVE_PREFIX = "gdb:"


@dataclass(frozen=True, slots=True)
class LiveTarget:
    """A running kernel named on the command line: the gdb stub ``HOST:PORT`` and QEMU's QMP socket."""

    stub: str
    qmp: str | None = None


def parse_live_target(text: str) -> LiveTarget | None:
    """``gdb:HOST:PORT[?qmp=SOCKET]`` as a :class:`LiveTarget`; None for anything else (a dump path).
    A word with the prefix that breaks the rule is a :class:`~kcrash.errors.CliError` (exit status 2)."""
    if not text.startswith(LIVE_PREFIX):
        return None
    stub, sep, query = text[len(LIVE_PREFIX):].partition("?")
    host, colon, port = stub.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"invalid live target {text!r}: write gdb:HOST:PORT or gdb:HOST:PORT?qmp=SOCKET", 2)
    qmp = None
    if sep:
        key, eq, qmp = query.partition("=")
        if key != "qmp" or not eq or not qmp:
            raise CliError(f"invalid live target {text!r}: the only option is ?qmp=SOCKET", 2)
    return LiveTarget(f"{host or 'localhost'}:{port}", qmp)


class DumpOrLive(click.ParamType[Any, Any]):
    """The ``DUMP`` argument of the analysis commands: an existing dump file (``click.Path(exists=True,
    dir_okay=False)``, same errors) or a live target ``gdb:HOST:PORT[?qmp=SOCKET]``, kept as the string
    given (:func:`kcrash.cli.common.opened_target` tells them apart)."""

    name = "dump"

    def __init__(self, *, not_live: str | None = None) -> None:
        self._path = click.Path(exists=True, dir_okay=False)
        #: why this command refuses a live target (None: it takes one)
        self.not_live = not_live

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """A live target is checked for syntax only; anything else must be an existing file."""
        if isinstance(value, str) and value.startswith(LIVE_PREFIX):
            if self.not_live is not None:
                self.fail(f"{value!r} is a live target: {self.not_live}", param, ctx)
            try:
                parse_live_target(value)
            except CliError as exc:
                self.fail(str(exc).removeprefix(f"invalid live target {value!r}: "), param, ctx)
            return value
        return self._path.convert(value, param, ctx)
