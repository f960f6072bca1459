"""The telemetry wire format: round trips, strict decoding with a reason, limits, fuzzing."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.artifact import MAX_VALUE_CHARS, EntryType
from blocklist.errors import BlocklistError, MalformedArtifact
from blocklist.telemetry import (
    FORMAT_NAME,
    MAX_RECORDS,
    MalformedTelemetry,
    PassiveDns,
    Sighting,
    TelemetryBatch,
    TelemetryTooLarge,
)

INSTANCE = "0123456789abcdef0123456789abcdef"
HOST = bytes(range(32))


def sighting(**kw: Any) -> Sighting:
    base: dict[str, Any] = {
        "entry_type": EntryType.DOMAIN,
        "entry_value": "evil.example",
        "matched_on": "dns_query_name",
        "event_kind": "dns_query",
        "count": 3,
        "first_seen": 1_700_000_000,
        "last_seen": 1_700_000_060,
        "host": HOST,
    }
    base.update(kw)
    return Sighting(**base)


def pdns(**kw: Any) -> PassiveDns:
    base: dict[str, Any] = {
        "name": "evil.example",
        "rrtype": 1,
        "rdata": "192.0.2.7",
        "ttl": 300,
        "first_seen": 1_700_000_000,
        "last_seen": 1_700_000_010,
        "count": 2,
    }
    base.update(kw)
    return PassiveDns(**base)


def batch(**kw: Any) -> TelemetryBatch:
    base: dict[str, Any] = {
        "instance_id": INSTANCE,
        "sequence": 7,
        "list_version": 42,
        "created": 1_700_000_100,
        "host_mode": "hash",
        "sightings": (sighting(), sighting(matched_on="cname", event_kind="dns_answer")),
        "passive_dns": (pdns(), pdns(rrtype=28, rdata="2001:db8::1"), pdns(rrtype=5, rdata="x.y")),
    }
    base.update(kw)
    return TelemetryBatch(**base)


def raw(b: TelemetryBatch) -> list[Any]:
    out: list[Any] = msgpack.unpackb(b.to_bytes(), raw=False)
    return out


def refused(obj: Any, reason: str, match: str | None = None) -> MalformedTelemetry:
    data = obj if isinstance(obj, bytes) else msgpack.packb(obj, use_bin_type=True)
    with pytest.raises(MalformedTelemetry, match=match) as err:
        TelemetryBatch.from_bytes(data)
    assert err.value.reason == reason, err.value
    return err.value


# --- round trips --------------------------------------------------------------------------


def test_round_trip_every_host_mode() -> None:
    for mode, host in (("hash", HOST), ("omit", None), ("raw", "10.0.0.5")):
        b = batch(
            host_mode=mode,
            sightings=(sighting(host=host), sighting(host=host, entry_value="other.example")),
        )
        assert TelemetryBatch.from_bytes(b.to_bytes()) == b
    empty = batch(sightings=(), passive_dns=())
    assert TelemetryBatch.from_bytes(empty.to_bytes()) == empty


def test_layout_is_the_documented_one() -> None:
    name, version, head, sightings, records = raw(batch())
    assert (name, version) == (FORMAT_NAME, 1)
    assert head == {
        "instance": INSTANCE,
        "seq": 7,
        "list_version": 42,
        "created": 1_700_000_100,
        "host_mode": "hash",
    }
    assert sightings[0] == [
        1,
        "evil.example",
        "dns_query_name",
        "dns_query",
        3,
        1_700_000_000,
        1_700_000_060,
        HOST,
    ]
    assert records[0] == ["evil.example", 1, "192.0.2.7", 300, 1_700_000_000, 1_700_000_010, 2]


def test_errors_belong_to_the_contract_tree() -> None:
    e = refused(b"\xc1", "not_msgpack")
    assert isinstance(e, MalformedArtifact) and isinstance(e, BlocklistError)


# --- strict decoding ----------------------------------------------------------------------


def test_framing_and_format() -> None:
    good = raw(batch())
    refused(b"", "not_msgpack")
    refused(batch().to_bytes() + b"\x00", "trailing_bytes")
    refused({"not": "a list"}, "framing")
    refused(good[:4], "framing")
    refused(["stockade-list", *good[1:]], "format", "format name")
    refused([good[0], 2, *good[2:]], "format", "version")
    refused([good[0], True, *good[2:]], "format")  # True == 1 must not pass for the version
    refused([good[0], 1.0, *good[2:]], "format")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"tenant": "globex"}, "unknown key 'tenant'"),  # a batch cannot choose its tenant
        ({"instance": "ABCDEF0123456789ABCDEF0123456789"}, "instance_id"),
        ({"instance": "short"}, "instance_id"),
        ({"seq": 0}, "sequence"),
        ({"seq": 2**63}, "sequence"),
        ({"seq": True}, "sequence"),
        ({"seq": 1.5}, "sequence"),
        ({"list_version": -1}, "list_version"),
        ({"created": 2**41}, "created"),
        ({"host_mode": "plain"}, "host_mode"),
    ],
)
def test_header_refused(change: dict[str, Any], match: str) -> None:
    obj = raw(batch())
    obj[2].update(change)
    refused(obj, "header", match)


def test_header_missing_key() -> None:
    obj = raw(batch())
    del obj[2]["seq"]
    refused(obj, "header", "missing key 'seq'")
    obj[2] = ["not", "a", "map"]
    refused(obj, "header", "expected a map")


@pytest.mark.parametrize(
    ("index", "value", "match"),
    [
        (0, 9, "entry type"),
        (0, True, "entry type"),
        (1, "", "entry_value"),
        (1, "x" * (MAX_VALUE_CHARS + 1), "entry_value"),
        (1, "nul\x00inside", "entry_value"),
        (1, 5, "entry_value"),
        (2, "nowhere", "matched_on"),
        (2, ["list"], "matched_on"),
        (3, "dns_bogus", "event_kind"),
        (4, 0, "count"),
        (4, 2**32, "count"),
        (5, -1, "first_seen"),
        (6, 1_600_000_000, "before first_seen"),
        (7, b"short", "32 bytes"),
        (7, None, "omit, the header says hash"),
        (7, 3.5, "host has type float"),
    ],
)
def test_sighting_refused(index: int, value: Any, match: str) -> None:
    obj = raw(batch())
    obj[3][1][index] = value
    e = refused(obj, "sighting", match)
    assert "telemetry.sightings[1]" in str(e)


def test_raw_hosts_must_be_addresses() -> None:
    obj = raw(batch(host_mode="raw", sightings=(sighting(host="10.0.0.5"),)))
    for bad in ("printer.lan", "010.000.000.005", "2001:DB8::1", "x" * 65):
        obj[3][0][7] = bad
        refused(obj, "sighting", "raw host")


@pytest.mark.parametrize(
    ("index", "value", "match"),
    [
        (0, "", "name"),
        (0, "caf\u00e9.example", "ASCII"),
        (0, "a" * 1025, "name"),
        (1, 16, "rrtype"),
        (1, 1.0, "rrtype"),
        (2, "not-an-address", "IPv4"),
        (2, "2001:db8::1", "IPv4"),  # an A record holding a v6 address
        (3, -1, "ttl"),
        (3, 2**31, "ttl"),
        (6, 0, "count"),
    ],
)
def test_passive_dns_refused(index: int, value: Any, match: str) -> None:
    obj = raw(batch())
    obj[4][0][index] = value
    refused(obj, "passive_dns", match)


def test_rows_of_the_wrong_shape() -> None:
    obj = raw(batch())
    obj[3][0] = obj[3][0][:7]
    refused(obj, "sighting", "8 fields")
    obj = raw(batch())
    obj[4] = {"not": "an array"}
    refused(obj, "passive_dns", "expected an array")


def test_repeated_records_refused() -> None:
    obj = raw(batch())
    obj[3][1] = list(obj[3][0])
    refused(obj, "duplicate_record", r"sightings\[1\]")
    obj = raw(batch())
    obj[4][1] = list(obj[4][0])
    refused(obj, "duplicate_record", r"passive_dns\[1\]")
    with pytest.raises(ValueError, match="twice"):
        batch(sightings=(sighting(), sighting(count=9)))


# --- limits -------------------------------------------------------------------------------


def test_size_limit_checked_before_decoding() -> None:
    data = batch().to_bytes()
    with pytest.raises(TelemetryTooLarge) as err:
        TelemetryBatch.from_bytes(data, max_bytes=len(data) - 1)
    assert err.value.reason == "too_large"
    assert TelemetryBatch.from_bytes(data, max_bytes=len(data)) == batch()


def test_record_count_limit() -> None:
    many = [
        [f"n{i}.example", 1, "192.0.2.1", 1, 1, 1, 1] for i in range(MAX_RECORDS + 1)
    ]  # distinct keys: only the count is wrong
    obj = raw(batch(sightings=(), passive_dns=()))
    obj[4] = many
    refused(obj, "too_many_records", str(MAX_RECORDS))
    with pytest.raises(ValueError, match="at most"):
        batch(
            sightings=(),
            passive_dns=tuple(pdns(name=f"n{i}.example") for i in range(MAX_RECORDS + 1)),
        )


def test_announced_lengths_beyond_the_input_are_refused() -> None:
    # an array header announcing 4 billion elements, a map, a string: no allocation follows
    for data in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff"):
        refused(data, "not_msgpack")
    refused(b"\x91" * 100_000, "not_msgpack")  # nesting deeper than the unpacker's stack


def test_constructors_refuse_what_the_decoder_refuses() -> None:
    with pytest.raises(ValueError, match="host"):
        batch(host_mode="omit")  # the sightings carry hashed hosts
    with pytest.raises(ValueError):
        sighting(entry_value="x\x00")
    with pytest.raises(ValueError):
        pdns(rdata="1.2.3.04")  # not canonical: two spellings, two keys
    with pytest.raises(ValueError):
        sighting(entry_value="\udcff")  # a lone surrogate cannot be encoded


# --- property tests -----------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=40,
)
_ascii = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1)
_times = st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)).map(sorted)


@st.composite
def batches(draw: st.DrawFn) -> TelemetryBatch:
    mode = draw(st.sampled_from(["omit", "hash", "raw"]))
    host_st: st.SearchStrategy[Any] = {
        "omit": st.none(),
        "hash": st.binary(min_size=32, max_size=32),
        "raw": st.ip_addresses().map(str),
    }[mode]
    s_list = draw(
        st.lists(
            st.builds(
                lambda t, v, m, k, c, times, h: Sighting(t, v, m, k, c, times[0], times[1], h),
                st.sampled_from(list(EntryType)),
                _text,
                st.sampled_from(["dns_query_name", "cname", "url", "sni", "dst_address"]),
                st.sampled_from(["dns_query", "dns_answer", "tls_sni", "tcp_connect"]),
                st.integers(1, 2**32 - 1),
                _times,
                host_st,
            ),
            max_size=8,
            unique_by=lambda s: s.key,
        )
    )
    p_list = draw(
        st.lists(
            st.one_of(
                st.builds(
                    lambda n, a, ttl, times, c: PassiveDns(
                        n, 1, str(a), ttl, times[0], times[1], c
                    ),
                    _ascii,
                    st.ip_addresses(v=4),
                    st.integers(0, 2**31 - 1),
                    _times,
                    st.integers(1, 2**32 - 1),
                ),
                st.builds(
                    lambda n, a, ttl, times, c: PassiveDns(
                        n, 28, str(a), ttl, times[0], times[1], c
                    ),
                    _ascii,
                    st.ip_addresses(v=6),
                    st.integers(0, 2**31 - 1),
                    _times,
                    st.integers(1, 2**32 - 1),
                ),
                st.builds(
                    lambda n, a, ttl, times, c: PassiveDns(n, 5, a, ttl, times[0], times[1], c),
                    _ascii,
                    _ascii,
                    st.integers(0, 2**31 - 1),
                    _times,
                    st.integers(1, 2**32 - 1),
                ),
            ),
            max_size=8,
            unique_by=lambda p: p.key,
        )
    )
    return TelemetryBatch(
        instance_id=draw(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)),
        sequence=draw(st.integers(1, 2**63 - 1)),
        list_version=draw(st.integers(0, 2**63 - 1)),
        created=draw(st.integers(0, 2**40)),
        host_mode=mode,
        sightings=tuple(s_list),
        passive_dns=tuple(p_list),
    )


@settings(max_examples=150, deadline=None)
@given(batches())
def test_property_round_trip(b: TelemetryBatch) -> None:
    data = b.to_bytes()
    assert TelemetryBatch.from_bytes(data) == b
    assert TelemetryBatch.from_bytes(data).to_bytes() == data  # deterministic


@settings(max_examples=300, deadline=None)
@given(batches(), st.data())
def test_property_mutations_never_escape_the_contract(
    b: TelemetryBatch, data: st.DataObject
) -> None:
    """Any byte flipped, cut or added: a batch or a MalformedTelemetry, nothing else."""
    good = bytearray(b.to_bytes())
    op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    at = data.draw(st.integers(0, len(good) - 1))
    if op == "flip":
        good[at] ^= data.draw(st.integers(1, 255))
    elif op == "cut":
        del good[at:]
    else:
        good[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        TelemetryBatch.from_bytes(bytes(good))
    except MalformedTelemetry as e:
        assert e.reason and str(e)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_property_random_bytes(blob: bytes) -> None:
    with contextlib.suppress(MalformedTelemetry):
        TelemetryBatch.from_bytes(blob)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.floats()
        | st.text()
        | st.binary(),
        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=30,
    )
)
def test_property_wrong_shapes_in_every_slot(junk: Any) -> None:
    """Any msgpack value in place of the header, a row, or a field of a row."""
    paths: list[tuple[Any, ...]] = [
        (2,),
        (3,),
        (4,),
        (3, 0),
        (4, 0),
        (3, 0, 7),
        (4, 0, 2),
        (2, "seq"),
    ]
    for path in paths:
        obj = raw(batch())
        target = obj
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = junk
        with contextlib.suppress(MalformedTelemetry):
            TelemetryBatch.from_bytes(msgpack.packb(obj, use_bin_type=True))


def test_batch_is_a_frozen_value() -> None:
    b = batch()
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.sequence = 8  # type: ignore[misc]
