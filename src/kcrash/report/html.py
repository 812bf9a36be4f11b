"""
kcrash.report.html
==================

The HTML rendering of a :class:`~kcrash.model.CrashReport`: one self-contained file (inline
CSS and a few lines of JS, no external resource, a Content-Security-Policy that forbids loading any),
each section a ``<details>`` element with an ``id`` (``oops``, ``context``, ``backtrace``, ``cpus``,
``frames``, ``disassembly``, ``log``, ``tasks``, ``blocked``, ``modules``, ``memory``, ``regions``, ``dump``;
the verdict on top). Every frame links to its disassembly (``#dis-<pc in hex>``, in ``frames``) and
every task's PID to its backtrace (``#bt-<task address in hex>``, under the task table); both are
hidden until their link is followed (``:target``, and a few lines of JS open the ``<details>`` around
them); with debug information a frame's block also gives the frame's source lines. The log tail
highlights the oops (``oops-header`` for its header and ``Code:`` lines), and a filter box hides the
task rows that do not contain every word typed.
Templates are Jinja2 files shipped in ``kcrash/report/templates`` and rendered with autoescaping
on, so kernel strings (task names, log lines, file names) always appear as text, never as markup;
control characters in them are shown as ``\\xNN`` (a task name may hold any byte).
"""

from __future__ import annotations

import datetime
import re

import jinja2
import markupsafe

from kcrash import __version__
from kcrash.model import CrashReport, SourceLine

__all__ = ["SECTIONS", "render_html"]

#: the ``id`` of every section, in page order
SECTIONS = (
    "verdict",
    "oops",
    "context",
    "backtrace",
    "cpus",
    "frames",
    "disassembly",
    "log",
    "tasks",
    "blocked",
    "modules",
    "memory",
    "regions",
    "dump",
)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _visible(value: object) -> object:
    # Every {{ expression }} passes here before escaping; markup built by the templates is left alone.
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    return value


def _hex16(value: int) -> str:
    return f"{value:016x}"


def _size(value: int | None) -> str:
    if value is None:
        return "unknown"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value >= 1 << shift:
            return f"{value / (1 << shift):.1f} {unit}"
    return f"{value} B"


def _time(seconds: int | None) -> str:
    if seconds is None:
        return "unknown"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kcrash.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_visible,
    )
    env.filters.update(hex16=_hex16, size=_size, time=_time)
    return env


def render_html(report: CrashReport) -> str:
    """The report as one self-contained HTML page."""
    env = _environment()
    macros = env.get_template("trace.html.j2").module
    return env.get_template("report.html.j2").render(
        r=report,
        trace=macros.trace,  # type: ignore[attr-defined]
        instructions=macros.instructions,  # type: ignore[attr-defined]
        version=__version__,
        frame_sources=_frame_sources(report),
    )


def _frame_sources(report: CrashReport) -> dict[int, tuple[SourceLine, ...]]:
    # The source lines (with debug information) of every frame pc, for its disassembly block.
    traces = [
        report.backtrace,
        *(c.trace for c in report.cpus),
        *(t.trace for t in report.task_traces),
        *(b.trace for b in report.blocked),
    ]
    return {f.pc: f.source for t in traces for f in t.frames if f.source}
