"""kcrash.cli.vm's printer, shared with ``foreach vm``: one block per task, JSON with the CPU."""

from __future__ import annotations

import json

import pytest

from kcrash.analysis.vmas import TaskVm, Vma
from kcrash.cli import tasks
from kcrash.cli.vm import print_vms

HEAP = Vma(0xFFFF888001234000, 0x4000, 0x6000, 0x100073, ("READ", "WRITE"), 0x4, None, "[heap]")
SPACES = [(TaskVm(1, 0xFFFF888000100000, "init", 0xFFFF888000200000, 0xFFFF888000300000, 12, 40, (HEAP,), None), 0),
          (TaskVm(2, 0xFFFF888000400000, "kthreadd", 0, 0, 0, 0, (), None), 1)]


def test_text_blocks_and_json_are_the_same_for_vm_and_foreach_vm(capsys: pytest.CaptureFixture[str]) -> None:
    print_vms(SPACES, False)
    text = capsys.readouterr().out
    blocks = text.split("\n\n")
    assert len(blocks) == 2 and blocks[0].startswith("PID: 1 ") and "(kernel thread)" in blocks[1]
    assert "     48k" in blocks[0] and "[heap]  (READ|WRITE)" in blocks[0]  # RSS 12 pages, 4 KiB each
    tasks._print_vm(SPACES, False)
    assert capsys.readouterr().out == text
    print_vms(SPACES, True)
    data = json.loads(capsys.readouterr().out)
    assert [(d["pid"], d["cpu"]) for d in data] == [(1, 0), (2, 1)]
    tasks._print_vm(SPACES, True)
    assert json.loads(capsys.readouterr().out) == data
