"""A synthetic kernel with files, mounts, network devices and sockets, for the fs and net helpers
and :mod:`kcrash.analysis.system`: tasks with ``files``/``fs``/``nsproxy``, descriptor tables
(``fdtable``: ``max_fds``, ``fd[]``, ``open_fds``), dentries, inodes, superblocks and mounts (a
mount namespace as a list, or as the v6.8 rbtree with ``rbtree=True``), ``init_net`` with devices
and IPv4/IPv6 addresses, socket files (``socket_file_ops``) and the TCP established hash. Structures
are laid out member after member at 8-byte alignment; :meth:`Kernel.off` gives a member's offset."""

from __future__ import annotations

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.memory import MemoryReader
from kcrash.types.btf import parse_btf
from kcrash.types.object import Object
from kcrash.types.program import Program
from support.btf_write import BtfWriter
from support.synthetic_memory import SyntheticMemory

BASE = 0xFFFFFFFF81000000
SYMS = BASE + 0x100  # socket_file_ops, pipefs_dname, sockfs_dname, other_dname (0x40 apart)
INIT_TASK = BASE + 0x1000
INIT_NET = BASE + 0x2000
NET_NAMESPACE_LIST = BASE + 0x2800
TCP_HASHINFO = BASE + 0x2900
HEAP = BASE + 0x4000
END = BASE + 0x40000
EHASH_BUCKETS = 8


class Kernel(SyntheticMemory):
    """Build with the methods below; ``prog`` reads it."""

    def __init__(self, *, rbtree: bool = False) -> None:
        self.w = BtfWriter()
        self.sizes: dict[str, int] = {}
        self.offsets: dict[tuple[str, str], int] = {}
        self.ids: dict[str, int] = {}
        self._pointers: list[tuple[int, str]] = []
        self._types(rbtree)
        self._link_pointers()
        super().__init__({BASE: END - BASE})
        self.memory = self.regions[BASE]
        self.next = HEAP
        self.rbtree = rbtree
        segments = self.segments()
        names = ["_stext", "socket_file_ops", "pipefs_dname", "sockfs_dname", "other_dname", "init_task",
                 "init_net", "net_namespace_list", "tcp_hashinfo", "_end"]
        addrs = [BASE, SYMS, SYMS + 0x40, SYMS + 0x80, SYMS + 0xC0, INIT_TASK, INIT_NET, NET_NAMESPACE_LIST,
                 TCP_HASHINFO, END]
        self.prog = Program(MemoryReader(segments), SymbolTable(names, addrs, "TDTTTDDDDD"),
                            parse_btf(self.w.to_bytes()))
        self.tasks: list[int] = []
        self.devices: list[int] = []
        self.ring(INIT_TASK + self.off("task_struct", "tasks"), [])
        self.ring(NET_NAMESPACE_LIST, [INIT_NET + self.off("net", "list")])
        self.ring(INIT_NET + self.off("net", "dev_base_head"), [])
        ehash = self.alloc(8 * EHASH_BUCKETS)
        for i in range(EHASH_BUCKETS):
            self.u64(ehash + 8 * i, i << 1 | 1)  # empty nulls chains
        self.u64(TCP_HASHINFO + self.off("inet_hashinfo", "ehash"), ehash)
        self.u32(TCP_HASHINFO + self.off("inet_hashinfo", "ehash_mask"), EHASH_BUCKETS - 1)
        self.ehash = ehash
        self.ns = self.alloc(self.sizes["mnt_namespace"])
        if not rbtree:
            self.ring(self.ns + self.off("mnt_namespace", "list"), [])
        self.mounts: list[int] = []

    # -- types ----------------------------------------------------------------------------------

    def struct(self, name: str, members: list[tuple[str, int, int]]) -> int:
        # members: (name, type id, size); each at the next multiple of min(size, 8)
        offset, out = 0, []
        for member, type_id, size in members:
            align = min(size, 8) or 1
            offset = (offset + align - 1) // align * align
            self.offsets[name, member] = offset
            out.append((member, type_id, offset * 8, 0))
            offset += size
        size = (offset + 7) // 8 * 8
        self.sizes[name] = size
        type_id = self.w.add_struct(name, size, out)
        self.ids[name] = type_id
        return type_id

    def ptr(self, name: str) -> int:
        # a pointer to struct ``name``, which may come later: its target is set by _link_pointers
        type_id = self.w.add_ptr(0)
        self._pointers.append((type_id, name))
        return type_id

    def _link_pointers(self) -> None:
        # a PTR record is [name, info, type]; the writer's records are numbered from 1
        for type_id, name in self._pointers:
            self.w._records[type_id - 1][2] = self.ids[name]

    def _types(self, rbtree: bool) -> None:
        w = self.w
        u8, u16 = w.add_int("unsigned char", 1), w.add_int("short unsigned int", 2)
        i32, u32 = w.add_int("int", 4, signed=True), w.add_int("unsigned int", 4)
        u64 = w.add_int("long unsigned int", 8)
        c = w.add_int("char", 1, signed=True, char=True)
        cp, vp = w.add_ptr(c), w.add_ptr(0)
        comm = w.add_array(c, 16, i32)
        lh = self.struct("list_head", [("next", self.ptr("list_head"), 8), ("prev", self.ptr("list_head"), 8)])
        rb = self.struct("rb_node", [("__rb_parent_color", u64, 8), ("rb_right", self.ptr("rb_node"), 8),
                                     ("rb_left", self.ptr("rb_node"), 8)])
        rbroot = self.struct("rb_root", [("rb_node", self.ptr("rb_node"), 8)])
        nulls = self.struct("hlist_nulls_node", [("next", self.ptr("hlist_nulls_node"), 8), ("pprev", vp, 8)])
        self.struct("file_system_type", [("name", cp, 8)])
        self.struct("super_block", [("s_type", self.ptr("file_system_type"), 8), ("s_subtype", cp, 8)])
        self.struct("inode", [("i_mode", u16, 2), ("i_ino", u64, 8), ("i_sb", self.ptr("super_block"), 8)])
        self.struct("dentry_operations", [("d_dname", vp, 8)])
        qstr = self.struct("qstr", [("hash_len", u64, 8), ("name", cp, 8)])
        self.struct("dentry", [("d_parent", self.ptr("dentry"), 8), ("d_name", qstr, 16),
                               ("d_inode", self.ptr("inode"), 8), ("d_op", self.ptr("dentry_operations"), 8)])
        vfsmount = self.struct("vfsmount", [("mnt_root", self.ptr("dentry"), 8),
                                            ("mnt_sb", self.ptr("super_block"), 8), ("mnt_flags", i32, 4)])
        path = self.struct("path", [("mnt", self.ptr("vfsmount"), 8), ("dentry", self.ptr("dentry"), 8)])
        link = [("mnt_node", rb, 24)] if rbtree else [("mnt_list", lh, 16)]
        self.struct("mount", [("mnt_parent", self.ptr("mount"), 8), ("mnt_mountpoint", self.ptr("dentry"), 8),
                              ("mnt", vfsmount, self.sizes["vfsmount"]), ("mnt_devname", cp, 8), *link])
        self.struct("mnt_namespace", [("ns", u64, 8), ("mounts", rbroot, 8)] if rbtree else [("list", lh, 16)])
        self.struct("nsproxy", [("mnt_ns", self.ptr("mnt_namespace"), 8)])
        self.struct("fs_struct", [("root", path, 16), ("pwd", path, 16)])
        self.struct("file", [("f_path", path, 16), ("f_op", vp, 8), ("private_data", vp, 8)])
        self.struct("fdtable", [("max_fds", u32, 4), ("fd", w.add_ptr(self.ptr("file")), 8),
                                ("open_fds", w.add_ptr(u64), 8)])
        self.struct("files_struct", [("fdt", self.ptr("fdtable"), 8)])
        self.struct("task_struct", [("pid", i32, 4), ("comm", comm, 16), ("tasks", lh, 16),
                                    ("signal", vp, 8), ("files", self.ptr("files_struct"), 8),
                                    ("fs", self.ptr("fs_struct"), 8), ("nsproxy", self.ptr("nsproxy"), 8)])
        # network
        label = w.add_array(c, 16, i32)
        self.struct("in_ifaddr", [("ifa_next", self.ptr("in_ifaddr"), 8), ("ifa_local", u32, 4),
                                  ("ifa_address", u32, 4), ("ifa_prefixlen", u8, 1), ("ifa_label", label, 16)])
        self.struct("in_device", [("ifa_list", self.ptr("in_ifaddr"), 8)])
        a16 = w.add_array(u8, 16, i32)
        in6 = self.struct("in6_addr", [("s6_addr", a16, 16)])
        self.struct("inet6_ifaddr", [("addr", in6, 16), ("prefix_len", u32, 4), ("scope", i32, 4),
                                     ("if_list", lh, 16)])
        self.struct("inet6_dev", [("addr_list", lh, 16)])
        self.struct("net_device", [("name", comm, 16), ("dev_list", lh, 16), ("ifindex", i32, 4),
                                   ("flags", u32, 4), ("mtu", u32, 4), ("operstate", u8, 1), ("addr_len", u8, 1),
                                   ("dev_addr", w.add_ptr(u8), 8), ("ip_ptr", self.ptr("in_device"), 8),
                                   ("ip6_ptr", self.ptr("inet6_dev"), 8)])
        self.struct("net", [("list", lh, 16), ("dev_base_head", lh, 16)])
        common = self.struct("sock_common", [
            ("skc_daddr", u32, 4), ("skc_rcv_saddr", u32, 4), ("skc_dport", u16, 2), ("skc_num", u16, 2),
            ("skc_family", u16, 2), ("skc_state", u8, 1), ("skc_nulls_node", nulls, 16),
            ("skc_v6_daddr", in6, 16), ("skc_v6_rcv_saddr", in6, 16)])
        sock = self.struct("sock", [("__sk_common", common, self.sizes["sock_common"]), ("sk_protocol", u16, 2)])
        self.struct("socket", [("state", i32, 4), ("type", u16, 2), ("sk", self.ptr("sock"), 8)])
        self.struct("unix_address", [("refcnt", u32, 4), ("len", i32, 4), ("name", w.add_array(c, 110, i32), 110)])
        self.struct("unix_sock", [("sk", sock, self.sizes["sock"]), ("addr", self.ptr("unix_address"), 8)])
        self.struct("inet_ehash_bucket", [("chain", vp, 8)])
        self.struct("inet_hashinfo", [("ehash", self.ptr("inet_ehash_bucket"), 8), ("ehash_mask", u32, 4)])

    def off(self, struct: str, member: str) -> int:
        return self.offsets[struct, member]

    # -- memory ---------------------------------------------------------------------------------

    def u16(self, addr: int, value: int) -> None:
        self.put(addr, value.to_bytes(2, "little"))

    def alloc(self, size: int) -> int:
        addr = self.next
        self.next += (size + 15) // 16 * 16
        return addr

    def string(self, text: bytes) -> int:
        addr = self.alloc(len(text) + 1)
        self.put(addr, text)
        return addr

    def new(self, struct: str, **members: int) -> int:
        addr = self.alloc(self.sizes[struct])
        for member, value in members.items():
            self.u64(addr + self.off(struct, member), value)
        return addr

    def ring(self, head: int, nodes: list[int]) -> None:
        ring = [head, *nodes]
        for k, node in enumerate(ring):
            self.u64(node, ring[(k + 1) % len(ring)])
            self.u64(node + 8, ring[k - 1])

    def obj(self, struct: str, addr: int) -> Object:
        return Object(self.prog, self.prog.pointer_type(f"struct {struct}"), addr)

    # -- filesystems ----------------------------------------------------------------------------

    def dentry(self, name: bytes, parent: int | None, *, mode: int = 0o100644, ino: int = 0, sb: int = 0,
               dname: int = 0) -> int:
        """A dentry (its own parent when ``parent`` is None) with an inode of ``mode``."""
        inode = self.new("inode", i_ino=ino, i_sb=sb)
        self.u16(inode + self.off("inode", "i_mode"), mode)
        d_op = self.new("dentry_operations", d_dname=dname) if dname else 0
        addr = self.alloc(self.sizes["dentry"])
        self.u64(addr + self.off("dentry", "d_parent"), addr if parent is None else parent)
        self.u64(addr + self.off("dentry", "d_name") + 8, self.string(name))
        self.u64(addr + self.off("dentry", "d_inode"), inode)
        self.u64(addr + self.off("dentry", "d_op"), d_op)
        return addr

    def superblock(self, fstype: bytes, subtype: bytes = b"") -> int:
        fs_type = self.new("file_system_type", name=self.string(fstype))
        return self.new("super_block", s_type=fs_type, s_subtype=self.string(subtype) if subtype else 0)

    def mount(self, sb: int, root: int, devname: bytes, parent: int | None = None, mountpoint: int = 0) -> int:
        """A mount of ``sb`` whose root is dentry ``root``, on ``mountpoint`` in ``parent`` (itself
        when None), appended to the namespace."""
        addr = self.alloc(self.sizes["mount"])
        mnt = addr + self.off("mount", "mnt")
        self.u64(addr + self.off("mount", "mnt_parent"), addr if parent is None else parent)
        self.u64(addr + self.off("mount", "mnt_mountpoint"), mountpoint or root)
        self.u64(mnt + self.off("vfsmount", "mnt_root"), root)
        self.u64(mnt + self.off("vfsmount", "mnt_sb"), sb)
        self.u64(addr + self.off("mount", "mnt_devname"), self.string(devname))
        self.mounts.append(addr)
        if self.rbtree:
            self._rb_chain()
        else:
            self.ring(self.ns + self.off("mnt_namespace", "list"), [m + self.off("mount", "mnt_list")
                                                                    for m in self.mounts])
        return addr

    def _rb_chain(self) -> None:
        # a right-leaning chain: each mount's rb_right is the next one (in order)
        node_off = self.off("mount", "mnt_node")
        nodes = [m + node_off for m in self.mounts]
        for k, node in enumerate(nodes):
            self.u64(node, nodes[k - 1] if k else 0)
            self.u64(node + 8, nodes[k + 1] if k + 1 < len(nodes) else 0)
            self.u64(node + 16, 0)
        self.u64(self.ns + self.off("mnt_namespace", "mounts"), nodes[0])

    def vfsmount(self, mount: int) -> int:
        return mount + self.off("mount", "mnt")

    def file(self, mount: int, dentry: int, *, f_op: int = 0, private: int = 0) -> int:
        addr = self.new("file", f_op=f_op, private_data=private)
        self.u64(addr + self.off("file", "f_path"), self.vfsmount(mount))
        self.u64(addr + self.off("file", "f_path") + 8, dentry)
        return addr

    def task(self, pid: int, comm: bytes, files: dict[int, int], *, max_fds: int = 64,
             reserved: tuple[int, ...] = (), root: tuple[int, int] = (0, 0),
             cwd: tuple[int, int] = (0, 0)) -> int:
        """A task holding ``files`` (fd -> struct file address; ``reserved`` fds are open but
        NULL), with root and cwd as (mount, dentry)."""
        fd_array = self.alloc(8 * max_fds)
        bitmap = self.alloc((max_fds + 63) // 64 * 8)
        bits = 0
        for fd, file in files.items():
            self.u64(fd_array + 8 * fd, file)
            bits |= 1 << fd
        for fd in reserved:
            bits |= 1 << fd
        self.put(bitmap, bits.to_bytes((max_fds + 63) // 64 * 8, "little"))
        fdt = self.new("fdtable", fd=fd_array, open_fds=bitmap)
        self.u32(fdt + self.off("fdtable", "max_fds"), max_fds)
        fs_struct = self.alloc(self.sizes["fs_struct"])
        for member, (mount, dentry) in (("root", root), ("pwd", cwd)):
            self.u64(fs_struct + self.off("fs_struct", member), self.vfsmount(mount) if mount else 0)
            self.u64(fs_struct + self.off("fs_struct", member) + 8, dentry)
        addr = self.alloc(self.sizes["task_struct"])
        self.u32(addr + self.off("task_struct", "pid"), pid)
        self.put(addr + self.off("task_struct", "comm"), comm.ljust(16, b"\0"))
        self.u64(addr + self.off("task_struct", "files"), self.new("files_struct", fdt=fdt))
        self.u64(addr + self.off("task_struct", "fs"), fs_struct)
        self.tasks.append(addr)
        self.ring(INIT_TASK + self.off("task_struct", "tasks"),
                  [t + self.off("task_struct", "tasks") for t in self.tasks])
        return addr

    def namespace_owner(self) -> None:
        """Point ``init_task.nsproxy->mnt_ns`` at the namespace."""
        self.u64(INIT_TASK + self.off("task_struct", "nsproxy"), self.new("nsproxy", mnt_ns=self.ns))

    # -- network --------------------------------------------------------------------------------

    def netdev(self, name: bytes, ifindex: int, flags: int, *, mtu: int = 1500, operstate: int = 0,
               mac: bytes = b"", ipv4: tuple[tuple[bytes, int, bytes], ...] = (),
               ipv6: tuple[tuple[bytes, int, int], ...] = ()) -> int:
        """A device on ``init_net``: IPv4 (address, prefix, label), IPv6 (16 bytes, prefix, scope)."""
        dev = self.alloc(self.sizes["net_device"])
        self.put(dev, name.ljust(16, b"\0"))
        for member, value in (("ifindex", ifindex), ("flags", flags), ("mtu", mtu)):
            self.u32(dev + self.off("net_device", member), value)
        self.put(dev + self.off("net_device", "operstate"), bytes([operstate, len(mac)]))
        self.u64(dev + self.off("net_device", "dev_addr"), self.string(mac) if mac else 0)
        self.u64(dev + self.off("net_device", "ip_ptr"), self._in_device(ipv4) if ipv4 else 0)
        self.u64(dev + self.off("net_device", "ip6_ptr"), self._inet6_dev(ipv6))
        self.devices.append(dev)
        self.ring(INIT_NET + self.off("net", "dev_base_head"),
                  [d + self.off("net_device", "dev_list") for d in self.devices])
        return dev

    def _in_device(self, addresses: tuple[tuple[bytes, int, bytes], ...]) -> int:
        following = 0
        for address, prefix, label in reversed(addresses):
            ifa = self.new("in_ifaddr", ifa_next=following)
            self.put(ifa + self.off("in_ifaddr", "ifa_local"), address)
            self.put(ifa + self.off("in_ifaddr", "ifa_address"), address)
            self.put(ifa + self.off("in_ifaddr", "ifa_prefixlen"), bytes([prefix]))
            self.put(ifa + self.off("in_ifaddr", "ifa_label"), label)
            following = ifa
        return self.new("in_device", ifa_list=following)

    def _inet6_dev(self, addresses: tuple[tuple[bytes, int, int], ...]) -> int:
        in6 = self.alloc(self.sizes["inet6_dev"])
        nodes = []
        for address, prefix, scope in addresses:
            ifa = self.alloc(self.sizes["inet6_ifaddr"])
            self.put(ifa, address)
            self.u32(ifa + self.off("inet6_ifaddr", "prefix_len"), prefix)
            self.u32(ifa + self.off("inet6_ifaddr", "scope"), scope)
            nodes.append(ifa + self.off("inet6_ifaddr", "if_list"))
        self.ring(in6, nodes)
        return in6

    def sock(self, family: int, state: int, protocol: int, *, local: bytes = b"", remote: bytes = b"",
             lport: int = 0, rport: int = 0, unix_path: bytes | None = None) -> int:
        """A ``struct sock`` (inside a ``struct unix_sock`` for AF_UNIX); addresses are 4 or 16 bytes."""
        sk = self.alloc(self.sizes["unix_sock"])
        common = sk
        self.u16(common + self.off("sock_common", "skc_family"), family)
        self.put(common + self.off("sock_common", "skc_state"), bytes([state]))
        self.u16(common + self.off("sock_common", "skc_num"), lport)
        self.put(common + self.off("sock_common", "skc_dport"), rport.to_bytes(2, "big"))
        v6 = len(local) == 16
        self.put(common + self.off("sock_common", "skc_v6_rcv_saddr" if v6 else "skc_rcv_saddr"), local)
        self.put(common + self.off("sock_common", "skc_v6_daddr" if v6 else "skc_daddr"), remote)
        self.u16(sk + self.off("sock", "sk_protocol"), protocol)
        if unix_path is not None:
            addr = self.alloc(self.sizes["unix_address"])
            self.u32(addr + self.off("unix_address", "len"), 2 + len(unix_path) + (unix_path[:1] != b"\0"))
            self.put(addr + self.off("unix_address", "name") + 2, unix_path)
            self.u64(sk + self.off("unix_sock", "addr"), addr)
        return sk

    def socket_file(self, mount: int, sk: int, sock_type: int, ino: int) -> int:
        """A socket file (``f_op`` = ``socket_file_ops``, dentry named by ``sockfs_dname``)."""
        socket = self.new("socket", sk=sk)
        self.u16(socket + self.off("socket", "type"), sock_type)
        dentry = self.dentry(b"", None, mode=0o140777, ino=ino, dname=SYMS + 0x80)
        return self.file(mount, dentry, f_op=SYMS, private=socket)

    def hash_tcp(self, sks: list[int], bucket: int = 0) -> None:
        """Chain ``sks`` (``struct sock``) in bucket ``bucket`` of the established hash."""
        node_off = self.off("sock_common", "skc_nulls_node")
        nodes = [sk + node_off for sk in sks]
        self.u64(self.ehash + 8 * bucket, nodes[0] if nodes else bucket << 1 | 1)
        for k, node in enumerate(nodes):
            self.u64(node, nodes[k + 1] if k + 1 < len(nodes) else bucket << 1 | 1)
