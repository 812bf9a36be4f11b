"""kcrash's guilty function (``OopsReport.guilty_function``) next to syzkaller's title frame.

The real-console cases are pinned by the ``GUILTY:`` headers of tests/fixtures/oops/x86_64/012-015.txt;
these synthetic ones state each rule on its own.
"""

from __future__ import annotations

from kcrash.oops import parse

_TRACE_TAIL = """[    2.100000]  vfs_write+0xc7/0x3f0
[    2.100000]  ksys_write+0x6b/0xf0
[    2.100000]  do_syscall_64+0x5d/0xb0
[    2.100000]  entry_SYSCALL_64_after_hwframe+0x6e/0xd8
[    2.100000]  </TASK>
"""


def test_explicit_panic_blames_its_caller_even_when_named_panic() -> None:
    log = """[    2.100000] Kernel panic - not syncing: mydrv: giving up
[    2.100000] CPU: 0 PID: 1 Comm: init Tainted: G           OE      6.1.0-56-amd64 #1  Debian 6.1.192-2
[    2.100000] Call Trace:
[    2.100000]  <TASK>
[    2.100000]  dump_stack_lvl+0x44/0x5c
[    2.100000]  panic+0x118/0x2f4
[    2.100000]  ? _printk+0x68/0x83
[    2.100000]  mydrv_do_panic+0x11/0x11 [mydrv]
[    2.100000]  mydrv_write+0x77/0xb0 [mydrv]
""" + _TRACE_TAIL
    rep = parse(log)
    assert rep is not None
    assert (rep.title, rep.frame, rep.guilty_function) == ("kernel panic: mydrv: giving up", "", "mydrv_do_panic")


def test_hung_task_blames_the_function_that_sleeps() -> None:
    log = """[   20.900000] INFO: task worker:112 blocked for more than 10 seconds.
[   20.900000]       Not tainted 6.1.0-56-amd64 #1 Debian 6.1.192-2
[   20.900000] task:worker   state:D stack:0     pid:112   ppid:2      flags:0x00004000
[   20.900000] Call Trace:
[   20.900000]  <TASK>
[   20.900000]  __schedule+0x34d/0xa00
[   20.900000]  schedule+0x5a/0xd0
[   20.900000]  schedule_preempt_disabled+0x11/0x20
[   20.900000]  __mutex_lock.constprop.0+0x39d/0x720
[   20.900000]  mydrv_take_locks+0x24/0x40 [mydrv]
[   20.900000]  mydrv_thread+0x18/0x20 [mydrv]
[   20.900000]  kthread+0xda/0x100
[   20.900000]  ret_from_fork+0x22/0x30
[   20.900000]  </TASK>
"""
    rep = parse(log)
    assert rep is not None
    # syzkaller's hang extractor skips every frame containing "_lock"; the guilty function does not.
    assert (rep.frame, rep.guilty_function) == ("mydrv_thread", "mydrv_take_locks")


def test_warning_with_plus_in_source_path() -> None:
    # Debian 6.12 releases contain "+", and out-of-tree modules are built under a path holding the release.
    log = """[    2.944000] ------------[ cut here ]------------
[    2.944610] WARNING: CPU: 1 PID: 1 at /build/6.12.117+deb12-amd64/mydrv.c:120 mydrv_check+0x15/0x20 [mydrv]
[    2.944952] Modules linked in: mydrv(OE)
[    2.945000] RIP: 0010:mydrv_check+0x15/0x20 [mydrv]
[    2.945000] Call Trace:
[    2.945000]  <TASK>
[    2.945000]  mydrv_write+0x77/0xb0 [mydrv]
""" + _TRACE_TAIL
    rep = parse(log)
    assert rep is not None
    assert (rep.title, rep.guilty_function) == ("WARNING in mydrv_check", "mydrv_check")
