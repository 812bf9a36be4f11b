"""``kcrash oops parse``: text and JSON give the same 1-based line numbers of each report (issue 22)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kcrash.cli.app import kcrash

_LOG = ("[    0.1] boot\n" * 4 + "[    7.4] kernel BUG at /b/6.12.118+deb12-amd64-x.build/kcrash_test.c:274!\n"
        "[    7.4] Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n"
        "[    7.4] RIP: 0010:kcrash_test_do_bug+0x9/0x10 [kcrash_test]\n")


def test_text_and_json_give_the_same_lines(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text(_LOG)
    text = CliRunner().invoke(kcrash, ["oops", "parse", str(log)])
    data = CliRunner().invoke(kcrash, ["oops", "parse", "--json", str(log)])
    assert text.exit_code == data.exit_code == 0, text.output + data.output
    (item,) = json.loads(data.stdout)
    end_line = _LOG.count("\n", 0, item["end_pos"]) + 1
    assert item["start_line"] == 5 and 5 < end_line == item["end_line"]
    assert text.stdout.startswith(f"{log}:5-{end_line}  BUG  kernel BUG in kcrash_test_do_bug")
    assert item["start_pos"] == _LOG.index("[    7.4] kernel BUG")  # offsets stay, as offsets
    assert item["guilty_file"] == "/b/6.12.118+deb12-amd64-x.build/kcrash_test.c"
