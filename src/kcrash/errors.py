"""
kcrash errors
=============

The whole exception hierarchy of kcrash. Library code raises only these (third-party errors are
mapped at the boundary with ``raise ... from exc``); only :class:`CliError` carries an exit code.

::

    KcrashError
    ├── DumpFormatError
    │   ├── UnsupportedDumpFormat
    │   └── CorruptDumpError            (offset)
    ├── FaultError                      (address, physical, reason)
    ├── MissingDebugInfoError
    │   └── DebugInfoMismatchError
    ├── SymbolNotFoundError             (also LookupError)
    ├── TypeLookupError                 (also LookupError)
    ├── UnwindError
    ├── ValidationError
    ├── ExpressionError
    ├── OopsParseError
    ├── LiveTargetError
    │   ├── GdbRemoteProtocolError
    │   └── TargetNotStoppedError
    ├── LabError
    │   ├── LabToolMissingError         (tool, package)
    │   ├── LabTimeoutError             (serial_tail)
    │   └── KernelPackageError
    ├── FleetError
    │   ├── FleetDbError
    │   ├── BucketNotFoundError         (also LookupError)
    │   └── CrashNotFoundError          (also LookupError)
    └── CliError                        (exit_code)
"""

from __future__ import annotations

__all__ = [
    "BucketNotFoundError",
    "CliError",
    "CorruptDumpError",
    "CrashNotFoundError",
    "DebugInfoMismatchError",
    "DumpFormatError",
    "ExpressionError",
    "FaultError",
    "FleetDbError",
    "FleetError",
    "GdbRemoteProtocolError",
    "KcrashError",
    "KernelPackageError",
    "LabError",
    "LabTimeoutError",
    "LabToolMissingError",
    "LiveTargetError",
    "MissingDebugInfoError",
    "OopsParseError",
    "SymbolNotFoundError",
    "TargetNotStoppedError",
    "TypeLookupError",
    "UnsupportedDumpFormat",
    "UnwindError",
    "ValidationError",
]


class KcrashError(Exception):
    """Base class of every error kcrash raises on purpose."""


class DumpFormatError(KcrashError):
    """A dump file cannot be read as any supported format."""


class UnsupportedDumpFormat(DumpFormatError):
    """The file is not in a format kcrash knows (sniffing failed)."""


class CorruptDumpError(DumpFormatError):
    """A dump file is damaged; ``offset`` is the file offset where it was noticed."""

    def __init__(self, message: str, offset: int | None = None, path: str | None = None) -> None:
        self.offset = offset
        self.path = path
        where = f" at file offset {offset:#x}" if offset is not None else ""
        name = f"{path}: " if path else ""
        super().__init__(f"{name}{message}{where}")


class FaultError(KcrashError):
    """Memory at ``address`` cannot be read; ``reason`` says why (excluded, lost, unmapped)."""

    def __init__(self, address: int, physical: bool = False, reason: str = "not present") -> None:
        self.address = address
        self.physical = physical
        self.reason = reason
        kind = "physical" if physical else "virtual"
        super().__init__(f"cannot read {kind} address {address:#x}: {reason}")


class MissingDebugInfoError(KcrashError):
    """A piece of debugging information is missing; the message names what would provide it."""


class DebugInfoMismatchError(MissingDebugInfoError):
    """The debug file given is of another kernel build (build-id or ``linux_banner`` differ)."""


class SymbolNotFoundError(KcrashError, LookupError):
    """A symbol name or address has no match."""


class TypeLookupError(KcrashError, LookupError):
    """A type name has no match."""


class UnwindError(KcrashError):
    """A stack cannot be unwound further."""


class ValidationError(KcrashError):
    """A ``validate_*`` consistency check failed."""


class ExpressionError(KcrashError):
    """A typed-object operation or C expression is invalid (not a pointer, bad cast, syntax error)."""


class OopsParseError(KcrashError):
    """A console log cannot be read (for instance, the file does not exist)."""


class LiveTargetError(KcrashError):
    """A live target misbehaved or went away."""


class GdbRemoteProtocolError(LiveTargetError):
    """The GDB remote peer sent something that breaks the protocol."""


class TargetNotStoppedError(LiveTargetError):
    """An operation needs a stopped target."""


class LabError(KcrashError):
    """The crash lab could not produce what was asked."""


class LabToolMissingError(LabError):
    """A host tool the lab needs is not installed; ``package`` names the Debian package."""

    def __init__(self, tool: str, package: str) -> None:
        self.tool = tool
        self.package = package
        super().__init__(f"{tool} not found: install it with 'apt-get install {package}'")


class LabTimeoutError(LabError):
    """The guest did not reach the expected state in time; ``serial_tail`` holds its last console lines."""

    def __init__(self, message: str, serial_tail: str = "") -> None:
        self.serial_tail = serial_tail
        super().__init__(message)


class KernelPackageError(LabError):
    """A Debian kernel package cannot be fetched or unpacked."""


class FleetError(KcrashError):
    """Fleet triage (the crash database, ingestion, buckets) could not do what was asked."""


class FleetDbError(FleetError):
    """The crash database cannot be opened, created, upgraded or written."""


class BucketNotFoundError(FleetError, LookupError):
    """No bucket has the id or signature asked for."""


class CrashNotFoundError(FleetError, LookupError):
    """No crash has the id asked for."""


class CliError(KcrashError):
    """An error shown to the user as one line, with the process exit code to use."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        self.exit_code = exit_code
        super().__init__(message)
