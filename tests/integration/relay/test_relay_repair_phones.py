"""Media repair chosen in the dialplan (`set: {media_repair: caller}`): the embedded relay
puts the caller's packets through its jitter buffer and concealment, and both phones
still hear each other intact."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.integration.relay.test_relay_phones import INTACT, assert_relayed, exchange
from tests.support.phone import answered_call, registered_phones
from tests.support.server import ROOT, ServerProcess, embedded_relay_config
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

RULES = [{"match": "1002", "actions": [{"set": {"media_repair": "caller"}},
                                       {"dial": "user/1002"}]}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = Path(tmp_path_factory.mktemp("repair-phones"))
    yaml = YAML(typ="safe")
    plan = yaml.load((ROOT / "conf" / "dialplan.yaml").read_text())
    plan["contexts"]["internal"]["rules"][:0] = RULES
    plan_path = workdir / "dialplan.yaml"
    yaml.dump(plan, plan_path)
    media, ports = embedded_relay_config(100)
    server = ServerProcess(
        workdir / "server", dialplan=plan_path,
        extra_config=media)
    server.port_range = ports  # type: ignore[attr-defined]
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_repaired_caller_and_its_callee_hear_each_other(
        server: ServerProcess, tmp_path: Path) -> None:
    a, b = registered_phones(server.udp_port, ["1001", "1002"], tmp_path)
    try:
        call, incoming = answered_call(a, b, f"sip:1002@127.0.0.1:{server.udp_port}")
        alice, bob = (a, call), (b, incoming)
        assert_relayed(server, alice, bob)
        # The relay took the caller's stream into its repair pipeline (the
        # caller's leg is the answer's from-tag: the offerer).
        line = wait_for(lambda: next((x for x in server.log_path.read_text(errors="replace")
                                      .splitlines() if "media bridged" in x), None),
                        10, "the relay to bridge the call")
        offerer = re.search(r"offerer='([^ ]+) ", line)
        assert offerer is not None and "transcoding=False" in line, line
        assert f"repair=['{offerer.group(1)}']" in line, line  # the caller's leg alone
        scores = exchange(tmp_path / "both", (alice, bob), (bob, alice))
        assert min(scores) > INTACT, scores
        a.hangup(call)
        b.wait_call_state(incoming, "DISCONNECTED", 10)
    finally:
        a.close()
        b.close()
