"""The `guard:` section of the configuration: rate limits and bans per source."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# User-Agent fragments of SIP scanners seen on the internet (lower case).
SCANNER_USER_AGENTS = (
    "friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sipsak", "sundayddr",
    "iwar", "vaxsipuseragent", "pplsip", "sipptk", "smap", "cirpack", "voip-scan",
)


class GuardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Requests a second one source address may send (sustained, then burst);
    # beyond, its requests are dropped. 0 turns the limit off.
    requests_per_second: float = Field(500.0, ge=0)
    request_burst: float = Field(1000.0, ge=1)
    # Failed authentications (403 to REGISTER/INVITE, or challenges beyond
    # `challenges_per_minute`) one source may have within `failure_window`
    # seconds; one more bans it for `ban_time` seconds. 0 turns bans off.
    auth_failures: int = Field(10, ge=0)
    failure_window: float = Field(300.0, gt=0)
    challenges_per_minute: float = Field(120.0, gt=0)
    ban_time: float = Field(600.0, gt=0)
    # Addresses or networks never limited nor banned (a trunk's ACL always
    # is). The loopback addresses are the host's own tools and load tests.
    trusted: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"])
    # Drop requests whose User-Agent names a known scanner, without an answer.
    drop_scanners: bool = True
    scanner_user_agents: list[str] = Field(default_factory=lambda: list(SCANNER_USER_AGENTS))
    # Where banned sources are dropped: nftables (`kernel`), our process
    # (`userspace`), or `auto`: nftables when it works, else userspace.
    drop: Literal["auto", "kernel", "userspace"] = "auto"
    # The nftables table (inet NAME); default softswitch_bans_<lowest SIP port>,
    # so that two servers on one host (tests run many) never share one.
    nft_table: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9_]{0,30}$")

    @field_validator("trusted")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names it
        return value
