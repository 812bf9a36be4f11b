"""kcrash.analysis.oops_header: the oops header and Code: line of the first crash report in a log of
printk records, mapped back to the records (seq numbers, timestamps) it came from."""

from __future__ import annotations

from kcrash.analysis.oops_header import oops_header
from kcrash.helpers.linux.printk import PrintkRecord

# A 6.12 BUG() as the lab's console printed it (timestamps dropped; one printk record per line).
BUG_LOG = """\
kcrash-lab: ready kind=BUG
kcrash_test: triggering BUG
------------[ cut here ]------------
kernel BUG at /build/kcrash_test.c:146!
Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI
CPU: 1 UID: 0 PID: 1 Comm: init Tainted: G           OE      6.12.118+deb12-amd64 #1  Debian 6.12.118-1~deb12u1
Tainted: [O]=OOT_MODULE, [E]=UNSIGNED_MODULE
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
RIP: 0010:kcrash_test_do_bug+0x9/0x10 [kcrash_test]
Code: c0 e8 5b fa ea c0 0f 0b c3 cc cc cc cc 0f 1f 40 00 90 90 90 f3 0f 1e fa 0f 1f 44 00 00 <0f> 0b 0f 1f 44 00 00 90
RSP: 0018:ffffc90000013a78 EFLAGS: 00000246
RAX: ffffffffc021a530 RBX: 0000000000000000 RCX: c0000000ffffefff
Call Trace:
 <TASK>
 kcrash_test_level2+0x65/0x80 [kcrash_test]
 kcrash_test_level1+0xa/0x10 [kcrash_test]
 ksys_write+0x6f/0xf0
 do_syscall_64+0x87/0x1b0
 entry_SYSCALL_64_after_hwframe+0x76/0x7e
RIP: 0033:0x47b7a0
Code: 40 00 48 c7 c2 e0 ff ff ff f7 d8 64 89 02 48 c7 c0 ff ff ff ff eb b7 0f 1f 00 <48> 3d 00 f0 ff ff 77 58 c3
RSP: 002b:00007ffc1b42af68 EFLAGS: 00000202 ORIG_RAX: 0000000000000001
 </TASK>
Modules linked in: kcrash_test(OE) pvpanic_mmio pvpanic
---[ end trace 0000000000000000 ]---
Kernel panic - not syncing: Fatal exception
"""


def _records(log: str, first_seq: int = 100) -> list[PrintkRecord]:
    return [PrintkRecord(first_seq + i, 3_000_000_000 + i * 1000, line.encode(), 1, 4, 0, 0)
            for i, line in enumerate(log.splitlines())]


def test_header_from_the_oops_line_through_rip() -> None:
    records = _records(BUG_LOG)
    header = oops_header(records)
    assert header is not None
    texts = [line.text for line in header.lines]
    assert texts == BUG_LOG.splitlines()[3:9]  # kernel BUG at ... through the kernel RIP: line
    assert texts[0] == "kernel BUG at /build/kcrash_test.c:146!" and texts[-1].startswith("RIP: 0010:")
    assert [line.seq for line in header.lines] == [r.seq for r in records[3:9]]
    assert header.lines[0].formatted() == "[    3.000003] kernel BUG at /build/kcrash_test.c:146!"


def test_code_line_is_the_kernel_one_not_the_user_one() -> None:
    header = oops_header(_records(BUG_LOG))
    assert header is not None and header.code is not None
    assert header.code.text.startswith("Code: c0 e8 5b") and "<0f> 0b" in header.code.text
    assert header.code.seq == 109


def test_report_range_covers_the_records_of_the_oops() -> None:
    header = oops_header(_records(BUG_LOG))
    assert header is not None
    assert header.first_seq == 103
    assert 103 + len(BUG_LOG.splitlines()[3:]) - 1 >= header.last_seq >= 103 + 20  # up to the end marker/panic


def test_page_fault_header_and_warning_without_code() -> None:
    fault = """\
BUG: kernel NULL pointer dereference, address: 0000000000000000
#PF: supervisor read access in kernel mode
#PF: error_code(0x0000) - not-present page
PGD 0 P4D 0
Oops: 0000 [#1] PREEMPT SMP NOPTI
CPU: 0 PID: 1 Comm: init Tainted: G           OE      6.1.0-56-amd64 #1  Debian 6.1.192-2
Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
RIP: 0010:kcrash_test_null_read+0x5/0x10 [kcrash_test]
Call Trace:
 <TASK>
 kcrash_test_level2+0x65/0x80 [kcrash_test]
 </TASK>
Kernel panic - not syncing: Fatal exception
"""
    header = oops_header(_records(fault))
    assert header is not None and header.code is None
    assert [line.text for line in header.lines] == fault.splitlines()[:8]


def test_header_and_code_of_an_oops_that_entered_the_capture_kernel() -> None:
    # with kdump loaded, oops_end() calls crash_kexec() before "end trace" or any panic line: the log
    # ends with the call trace (and "Kdump: loaded" is in the CPU line), so the report's last oops line
    # is "Oops: ...", above the registers
    lines = BUG_LOG.splitlines()
    lines[5] = lines[5].replace("Comm: init Tainted", "Comm: init Kdump: loaded Tainted")
    kdump = "\n".join(lines[:lines.index(" </TASK>")]) + "\n </TASK>\n"
    header = oops_header(_records(kdump))
    assert header is not None and header.code is not None
    assert [line.text for line in header.lines] == lines[3:9]
    assert header.code.text.startswith("Code: c0 e8 5b") and header.code.seq == 109


def test_no_oops_no_header() -> None:
    assert oops_header(_records("Linux version 6.12\nkcrash-lab: ready kind=SYSRQ\n")) is None
    assert oops_header([]) is None
