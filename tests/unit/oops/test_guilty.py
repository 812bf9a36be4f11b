"""kcrash.oops.guilty: the guilty source file keeps path characters out-of-tree builds use (issue 22)."""

from __future__ import annotations

import pytest

from kcrash.oops.guilty import guilty_file

_BUILD = "/root/.cache/kcrash/kmod/6.12.118+deb12-amd64-03c2a27cde4351f7.build"


def test_path_with_plus_is_not_cut() -> None:
    report = f"kernel BUG at {_BUILD}/kcrash_test.c:274!\nRIP: 0010:kcrash_test_do_bug+0x9/0x10 [kcrash_test]\n"
    assert guilty_file("kernel BUG in kcrash_test_do_bug", report) == f"{_BUILD}/kcrash_test.c"


@pytest.mark.parametrize("path", ["/home/u/src/mod~1/x.c", "/b/v1,2/drv.c", "/b/a@b/drv.c", "/b/c++/x+y.c"])
def test_other_path_characters(path: str) -> None:
    assert guilty_file("WARNING in f", f"WARNING: CPU: 0 PID: 1 at {path}:12 f+0x1/0x2\n") == path


def test_frame_offsets_are_not_taken_into_the_path() -> None:
    # "func+0x1/0x2 fs/ext4/inode.c:1": the "+" of the frame is separated from the path by a space.
    report = " ext4_iget+0x1/0x2 fs/ext4/inode.c:10\n"
    assert guilty_file("BUG in ext4_iget", report) == "fs/ext4/inode.c"


def test_deeper_path_in_the_same_directory_keeps_plus() -> None:
    report = (f" a+0x1/0x2 {_BUILD}/x.c:1\n"
              f" b+0x1/0x2 {_BUILD}/sub+1/y.c:2\n")
    assert guilty_file("BUG in a", report) == f"{_BUILD}/sub+1/y.c"
