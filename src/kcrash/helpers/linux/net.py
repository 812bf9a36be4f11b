"""
kcrash.helpers.linux.net
========================

Network namespaces, devices and sockets (``include/linux/netdevice.h``, ``include/linux/inetdevice.h``,
``include/net/if_inet6.h``, ``include/linux/net.h``, ``include/net/sock.h``) under drgn's names where
drgn has them: :func:`for_each_net` (``net_namespace_list``), :func:`for_each_netdev` (a namespace's
``dev_base_head``), :func:`netdev_name`; then :func:`netdev_ipv4_addrs` (``ip_ptr->ifa_list``),
:func:`netdev_ipv6_addrs` (``ip6_ptr->addr_list``) as drgn's, with prefix and label
:func:`netdev_ipv4_ifaddrs` and :func:`netdev_ipv6_ifaddrs`, :func:`netdev_mac`, :func:`netdev_flag_names`
and :func:`netdev_operstate`; and for sockets :func:`sock_from_file_or_none` (a file whose ``f_op``
is ``socket_file_ops``) and :func:`sock_info` (family, type, protocol, state, local and remote
address and port from ``struct sock_common``; the bound path of a UNIX socket). Sockets that no
file holds (a connection still in a listener's accept queue) are found in the TCP established
hash by :func:`for_each_tcp_sock` (:func:`sock_common_info`). Walks are bounded.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from kcrash.errors import SymbolNotFoundError, ValidationError
from kcrash.helpers.linux.list import ListWalk, list_for_each_entry
from kcrash.types.object import Object, offsetof
from kcrash.types.program import Program

__all__ = [
    "IfAddress",
    "SockInfo",
    "for_each_net",
    "for_each_netdev",
    "for_each_tcp_sock",
    "netdev_flag_names",
    "netdev_ipv4_addrs",
    "netdev_ipv4_ifaddrs",
    "netdev_ipv6_addrs",
    "netdev_ipv6_ifaddrs",
    "netdev_mac",
    "netdev_name",
    "netdev_operstate",
    "sock_common_info",
    "sock_from_file_or_none",
    "sock_info",
]

_NET_LIMIT = 1 << 16
_DEV_LIMIT = 1 << 20
_ADDR_LIMIT = 1 << 16
_MAX_ADDR_LEN = 32  # MAX_ADDR_LEN, include/linux/netdevice.h

#: ``include/uapi/linux/if.h`` ``enum net_device_flags``
_IFF_NAMES = ("UP", "BROADCAST", "DEBUG", "LOOPBACK", "POINTOPOINT", "NOTRAILERS", "RUNNING", "NOARP",
              "PROMISC", "ALLMULTI", "MASTER", "SLAVE", "MULTICAST", "PORTSEL", "AUTOMEDIA", "DYNAMIC",
              "LOWER_UP", "DORMANT", "ECHO")
#: ``include/uapi/linux/if.h`` ``IF_OPER_*``
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
#: ``include/linux/socket.h``
_FAMILIES = {0: "UNSPEC", 1: "UNIX", 2: "INET", 10: "INET6", 16: "NETLINK", 17: "PACKET", 40: "VSOCK"}
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
#: ``include/linux/net.h`` ``enum sock_type``
_SOCK_TYPES = {1: "STREAM", 2: "DGRAM", 3: "RAW", 4: "RDM", 5: "SEQPACKET", 6: "DCCP", 10: "PACKET"}
#: ``include/uapi/linux/in.h``
_PROTOCOLS = {0: "IP", 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPV6", 132: "SCTP", 136: "UDPLITE", 255: "RAW"}
#: ``include/net/tcp_states.h`` (UNIX sockets use the same values)
_TCP_STATES = ("", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
               "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV", "BOUND_INACTIVE")


def _global(prog: Program, type: str, name: str) -> Object:
    return prog.object(type, prog.symbol_address(name))


def for_each_net(prog: Program) -> ListWalk:
    """Iterate over every network namespace on ``net_namespace_list`` (linked by ``net.list``).

    :param prog: the program
    :return: a bounded :class:`~kcrash.helpers.linux.list.ListWalk` of ``struct net *``
    :raises FaultError: if ``net_namespace_list`` cannot be read

    >>> len(list(for_each_net(prog)))
    1
    """
    head = _global(prog, "struct list_head", "net_namespace_list")
    return list_for_each_entry("struct net", head, "list", limit=_NET_LIMIT)


def for_each_netdev(prog: Program | Object, net: Object | None = None) -> ListWalk:
    """Iterate over the network devices of a namespace in ``net->dev_base_head`` order.

    Like the kernel's ``for_each_netdev(net, dev)``.

    :param prog: the program, or (as drgn takes it) the ``struct net *`` itself
    :param net: ``struct net *`` (default: ``init_net``)
    :return: a bounded :class:`~kcrash.helpers.linux.list.ListWalk` of ``struct net_device *``
    :raises FaultError: if the namespace cannot be read

    >>> [netdev_name(dev) for dev in for_each_netdev(prog)]
    [b'lo']
    """
    if isinstance(prog, Object):
        net = prog
        prog = net.prog_
    if net is None:
        net = _global(prog, "struct net", "init_net")
    return list_for_each_entry("struct net_device", net.dev_base_head, "dev_list", limit=_DEV_LIMIT)


def netdev_name(dev: Object) -> bytes:
    """Return the name of a network device (``dev->name``).

    :param dev: ``struct net_device *``
    :return: the name

    >>> netdev_name(next(iter(for_each_netdev(prog))))
    b'lo'
    """
    return dev.name.string_()


def netdev_flag_names(flags: int) -> list[str]:
    """Return the ``IFF_*`` names of a device's ``dev->flags`` (``include/uapi/linux/if.h``).

    :param flags: ``dev->flags``
    :return: the names without ``IFF_``, lowest bit first

    >>> netdev_flag_names(0x9)
    ['UP', 'LOOPBACK']
    """
    return [name for bit, name in enumerate(_IFF_NAMES) if flags >> bit & 1]


def netdev_operstate(dev: Object) -> str:
    """Return the RFC 2863 operational state of a device (``dev->operstate``, ``IF_OPER_*``).

    :param dev: ``struct net_device *``
    :return: ``UP``, ``DOWN``, ``UNKNOWN``, ``LOWERLAYERDOWN``...

    >>> netdev_operstate(next(iter(for_each_netdev(prog))))
    'UNKNOWN'
    """
    state = int(dev.operstate)
    return _OPERSTATES[state] if 0 <= state < len(_OPERSTATES) else str(state)


def netdev_mac(dev: Object) -> str:
    """Return the hardware address of a device (``dev->dev_addr``, ``addr_len`` bytes) as ``aa:bb:...``.

    :param dev: ``struct net_device *``
    :return: the address; empty when the device has none

    >>> [netdev_mac(dev) for dev in for_each_netdev(prog)]
    ['00:00:00:00:00:00']
    """
    length = int(dev.addr_len)
    if not int(dev.dev_addr) or not 0 < length <= _MAX_ADDR_LEN:
        return ""
    return ":".join(f"{b:02x}" for b in dev.prog_.read(int(dev.dev_addr), length))


@dataclass(frozen=True, slots=True)
class IfAddress:
    """An address of a network device, as ``ip addr`` shows it.

    :param address: the address (``127.0.0.1``, ``::1``)
    :param prefixlen: its prefix length
    :param label: the label (IPv4: ``lo``, ``eth0:1``) or the scope (IPv6: ``host``, ``link``...)

    >>> netdev_ipv4_ifaddrs(next(iter(for_each_netdev(prog))))
    [IfAddress(address='127.0.0.1', prefixlen=8, label='lo')]
    """

    address: str
    prefixlen: int
    label: str


def _bounded(pointers: Iterator[Object], what: str) -> Iterator[Object]:
    seen: set[int] = set()
    for item in pointers:
        if int(item) in seen or len(seen) >= _ADDR_LIMIT:
            raise ValidationError(f"{what}: a cycle or more than {_ADDR_LIMIT} entries")
        seen.add(int(item))
        yield item


def _ifa_chain(first: Object) -> Iterator[Object]:
    ifa = first
    while int(ifa):
        yield ifa
        ifa = ifa.ifa_next.read_()


def _in_ifaddrs(dev: Object) -> list[Object]:
    # the struct in_ifaddr * of ip_ptr->ifa_list
    in_dev = dev.ip_ptr.read_()
    if not int(in_dev):
        return []
    return list(_bounded(_ifa_chain(in_dev.ifa_list.read_()), f"ifa_list of {int(dev):#x}"))


def _ipv4(value: Object) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(value).to_bytes(4, "little"))  # __be32: bytes in network order


def netdev_ipv4_addrs(dev: Object) -> list[ipaddress.IPv4Address]:
    """Return the IPv4 addresses of a device, like drgn's ``netdev_ipv4_addrs()``.

    ``ifa_address`` of each entry of ``dev->ip_ptr->ifa_list`` (the peer of a point-to-point link,
    else the local address).

    :param dev: ``struct net_device *``
    :return: the addresses, in list order
    :raises ValidationError: if the address list loops

    >>> netdev_ipv4_addrs(next(iter(for_each_netdev(prog))))
    [IPv4Address('127.0.0.1')]
    """
    return [_ipv4(ifa.ifa_address) for ifa in _in_ifaddrs(dev)]


def netdev_ipv4_ifaddrs(dev: Object) -> list[IfAddress]:
    """Return the IPv4 addresses of a device as ``ip addr`` shows them.

    Each ``struct in_ifaddr``'s ``ifa_local``, prefix length and label (``lo``, ``eth0:1``).

    :param dev: ``struct net_device *``
    :return: the addresses, in list order
    :raises ValidationError: if the address list loops

    >>> netdev_ipv4_ifaddrs(next(iter(for_each_netdev(prog))))[0].prefixlen
    8
    """
    return [IfAddress(str(_ipv4(ifa.ifa_local)), int(ifa.ifa_prefixlen),
                      ifa.ifa_label.string_().decode(errors="replace")) for ifa in _in_ifaddrs(dev)]


def _inet6_ifaddrs(dev: Object) -> list[Object]:
    # the struct inet6_ifaddr * of ip6_ptr->addr_list (linked by if_list); none without CONFIG_IPV6
    if not dev.type_.strip_typedefs().type.strip_typedefs().has_member("ip6_ptr"):
        return []
    in6_dev = dev.ip6_ptr.read_()
    if not int(in6_dev):
        return []
    walk = list_for_each_entry("struct inet6_ifaddr", in6_dev.addr_list, "if_list", limit=_ADDR_LIMIT)
    out = list(walk)
    if walk.truncated is not None:
        raise ValidationError(f"addr_list of {int(dev):#x}: {walk.truncated}")
    return out


def netdev_ipv6_addrs(dev: Object) -> list[ipaddress.IPv6Address]:
    """Return the IPv6 addresses of a device, like drgn's ``netdev_ipv6_addrs()``.

    The addresses of ``dev->ip6_ptr->addr_list``.

    :param dev: ``struct net_device *``
    :return: the addresses, in list order

    >>> netdev_ipv6_addrs(next(iter(for_each_netdev(prog))))
    [IPv6Address('::1')]
    """
    return [ipaddress.IPv6Address(ifa.addr.to_bytes_()) for ifa in _inet6_ifaddrs(dev)]


def netdev_ipv6_ifaddrs(dev: Object) -> list[IfAddress]:
    """Return the IPv6 addresses of a device with prefix length.

    The label is the scope (``host``, ``link``, ``site``, ``global``).

    :param dev: ``struct net_device *``
    :return: the addresses (``struct inet6_ifaddr``), in list order

    >>> netdev_ipv6_ifaddrs(next(iter(for_each_netdev(prog))))[0].label
    'host'
    """
    return [IfAddress(_ipv6_text(ifa.addr.to_bytes_()), int(ifa.prefix_len), _ipv6_scope(int(ifa.scope)))
            for ifa in _inet6_ifaddrs(dev)]


def _ipv6_scope(scope: int) -> str:
    # include/net/ipv6.h IFA_HOST 0x10, IFA_LINK 0x20, IFA_SITE 0x40; 0 is global
    return {0x10: "host", 0x20: "link", 0x40: "site"}.get(scope & 0xf0, "global")


def sock_from_file_or_none(file: Object) -> Object | None:
    """Return the socket of a socket file, like the kernel's ``sock_from_file()`` (``net/socket.c``).

    That is ``file->private_data`` when ``f_op`` is ``socket_file_ops``.

    :param file: ``struct file *``
    :return: ``struct socket *``, None for other files

    >>> from kcrash.helpers.linux.fs import for_each_file
    >>> [sock_from_file_or_none(file) for _, file in for_each_file(task) if file]
    [None, None, None, None]
    """
    prog = file.prog_
    try:
        ops = prog.symbol_address("socket_file_ops")
    except SymbolNotFoundError:
        return None
    if int(file.f_op) != ops:
        return None
    return Object(prog, prog.pointer_type("struct socket"), int(file.private_data))


@dataclass(frozen=True, slots=True)
class SockInfo:
    """One socket: ``struct socket``, its ``struct sock``, and what ``ss`` would show of it.

    :param socket: the ``struct socket *`` (0 for a hash entry without one)
    :param sock: the ``struct sock *`` (0: none)
    :param family: ``INET``, ``INET6``, ``UNIX``, ... (``?`` unknown)
    :param type: ``STREAM``, ``DGRAM``, ...
    :param protocol: ``TCP``, ``UDP``, ... (``?`` unknown)
    :param state: ``ESTABLISHED``, ``LISTEN``, ... (``UNCONNECTED`` without a ``struct sock``)
    :param local: the local address (empty for families without one)
    :param remote: the remote address
    :param local_port: the local port (0: none)
    :param remote_port: the remote port

    >>> [sock_common_info(sk).state for sk in for_each_tcp_sock(prog)]
    ['ESTABLISHED', 'ESTABLISHED']
    """

    socket: int
    sock: int
    family: str
    type: str
    protocol: str
    state: str
    local: str
    remote: str
    local_port: int
    remote_port: int


def _name(table: dict[int, str], value: int) -> str:
    return table.get(value, str(value))


def _tcp_state(state: int) -> str:
    return _TCP_STATES[state] if 0 < state < len(_TCP_STATES) else str(state)


def _inet_ends(common: Object, family: int) -> tuple[str, str, int, int]:
    # sock_common: skc_rcv_saddr/skc_daddr (__be32) or skc_v6_rcv_saddr/skc_v6_daddr,
    # skc_num (local port, host order) and skc_dport (__be16)
    if family == AF_INET6:
        local = _ipv6_text(common.skc_v6_rcv_saddr.to_bytes_())
        remote = _ipv6_text(common.skc_v6_daddr.to_bytes_())
    else:
        local = str(ipaddress.IPv4Address(int(common.skc_rcv_saddr).to_bytes(4, "little")))
        remote = str(ipaddress.IPv4Address(int(common.skc_daddr).to_bytes(4, "little")))
    dport = int(common.skc_dport)
    return local, remote, int(common.skc_num), (dport & 0xff) << 8 | dport >> 8


def _ipv6_text(raw: bytes) -> str:
    # as ss prints it: an IPv4-mapped address keeps its dotted quad (::ffff:127.0.0.1)
    address = ipaddress.IPv6Address(raw)
    return f"::ffff:{address.ipv4_mapped}" if address.ipv4_mapped is not None else str(address)


def _unix_path(sk: Object) -> str:
    # unix_sk(sk)->addr->name[0].sun_path; an abstract name starts with NUL and is shown with '@'
    # (net/unix/af_unix.c, include/net/af_unix.h: struct sock is unix_sock's first member)
    unix = sk.prog_.object("struct unix_sock", int(sk))
    addr = unix.addr.read_()
    if not int(addr):
        return ""
    length = int(addr.len) - 2  # minus sun_family
    if not 0 < length <= 108:
        return ""
    name = int(addr) + offsetof(sk.prog_.type("struct unix_address"), "name")
    raw = sk.prog_.read(name + 2, length)
    text = raw.rstrip(b"\0").decode("utf-8", "backslashreplace")
    return "@" + text[1:] if raw[:1] == b"\0" else text


def sock_info(socket: Object) -> SockInfo:
    """Return the family, type, protocol, state and both ends of a socket (``socket->sk->__sk_common``).

    :param socket: ``struct socket *``
    :return: what ``ss`` would show of it

    >>> from kcrash.helpers.linux.fs import for_each_file
    >>> sockets = [sock_from_file_or_none(file) for _, file in for_each_file(task) if file]
    >>> [sock_info(sock).state for sock in sockets if sock is not None]
    []
    """
    sk = socket.sk.read_()
    sock_type = _name(_SOCK_TYPES, int(socket.type))
    if not int(sk):
        return SockInfo(int(socket), 0, "?", sock_type, "?", "UNCONNECTED", "", "", 0, 0)
    family = int(sk.__sk_common.skc_family)
    state = _tcp_state(int(sk.__sk_common.skc_state))
    protocol = int(sk.sk_protocol)
    if family in (AF_INET, AF_INET6):
        local, remote, lport, rport = _inet_ends(sk.__sk_common, family)
        return SockInfo(int(socket), int(sk), _name(_FAMILIES, family), sock_type, _name(_PROTOCOLS, protocol),
                        state, local, remote, lport, rport)
    local = _unix_path(sk) if family == AF_UNIX else ""
    return SockInfo(int(socket), int(sk), _name(_FAMILIES, family), sock_type, str(protocol), state, local, "",
                    0, 0)


#: most sockets one walk of the TCP established hash yields, and most buckets read
_TCP_LIMIT = 1 << 20
_EHASH_MAX_BUCKETS = 1 << 26


def _ehash_chain(prog: Program, first: int, node_offset: int, seen: set[int]) -> Iterator[int]:
    # sock_common addresses of one hlist_nulls chain; the end is a "nulls" value (bit 0 set)
    node = first
    while node and not node & 1:
        if node in seen or len(seen) >= _TCP_LIMIT:
            raise ValidationError(f"TCP established hash: a cycle or more than {_TCP_LIMIT} sockets at {node:#x}")
        seen.add(node)
        yield node - node_offset
        node = prog.read_u64(node)


def for_each_tcp_sock(prog: Program) -> Iterator[Object]:
    """Iterate over every socket in the TCP established hash ``tcp_hashinfo.ehash``.

    ``include/net/inet_hashtables.h``: ``hlist_nulls`` chains linked by ``skc_nulls_node``. That is
    connections in any state but LISTEN, including those no task holds yet (still in a listener's
    accept queue), ``TIME_WAIT`` (``struct inet_timewait_sock``) and ``NEW_SYN_RECV`` (``struct
    request_sock``) entries. Namespaces with their own hash (``tcp_child_ehash_entries``) are not walked.

    :param prog: the program
    :return: an iterator of ``struct sock_common *``
    :raises ValidationError: if a chain loops, or the table size is implausible

    >>> [sock_common_info(sk).state for sk in for_each_tcp_sock(prog)]
    ['ESTABLISHED', 'ESTABLISHED']
    """
    hashinfo = _global(prog, "struct inet_hashinfo", "tcp_hashinfo")
    buckets = int(hashinfo.ehash_mask) + 1
    if not 0 < buckets <= _EHASH_MAX_BUCKETS:
        raise ValidationError(f"TCP established hash: implausible ehash_mask {buckets - 1:#x}")
    bucket_size = prog.type("struct inet_ehash_bucket").sizeof()
    table = prog.read(int(hashinfo.ehash), buckets * bucket_size)
    node_offset = offsetof(prog.type("struct sock_common"), "skc_nulls_node")
    common = prog.pointer_type("struct sock_common")
    seen: set[int] = set()
    for i in range(buckets):
        first = int.from_bytes(table[i * bucket_size:i * bucket_size + 8], "little")
        for address in _ehash_chain(prog, first, node_offset, seen):
            yield Object(prog, common, address)


def sock_common_info(common: Object) -> SockInfo:
    """Return what :func:`sock_info` gives, from a ``struct sock_common *`` alone.

    For an entry of the TCP hash: type STREAM, protocol TCP, no ``struct socket``.

    :param common: ``struct sock_common *``
    :return: the socket's family, state and ends

    >>> [(sock_common_info(sk).local_port, sock_common_info(sk).remote_port) for sk in for_each_tcp_sock(prog)]
    [(4321, 44832), (44832, 4321)]
    """
    family = int(common.skc_family)
    state = _tcp_state(int(common.skc_state))
    local, remote, lport, rport = _inet_ends(common, family)
    return SockInfo(0, int(common), _name(_FAMILIES, family), "STREAM", "TCP", state, local, remote, lport, rport)
