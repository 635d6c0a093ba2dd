"""A DNS server for tests: serves one zone from a JSON file on 127.0.0.1.

    python -m tests.support.dns_server ZONE.json PORT

The JSON maps a name to records: {"A": ["127.0.0.1"], "SRV": [[prio, weight,
port, target]], "NAPTR": [[order, pref, flags, service, regexp, replacement]]}.
"""

from __future__ import annotations

import json
import sys

from twisted.internet import reactor
from twisted.names import authority, dns, server


class JsonAuthority(authority.FileAuthority):
    def __init__(self, zone: dict[str, dict[str, list]]) -> None:  # type: ignore[type-arg]
        super().__init__("")
        self.soa = (b"test", dns.Record_SOA(mname=b"ns.test", rname=b"root.test", serial=1,
                                            refresh=60, retry=60, expire=60, minimum=1))
        self.records = {}
        for name, types in zone.items():
            records: list[object] = []
            for address in types.get("A", []):
                records.append(dns.Record_A(address, ttl=60))
            for prio, weight, port, target in types.get("SRV", []):
                records.append(dns.Record_SRV(prio, weight, port, target.encode(), ttl=60))
            for order, pref, flags, service, regexp, replacement in types.get("NAPTR", []):
                records.append(dns.Record_NAPTR(order, pref, flags.encode(), service.encode(),
                                                regexp.encode(), replacement.encode(), ttl=60))
            self.records[name.lower().encode()] = records


def main() -> None:
    zone_file, port = sys.argv[1], int(sys.argv[2])
    with open(zone_file) as fh:
        zone = json.load(fh)
    factory = server.DNSServerFactory(authorities=[JsonAuthority(zone)])
    reactor.listenUDP(port, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    reactor.listenTCP(port, factory, interface="127.0.0.1")
    print("ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
