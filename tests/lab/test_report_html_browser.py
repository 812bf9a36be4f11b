"""The HTML report's links and controls in headless Chromium (Debian's ``chromium`` driven by
Playwright; no browser download, no network), on the report of the lab's BUG dump of 6.12 opened
without vmlinux (issue 18):

- clicking a frame of the crashed thread's backtrace shows that frame's disassembly: the faulting
  frame's block shows the ``ud2`` of ``BUG()`` at the RIP the console printed, and it is the
  instruction capstone decodes from the faulting byte of the console's own ``Code:`` line; a
  return-address frame's block shows a ``call`` just before its pc;
- clicking a task's PID shows that task's backtrace (its frames' text as the JSON report gives them);
- typing in the filter box hides the task rows without the text, and clearing it shows them again;
- the log tail is open and starts with the oops, whose header and ``Code:`` lines (equal to the
  console's) are highlighted;
- with the -dbg vmlinux (``--vmlinux``), a vmlinux frame's block shows source rows, the one above
  the pc's instruction naming the file:line ``addr2line`` gives for the pc.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kcrash.cli import main
from support.browser import chromium_tab
from support.jsonout import from_hex

pytestmark = pytest.mark.lab

_STAMP = re.compile(r"^\[\s*\d+\.\d+\] ")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _console_oops(console: str) -> tuple[list[str], str]:
    # The console's oops header (from "kernel BUG at" through the first "RIP:") and its Code: line.
    lines = [_STAMP.sub("", line) for line in console.splitlines() if _STAMP.match(line)]
    first = next(i for i, line in enumerate(lines) if line.startswith("kernel BUG at "))
    rip = next(i for i in range(first, len(lines)) if lines[i].startswith("RIP: "))
    return lines[first:rip + 1], next(line for line in lines[rip:] if line.startswith("Code: "))


@pytest.fixture(scope="module")
def rendered(lab_crash: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    out = lab_crash("BUG", "6.12", False)
    tmp = tmp_path_factory.mktemp("html")
    page_file = tmp / "report.html"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KCRASH_CACHE", str(tmp))
        assert main(["report", str(out / "vmcore.kdump"), "--format", "html", "-o", str(page_file)]) == 0
        assert main(["report", str(out / "vmcore.kdump"), "--format", "json", "-o", str(tmp / "report.json")]) == 0
    return out, page_file, from_hex(json.loads((tmp / "report.json").read_text()))


@pytest.fixture(scope="module")
def page(rendered: tuple[Path, Path, Any]) -> Iterator[Any]:
    with chromium_tab() as (tab, requests):
        tab.goto(rendered[1].as_uri())
        yield tab
        # the reports load nothing else (a test may open a second report)
        assert requests[0] == rendered[1].as_uri()
        assert all(url.startswith("file://") and url.endswith(".html") for url in requests), requests


def test_clicking_the_faulting_frame_shows_its_disassembly(rendered: tuple[Path, Path, Any], page: Any) -> None:
    from capstone import CS_ARCH_X86, CS_MODE_64, Cs  # type: ignore[import-untyped]

    out, _, report = rendered
    _, code = _console_oops((out / "console.log").read_text(errors="replace"))
    tokens = code.split()[1:]
    fault = next(i for i, t in enumerate(tokens) if t.startswith("<"))
    code_bytes = bytes.fromhex("".join(t.strip("<>") for t in tokens[fault:]))
    expected = next(Cs(CS_ARCH_X86, CS_MODE_64).disasm(code_bytes, 0, 1)).mnemonic  # ud2 for BUG()
    ip = report["context"]["ip"]
    target = page.locator(f"#dis-{ip:x}")
    assert not target.is_visible()
    page.locator("#backtrace a.frame-link", has_text="kcrash_test_do_bug+").first.click()
    assert target.is_visible()
    row = target.locator("tr.fault")
    assert row.is_visible()
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == f"{ip:016x}" and cells[2] == expected == "ud2"
    assert "kcrash_test_do_bug" in target.inner_text()


def test_a_return_address_frame_shows_the_call_before_it(rendered: tuple[Path, Path, Any], page: Any) -> None:
    frames = rendered[2]["backtrace"]["frames"]
    caller = next(f for f in frames if f["function"] == "kcrash_test_level2")
    page.locator("#backtrace a.frame-link", has_text="kcrash_test_level2+").first.click()
    target = page.locator(f"#dis-{caller['pc']:x}")
    assert target.is_visible()
    rows = target.locator("tr").all_inner_texts()
    at = next(i for i, r in enumerate(rows) if r.startswith(f"{caller['pc']:016x}"))
    assert at > 0 and "call" in rows[at - 1]
    assert page.locator(".frame-dis:visible").count() == 1  # only the clicked frame's block


def test_clicking_a_task_shows_its_backtrace(rendered: tuple[Path, Path, Any], page: Any) -> None:
    # a D-state task when there is one (the lab's kcrash_wait_* kthreads), else any sleeping one
    candidates = sorted((t for t in rendered[2]["task_traces"]
                         if not t["task"]["active"] and len(t["trace"]["frames"]) >= 3 and t["task"]["pid"] > 1),
                        key=lambda t: t["task"]["state"] != "D")
    entry = candidates[0]
    task = entry["task"]
    target = page.locator(f"#bt-{task['task']:x}")
    assert not target.is_visible()
    page.fill("#task-filter", "")
    page.locator(f"a.task-link[href='#bt-{task['task']:x}']").click()
    assert target.is_visible()
    text = target.inner_text()
    assert f"PID {task['pid']}" in text
    assert all(f["text"] in text for f in entry["trace"]["frames"])


def test_filter_box_hides_rows(rendered: tuple[Path, Path, Any], page: Any) -> None:
    rows = page.locator("#task-table tr.task-row")
    total = rows.count()
    assert total == len(rendered[2]["tasks"]) > 10
    page.fill("#task-filter", "kworker")
    shown = page.locator("#task-table tr.task-row:visible").all_inner_texts()
    expected = [t for t in rendered[2]["tasks"] if "kworker" in t["comm"]]
    assert 0 < len(shown) == len(expected) < total
    assert all("kworker" in row for row in shown)
    page.fill("#task-filter", "")
    assert page.locator("#task-table tr.task-row:visible").count() == total


def test_log_tail_opens_with_the_oops_highlighted(rendered: tuple[Path, Path, Any], page: Any) -> None:
    header, code = _console_oops((rendered[0] / "console.log").read_text(errors="replace"))
    assert page.locator("#log").get_attribute("open") is not None
    log = page.locator("#log pre.log > span")
    assert _STAMP.sub("", log.first.inner_text()) == header[0]  # the tail starts at the oops
    marked = [_STAMP.sub("", t) for t in page.locator("#log .oops-header").all_inner_texts()]
    assert marked == [*header, code]
    colour = page.locator("#log .oops-header").first.evaluate("e => getComputedStyle(e).backgroundColor")
    plain = page.locator("#log .oops").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour not in ("rgba(0, 0, 0, 0)", plain)
    page.screenshot(path=str(rendered[1].with_suffix(".png")), full_page=False)


def test_with_debuginfo_a_frames_block_shows_its_source_lines(
        lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path], page: Any,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from support.addr2line import addr2line

    out = lab_crash("BUG", "6.12", False)
    vmlinux = lab_vmlinux_dbg("6.12")
    tmp = tmp_path_factory.mktemp("dbg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KCRASH_CACHE", str(tmp))
        for fmt in ("html", "json"):
            assert main(["report", str(out / "vmcore.kdump"), "--vmlinux", str(vmlinux), "--format", fmt,
                         "-o", str(tmp / f"r.{fmt}")]) == 0
    frame = next(f for f in from_hex(json.loads((tmp / "r.json").read_text()))["backtrace"]["frames"]
                 if f["function"] == "vfs_write")
    page.goto((tmp / "r.html").as_uri())
    block = page.locator(f"#dis-{frame['pc']:x}")
    assert not block.is_visible()
    page.locator("#backtrace a.frame-link", has_text="vfs_write+").first.click()
    assert block.is_visible()
    rows = block.locator("tr.src-row").all_inner_texts()
    assert rows and all("fs/read_write.c:" in r or ".h:" in r for r in rows)
    # the row above the pc's instruction names the pc's own line, as addr2line says (no KASLR on this dump)
    table = block.locator("tr").evaluate_all("rows => rows.map(r => [r.className, r.innerText])")
    at = next(i for i, (_, text) in enumerate(table) if text.startswith(f"{frame['pc']:016x}"))
    above = next(text for kind, text in reversed(table[:at]) if kind == "src-row")
    innermost = addr2line(vmlinux, [frame["pc"]])[0][0][1].split(" ")[0].split("/build_amd64_none_amd64/")[-1]
    assert innermost in above
