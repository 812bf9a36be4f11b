"""memory.arch.x86_64: the x86-64 KernelArch — the image's linear rule, the module area, the panic CPU by hlt."""

from __future__ import annotations

from kcrash.dumps.base import MemorySegment
from kcrash.dumps.cpustate import CpuState, PrStatus
from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.memory.arch import kernel_arch
from kcrash.memory.arch.x86_64 import MODULES_END, X86_64Kernel, kernel_image_end
from kcrash.memory.layout import KernelLayout
from kcrash.memory.reader import MemoryReader
from kcrash.memory.segments import SegmentMap


def test_image_rule_and_module_range() -> None:
    arch = X86_64Kernel()
    assert kernel_arch("x86_64").machine == "x86_64"
    info = parse_vmcoreinfo("NUMBER(KERNEL_IMAGE_SIZE)=536870912\n")
    layout = KernelLayout(0x1000, 4, 0, 0x2000000, "vmcoreinfo")
    assert arch.image_physical_or_none(0xFFFFFFFF81000000, layout, info) == 0x3000000
    assert arch.image_physical_or_none(0xFFFFFFFFA0000000, layout, info) is None  # past the 512 MiB image
    assert arch.module_range(info, layout) == (kernel_image_end(info), MODULES_END) == (0xFFFFFFFFA0000000,
                                                                                      0xFFFFFFFFFF000000)
    assert arch.module_range(None, layout)[0] == 0xFFFFFFFFC0000000
    assert arch.image_start(info, layout) == 0xFFFFFFFF80000000


def test_panic_cpu_is_the_one_not_halted() -> None:
    text = bytes([0x90, 0xF4, 0x90, 0x90])  # nop; hlt; nop; nop at 0x1000
    memory = MemoryReader(SegmentMap([MemorySegment(0x1000, 4, lambda a, n: text[a - 0x1000:a - 0x1000 + n],
                                                    False)]))
    cpus = [CpuState(0, PrStatus(1, 0, {"rip": 0x1002}), None), CpuState(1, PrStatus(2, 0, {"rip": 0x1001}), None)]
    assert X86_64Kernel().panic_cpu_or_none(memory, cpus) == 1
    assert X86_64Kernel().panic_cpu_or_none(memory, cpus[:1]) is None
