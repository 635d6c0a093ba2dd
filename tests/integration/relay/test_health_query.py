"""Stream health through the relay process (userspace path, `--no-kernel`): RTP with dropped
sequence numbers gives that loss in `query` and `delete`, read back as the CDR's figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from softswitch.relay.figures import leg_figures
from tests.integration.relay.test_relay_process import Phone, RelayProcess, call, flows, port_range
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def userspace_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    low, high = port_range(20)
    proc = RelayProcess(Path(tmp_path_factory.mktemp("relay-health")), low, high, "--no-kernel")
    proc.start()
    assert "--no-kernel" in (proc.data_dir / "relay.log").read_text()  # said once at start
    yield proc
    proc.stop()


def test_dropped_sequence_numbers_are_the_loss_in_query_and_delete(
        userspace_relay: RelayProcess) -> None:
    relay = userspace_relay
    a, b = Phone(), Phone()
    try:
        to_a, to_b = call(relay, a, b, "health")
        flows(a, to_a, b, 1)
        flows(b, to_b, a, 1)
        dropped = {7, 8, 40, 77}
        for seq in range(2, 101):  # 1..100 from A, 4 of them never sent: 4 % lost
            if seq not in dropped:
                a.rtp(seq, to_a)
                assert b.receive() is not None
        for seq in range(2, 101):  # B loses nothing
            b.rtp(seq, to_b)
            assert a.receive() is not None

        def figures() -> dict | None:
            answer = relay.command({"command": "query", "call-id": "health"})
            legs = leg_figures(answer)
            return legs if legs["A"].loss == 4.0 and legs["B"].loss == 0.0 else None
        legs = wait_for(figures, 5, "the loss in the query answer")
        assert legs["A"].mos is not None and legs["B"].mos is not None
        assert 1.0 <= legs["A"].mos < legs["B"].mos <= 4.5
        assert legs["A"].jitter is not None and legs["A"].jitter >= 0
        answer = relay.command({"command": "query", "call-id": "health"})
        assert answer["SSRC"][str(0x1234)]["average MOS"]["packet loss"] in (0, 4)  # A and B share one SSRC
        final = leg_figures(relay.command({"command": "delete", "call-id": "health"}))
        assert final["A"].loss == 4.0 and final["A"].packets >= 96
    finally:
        a.close()
        b.close()
