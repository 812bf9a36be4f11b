"""``kcrash report DUMP`` on real lab crashes, with no vmlinux: every crash kind of 6.12 (read from the
QEMU kdump file; the oracle tests read ELF), plus two 6.1 dumps. The report must name the panic
message the kernel printed (lab.json ``expected_panic_message``) and the crashing function: lab.json's
``crash_function``, or for a hung-task panic its ``blocked_function`` (what the blocked tasks sleep in;
``crash_function`` there is khungtaskd's caller of panic(), the watchdog, not the culprit). The function
must come from the crashed thread's own backtrace, and agree with the oops parser on the dump's log
whenever the log names one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash.cli import main
from kcrash.lab.kinds import KINDS
from support.jsonout import from_hex

pytestmark = pytest.mark.lab

CASES = [*((kind, "6.12", False) for kind in KINDS), ("BUG", "6.1", True), ("SOFTLOCKUP", "6.1", False)]


def _report(capsys: pytest.CaptureFixture[str], dump: Path, *args: str) -> tuple[int, str]:
    code = main(["report", str(dump), *args])
    out, err = capsys.readouterr()
    assert err == ""
    return code, out


@pytest.mark.parametrize(("kind", "kernel", "kaslr"), CASES,
                         ids=[f"{k}-{v}-{'kaslr' if a else 'nokaslr'}" for k, v, a in CASES])
def test_report_names_panic_and_crashing_function(lab_crash: Callable[..., Path], capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  kind: str, kernel: str, kaslr: bool) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path))
    out = lab_crash(kind, kernel, kaslr)
    lab: dict[str, Any] = json.loads((out / "lab.json").read_text())
    want = lab.get("blocked_function") or lab["crash_function"]
    code, text = _report(capsys, out / "vmcore.kdump", "--json")
    assert code == 0
    report = from_hex(json.loads(text))
    verdict = report["verdict"]
    assert lab["expected_panic_message"] in verdict["panic_message"]
    assert (verdict["crashing_function"], verdict["source"]) == (want, "backtrace")
    assert verdict["log_function"] in (None, want), verdict
    assert report["backtrace"]["truncated"] is None and len(report["backtrace"]["frames"]) >= 5
    assert report["context"]["pid"] >= 0 and report["system"]["release"] == lab["kernel"]["release"]
    assert any(m["name"] == "kcrash_test" and m["taints"] == "OE" for m in report["modules"])
    if kind == "HUNG_ABBA":
        assert {b["task"]["comm"] for b in report["blocked"]} >= {"kcrash_abba_a", "kcrash_abba_b"}
    code, text = _report(capsys, out / "vmcore.kdump")
    assert code == 0
    assert f"CRASHING FUNCTION: {want}  (from the backtrace)" in text.splitlines()
    assert lab["expected_panic_message"] in text.splitlines()[0]
