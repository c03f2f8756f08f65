"""Payload codecs, registered by name: one per vendor format.

A codec turns the bytes of one uplink message into a :class:`DecodedMessage`; it knows
nothing of the registry, ranges or storage. A device's profile (or its registry override)
names the codec that reads it.
"""

from __future__ import annotations

from typing import Protocol

from devices.messages import DecodedMessage, Kind, RejectReason


class CodecError(ValueError):
    """The payload cannot be read; ``reason`` is what gets counted."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class Codec(Protocol):
    name: str

    def decode(self, kind: Kind, payload: bytes) -> DecodedMessage: ...


class UnknownCodec(KeyError):
    """A profile names a codec that is not registered."""


_CODECS: dict[str, Codec] = {}


def register(codec: Codec) -> Codec:
    _CODECS[codec.name] = codec
    return codec


def get_codec(name: str) -> Codec:
    try:
        return _CODECS[name]
    except KeyError:
        raise UnknownCodec(name) from None


def registered_codecs() -> list[str]:
    return sorted(_CODECS)


from devices.codecs import canonical as _canonical  # noqa: E402,F401
from devices.codecs import vendor_hex as _vendor_hex  # noqa: E402,F401
