"""The analysis commands on a running lab guest (issues 17 and 18): ``kcrash CMD gdb:HOST:PORT?qmp=SOCK --json``
through the real CLI, without vmlinux, asserting what the lab module and init plant
(``src/kcrash/lab/kmod/kcrash_test.c``, ``src/kcrash/lab/init.sh``).

One 6.12 guest (KASLR on) is booted for the module; every command stops it, reads, detaches and resumes it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.jsonout import from_hex
from support.live_guest import boot_live_guest

pytestmark = pytest.mark.lab

#: the kcrash_test module's planted xarray keys; the entry at i is xa_mk_value(i ^ 0x5a)
XA_KEYS = (0, 1, 5, 63, 64, 1000, 4096, 1 << 20)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sock = tmp_path_factory.mktemp("live-cmds") / "qmp.sock"
    with boot_live_guest("6.12", sock, 900) as (stub, _proc):
        yield f"gdb:{stub}?qmp={sock}"


def kcrash(*args: str) -> Any:
    """Run ``kcrash ARGS --json`` (bounded: a hang fails the test) and return its JSON."""
    done = subprocess.run([sys.executable, "-m", "kcrash", *args, "--json"], capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    return from_hex(json.loads(done.stdout))


def test_ps_lists_the_planted_threads(target: str) -> None:
    tasks = kcrash("ps", target)["tasks"]
    by_comm = {t["comm"]: t for t in tasks}
    assert [t["comm"] for t in tasks if t["pid"] == 1] == ["init"]
    for comm in ("kcrash_holder", "kcrash_wait_mut", "kcrash_wait_rws", "kcrash_wait_sem", "kcrash_wait_com"):
        assert comm in by_comm, comm
    assert by_comm["kcrash_wait_mut"]["state"] == "D"
    assert sum(t["comm"] == "sleep" for t in tasks) >= 5


def test_kmem_s_counts_the_planted_slab_objects(target: str) -> None:
    caches = {c["name"]: c for c in kcrash("kmem", target, "-s")["caches"]}
    assert caches["kcrash_test_cache"]["allocated"] == 100


def test_timer_finds_the_planted_timer(target: str) -> None:
    bases = kcrash("timer", target)["bases"]
    names = [t["function_name"] for b in bases for t in b["timers"]]
    assert names.count("kcrash_test_timer_fn") == 1, names


def test_files_of_the_sleep_with_planted_descriptors(target: str) -> None:
    tables = kcrash("foreach", target, "files", "sleep")
    paths = [{f["fd"]: f["path"] for f in t["files"]} for t in tables]
    planted = [p for p in paths if p.get(4) == "/tmp/kcrash-open"]
    assert len(planted) == 1, paths
    assert planted[0][3] == "/init" and planted[0][5] == "/dev/null"


def test_locks_names_the_held_mutex_and_its_owner(target: str) -> None:
    waits = kcrash("locks", target)["waits"]
    mutex = [w for w in waits if w["task"]["comm"] == "kcrash_wait_mut"]
    assert len(mutex) == 1, waits
    assert mutex[0]["kind"] == "mutex" and mutex[0]["symbol"] == "kcrash_test_held_mutex"
    assert mutex[0]["owner"]["comm"] == "kcrash_holder"


def test_p_evaluates_an_expression(target: str) -> None:
    assert kcrash("p", target, "init_task.pid + 1")["value"] == 1


def test_tree_walks_the_planted_xarray(target: str) -> None:
    entries = kcrash("tree", target, "-t", "xarray", "kcrash_test_xarray")["entries"]
    assert [(e["index"], e["value"]) for e in entries] == [(k, k ^ 0x5A) for k in XA_KEYS]


def test_rd_of_a_symbol_and_log(target: str) -> None:
    # rd resolves the module symbol inside the same attach (the stub takes one client at a time):
    # kcrash_test_global.big = 0x0123456789abcdef lies within its first four words
    words = kcrash("rd", target, "kcrash_test_global", "-n", "4")["values"]
    assert 0x0123456789ABCDEF in words, [hex(w) for w in words]
    log = kcrash("log", target)
    assert any("Linux version" in line["text"] for line in log)


def test_the_guest_runs_between_commands(target: str) -> None:
    # every command detaches and resumes: jiffies advances while no command holds the guest
    first = int(kcrash("p", target, "jiffies")["value"])
    time.sleep(1.0)
    second = int(kcrash("p", target, "jiffies")["value"])
    assert second > first


def test_a_dead_target_is_one_line_error(target: str) -> None:
    with socket.socket() as s:  # a port nothing listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "kcrash", "ps", f"gdb:127.0.0.1:{port}", "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("kcrash: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert time.monotonic() - started < 30


def test_bt_a_unwinds_every_vcpu_from_the_stub_registers(target: str) -> None:
    # the stub's per-vCPU registers stand in for the dump's NT_PRSTATUS notes; no CPU is a "panic" CPU
    assert kcrash("sys", target)["panic_cpu"] is None
    traces = kcrash("bt", target, "-a")
    assert sorted(t["task"]["cpu"] for t in traces) == [0, 1]  # the lab guest has 2 vCPUs
    for t in traces:
        frames = [f["function"] for f in t["trace"]["frames"]]
        assert frames and frames[0] is not None, t["trace"]


def test_without_qmp_vmcoreinfo_is_found_in_guest_memory(target: str) -> None:
    # the in-memory VMCOREINFO scan reads physical memory; validating it must switch back to virtual
    stub_only = target.partition("?")[0]
    assert kcrash("p", stub_only, "init_task.pid + 1")["value"] == 1
