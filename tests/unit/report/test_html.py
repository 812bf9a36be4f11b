"""The HTML renderer: one self-contained page, every section a ``<details>`` with its id, kernel
strings escaped (markup characters, control characters), nothing loaded from the network."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from kcrash import model as report_model
from kcrash.model import CrashReport
from kcrash.report.html import SECTIONS, render_html


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Collect:
    parser = _Collect()
    parser.feed(page)
    parser.close()
    return parser


def test_every_section_is_present(report: CrashReport) -> None:
    page = _parse(render_html(report))
    ids = {attrs.get("id") for _, attrs in page.tags}
    assert set(SECTIONS) <= ids
    details = [attrs["id"] for tag, attrs in page.tags if tag == "details" and attrs.get("data-section")]
    assert details == [*(s for s in SECTIONS if s != "verdict"), "notes"]


def test_kernel_strings_are_text_not_markup(report: CrashReport) -> None:
    html = render_html(report)
    page = _parse(html)
    assert "i" not in {tag for tag, _ in page.tags}  # the template itself uses <b>, never <i>
    assert "<i>x</i>" not in html and "&lt;i&gt;x&lt;/i&gt;&amp;&#34;&#39;" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "/bin/&lt;b&gt;busy&lt;/b&gt;" in html
    text = "".join(page.text)
    assert "<i>x</i>&\"'" in text  # what a reader sees
    assert "nu\\xff\\xfe\\x01<b>" in text  # the control byte shown as \x01, not raw
    assert "\x01" not in html
    assert sum(1 for tag, _ in page.tags if tag == "script") == 1  # only the page's own toolbar script


def test_self_contained(report: CrashReport) -> None:
    html = render_html(report)
    page = _parse(html)
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            assert not (attrs.get(name) or "").startswith(("http:", "https:", "//")), (tag, attrs)
        assert not (tag == "link" and attrs.get("rel") == "stylesheet")
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", html)
    assert "default-src 'none'" in html


def test_source_and_inlines_shown(report: CrashReport) -> None:
    text = "".join(_parse(render_html(report)).text)
    assert "kcrash_test_inner at /build/kcrash_test.c:120 (inlined)" in text
    assert "BUG();  /* <here> */" in text
    assert "ud2" in text and "kc1-0123456789abcdef" in text


# -- issue 18: the oops header, every CPU's backtrace, frame and task links, the task filter ----------


def _issue18_page(report: CrashReport) -> str:
    from support.report_cpus_sample import with_cpus

    return render_html(with_cpus(report))


def test_oops_header_and_code_lines_shown_and_highlighted_in_the_log(report: CrashReport) -> None:
    from support.report_cpus_sample import CODE_TEXT, OOPS_TEXTS

    page = _issue18_page(report)
    oops = page[page.index('id="oops"') : page.index('id="context"')]
    assert all(html_escape(text) in oops for text in (*OOPS_TEXTS, CODE_TEXT))
    log = page[page.index('<details open id="log"') : page.index('id="tasks"')]
    header = re.findall(r'<span class="oops-header" data-seq="(\d+)">', log)
    assert header == [str(seq) for seq in range(5, 11)]  # the five header lines and the Code: line
    assert re.findall(r'<span class="oops" data-seq="(\d+)">', log) == ["11", "40"]  # the rest of the oops
    assert '<span data-seq="4">' in log  # before the oops: not highlighted


def test_every_frame_links_to_its_disassembly(report: CrashReport) -> None:
    page = _issue18_page(report)
    targets = set(re.findall(r'class="frame-dis" id="dis-([0-9a-f]+)"', page))
    links = re.findall(r'class="frame-link" href="#dis-([0-9a-f]+)"', page)
    assert links and set(links) <= targets  # every frame of every trace has its block
    assert f"{0xFFFFFFFFC021B009:x}" in targets and f"{0xFFFFFFFF81A00077:x}" in targets


def test_every_cpu_and_every_task_backtrace(report: CrashReport) -> None:
    page = _issue18_page(report)
    cpus = page[page.index('id="cpus"') : page.index('id="frames"')]
    assert re.findall(r'id="cpu-(\d+)"', cpus) == ["1", "0"]  # the panic CPU first
    assert "stop_this_cpu+0x77/0xc0" in cpus and "(panic)" in cpus
    tasks = set(re.findall(r'class="task-link" href="#bt-([0-9a-f]+)"', page))
    blocks = set(re.findall(r'class="task-bt" id="bt-([0-9a-f]+)"', page))
    assert tasks == blocks == {f"{t.task:x}" for t in report.tasks}
    assert 'id="task-filter"' in page and "task-row" in page


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_disassembly_block_shows_the_frames_source_lines(report: CrashReport) -> None:
    page = _issue18_page(report)
    pc = report.backtrace.frames[1].pc  # the sample's frame with (inlined) source lines
    block = page[page.index(f'id="dis-{pc:x}"') :]
    block = block[: block.index("</table>")]
    assert "kcrash_test_inner at /build/kcrash_test.c:120 (inlined)" in block
    assert "kcrash_test_do_bug at /build/kcrash_test.c:131" in block


def test_disassembly_rows_show_the_source_line_where_it_changes(report: CrashReport) -> None:
    import dataclasses

    from support.report_cpus_sample import with_cpus

    here = report_model.SourceLine("vfs_write", "fs/read_write.c", 681, False)
    inline = (
        report_model.SourceLine("get_current", "asm/current.h", 47, True),
        report_model.SourceLine("vfs_write", "fs/read_write.c", 688, False),
    )
    full = with_cpus(report)
    block = full.frame_disassembly[0]
    insns = (
        dataclasses.replace(block.instructions[0], source=inline),
        dataclasses.replace(block.instructions[1], source=(here,)),
        dataclasses.replace(block.instructions[1], address=block.ip + 2, faulting=False, source=(here,)),
    )
    page = render_html(dataclasses.replace(full, frame_disassembly=(dataclasses.replace(block, instructions=insns),)))
    table = page[page.index(f'id="dis-{block.ip:x}"') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r'<tr class="src-row"><td colspan="4">([^<]*) <span class="muted">\(([^)]*)\)', table)
    assert rows == [
        ("asm/current.h:47", "get_current, inlined into vfs_write"),
        ("fs/read_write.c:681", "vfs_write"),
    ]  # once per change of line, not per instruction
