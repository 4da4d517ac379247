"""Property-based fuzzing of the chunk walker: corruption ends in a CardError, quickly, in bounded memory."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfytavern_cards import CardError, CharacterCard, PngLimits, read_card_bytes, read_png_card, walk_text_chunks
from comfytavern_cards.testing import card_png, v2_card, v3_card

BASE = card_png(
    [("chara", v2_card("Fuzz", description="d" * 200)), ("ccv3", v3_card("Fuzz3"))],
    kind="tEXt",
)
ZBASE = card_png([("chara", v2_card("Zed"))], kind="zTXt")
ITXT = card_png([("ccv3", v3_card("Eye"))], kind="iTXt-z")
LIMITS = PngLimits(max_text_chunk_bytes=256 * 1024, max_text_bytes=512 * 1024, max_chunks=5_000)

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("length"), st.integers(0, 10_000), st.integers(0, 2**32 - 1)),
)


def mutate(data: bytes, ops: list[tuple[str, int, object]]) -> bytes:
    buf = bytearray(data)
    for op, where, arg in ops:
        if not buf:
            break
        at = where % len(buf)
        if op == "flip":
            buf[at] ^= int(arg)  # type: ignore[arg-type]
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = arg  # type: ignore[assignment]
        elif op == "length":
            buf[at : at + 4] = struct.pack(">I", int(arg))  # type: ignore[arg-type]
    return bytes(buf)


def check(data: bytes) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        card = read_png_card(io.BytesIO(data), limits=LIMITS)
        assert isinstance(card, CharacterCard)
    except CardError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 8 * 1024 * 1024, peak


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from([BASE, ZBASE, ITXT]), ops=st.lists(mutation, min_size=1, max_size=6))
def test_mutated_cards_never_crash(base: bytes, ops: list[tuple[str, int, object]]) -> None:
    check(mutate(base, ops))


@settings(max_examples=200, deadline=None)
@given(tail=st.binary(max_size=512))
def test_random_bytes_after_the_signature(tail: bytes) -> None:
    check(b"\x89PNG\r\n\x1a\n" + tail)
    try:
        list(walk_text_chunks(io.BytesIO(b"\x89PNG\r\n\x1a\n" + tail), limits=LIMITS))
    except CardError:
        pass


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=256))
def test_arbitrary_uploads_are_cards_or_card_errors(payload: bytes) -> None:
    for data in (payload, b"{" + payload, b"\x89PNG\r\n\x1a\n" + payload):
        try:
            read_card_bytes(data, limits=LIMITS)
        except CardError:
            pass
