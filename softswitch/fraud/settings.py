"""The `toll:` section of the configuration, and the policy it builds.

    toll:
      numbering: nanp            # nanp, e164 or eu: the prefix lists to start from
      country_code: "1"          # the home country (+CC is national in e164/eu)
      prefixes:                  # optional: replace a preset's list, class by class
        premium: ["+1900", "+1976"]
      default_classes: [internal, national, emergency]   # accounts without allowed_destinations

Accounts set `allowed_destinations`, `max_calls` and `calls_per_minute` in
the directory; trunks set the same three in their configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from softswitch.directory import Directory
from softswitch.fraud.classes import PRESETS, Classifier, DestinationClass, parse_classes
from softswitch.fraud.policy import CallPolicy, Limits, Party


def _check_class_names(value: list[str]) -> list[str]:
    parse_classes(value)  # ValueError naming the unknown class
    return value


# A list of destination class names, checked (for trunks' allowed_destinations).
ClassNames = Annotated[list[str], AfterValidator(_check_class_names)]


class TollSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    numbering: str = "nanp"
    country_code: str = Field("1", pattern=r"^[0-9]{1,3}$")
    prefixes: dict[str, list[str]] = Field(default_factory=dict)
    default_classes: list[str] = Field(
        default_factory=lambda: ["internal", "national", "emergency"])

    @field_validator("numbering")
    @classmethod
    def _known_numbering(cls, value: str) -> str:
        if value not in PRESETS:
            raise ValueError(f"numbering must be one of {', '.join(PRESETS)}")
        return value

    @field_validator("default_classes")
    @classmethod
    def _known_classes(cls, value: list[str]) -> list[str]:
        parse_classes(value)
        return value

    @field_validator("prefixes")
    @classmethod
    def _known_prefix_classes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        Classifier.build("nanp", "1", value)  # raises ValueError naming the bad class
        return value

    def classifier(self) -> Classifier:
        return Classifier.build(self.numbering, self.country_code, self.prefixes)


class _TrunkLimits(Protocol):
    """What a trunk's settings say about limits (config.TrunkSettings)."""

    @property
    def name(self) -> str: ...
    @property
    def max_calls(self) -> int | None: ...
    @property
    def calls_per_minute(self) -> int | None: ...
    @property
    def allowed_destinations(self) -> list[str] | None: ...


def make_policy(toll: TollSettings, directory: Callable[[], Directory],
                trunks: Callable[[], Sequence[_TrunkLimits]]) -> CallPolicy:
    """A `CallPolicy` reading accounts and trunks through the given sources at each dial."""
    default = parse_classes(toll.default_classes)

    def trunk_limits(name: str) -> Limits | None:
        trunk = next((t for t in trunks() if t.name == name), None)
        if trunk is None:
            return None
        classes = parse_classes(trunk.allowed_destinations) \
            if trunk.allowed_destinations is not None \
            else frozenset({DestinationClass.INTERNAL})
        return Limits(classes, trunk.max_calls, trunk.calls_per_minute)

    def limits_of(party: Party) -> Limits | None:
        if party.account is not None:
            account = directory().find(party.account, party.domain)
            if account is None:
                return None
            classes = parse_classes(account.allowed_destinations) \
                if account.allowed_destinations is not None else default
            return Limits(classes, account.max_calls, account.calls_per_minute)
        if party.trunk is not None:
            return trunk_limits(party.trunk)
        return None

    return CallPolicy(toll.classifier(), limits_of, trunk_limits)
