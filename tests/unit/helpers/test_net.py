"""kcrash.helpers.linux.net on a synthetic kernel: devices of init_net (flags, operstate, MAC,
IPv4 addresses as drgn's and with prefix/label, IPv6 with scope), a looping address list refused;
sockets of files (not-a-socket files, INET, INET6 with a v4-mapped address, UNIX with a path and an
abstract name, a socket without sock) and the TCP established hash (a chain, a cycle)."""

from __future__ import annotations

import ipaddress

import pytest

from kcrash.errors import ValidationError
from kcrash.helpers.linux import net
from support.system_kernel import INIT_NET, Kernel

LOOPBACK6 = bytes(15) + b"\1"
MAPPED = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])


@pytest.fixture
def k() -> Kernel:
    k = Kernel()
    k.netdev(b"lo", 1, 0x9, mtu=65536, mac=bytes(6), ipv4=((bytes([127, 0, 0, 1]), 8, b"lo"),),
             ipv6=((LOOPBACK6, 128, 0x10),))
    k.netdev(b"eth0", 2, 0x1043, operstate=6, mac=bytes.fromhex("525400123456"),
             ipv4=((bytes([10, 0, 2, 15]), 24, b"eth0"), (bytes([10, 0, 3, 1]), 16, b"eth0:1")))
    return k


def test_devices(k: Kernel) -> None:
    devs = list(net.for_each_netdev(k.prog))
    assert [net.netdev_name(d) for d in devs] == [b"lo", b"eth0"]
    init_net = k.prog.object("struct net", INIT_NET).address_of_()
    assert [int(d) for d in net.for_each_netdev(k.prog, init_net)] == [int(d) for d in net.for_each_netdev(init_net)] \
        == [int(d) for d in devs]
    lo, eth0 = devs
    assert net.netdev_flag_names(int(lo.flags)) == ["UP", "LOOPBACK"]
    assert net.netdev_flag_names(int(eth0.flags)) == ["UP", "BROADCAST", "RUNNING", "MULTICAST"]
    assert (net.netdev_operstate(lo), net.netdev_operstate(eth0)) == ("UNKNOWN", "UP")
    assert (net.netdev_mac(lo), net.netdev_mac(eth0)) == ("00:00:00:00:00:00", "52:54:00:12:34:56")
    assert net.netdev_ipv4_addrs(eth0) == [ipaddress.IPv4Address("10.0.2.15"), ipaddress.IPv4Address("10.0.3.1")]
    assert [(a.address, a.prefixlen, a.label) for a in net.netdev_ipv4_ifaddrs(eth0)] == [
        ("10.0.2.15", 24, "eth0"), ("10.0.3.1", 16, "eth0:1")]
    assert net.netdev_ipv6_addrs(lo) == [ipaddress.IPv6Address("::1")]
    assert [(a.address, a.prefixlen, a.label) for a in net.netdev_ipv6_ifaddrs(lo)] == [("::1", 128, "host")]
    assert net.netdev_ipv6_addrs(eth0) == [] and len(list(net.for_each_net(k.prog))) == 1


def test_device_without_addresses_or_mac(k: Kernel) -> None:
    dev = k.obj("net_device", k.netdev(b"dummy0", 3, 0))
    assert (net.netdev_ipv4_addrs(dev), net.netdev_mac(dev), net.netdev_flag_names(0)) == ([], "", [])
    k.put(int(dev) + k.off("net_device", "operstate"), bytes([42]))
    assert net.netdev_operstate(dev) == "42"


def test_looping_ipv4_list_is_refused(k: Kernel) -> None:
    eth0 = list(net.for_each_netdev(k.prog))[1]
    first = eth0.ip_ptr.ifa_list
    k.u64(int(first.ifa_next) + k.off("in_ifaddr", "ifa_next"), int(first))
    with pytest.raises(ValidationError, match="cycle"):
        net.netdev_ipv4_addrs(eth0)


def _socket_of(k: Kernel, sk: int, sock_type: int = 1) -> net.SockInfo:
    file = k.obj("file", k.socket_file(0, sk, sock_type, 99))
    socket = net.sock_from_file_or_none(file)
    assert socket is not None
    return net.sock_info(socket)


def test_inet_sockets(k: Kernel) -> None:
    listener = k.sock(10, 10, 6, local=bytes(16), remote=bytes(16), lport=4321)
    client = k.sock(2, 1, 6, local=bytes([127, 0, 0, 1]), remote=bytes([127, 0, 0, 1]), lport=45796, rport=4321)
    accepted = k.sock(10, 1, 6, local=MAPPED, remote=MAPPED, lport=4321, rport=45796)
    got = [_socket_of(k, sk) for sk in (listener, client, accepted)]
    assert [(s.family, s.type, s.protocol, s.state, s.local, s.local_port, s.remote, s.remote_port) for s in got] == [
        ("INET6", "STREAM", "TCP", "LISTEN", "::", 4321, "::", 0),
        ("INET", "STREAM", "TCP", "ESTABLISHED", "127.0.0.1", 45796, "127.0.0.1", 4321),
        ("INET6", "STREAM", "TCP", "ESTABLISHED", "::ffff:127.0.0.1", 4321, "::ffff:127.0.0.1", 45796)]
    assert got[1].sock == client


def test_unix_sockets_and_odd_ones(k: Kernel) -> None:
    bound = _socket_of(k, k.sock(1, 10, 0, unix_path=b"/run/x.sock"))
    abstract = _socket_of(k, k.sock(1, 1, 0, unix_path=b"\0hidden"), 2)
    unbound = _socket_of(k, k.sock(1, 7, 0), 5)
    assert [(s.family, s.type, s.state, s.local) for s in (bound, abstract, unbound)] == [
        ("UNIX", "STREAM", "LISTEN", "/run/x.sock"), ("UNIX", "DGRAM", "ESTABLISHED", "@hidden"),
        ("UNIX", "SEQPACKET", "CLOSE", "")]
    odd = _socket_of(k, k.sock(16, 7, 0), 3)
    assert (odd.family, odd.type, odd.local) == ("NETLINK", "RAW", "")
    assert _socket_of(k, 0).state == "UNCONNECTED"


def test_a_plain_file_is_no_socket(k: Kernel) -> None:
    assert net.sock_from_file_or_none(k.obj("file", k.file(0, 0))) is None


def test_tcp_established_hash(k: Kernel) -> None:
    a = k.sock(2, 1, 6, local=bytes([127, 0, 0, 1]), remote=bytes([127, 0, 0, 1]), lport=45796, rport=4321)
    b = k.sock(10, 1, 6, local=MAPPED, remote=MAPPED, lport=4321, rport=45796)
    c = k.sock(2, 6, 6, local=bytes([10, 0, 2, 15]), remote=bytes([1, 1, 1, 1]), lport=5000, rport=443)
    k.hash_tcp([a, b], bucket=1)
    k.hash_tcp([c], bucket=5)
    got = [net.sock_common_info(s) for s in net.for_each_tcp_sock(k.prog)]
    assert [(s.sock, s.state, s.local_port, s.remote_port) for s in got] == [
        (a, "ESTABLISHED", 45796, 4321), (b, "ESTABLISHED", 4321, 45796), (c, "TIME_WAIT", 5000, 443)]
    assert {s.socket for s in got} == {0}
    node = k.off("sock_common", "skc_nulls_node")
    k.u64(b + node, a + node)  # b -> a -> b
    with pytest.raises(ValidationError, match="cycle"):
        list(net.for_each_tcp_sock(k.prog))


def test_implausible_hash_size_is_refused(k: Kernel) -> None:
    from support.system_kernel import TCP_HASHINFO

    k.u32(TCP_HASHINFO + k.off("inet_hashinfo", "ehash_mask"), 0xFFFFFFFF)
    with pytest.raises(ValidationError, match="ehash_mask"):
        list(net.for_each_tcp_sock(k.prog))
