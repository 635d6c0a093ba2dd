"""The location service of RFC 3261 section 10: AOR -> contact bindings.

`binding.py` holds the record, `store.py` the interface the registrar and the
proxy use, `sqlite.py` the single-node implementation.
"""

from softswitch.location.binding import Binding
from softswitch.location.store import LocationStore, LocationStoreError

__all__ = ["Binding", "LocationStore", "LocationStoreError"]
