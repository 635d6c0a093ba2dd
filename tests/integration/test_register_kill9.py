"""SIGKILL under REGISTER load, again and again: no acknowledged registration is lost.

(tests/integration/test_registrar_phones.py kills an idle server once; this
is the loop under load that issue 17 asks for.)

The registrar answers 200 only once the binding is durable in SQLite
(registrar.plan_update / Registrar.handle); this holds that promise against a
crash at a random moment of a busy second, three times over the same data dir.
"""

from __future__ import annotations

import random
import sqlite3
import time

import pytest

from tests.support.register_load import RegisterLoad
from tests.support.server import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ROUNDS = 3


def stored_contacts(server: ServerProcess) -> set[tuple[str, str]]:
    db = sqlite3.connect(f"file:{server.data_dir / 'location.sqlite'}?mode=ro", uri=True,
                         timeout=5)
    try:
        return {(aor, contact) for aor, contact in
                db.execute("SELECT aor, contact FROM bindings").fetchall()}
    finally:
        db.close()


def test_no_acknowledged_registration_is_lost_to_sigkill(own_server: ServerProcess) -> None:
    rng = random.Random()
    acknowledged = 0
    for round_ in range(ROUNDS):
        own_server.start()
        with RegisterLoad(own_server.udp_port, f"r{round_}") as load:
            # Under load for a while, then the kill at a moment the test does not choose.
            wait_for(lambda: len(load.acknowledged) >= 20, 20, "registrations acknowledged")
            time.sleep(rng.uniform(0.0, 0.5))  # a random instant, not a wait for a condition
            own_server.kill9()
        acknowledged += len(load.acknowledged)
        own_server.start()  # the same data dir: what it finds is what was made durable
        stored = stored_contacts(own_server)
        own_server.stop()
        for client, (aor, contact, n) in load.newest.items():
            # The newest acknowledged contact, or a newer one whose REGISTER
            # was durable when the kill came before its 200 left.
            prefix = contact.split("@")[0].rsplit("-", 1)[0] + "-"
            mine = [int(c.split("@")[0].rsplit("-", 1)[1]) for a, c in stored
                    if a == aor and c.startswith(prefix)]
            assert any(m >= n for m in mine), \
                f"round {round_}, client {client}: acknowledged {contact} lost; stored {mine}"
    assert acknowledged >= 20 * ROUNDS
