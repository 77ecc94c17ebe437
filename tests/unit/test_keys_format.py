"""The API key format `rdev_sk_<id>_<secret>`: formatting, parsing, hashing, comparing."""

from __future__ import annotations

import hashlib
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdev.domain import keys

ID = "abcdef012345"
SECRET = "A" * 21 + "b-_" + "9" * 19  # 43 url-safe characters


def test_format_then_parse_returns_id_and_secret() -> None:
    raw = keys.format_key(ID, SECRET)
    assert raw == f"rdev_sk_{ID}_{SECRET}"
    assert keys.parse_key(raw) == (ID, SECRET)


def test_new_ids_and_secrets_make_parseable_keys() -> None:
    key_id, secret = keys.new_key_id(), keys.new_secret()
    assert len(key_id) == keys.ID_LENGTH
    assert len(secret) == 43
    assert keys.parse_key(keys.format_key(key_id, secret)) == (key_id, secret)


def test_new_secrets_differ() -> None:
    assert len({keys.new_secret() for _ in range(50)}) == 50


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "rdev_sk_",
        f"rdev_sk_{ID}",
        f"rdev_sk_{ID}_",
        f"rdev_pk_{ID}_{SECRET}",
        f"RDEV_SK_{ID}_{SECRET}",
        f"rdev_sk_{ID.upper()}_{SECRET}",
        f"rdev_sk_{ID[:-1]}_{SECRET}x",
        f"rdev_sk_{ID}x_{SECRET[:-1]}",
        f"rdev_sk_{ID}_{SECRET[:-1]}",
        f"rdev_sk_{ID}_{SECRET}A",
        f"rdev_sk_{ID}_{SECRET[:-1]}=",
        f"rdev_sk_{ID}_{SECRET[:-1]}+",
        f"rdev_sk_{ID}_{SECRET[:-1]} ",
        f" rdev_sk_{ID}_{SECRET[:-1]}",
        f"rdev_sk_{ID}_{SECRET[:-1]}\n",
        f"rdev_sk_{ID}_{SECRET[:-1]}\x00",
        f"rdev_sk_{ID}_{SECRET[:-1]}é",
        f"rdev_sk_{ID}-{SECRET}",
        f"Bearer rdev_sk_{ID}_{SECRET}",
    ],
)
def test_malformed_keys_do_not_parse(raw: str) -> None:
    assert keys.parse_key(raw) is None


def test_a_64_kib_string_is_refused_quickly() -> None:
    raw = "rdev_sk_" + "a" * (64 * 1024)
    started = time.perf_counter()
    for _ in range(1000):
        assert keys.parse_key(raw) is None
    assert time.perf_counter() - started < 0.5


def test_hash_is_sha256_hex_of_the_secret() -> None:
    assert keys.hash_secret(SECRET) == hashlib.sha256(SECRET.encode()).hexdigest()
    assert len(keys.hash_secret(SECRET)) == 64


def test_secret_matches_only_the_right_secret() -> None:
    stored = keys.hash_secret(SECRET)
    assert keys.secret_matches(SECRET, stored)
    assert not keys.secret_matches(SECRET[:-1] + "x", stored)
    assert not keys.secret_matches("", stored)
    assert not keys.secret_matches(SECRET, stored.upper())


_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=12)
_secrets = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
    min_size=43,
    max_size=43,
)


@given(_ids, _secrets)
def test_parse_inverts_format(key_id: str, secret: str) -> None:
    assert keys.parse_key(keys.format_key(key_id, secret)) == (key_id, secret)


@given(st.text(max_size=200))
def test_parse_never_raises_and_only_accepts_the_exact_shape(raw: str) -> None:
    parsed = keys.parse_key(raw)
    if parsed is not None:
        assert keys.format_key(*parsed) == raw
