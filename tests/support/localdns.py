"""Tiny in-process authoritative DNS server for tests (dnspython only).

UDP + TCP on the same 127.0.0.1:<random> port, served from a background
thread with its own asyncio loop (so it works for sync code, threads and any
pytest-asyncio loop).  Records are mutable at run time.

    dns_srv = LocalDNS()
    dns_srv.add("example.test", "MX", "10 mx1.example.test.")
    dns_srv.add("mx1.example.test", "A", "127.0.0.10")
    dns_srv.add("nullmx.test", "MX", "0 .")          # RFC 7505 null MX
    dns_srv.servfail.add("broken.test")               # answer SERVFAIL
    dns_srv.drop.add("blackhole.test")                # never answer (timeout)
    dns_srv.start(); ...; dns_srv.stop()

Names not present but under a served zone -> NXDOMAIN (+SOA);
name present but no rdataset of that type -> NOERROR/NODATA (+SOA);
names outside every zone -> REFUSED.  CNAMEs are chased inside the data.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class _UDP(asyncio.DatagramProtocol):
    def __init__(self, srv: LocalDNS):
        self.srv = srv

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        wire = self.srv.handle(data, addr, tcp=False)
        if wire is not None:
            self.transport.sendto(wire, addr)


class LocalDNS:
    def __init__(self, zones=("test.",), host="127.0.0.1", port=0, ttl=60):
        self.zones = [dns.name.from_text(z) for z in zones]
        self.host, self.port, self.ttl = host, port, ttl
        self.records: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
        self.servfail: set[str] = set()  # names answered with SERVFAIL
        self.drop: set[str] = set()  # names never answered (client times out)
        self.force_tc: set[str] = set()  # names answered TC=1 over UDP (forces TCP)
        self.queries: list[tuple[str, str, str]] = []  # (qname, qtype, "udp"/"tcp")
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None

    # ---- data ---------------------------------------------------------
    def add(self, name: str, rdtype: str, *rdatas: str, ttl: int | None = None):
        n = dns.name.from_text(name)
        t = dns.rdatatype.from_text(rdtype)
        with self._lock:
            rrs = self.records.get((n, t))
            new = dns.rrset.from_text_list(n, ttl or self.ttl, "IN", rdtype, list(rdatas))
            if rrs is None:
                self.records[(n, t)] = new
            else:
                rrs.union_update(new)

    def remove(self, name: str, rdtype: str | None = None):
        n = dns.name.from_text(name)
        with self._lock:
            for key in [
                k
                for k in self.records
                if k[0] == n and (rdtype is None or k[1] == dns.rdatatype.from_text(rdtype))
            ]:
                del self.records[key]

    # ---- query handling ---------------------------------------------------
    @staticmethod
    def _match(name: dns.name.Name, names: set[str]) -> bool:
        return any(name.is_subdomain(dns.name.from_text(x)) for x in names)

    def _zone_of(self, name):
        best = None
        for z in self.zones:
            if name.is_subdomain(z) and (best is None or len(z) > len(best)):
                best = z
        return best

    def _soa(self, zone):
        return dns.rrset.from_text(
            zone, self.ttl, "IN", "SOA", f"ns.{zone} hostmaster.{zone} 1 3600 600 86400 {self.ttl}"
        )

    def handle(self, data: bytes, addr, tcp: bool) -> bytes | None:
        try:
            q = dns.message.from_wire(data)
        except Exception:  # noqa: BLE001 - garbage in, no answer out
            return None
        if not q.question:
            return None
        qrr = q.question[0]
        qname, qtype = qrr.name, qrr.rdtype
        self.queries.append(
            (qname.to_text(), dns.rdatatype.to_text(qtype), "tcp" if tcp else "udp")
        )
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        if self._match(qname, self.drop):
            return None
        if self._match(qname, self.servfail):
            r.flags &= ~dns.flags.AA
            r.set_rcode(dns.rcode.SERVFAIL)
            return r.to_wire()
        zone = self._zone_of(qname)
        if zone is None:
            r.flags &= ~dns.flags.AA
            r.set_rcode(dns.rcode.REFUSED)
            return r.to_wire()
        if not tcp and self._match(qname, self.force_tc):
            r.flags |= dns.flags.TC
            return r.to_wire()
        with self._lock:
            name = qname
            for _ in range(8):  # CNAME chase inside our data
                rrs = self.records.get((name, qtype))
                if rrs is not None:
                    r.answer.append(rrs)
                    break
                cname = self.records.get((name, dns.rdatatype.CNAME))
                if cname is not None and qtype != dns.rdatatype.CNAME:
                    r.answer.append(cname)
                    name = cname[0].target
                    continue
                exists = any(k[0] == name or k[0].is_subdomain(name) for k in self.records)
                if not exists and not r.answer:
                    r.set_rcode(dns.rcode.NXDOMAIN)
                r.authority.append(self._soa(self._zone_of(name) or zone))
                break
        max_size = 65535 if tcp else max(512, q.payload if q.edns >= 0 else 512)
        try:
            return r.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            r.answer.clear()
            r.authority.clear()
            r.flags |= dns.flags.TC
            return r.to_wire()

    async def _tcp_client(self, reader, writer):
        try:
            while True:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                data = await reader.readexactly(n)
                wire = self.handle(data, writer.get_extra_info("peername"), tcp=True)
                if wire is not None:
                    writer.write(struct.pack("!H", len(wire)) + wire)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    # ---- lifecycle --------------------------------------------------------
    def _bind_pair(self):
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((self.host, self.port))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
            except OSError as e:
                udp.close()
                tcp.close()
                if e.errno == errno.EADDRINUSE and self.port == 0:
                    continue
                raise
            tcp.listen(64)
            return udp, tcp, port
        raise OSError("could not bind UDP+TCP pair")

    def start(self):
        udp, tcp, self.port = self._bind_pair()
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._udp_t, _ = self._loop.run_until_complete(
                self._loop.create_datagram_endpoint(lambda: _UDP(self), sock=udp)
            )
            self._tcp_srv = self._loop.run_until_complete(
                asyncio.start_server(self._tcp_client, sock=tcp)
            )
            ready.set()
            self._loop.run_forever()
            self._udp_t.close()
            self._tcp_srv.close()
            self._loop.run_until_complete(self._tcp_srv.wait_closed())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="LocalDNS", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self):
        if self._loop:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # convenience: a dnspython resolver aimed at this server
    def resolver(self, asynchronous=True, lifetime=2.0):
        import dns.asyncresolver
        import dns.resolver

        cls = dns.asyncresolver.Resolver if asynchronous else dns.resolver.Resolver
        r = cls(configure=False)
        r.nameservers = [self.host]
        r.port = self.port
        r.timeout = r.lifetime = lifetime
        return r
