"""Every ``--json`` output of kcrash, as invocations on a lab crash: the table the JSON tests
(``tests/oracle/test_json_outputs_lab.py``) and the schema generator (``tests/support/json_schemas.py``)
share. Each row is (schema name, arguments); the placeholders are filled by :func:`arguments`.

``DUMP`` is the crash's ``vmcore.elf``, ``LOG`` its ``console.log``, ``VMLINUX`` the Debian ``-dbg``
vmlinux, ``OUT`` a fresh file name, ``DB`` a crash database (sqlite) shared by the ``triage`` rows (run
in order: ingest first), ``OOPS1``/``OOPS2`` two oops fixtures. Rows marked ``module`` need the lab's
test module (not on the ``7`` kernel); rows marked ``debuginfo`` need the ``-dbg`` vmlinux.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["INVOCATIONS", "NOT_RUN", "Invocation", "arguments"]

_OOPS = Path(__file__).resolve().parents[1] / "fixtures" / "oops" / "x86_64"

#: (schema name, arguments, needs) with needs a subset of {"module", "debuginfo"}
Invocation = tuple[str, tuple[str, ...], frozenset[str]]
_M = frozenset({"module"})
_D = frozenset({"debuginfo"})
_N: frozenset[str] = frozenset()

INVOCATIONS: tuple[Invocation, ...] = (
    ("addr2line", ("addr2line", "-e", "VMLINUX", "-f", "-i", "PANIC_ADDR"), _D),
    ("bt", ("bt", "DUMP"), _N),
    ("bt", ("bt", "DUMP", "-a"), _N),
    ("bt", ("bt", "DUMP", "-f", "1"), _N),
    ("decode", ("decode", "LOG", "--debuginfo", "VMLINUX"), _D),
    ("dev", ("dev", "DUMP"), _N),
    ("dev", ("dev", "DUMP", "-d"), _N),
    ("dis", ("dis", "DUMP", "panic"), _N),
    ("collect-vmcore", ("collect", "vmcore", "-d", "31", "DUMP", "OUT"), _N),  # a vmcore file for /proc/vmcore
    ("dump-convert", ("dump", "convert", "DUMP", "OUT", "-d", "31"), _N),
    ("dump-dmesg", ("dump", "dmesg", "DUMP"), _N),
    ("dump-info", ("dump", "info", "DUMP"), _N),
    ("files", ("files", "DUMP", "1"), _N),
    ("foreach", ("foreach", "DUMP", "bt", "1", "2"), _N),
    ("foreach", ("foreach", "DUMP", "files", "1"), _N),
    ("foreach", ("foreach", "DUMP", "vm", "1"), _N),
    ("foreach", ("foreach", "DUMP", "task", "1", "-R", "pid,comm,mm"), _N),
    ("foreach", ("foreach", "DUMP", "ps", "-k"), _N),
    ("irq", ("irq", "DUMP"), _N),
    ("kmem", ("kmem", "DUMP", "-i"), _N),
    ("kmem", ("kmem", "DUMP", "-s"), _N),
    ("kmem", ("kmem", "DUMP", "-S", "kcrash_test_cache"), _M),
    ("kmem", ("kmem", "DUMP", "kcrash_test_global", "init_task", "jiffies"), _M),
    ("lab-kernels", ("lab", "kernels"), _N),
    ("list", ("list", "DUMP", "-H", "kcrash_test_objects", "-l", "kcrash_test_obj.node", "-s", "kcrash_test_obj"), _M),
    ("list", ("list", "DUMP", "-H", "init_task.tasks", "-o", "0"), _N),
    ("locks", ("locks", "DUMP"), _N),
    ("log", ("log", "DUMP"), _N),
    ("mod", ("mod", "DUMP"), _N),
    ("mount", ("mount", "DUMP"), _N),
    ("net", ("net", "DUMP"), _N),
    ("oops-parse", ("oops", "parse", "LOG"), _N),
    ("p", ("p", "DUMP", "jiffies"), _N),
    ("p", ("p", "DUMP", "init_task"), _N),
    ("p", ("p", "DUMP", "init_task.comm"), _N),
    ("ps", ("ps", "DUMP"), _N),
    ("rd", ("rd", "DUMP", "jiffies", "-n", "4"), _N),
    ("rd", ("rd", "DUMP", "linux_banner", "-a"), _N),
    ("rd", ("rd", "DUMP", "init_task", "-s", "-n", "8"), _N),
    ("report", ("report", "DUMP"), _N),
    ("runq", ("runq", "DUMP"), _N),
    ("search", ("search", "DUMP", "-s", "init_task", "-l", "8192", "init_task"), _N),
    ("struct", ("struct", "DUMP", "list_head"), _N),
    ("struct", ("struct", "DUMP", "list_head", "&init_task.tasks"), _N),
    ("sym", ("sym", "DUMP", "jiffies", "panic+0x10", "init_t*"), _N),
    ("sys", ("sys", "DUMP"), _N),
    ("task", ("task", "DUMP", "1"), _N),
    ("task", ("task", "DUMP", "1", "-R", "pid,comm"), _N),
    ("timer", ("timer", "DUMP"), _N),
    ("timer", ("timer", "DUMP", "-r"), _N),
    ("tree", ("tree", "DUMP", "-t", "rbtree", "kcrash_test_rbtree", "-s", "kcrash_test_rb.key"), _M),
    ("tree", ("tree", "DUMP", "-t", "xarray", "kcrash_test_xarray"), _M),
    ("vm", ("vm", "DUMP", "1"), _N),
    ("vtop", ("vtop", "DUMP", "jiffies"), _N),
    ("waitq", ("waitq", "DUMP", "oom_reaper_wait"), _N),
    ("whatis", ("whatis", "DUMP", "jiffies"), _N),
    ("whatis", ("whatis", "DUMP", "struct list_head"), _N),
    # the crash database (issue 19): two oops fixtures make two buckets in a fresh sqlite file, DB
    ("triage-ingest", ("triage", "ingest", "--db", "DB", "--executor", "local:1", "-q", "OOPS1", "OOPS2"), _N),
    ("triage-list", ("triage", "list", "--db", "DB"), _N),
    ("triage-stats", ("triage", "stats", "--db", "DB"), _N),
    ("triage-show", ("triage", "show", "--db", "DB", "1"), _N),
    ("triage-show", ("triage", "show", "--db", "DB", "1", "--crash"), _N),
    ("triage-merge", ("triage", "merge", "--db", "DB", "2", "1"), _N),
    ("triage-unmerge", ("triage", "unmerge", "--db", "DB", "2"), _N),
    ("triage-fix", ("triage", "fix", "--db", "DB", "1", "--release", "6.12.200"), _N),
)

#: --json outputs the table does not run on a lab dump, and why. They print by the same number rule
#: (``json_ready``) and each has a schema: ``lab-crash``'s is checked on the cached lab.json, the
#: others by the lab test named (hand-written schemas: ``json_schemas.py --write`` leaves them alone).
NOT_RUN: dict[str, str] = {
    "lab-crash": "boots QEMU; it prints the crash's lab.json, checked against its schema from the cached file",
    "live": "needs a running guest; tests/lab/test_live.py validates its records against the schema",
    "collect-qemu": "freezes a running QEMU VM; tests/lab/test_collect_qemu.py validates it against the schema",
}


def arguments(args: tuple[str, ...], crash: Path, vmlinux: Path | None, out: Path, panic_addr: int) -> list[str]:
    """``args`` with the placeholders filled (the crash directory, the vmlinux, an output path)."""
    values = {"DUMP": str(crash / "vmcore.elf"), "LOG": str(crash / "console.log"), "OUT": str(out),
              "DB": f"sqlite:///{out.parent / 'crashes.db'}", "OOPS1": str(_OOPS / "005.txt"),
              "OOPS2": str(_OOPS / "006.txt"),
              "VMLINUX": str(vmlinux), "PANIC_ADDR": hex(panic_addr)}
    return [values.get(a, a) for a in args] + ["--json"]
