"""kcrash.dumps.registry: a dump is opened by sniffing its first bytes, never by its name; an
unknown file, an empty list or a mixed set of files is a one-line typed error; a registered format
is tried in order."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

import pytest

from kcrash.dumps import registry
from kcrash.dumps.elf_vmcore import ElfVmcore
from kcrash.dumps.kdump_compressed import KdumpCompressed
from kcrash.dumps.registry import HEAD_SIZE, open_dump, register_format, registered_formats, sniff_format
from kcrash.errors import DumpFormatError, UnsupportedDumpFormat
from support.synthetic import SyntheticKernel, make_synthetic_kernel


@pytest.fixture(scope="module")
def kernel() -> SyntheticKernel:
    return make_synthetic_kernel()


def test_builtin_formats_in_sniffing_order() -> None:
    names = registered_formats()
    assert names[:2] == ["kdump-compressed", "elf"]


def test_format_is_sniffed_not_guessed_from_the_name(kernel: SyntheticKernel, tmp_path: Path) -> None:
    # an ELF dump named like a kdump file and the other way round
    kernel.write_elf(tmp_path / "vmcore.kdump")
    kernel.write_kdump(tmp_path / "vmcore.elf")
    elf = open_dump(tmp_path / "vmcore.kdump")
    kdump = open_dump(str(tmp_path / "vmcore.elf"))  # str paths work as well as Path
    try:
        assert isinstance(elf, ElfVmcore) and isinstance(kdump, KdumpCompressed)
        assert sniff_format((tmp_path / "vmcore.kdump").read_bytes()[:HEAD_SIZE]) == "elf"
        assert sniff_format((tmp_path / "vmcore.elf").read_bytes()[:HEAD_SIZE]) == "kdump-compressed"
    finally:
        elf.close()
        kdump.close()


def test_unknown_file_names_its_first_bytes(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, world\n")
    with pytest.raises(UnsupportedDumpFormat, match=r"notes\.txt: not a kernel dump .*b'hello, w'"):
        open_dump(path)
    with pytest.raises(UnsupportedDumpFormat, match="unknown signature"):
        sniff_format(b"")


def test_empty_list_and_mixed_set(kernel: SyntheticKernel, tmp_path: Path) -> None:
    with pytest.raises(DumpFormatError, match="no dump file given"):
        open_dump([])
    kernel.write_elf(tmp_path / "a.elf")
    kernel.write_kdump(tmp_path / "b.kdump")
    with pytest.raises(DumpFormatError, match="--split set"):
        open_dump([tmp_path / "a.elf", tmp_path / "b.kdump"])


class _Toy:
    """A format whose files start with TOYDUMP."""

    opened: ClassVar[list[Path]] = []

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        return head.startswith(b"TOYDUMP")

    @classmethod
    def open(cls, path: Path, *, zero_fill: bool = False) -> Self:
        cls.opened.append(path)
        return cls(path)


def test_registered_format_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_FORMATS", dict(registry._FORMATS))  # undone after the test
    register_format("toy", _Toy)
    assert registered_formats()[-1] == "toy"
    path = tmp_path / "x"
    path.write_bytes(b"TOYDUMP\0" + bytes(100))
    dump = open_dump(path)
    assert isinstance(dump, _Toy) and _Toy.opened == [path]
    assert sniff_format(b"TOYDUMP") == "toy"
