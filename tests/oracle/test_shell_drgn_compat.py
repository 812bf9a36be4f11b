"""Oracle for issue 18's drgn-compatible shell: each small drgn script of
``tests/fixtures/drgn_scripts/`` (ours, written for this test) prints exactly the same text under
drgn 0.3.0 (the Debian -dbg vmlinux and the lab module's .ko loaded, ``prog`` as ``drgn -c`` sets
it) and under ``kcrash shell DUMP -c`` (NO vmlinux: kallsyms, the dump's BTF and the module's split
BTF), on BUG 6.12, BUG 6.1 (KASLR), BUG 5.10 (KASLR) and HUNG_ABBA 6.12 (its D-state threads). The
scripts cover tasks and their states, the crashed thread's frames, blocked tasks' frames, the log
tail, slab_object_info, a list walk, an rbtree and an xarray walk, a per-CPU counter, symbol
lookups, Object formatting (structs included), open files and mounts, d_path, net devices, VMAs and
page conversions, a maple tree and a wait queue, and get_kconfig (absent on the lab kernels).

Known differences, asserted as such rather than skipped: on 5.10 the module has no BTF (split
module BTF came in v5.11), so the scripts that need the module's struct types or its per-CPU
variable's type fail in kcrash with a TypeLookupError naming the type while drgn (DWARF) runs
them. drgn's percpu_counter_sum leaves out the CPUs a panic stopped (it adds online CPUs only):
:func:`test_percpu_counter_sum_counts_the_cpus_a_panic_stopped` shows it with drgn's own reads.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash.cli import main
from support.drgn_oracle import case_id, drgn_program

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = [("BUG", "6.12", False), ("BUG", "6.1", True), ("BUG", "5.10", True), ("HUNG_ABBA", "6.12", False)]
SCRIPTS = sorted((Path(__file__).parents[1] / "fixtures" / "drgn_scripts").glob("*.py"))
#: scripts needing the module's own types (its BTF), which the 5.10 module does not have
NEEDS_MODULE_BTF = {"list_walk", "rbtree_xarray", "object_format", "percpu_counter"}


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(request: pytest.FixtureRequest, lab_crash: Callable[..., Path],
          lab_vmlinux_dbg: Callable[[str], Path]) -> tuple[Path, Any, str]:
    kind, kernel, kaslr = request.param
    out = lab_crash(kind, kernel, kaslr)
    dprog = drgn_program(out, lab_vmlinux_dbg(kernel))
    return out, dprog, kernel


def _under_drgn(dprog: Any, script: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(script.read_text(), str(script), "exec"), {"prog": dprog, "__name__": "__main__"})
    return out.getvalue()


def _under_kcrash(dump: Path, script: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return _under_kcrash_source(dump, capsys, script.read_text())


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_drgn_script_prints_the_same_under_kcrash_shell(crash: tuple[Path, Any, str], script: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    dump, dprog, kernel = crash
    expected = _under_drgn(dprog, script)
    assert expected.strip(), f"{script.name} printed nothing under drgn"
    code, out, err = _under_kcrash(dump / "vmcore.elf", script, capsys)
    if kernel == "5.10" and script.stem in NEEDS_MODULE_BTF:
        # documented: no module BTF on 5.10, so kcrash has no kcrash_test_* types
        assert code == 1 and "TypeLookupError" in err and ("kcrash_test" in err or "no type" in err), err
        return
    assert (code, err) == (0, ""), err
    assert out == expected


def test_percpu_counter_sum_counts_the_cpus_a_panic_stopped(crash: tuple[Path, Any, str],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """drgn 0.3.0's percpu_counter_sum adds the online CPUs' counters, as the running kernel does
    (a CPU going offline folds its counter into ``count``). A panic stops the other CPUs without
    folding and clears them from cpu_online_mask, so drgn leaves their counts out; kcrash adds every
    possible CPU's (those never online hold 0). Evidence on ``vm_committed_as``: drgn's sum is
    ``count`` plus the online CPUs' counters, kcrash's is ``count`` plus all of them, read by drgn."""
    from drgn import Object as DrgnObject
    from drgn.helpers.linux.cpumask import for_each_online_cpu, for_each_possible_cpu
    from drgn.helpers.linux.percpu import per_cpu_ptr, percpu_counter_sum

    dump, dprog, _ = crash
    fbc = DrgnObject(dprog, "struct percpu_counter", address=dprog.symbol("vm_committed_as").address)
    counters = {cpu: per_cpu_ptr(fbc.counters, cpu)[0].value_() for cpu in for_each_possible_cpu(dprog)}
    online = set(for_each_online_cpu(dprog))
    assert percpu_counter_sum(fbc.address_of_()) == fbc.count.value_() + sum(counters[c] for c in online)
    code, out, err = _under_kcrash_source(dump / "vmcore.elf", capsys, (
        "from drgn import Object\nfrom drgn.helpers.linux.percpu import percpu_counter_sum\n"
        "fbc = Object(prog, 'struct percpu_counter', address=prog.symbol('vm_committed_as').address)\n"
        "print(percpu_counter_sum(fbc.address_of_()))"))
    assert (code, err) == (0, "")
    assert int(out) == fbc.count.value_() + sum(counters.values())
    if online != set(counters):  # the panic stopped the other CPUs: the two sums differ by their counts
        assert int(out) - percpu_counter_sum(fbc.address_of_()) == sum(counters[c] for c in set(counters) - online)


def _under_kcrash_source(dump: Path, capsys: pytest.CaptureFixture[str], source: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["shell", str(dump), "-c", source])
    out, err = capsys.readouterr()
    return code, out, err
