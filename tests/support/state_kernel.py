"""A synthetic two-CPU kernel for issue 18's machine-state helpers: per-CPU ``timer_bases`` (two
``struct timer_base`` with eight ``hlist_head`` buckets each, typed from the symbol's extent as
when BTF has no per-CPU VAR), ``hrtimer_bases`` (two clock bases with a ``timerqueue_head``),
``runqueues`` (``struct rq`` with a ``cfs_rq`` tree, an ``rt_rq`` priority array, a ``dl_rq`` tree
and an embedded ``fair_server``), a static ``irq_desc[]`` array (no ``CONFIG_SPARSE_IRQ``) with
per-CPU ``kstat_irqs``, and the ``chrdevs``/``cdev_map``/``major_names`` hashes. Builders lay out
tasks, timers and devices; every address is a constant of this module."""

from __future__ import annotations

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.memory import MemoryReader
from kcrash.types.btf import parse_btf
from kcrash.types.program import Program
from support.btf_write import BtfWriter
from support.synthetic_memory import SyntheticMemory

BASE = 0xFFFFFFFF81000000
TEXT = BASE + 0x100            # functions, 0x40 apart: FUNCS[name]
DATA = BASE + 0x2000           # globals
JIFFIES = DATA
NR_CPU_IDS, POSSIBLE, ONLINE, PCPU_OFFSETS = DATA + 0x10, DATA + 0x20, DATA + 0x30, DATA + 0x40
NR_IRQS, IRQ_DESC = DATA + 0x80, DATA + 0x100       # irq_desc[4], 48 bytes each
CHRDEVS, MAJOR_NAMES, CDEV_MAP = DATA + 0x400, DATA + 0xC00, DATA + 0x1400
CLASS_KSET, BLOCK_CLASS, BLOCK_SP = DATA + 0x1410, DATA + 0x1420, DATA + 0x1440  # block_class's subsys_private
HEAP = BASE + 0x4000           # tasks, timers, queues, devices: Kernel.alloc()
PCPU = BASE + 0x20000          # CPU c's per-CPU area at PCPU + c * PCPU_STRIDE
PCPU_STRIDE = 0x1000
END = BASE + 0x30000
# per-CPU symbols (linked at 0, as x86-64 links .data..percpu)
TIMER_BASES, HRTIMER_BASES, RUNQUEUES, KSTAT, PCPU_STATS = 0x0, 0x200, 0x300, 0xE00, 0xE40
TIMER_BASE_SIZE, NBUCKETS = 0x100, 8
FUNCS = ["process_timeout", "delayed_work_timer_fn", "tick_nohz_handler", "hrtimer_wakeup", "timer_interrupt",
         "irq_thread_fn", "handle_edge_irq", "memory_fops", "tty_fops"]
# struct rq member offsets
RQ_CFS, RQ_RT, RQ_DL, RQ_FAIR_SERVER, RQ_STOP = 40, 80, 1704, 1728, 1752
TASK_SIZE, TASK_SE, TASK_RT, TASK_DL = 0x80, 32, 64, 80


def func(name: str) -> int:
    """The address of function ``name`` of :data:`FUNCS`."""
    return TEXT + 0x40 * FUNCS.index(name)


def percpu(cpu: int, offset: int) -> int:
    """Where per-CPU offset ``offset`` lies for ``cpu``."""
    return PCPU + cpu * PCPU_STRIDE + offset


def _types() -> bytes:
    w = BtfWriter()
    i, u = w.add_int("int", 4, signed=True), w.add_int("unsigned int", 4)
    ul, s64 = w.add_int("long unsigned int", 8), w.add_int("long long int", 8, signed=True)
    c, vp = w.add_int("char", 1, signed=True, char=True), w.add_ptr(0)
    cp = w.add_ptr(c)
    lp = w.add_ptr(w.next_id + 1)
    lh = w.add_struct("list_head", 16, [("next", lp, 0, 0), ("prev", lp, 64, 0)])
    hn_p = w.add_ptr(w.next_id + 2)
    hn_pp = w.add_ptr(hn_p)
    hn = w.add_struct("hlist_node", 16, [("next", hn_p, 0, 0), ("pprev", hn_pp, 64, 0)])
    hh = w.add_struct("hlist_head", 8, [("first", hn_p, 0, 0)])
    rb_p = w.add_ptr(w.next_id + 1)
    rb = w.add_struct("rb_node", 24, [("__rb_parent_color", ul, 0, 0), ("rb_right", rb_p, 64, 0),
                                      ("rb_left", rb_p, 128, 0)])
    root = w.add_struct("rb_root", 8, [("rb_node", rb_p, 0, 0)])
    cached = w.add_struct("rb_root_cached", 16, [("rb_root", root, 0, 0), ("rb_leftmost", rb_p, 64, 0)])
    mask = w.add_struct("cpumask", 8, [("bits", w.add_array(ul, 1, i), 0, 0)])
    mask_var = w.add_typedef("cpumask_var_t", w.add_array(mask, 1, i))
    # timers
    w.add_struct("timer_list", 40, [("entry", hn, 0, 0), ("expires", ul, 128, 0), ("function", vp, 192, 0),
                                    ("flags", u, 256, 0)])
    w.add_struct("timer_base", TIMER_BASE_SIZE, [("clk", ul, 0, 0), ("next_expiry", ul, 64, 0), ("cpu", u, 128, 0),
                                                 ("vectors", w.add_array(hh, NBUCKETS, i), 512, 0)])
    tq_node = w.add_struct("timerqueue_node", 32, [("node", rb, 0, 0), ("expires", s64, 192, 0)])
    w.add_struct("hrtimer", 48, [("node", tq_node, 0, 0), ("_softexpires", s64, 256, 0), ("function", vp, 320, 0)])
    tq_head = w.add_struct("timerqueue_head", 16, [("rb_root", cached, 0, 0)])
    clock = w.add_struct("hrtimer_clock_base", 32, [("index", u, 0, 0), ("offset", s64, 64, 0),
                                                    ("active", tq_head, 128, 0)])
    w.add_struct("hrtimer_cpu_base", 64, [("clock_base", w.add_array(clock, 2, i), 0, 0)])
    w.add_enum("hrtimer_base_type", 4, [("HRTIMER_BASE_MONOTONIC", 0), ("HRTIMER_BASE_REALTIME", 1),
                                         ("HRTIMER_MAX_CLOCK_BASES", 2)])
    # scheduler: the pointers first, to ids fixed by the order below
    first = w.next_id
    task_p, cfs_p, se_p = w.add_ptr(first + 8), w.add_ptr(first + 4), w.add_ptr(first + 3)
    se = w.add_struct("sched_entity", 32, [("run_node", rb, 0, 0), ("my_q", cfs_p, 192, 0)])
    cfs = w.add_struct("cfs_rq", 40, [("h_nr_running", u, 0, 0), ("tasks_timeline", cached, 64, 0),
                                      ("curr", se_p, 192, 0)])
    rt_se = w.add_struct("sched_rt_entity", 16, [("run_list", lh, 0, 0)])
    dl_se = w.add_struct("sched_dl_entity", 24, [("rb_node", rb, 0, 0)])
    comm = w.add_array(c, 16, i)
    task = w.add_struct("task_struct", TASK_SIZE, [
        ("pid", i, 0, 0), ("prio", i, 32, 0), ("policy", u, 64, 0), ("on_rq", i, 96, 0), ("comm", comm, 128, 0),
        ("se", se, TASK_SE * 8, 0), ("rt", rt_se, TASK_RT * 8, 0), ("dl", dl_se, TASK_DL * 8, 0)])
    assert (se, cfs, task) == (first + 3, first + 4, first + 8)
    prio = w.add_struct("rt_prio_array", 1616, [("bitmap", w.add_array(ul, 2, i), 0, 0),
                                                ("queue", w.add_array(lh, 100, i), 128, 0)])
    rt = w.add_struct("rt_rq", 1624, [("active", prio, 0, 0), ("rt_nr_running", u, 1616 * 8, 0)])
    dl = w.add_struct("dl_rq", 24, [("root", cached, 0, 0), ("dl_nr_running", u, 128, 0)])
    w.add_struct("rq", 1760, [("nr_running", u, 0, 0), ("clock", ul, 64, 0), ("clock_task", ul, 128, 0),
                              ("curr", task_p, 192, 0), ("idle", task_p, 256, 0), ("cfs", cfs, RQ_CFS * 8, 0),
                              ("rt", rt, RQ_RT * 8, 0), ("dl", dl, RQ_DL * 8, 0),
                              ("fair_server", dl_se, RQ_FAIR_SERVER * 8, 0), ("stop", task_p, RQ_STOP * 8, 0)])
    # IRQs
    chip = w.add_struct("irq_chip", 8, [("name", cp, 0, 0)])
    action_p = w.add_ptr(w.next_id + 1)
    w.add_struct("irqaction", 32, [("handler", vp, 0, 0), ("thread_fn", vp, 64, 0), ("next", action_p, 128, 0),
                                   ("name", cp, 192, 0)])
    common = w.add_struct("irq_common_data", 8, [("affinity", mask_var, 0, 0)])
    data = w.add_struct("irq_data", 16, [("irq", u, 0, 0), ("chip", w.add_ptr(chip), 64, 0)])
    w.add_struct("irq_desc", 48, [("irq_common_data", common, 0, 0), ("irq_data", data, 64, 0),
                                  ("kstat_irqs", w.add_ptr(u), 192, 0), ("handle_irq", vp, 256, 0),
                                  ("action", action_p, 320, 0)])
    # devices
    cdev_p = w.add_ptr(w.next_id + 1)
    w.add_struct("cdev", 8, [("ops", vp, 0, 0)])
    cd_p = w.add_ptr(w.next_id + 1)
    w.add_struct("char_device_struct", 96, [("next", cd_p, 0, 0), ("major", u, 64, 0), ("baseminor", u, 96, 0),
                                            ("minorct", i, 128, 0), ("name", w.add_array(c, 64, i), 160, 0),
                                            ("cdev", cdev_p, 704, 0)])
    probe_p = w.add_ptr(w.next_id + 1)
    w.add_struct("probe", 24, [("next", probe_p, 0, 0), ("dev", u, 64, 0), ("data", vp, 128, 0)])
    w.add_struct("kobj_map", 255 * 8, [("probes", w.add_array(probe_p, 255, i), 0, 0)])
    bm_p = w.add_ptr(w.next_id + 1)
    w.add_struct("blk_major_name", 32, [("next", bm_p, 0, 0), ("major", i, 64, 0),
                                        ("name", w.add_array(c, 16, i), 96, 0)])
    # disks: block_class's devices through class_kset (see Kernel.disk)
    kobj = w.add_struct("kobject", 16, [("entry", lh, 0, 0)])
    kset = w.add_struct("kset", 32, [("list", lh, 0, 0), ("kobj", kobj, 128, 0)])
    w.add_struct("subsys_private", 56, [("subsys", kset, 0, 0),
                                        ("klist_devices", w.add_struct("klist", 16, [("k_list", lh, 0, 0)]), 256, 0),
                                        ("class", vp, 384, 0)])
    device = w.add_struct("device", 8, [("init_name", cp, 0, 0)])
    knode = w.add_struct("klist_node", 16, [("n_node", lh, 0, 0)])
    w.add_struct("device_private", 24, [("knode_class", knode, 0, 0), ("device", w.add_ptr(device), 128, 0)])
    first = w.next_id  # gendisk and request_queue come 6 and 7 records later
    disk_p, queue_p = w.add_ptr(first + 6), w.add_ptr(first + 7)
    uc = w.add_int("unsigned char", 1)
    bdev = w.add_struct("block_device", 32, [("bd_disk", disk_p, 0, 0), ("bd_partno", uc, 64, 0),
                                             ("bd_stats", vp, 128, 0), ("bd_device", device, 192, 0)])
    disk = w.add_struct("gendisk", 72, [("major", i, 0, 0), ("first_minor", i, 32, 0), ("minors", i, 64, 0),
                                        ("disk_name", w.add_array(c, 32, i), 96, 0),
                                        ("part0", w.add_ptr(bdev), 384, 0), ("fops", vp, 448, 0),
                                        ("queue", queue_p, 512, 0)])
    queue = w.add_struct("request_queue", 8, [("mq_ops", vp, 0, 0)])
    assert (disk, queue) == (first + 6, first + 7)
    w.add_struct("disk_stats", 56, [("io_ticks", ul, 0, 0), ("in_flight", w.add_array(s64, 2, i), 320, 0)])
    return w.to_bytes()


class Kernel(SyntheticMemory):
    """The two-CPU kernel; ``alloc`` hands out heap memory, the builders fill it."""

    def __init__(self) -> None:
        super().__init__({BASE: END - BASE})
        self.memory = self.regions[BASE]
        segments = self.segments()
        names = ["timer_bases", "hrtimer_bases", "runqueues", "kcrash_kstat", "_stext", *FUNCS, "jiffies_64",
                 "nr_cpu_ids", "__cpu_possible_mask", "__cpu_online_mask", "__per_cpu_offset", "nr_irqs", "irq_desc",
                 "chrdevs", "major_names", "cdev_map", "class_kset", "block_class", "_end"]
        addrs = [TIMER_BASES, HRTIMER_BASES, RUNQUEUES, KSTAT, BASE, *map(func, FUNCS), JIFFIES, NR_CPU_IDS,
                 POSSIBLE, ONLINE, PCPU_OFFSETS, NR_IRQS, IRQ_DESC, CHRDEVS, MAJOR_NAMES, CDEV_MAP, CLASS_KSET,
                 BLOCK_CLASS, END]
        kinds = "DDDD" + "T" * (1 + len(FUNCS)) + "D" * (len(names) - 5 - len(FUNCS))
        self.prog = Program(MemoryReader(segments), SymbolTable(names, addrs, kinds), parse_btf(_types()))
        self.heap = HEAP
        self.u32(NR_CPU_IDS, 2)
        self.u64(POSSIBLE, 0b11)
        self.u64(ONLINE, 0b01)  # CPU 1 stopped by the panic: offline, yet possible
        for cpu in range(2):
            self.u64(PCPU_OFFSETS + 8 * cpu, PCPU + cpu * PCPU_STRIDE)
            self.u32(percpu(cpu, TIMER_BASES) + 16, cpu)
            for base in range(2):
                self.ring_cached(percpu(cpu, HRTIMER_BASES) + 32 * base + 16)
            self.rq_init(cpu)
        self.disks: list[int] = []  # device_private.knode_class nodes on block_class's klist
        kset, other = self.alloc(32), self.alloc(56)  # class_kset, and another class's subsys_private
        self.u64(CLASS_KSET, kset)
        self.ring(kset, [other + 16, BLOCK_SP + 16])
        self.u64(BLOCK_SP + 48, BLOCK_CLASS)
        self.ring(BLOCK_SP + 32, [])

    # -- memory ---------------------------------------------------------------------------------

    def alloc(self, size: int) -> int:
        addr = self.heap
        self.heap += (size + 15) // 16 * 16
        return addr

    def word(self, addr: int, index: int) -> int:
        """The u64 at word ``index`` of the object at ``addr`` (word 8 of a gendisk: its queue)."""
        return int.from_bytes(self.memory[addr - BASE + 8 * index:addr - BASE + 8 * index + 8], "little")

    def string(self, text: bytes) -> int:
        addr = self.alloc(len(text) + 1)
        self.put(addr, text + b"\0")
        return addr

    def ring(self, head: int, nodes: list[int]) -> None:
        ring = [head, *nodes]
        for k, node in enumerate(ring):
            self.u64(node, ring[(k + 1) % len(ring)])
            self.u64(node + 8, ring[k - 1])

    def ring_cached(self, root: int) -> None:
        self.u64(root, 0)

    def rbtree(self, root: int, nodes: list[int]) -> None:
        """A balanced tree of ``nodes`` (in order) under ``struct rb_root`` at ``root``."""
        def place(lo: int, hi: int, parent: int) -> int:
            if lo >= hi:
                return 0
            mid = (lo + hi) // 2
            self.u64(nodes[mid], parent)
            self.u64(nodes[mid] + 16, place(lo, mid, nodes[mid]))
            self.u64(nodes[mid] + 8, place(mid + 1, hi, nodes[mid]))
            return nodes[mid]

        self.u64(root, place(0, len(nodes), 0))

    # -- timers ---------------------------------------------------------------------------------

    def timer(self, cpu: int, base: int, bucket: int, expires: int, function: int) -> int:
        """A ``timer_list`` pushed on bucket ``bucket`` of ``timer_bases[base]`` of ``cpu``."""
        head = percpu(cpu, TIMER_BASES) + base * TIMER_BASE_SIZE + 64 + 8 * bucket
        timer = self.alloc(40)
        first = int.from_bytes(self.memory[head - BASE:head - BASE + 8], "little")
        self.u64(timer, first)
        self.u64(timer + 8, head)
        if first:
            self.u64(first + 8, timer)
        self.u64(head, timer)
        self.u64(timer + 16, expires)
        self.u64(timer + 24, function)
        return timer

    def hrtimers(self, cpu: int, base: int, timers: list[tuple[int, int, int]]) -> list[int]:
        """``(softexpires, expires, function)`` hrtimers, in expiry order, on a clock base."""
        addrs = [self.alloc(48) for _ in timers]
        for addr, (soft, expires, function) in zip(addrs, timers, strict=True):
            self.u64(addr + 24, expires)
            self.u64(addr + 32, soft)
            self.u64(addr + 40, function)
        clock = percpu(cpu, HRTIMER_BASES) + 32 * base
        self.u32(clock, base)
        self.rbtree(clock + 16, addrs)
        return addrs

    # -- run queues -----------------------------------------------------------------------------

    def rq(self, cpu: int) -> int:
        return percpu(cpu, RUNQUEUES)

    def rq_init(self, cpu: int) -> None:
        rq = self.rq(cpu)
        for prio in range(100):
            self.ring(rq + RQ_RT + 16 + 16 * prio, [])

    def task(self, pid: int, comm: bytes, *, prio: int = 120, policy: int = 0, on_rq: int = 1) -> int:
        addr = self.alloc(TASK_SIZE)
        self.u32(addr + 12, on_rq)
        self.u32(addr, pid)
        self.u32(addr + 4, prio)
        self.u32(addr + 8, policy)
        self.put(addr + 16, comm.ljust(16, b"\0"))
        return addr

    def runqueue(self, cpu: int, *, curr: int, idle: int, nr_running: int, clock: int, stop: int = 0) -> None:
        rq = self.rq(cpu)
        self.u64(rq + RQ_STOP, stop)
        self.u32(rq, nr_running)
        self.u64(rq + 8, clock)
        self.u64(rq + 16, clock - 5)
        self.u64(rq + 24, curr)
        self.u64(rq + 32, idle)

    def cfs_tree(self, cfs_rq: int, entities: list[int], *, curr: int = 0) -> None:
        self.rbtree(cfs_rq + 8, entities)
        self.u64(cfs_rq + 24, curr)

    def group(self, tasks: list[int]) -> int:
        """A task-group entity (not in a task) whose own cfs_rq queues ``tasks``; returns the entity."""
        se, cfs_rq = self.alloc(32), self.alloc(40)
        self.u64(se + 24, cfs_rq)
        self.cfs_tree(cfs_rq, [t + TASK_SE for t in tasks])
        return se

    def rt_queue(self, cpu: int, prio: int, tasks: list[int]) -> None:
        rq = self.rq(cpu)
        bitmap = int.from_bytes(self.memory[rq + RQ_RT - BASE:rq + RQ_RT - BASE + 16], "little") | 1 << prio
        self.put(rq + RQ_RT, bitmap.to_bytes(16, "little"))
        self.ring(rq + RQ_RT + 16 + 16 * prio, [t + TASK_RT for t in tasks])

    def dl_tree(self, cpu: int, entities: list[int]) -> None:
        self.rbtree(self.rq(cpu) + RQ_DL, entities)

    # -- IRQs and devices -----------------------------------------------------------------------

    def irq(self, irq: int, *, chip: bytes, counts: tuple[int, int], affinity: int,
            actions: list[tuple[bytes, int, int]]) -> int:
        """``irq_desc[irq]`` with per-CPU counts, an affinity mask and ``(name, handler, thread_fn)``
        actions; returns the descriptor."""
        desc = IRQ_DESC + 48 * irq
        self.u32(NR_IRQS, max(irq + 1, int.from_bytes(self.memory[NR_IRQS - BASE:NR_IRQS - BASE + 4], "little")))
        self.u64(desc, affinity)
        self.u32(desc + 8, irq)
        chip_struct = self.alloc(8)
        self.u64(chip_struct, self.string(chip))
        self.u64(desc + 16, chip_struct)
        self.u64(desc + 24, KSTAT + 4 * irq)
        for cpu, count in enumerate(counts):
            self.u32(percpu(cpu, KSTAT) + 4 * irq, count)
        self.u64(desc + 32, func("handle_edge_irq"))
        nodes = [self.alloc(32) for _ in actions]
        for k, (node, (name, handler, thread_fn)) in enumerate(zip(nodes, actions, strict=True)):
            self.u64(node, handler)
            self.u64(node + 8, thread_fn)
            self.u64(node + 16, nodes[k + 1] if k + 1 < len(nodes) else 0)
            self.u64(node + 24, self.string(name))
        self.u64(desc + 40, nodes[0] if nodes else 0)
        return desc

    def chrdev(self, major: int, baseminor: int, minorct: int, name: bytes, *, ops: int, mapped: bool = False) -> int:
        """A ``char_device_struct`` on ``chrdevs[major % 255]`` with a cdev of ``ops`` (held by
        ``cdev_map`` instead when ``mapped``); returns the cdev."""
        cd, cdev = self.alloc(96), self.alloc(8)
        self.u64(cdev, ops)
        head = CHRDEVS + 8 * (major % 255)
        self.u64(cd, int.from_bytes(self.memory[head - BASE:head - BASE + 8], "little"))
        self.u64(head, cd)
        self.u32(cd + 8, major)
        self.u32(cd + 12, baseminor)
        self.u32(cd + 16, minorct)
        self.put(cd + 20, name)
        if not mapped:
            self.u64(cd + 88, cdev)
            return cdev
        probe, sentinel = self.alloc(24), self.alloc(24)
        self.u64(probe, sentinel)
        self.u32(probe + 8, major << 20 | baseminor)
        self.u64(probe + 16, cdev)
        kobj_map = self.alloc(255 * 8)
        self.u64(CDEV_MAP, kobj_map)
        self.u64(kobj_map + 8 * (major % 255), probe)
        return cdev

    def disk(self, name: bytes, major: int, *, mq: bool, partitions: int = 0,
             in_flight: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))) -> int:
        """A gendisk on block_class (its whole-disk block_device, then ``partitions`` partitions),
        with per-CPU ``in_flight`` (reads, writes) counters; returns the gendisk."""
        disk, queue, stats = self.alloc(72), self.alloc(8), PCPU_STATS + 0x40 * len(self.disks)
        self.u32(disk, major)
        self.put(disk + 12, name)
        self.u64(disk + 56, func("tty_fops"))
        self.u64(disk + 64, queue)
        self.u64(queue, func("handle_edge_irq") if mq else 0)
        for cpu, (reads, writes) in enumerate(in_flight):
            self.u64(percpu(cpu, stats) + 40, reads)
            self.u64(percpu(cpu, stats) + 48, writes)
        for partno in range(partitions + 1):
            bdev, priv = self.alloc(32), self.alloc(24)
            self.u64(bdev, disk)
            self.put(bdev + 8, bytes([partno]))
            self.u64(bdev + 16, stats)
            self.u64(priv + 16, bdev + 24)
            if partno == 0:
                self.u64(disk + 48, bdev)
            self.disks.append(priv)
        self.ring(BLOCK_SP + 32, self.disks)
        return disk

    def blkdev(self, major: int, name: bytes) -> int:
        node = self.alloc(32)
        self.u32(node + 8, major)
        self.put(node + 12, name)
        self.u64(MAJOR_NAMES + 8 * (major % 255), node)
        return node



def sample() -> tuple[Kernel, dict[str, int]]:
    """A populated kernel: timers on both CPUs, hrtimers on CPU 0, CPU 0 running ``init`` with two
    fair tasks (one in a task group), an RT task, a DL task and the stopper queued, CPU 1 idle (its
    stopper not queued); IRQ 0 (timer)
    and IRQ 3 (a shared line with a threaded action); three char ranges (one through cdev_map)
    and one block major; disks vda (blk-mq, two partitions) and ram0 (bio-based, two reads and
    three writes in flight over the two CPUs' counters). Returns the kernel and the named addresses."""
    k = Kernel()
    k.u64(JIFFIES, 5000)
    named = {
        "timer_a": k.timer(0, 0, 2, 5100, func("process_timeout")),
        "timer_b": k.timer(0, 0, 2, 5050, func("delayed_work_timer_fn")),
        "timer_c": k.timer(1, 1, 7, 9000, func("process_timeout") + 0x10),
    }
    hr = k.hrtimers(0, 0, [(100, 150, func("tick_nohz_handler")), (200, 200, func("hrtimer_wakeup"))])
    named |= {"hrtimer_a": hr[0], "hrtimer_b": hr[1]}
    init, idle0, idle1 = k.task(1, b"init"), k.task(0, b"swapper/0", prio=120), k.task(0, b"swapper/1")
    fair, grouped = k.task(20, b"kworker/0:1"), k.task(21, b"grouped")
    stop0, stop1 = k.task(22, b"migration/0", prio=0, on_rq=1), k.task(23, b"migration/1", prio=0, on_rq=0)
    rt, dl = k.task(30, b"migration/0", prio=0, policy=1), k.task(40, b"dl_task", prio=-1, policy=6)
    named |= {"init": init, "fair": fair, "grouped": grouped, "rt": rt, "dl": dl, "idle1": idle1, "stop0": stop0}
    k.runqueue(0, curr=init, idle=idle0, nr_running=6, clock=123456, stop=stop0)
    k.runqueue(1, curr=idle1, idle=idle1, nr_running=0, clock=654321, stop=stop1)
    rq0 = k.rq(0)
    k.cfs_tree(rq0 + RQ_CFS, [fair + TASK_SE, k.group([grouped])], curr=init + TASK_SE)
    k.rt_queue(0, 0, [rt])
    k.dl_tree(0, [rq0 + RQ_FAIR_SERVER, dl + TASK_DL])
    named["irq0"] = k.irq(0, chip=b"IO-APIC", counts=(120, 3), affinity=0b11,
                          actions=[(b"timer", func("timer_interrupt"), 0)])
    named["irq3"] = k.irq(3, chip=b"IO-APIC", counts=(0, 7), affinity=0b10,
                          actions=[(b"eth0", func("timer_interrupt") + 4, 0), (b"", 0, func("irq_thread_fn"))])
    named["mem"] = k.chrdev(1, 0, 256, b"mem", ops=func("memory_fops"))
    named["tty"] = k.chrdev(4, 1, 63, b"tty", ops=func("tty_fops"))
    named["input"] = k.chrdev(13, 0, 1024, b"input", ops=func("tty_fops"), mapped=True)
    named["blkext"] = k.blkdev(259, b"blkext")
    named["vda"] = k.disk(b"vda", 253, mq=True, partitions=2)
    named["ram0"] = k.disk(b"ram0", 1, mq=False, in_flight=((3, -1), (-1, 4)))
    return k, named
