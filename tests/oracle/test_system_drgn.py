"""Oracle for issue 18's ``files``, ``mount`` and ``net``. kcrash opens each lab dump with NO vmlinux
(kallsyms, in-memory BTF) and is compared with drgn 0.3.0 given the Debian -dbg vmlinux:

* files: every task's open descriptors (fd, ``struct file`` address, ``d_path``) equal drgn's
  ``for_each_file`` + ``d_path``; ``files``' rows (dentry, inode, mode) equal drgn's object reads;
* mounts: every mount of the initial namespace (address, ``mount_fstype``, ``mount_src``,
  ``mount_dst``) equals drgn's ``for_each_mount`` (the rbtree since v6.8, the list before);
* net devices: address, name, ifindex, flags, MTU, operstate equal drgn's ``for_each_netdev``; the
  IPv4/IPv6 addresses equal drgn's ``netdev_ipv4_addrs``/``netdev_ipv6_addrs`` and the prefix
  lengths drgn's reads of ``ifa_prefixlen``/``prefix_len``;
* sockets: family, state, ports and addresses of every socket a task holds, and of every entry of
  the TCP established hash, equal drgn's reads of ``sock_common`` (the hash walked with drgn's
  ``sk_nulls_for_each``);
* the planted truth: the ``sleep`` holding fd 3 = /init and fd 4 = /tmp/kcrash-open, ``lo`` UP with
  127.0.0.1/8, the ``nc`` listener on port 4322 in LISTEN, and the connection to 4321, established both ways.

drgn 0.3.0's ``for_each_file`` yields a descriptor reserved by a blocked ``accept()`` with a NULL
file (the listener on 6.1/6.12), and its ``d_path`` of NULL faults: those are compared as (fd, 0).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kcrash.analysis.system import mounts, net_devices, task_files, task_sockets
from kcrash.analysis.target import open_target
from kcrash.helpers.linux import fs, net
from kcrash.helpers.linux.sched import for_each_task
from kcrash.types.program import Program
from support.drgn_oracle import KDUMP_READABLE, LAB_CASES, case_id, drgn_program, skip_lost_slab
from support.jsonout import from_hex

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.fs import d_path, for_each_file, for_each_mount, mount_dst, mount_fstype, mount_src  # noqa: E402
from drgn.helpers.linux.net import (  # noqa: E402
    for_each_netdev,
    netdev_ipv4_addrs,
    netdev_ipv6_addrs,
    sk_nulls_for_each,
)
from drgn.helpers.linux.pid import for_each_task as drgn_for_each_task  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = LAB_CASES + KDUMP_READABLE
PORT = 4321
LISTEN_PORT = 4322


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(request: pytest.FixtureRequest, lab_case: Callable[..., Path],
          lab_vmlinux_dbg: Callable[[str], Path]) -> tuple[Path, Any]:
    skip_lost_slab(request.param)
    kernel = request.param[1]
    out = lab_case(request.param)
    dprog = drgn_program(out, lab_vmlinux_dbg(kernel))
    return out, dprog


@pytest.fixture(scope="module")
def prog(crash: tuple[Path, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    with open_target(crash[0] / "vmcore.elf", tmp_path_factory.mktemp("cache"), orc=False) as target:
        yield target


def _drgn_files(dtask: Any) -> list[tuple[int, int, bytes | None]]:
    return [(fd, file.value_(), d_path(file.f_path) if file else None) for fd, file in for_each_file(dtask)]


def test_files_equal_drgn_for_every_task(prog: Program, crash: tuple[Path, Any]) -> None:
    dprog = crash[1]
    dtasks = {t.value_(): t for t in drgn_for_each_task(dprog)}
    ours_tasks = {int(t): t for t in for_each_task(prog)}
    assert set(ours_tasks) == set(dtasks)
    compared = 0
    for address, task in ours_tasks.items():
        ours = [(fd, int(file), fs.d_path(file.f_path) if int(file) else None) for fd, file in fs.for_each_file(task)]
        assert ours == _drgn_files(dtasks[address]), int(task.pid)
        compared += len(ours)
    assert compared >= 3 * 8  # init, the sleeps, the nc pair: at least stdin/out/err each


def test_files_rows_equal_drgn_objects(prog: Program, crash: tuple[Path, Any]) -> None:
    dtasks = {t.value_(): t for t in drgn_for_each_task(crash[1])}
    rows = 0
    for task in for_each_task(prog):
        result = task_files(task)
        dtask = dtasks[int(task)]
        assert result.root == d_path(dtask.fs.root).decode() and result.cwd == d_path(dtask.fs.pwd).decode()
        theirs = {fd: f for fd, f in for_each_file(dtask) if f}
        assert [f.fd for f in result.files] == sorted(theirs)
        for row in result.files:
            dfile = theirs[row.fd]
            assert row.error is None
            assert (row.file, row.dentry, row.inode, row.mode) == (
                dfile.value_(), dfile.f_path.dentry.value_(), dfile.f_path.dentry.d_inode.value_(),
                dfile.f_path.dentry.d_inode.i_mode.value_())
            if not dfile.f_path.dentry.d_op or not dfile.f_path.dentry.d_op.d_dname:
                assert row.path == d_path(dfile.f_path).decode()
            rows += 1
    assert rows >= 24


def test_mounts_equal_drgn(prog: Program, crash: tuple[Path, Any]) -> None:
    ours = [(m.mount, m.type, m.devname, m.dirname) for m in mounts(prog)]
    theirs = [(m.value_(), mount_fstype(m).decode(), mount_src(m).decode(), mount_dst(m).decode())
              for m in for_each_mount(crash[1])]
    assert ours == theirs
    # the lab's init mounts /proc, /sys, /dev, /sys/kernel/debug and /tmp on the rootfs
    assert {("proc", "/proc"), ("sysfs", "/sys"), ("devtmpfs", "/dev"), ("debugfs", "/sys/kernel/debug"),
            ("tmpfs", "/tmp"), ("rootfs", "/")} <= {(m[1], m[3]) for m in ours}


def _drgn_prefixes(ddev: Any) -> tuple[list[int], list[int]]:
    v4, v6 = [], []
    if ddev.ip_ptr:
        ifa = ddev.ip_ptr.ifa_list.read_()
        while ifa:
            v4.append(ifa.ifa_prefixlen.value_())
            ifa = ifa.ifa_next.read_()
    if ddev.ip6_ptr:
        from drgn.helpers.linux.list import list_for_each_entry

        v6 = [a.prefix_len.value_() for a in
              list_for_each_entry("struct inet6_ifaddr", ddev.ip6_ptr.addr_list.address_of_(), "if_list")]
    return v4, v6


def test_net_devices_equal_drgn(prog: Program, crash: tuple[Path, Any]) -> None:
    ours = net_devices(prog)
    theirs = list(for_each_netdev(crash[1]))
    assert [(d.address, d.name, d.ifindex, d.flags, d.mtu) for d in ours] == [
        (d.value_(), d.name.string_().decode(), d.ifindex.value_(), d.flags.value_(), d.mtu.value_()) for d in theirs]
    for dev, ddev in zip(ours, theirs, strict=True):
        kdev = prog.object("struct net_device", dev.address).address_of_()
        assert net.netdev_ipv4_addrs(kdev) == netdev_ipv4_addrs(ddev)
        assert net.netdev_ipv6_addrs(kdev) == netdev_ipv6_addrs(ddev)
        assert ([a.prefixlen for a in dev.ipv4], [a.prefixlen for a in dev.ipv6]) == _drgn_prefixes(ddev)
        assert net.netdev_operstate(kdev) == ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING",
                                             "DORMANT", "UP")[ddev.operstate.value_()]
    lo = next(d for d in ours if d.name == "lo")
    assert "UP" in lo.flag_names and "LOOPBACK" in lo.flag_names
    assert ("127.0.0.1", 8) in [(a.address, a.prefixlen) for a in lo.ipv4]
    assert ("::1", 128) in [(a.address, a.prefixlen) for a in lo.ipv6]


def _drgn_ends(dprog: Any, common: Any) -> tuple[str, int, str, str, int, int]:
    family, state = common.skc_family.value_(), common.skc_state.value_()
    if family == 10:
        local = ipaddress.IPv6Address(dprog.read(common.skc_v6_rcv_saddr.address_, 16))
        remote = ipaddress.IPv6Address(dprog.read(common.skc_v6_daddr.address_, 16))
        ends = (local.ipv4_mapped or local, remote.ipv4_mapped or remote)
    else:
        ends = (ipaddress.IPv4Address(dprog.read(common.skc_rcv_saddr.address_, 4)),
                ipaddress.IPv4Address(dprog.read(common.skc_daddr.address_, 4)))
    dport = int.from_bytes(dprog.read(common.skc_dport.address_, 2), "big")
    return ({2: "INET", 10: "INET6"}.get(family, str(family)), state, str(ends[0]), str(ends[1]),
            common.skc_num.value_(), dport)


def _ours_ends(info: net.SockInfo) -> tuple[str, int, str, str, int, int]:
    def plain(text: str) -> str:
        return text.removeprefix("::ffff:") if "." in text else text

    states = ("", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
              "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV")
    return (info.family, states.index(info.state), plain(info.local), plain(info.remote), info.local_port,
            info.remote_port)


def test_sockets_equal_drgn(prog: Program, crash: tuple[Path, Any]) -> None:
    dprog = crash[1]
    rows = task_sockets(prog)
    held = [r for r in rows if r.pid is not None]
    dtasks = {t.value_(): t for t in drgn_for_each_task(dprog)}
    for row in held:
        dfile = dict(for_each_file(dtasks[row.task]))[row.fd]
        assert dfile.f_op == dprog["socket_file_ops"].address_of_()
        dsocket = drgn.cast("struct socket *", dfile.private_data)
        assert (row.sock.socket, row.sock.sock) == (dsocket.value_(), dsocket.sk.value_())
        assert _ours_ends(row.sock) == _drgn_ends(dprog, dsocket.sk.__sk_common)
    # the established hash, walked by drgn
    hashinfo = dprog["tcp_hashinfo"]
    theirs = [_drgn_ends(dprog, sk.__sk_common) for i in range(hashinfo.ehash_mask.value_() + 1)
              for sk in sk_nulls_for_each(hashinfo.ehash[i].chain.address_of_())]
    ours = [_ours_ends(net.sock_common_info(c)) for c in net.for_each_tcp_sock(prog)]
    assert ours == theirs
    unowned = {r.sock.sock for r in rows if r.pid is None}
    assert unowned <= {int(c) for c in net.for_each_tcp_sock(prog)}
    assert held, "the lab's nc holds a socket"


def test_planted_files(prog: Program) -> None:
    holders = [task_files(t) for t in for_each_task(prog) if t.comm.string_() == b"sleep"]
    paths = [{f.fd: f.path for f in h.files} for h in holders]
    planted = [p for p in paths if p.get(3) == "/init"]
    assert len(planted) == 1, paths
    assert planted[0][4] == "/tmp/kcrash-open" and planted[0][5] == "/dev/null"
    assert planted[0][1].startswith("pipe:[")
    # the pipe's other end is the next sleep's stdin
    assert any(p.get(0) == planted[0][1] for p in paths)


def test_planted_sockets(prog: Program) -> None:
    # init.sh: `nc -l -p 4321` accepted the client and closed its listening socket; `nc -l -p 4322`
    # stays in LISTEN; the client's connection is ESTABLISHED both ways, each end held by its nc.
    rows = [r for r in task_sockets(prog) if r.comm == "nc"]
    listeners = [r.sock for r in rows if r.sock.state == "LISTEN"]
    assert [(s.type, s.protocol, s.local_port) for s in listeners] == [("STREAM", "TCP", LISTEN_PORT)]
    clients = [r.sock for r in rows if r.sock.remote_port == PORT]
    assert [(c.state, c.remote) for c in clients] == [("ESTABLISHED", "127.0.0.1")]
    server = [r.sock for r in rows if r.sock.local_port == PORT and r.sock.remote_port == clients[0].local_port]
    assert [(s.state, s.remote.removeprefix("::ffff:")) for s in server] == [("ESTABLISHED", "127.0.0.1")]


def _cli(*args: str) -> Any:
    from click.testing import CliRunner

    from kcrash.cli.app import kcrash

    return CliRunner().invoke(kcrash, list(args))


def test_cli_json_equals_the_analysis(prog: Program, crash: tuple[Path, Any]) -> None:
    dump = str(crash[0] / "vmcore.elf")
    sleeper = next(t for t in for_each_task(prog) if fs.fget(t, 3) and
                   fs.d_path(fs.fget(t, 3).f_path) == b"/init")
    result = _cli("files", dump, str(int(sleeper.pid)), "--json")
    assert result.exit_code == 0, result.output
    got = from_hex(json.loads(result.output))
    assert (got["pid"], [f["path"] for f in got["files"]]) == (
        int(sleeper.pid), [f.path for f in task_files(sleeper).files])
    by_address = from_hex(json.loads(_cli("files", dump, hex(int(sleeper)), "--json").output))
    assert by_address == got
    result = _cli("mount", dump, "--json")
    assert [m["dirname"] for m in from_hex(json.loads(result.output))] == [m.dirname for m in mounts(prog)]
    result = _cli("net", dump, "-s", "--json")
    assert [(s["pid"], s["sock"]["sock"]) for s in from_hex(json.loads(result.output))] == [
        (r.pid, r.sock.sock) for r in task_sockets(prog)]
    result = _cli("net", dump, "--json")
    assert [d["name"] for d in from_hex(json.loads(result.output))] == [d.name for d in net_devices(prog)]


def test_cli_refuses_what_is_not_a_task(prog: Program, crash: tuple[Path, Any],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from kcrash.cli import main

    dump = str(crash[0] / "vmcore.elf")
    file_address = next(int(f) for t in for_each_task(prog) for _, f in fs.for_each_file(t) if int(f))
    for args in (["files", dump, "99999"], ["files", dump, hex(file_address)], ["net", dump, "-s", "99999"]):
        code = main(args)
        out, err = capsys.readouterr()
        assert (code, out) == (1, "") and err.count("\n") == 1 and "task" in err, err
