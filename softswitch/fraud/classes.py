"""Classes of destinations, and the classifier of dialled numbers.

A number is sorted by the longest prefix that matches it, among prefix
lists per class; an exact match with an emergency number wins over any
prefix. The lists come from a preset for the numbering style of the
deployment (`nanp`, `e164`, `eu`), with the operator's own lists replacing
a preset's list class by class. A number no prefix matches is `national`
(dialled as the local network would: no + and no international prefix).

Targets that are not numbers are `internal`: a user of ours (user/1002),
or a SIP URI whose user part is not a number.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from dialplan import Target, TrunkTarget, UriTarget, UserTarget


class DestinationClass(enum.Enum):
    INTERNAL = "internal"
    NATIONAL = "national"
    INTERNATIONAL = "international"
    PREMIUM = "premium"
    EMERGENCY = "emergency"


CLASS_NAMES = tuple(c.value for c in DestinationClass)

# Visual separators phones and people put in numbers (RFC 3966 5.1.1).
_SEPARATORS = re.compile(r"[\s\-.()]")
_NUMBER = re.compile(r"\+?[0-9*#]+")


def _presets(country_code: str) -> dict[str, dict[DestinationClass, tuple[str, ...]]]:
    cc = f"+{country_code}" if country_code else ""
    own = (cc,) if cc else ()
    return {
        # North America: 10-digit national numbers, 011 out, 900/976 premium.
        "nanp": {
            DestinationClass.EMERGENCY: ("911", "112", "933"),
            DestinationClass.PREMIUM: ("+1900", "+1976", "1900", "1976", "900", "976"),
            DestinationClass.NATIONAL: ("+1", "1"),
            DestinationClass.INTERNATIONAL: ("+", "011"),
        },
        # Numbers in E.164 (+CC...) only: the home country code is national.
        "e164": {
            DestinationClass.EMERGENCY: ("112", "911"),
            DestinationClass.PREMIUM: (),
            DestinationClass.NATIONAL: own,
            DestinationClass.INTERNATIONAL: ("+",),
        },
        # Europe: 00 out, a trunk 0 for national numbers; premium ranges differ
        # by country (09 in DE/FR/UK, 89 in IT...): list yours.
        "eu": {
            DestinationClass.EMERGENCY: ("112", "999", "110", "15", "17", "18"),
            DestinationClass.PREMIUM: (),
            DestinationClass.NATIONAL: (*own, "0"),
            DestinationClass.INTERNATIONAL: ("+", "00"),
        },
    }


PRESETS = ("nanp", "e164", "eu")


def normalise(number: str) -> str:
    """The number without visual separators (`+1 (212) 555-1234` -> `+12125551234`)."""
    return _SEPARATORS.sub("", number)


@dataclass(frozen=True, slots=True)
class Classifier:
    """Sorts dialled numbers into `DestinationClass`es by longest prefix."""

    emergency: frozenset[str]
    # (prefix, class), longest prefix first.
    prefixes: tuple[tuple[str, DestinationClass], ...]

    @classmethod
    def build(cls, preset: str = "nanp", country_code: str = "1",
              overrides: Mapping[str, Iterable[str]] | None = None) -> Classifier:
        """A classifier from a preset, with `overrides` (class name -> prefixes) replacing lists."""
        presets = _presets(country_code)
        if preset not in presets:
            raise ValueError(f"unknown numbering preset {preset!r} (one of {', '.join(PRESETS)})")
        lists = dict(presets[preset])
        for name, prefixes in (overrides or {}).items():
            try:
                klass = DestinationClass(name)
            except ValueError:
                raise ValueError(f"unknown destination class {name!r}") from None
            if klass is DestinationClass.INTERNAL:
                raise ValueError("internal is not a number prefix class: it means our own users")
            lists[klass] = tuple(normalise(p) for p in prefixes)
        emergency = frozenset(lists.pop(DestinationClass.EMERGENCY, ()))
        pairs = [(p, k) for k, ps in lists.items() for p in ps if p]
        pairs.sort(key=lambda pair: -len(pair[0]))
        return cls(emergency, tuple(pairs))

    def classify_number(self, number: str) -> DestinationClass:
        n = normalise(number)
        if n in self.emergency:
            return DestinationClass.EMERGENCY
        for prefix, klass in self.prefixes:
            if n.startswith(prefix):
                return klass
        return DestinationClass.NATIONAL

    def classify(self, target: Target) -> DestinationClass:
        """The class of a dialplan target: users are internal, numbers by prefix."""
        match target:
            case UserTarget():
                return DestinationClass.INTERNAL
            case TrunkTarget(number=number):
                return self.classify_number(number)
            case UriTarget(uri=uri):
                user = _uri_user(uri)
                if user is not None and _NUMBER.fullmatch(normalise(user)):
                    return self.classify_number(user)
                return DestinationClass.INTERNAL
        return DestinationClass.INTERNAL


def _uri_user(uri: str) -> str | None:
    # The user part of sip:USER@host...; parsing the whole URI is not needed.
    _, colon, rest = uri.partition(":")
    if not colon:
        return None
    user, at, _ = rest.partition("@")
    if not at:
        return None
    user = user.split(";", 1)[0].split(":", 1)[0]
    return unquote(user)


def parse_classes(names: Iterable[str]) -> frozenset[DestinationClass]:
    """Class names to classes; ValueError naming an unknown one."""
    out = set()
    for name in names:
        try:
            out.add(DestinationClass(name))
        except ValueError:
            raise ValueError(
                f"unknown destination class {name!r} (one of {', '.join(CLASS_NAMES)})") from None
    return frozenset(out)
