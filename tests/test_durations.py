"""Go time.ParseDuration / Duration.String, checked against Go's own test table."""

from __future__ import annotations

import pytest

from regbot.durations import (
    HOUR,
    MICROSECOND,
    MILLISECOND,
    MINUTE,
    NANOSECOND,
    SECOND,
    DurationError,
    format_duration,
    format_duration_ns,
    parse_duration,
    parse_duration_ns,
)

# From Go's src/time/time_test.go (parseDurationTests).
GO_TABLE = [
    ("0", 0),
    ("5s", 5 * SECOND),
    ("30s", 30 * SECOND),
    ("1478s", 1478 * SECOND),
    ("-5s", -5 * SECOND),
    ("+5s", 5 * SECOND),
    ("-0", 0),
    ("+0", 0),
    ("5.0s", 5 * SECOND),
    ("5.6s", 5 * SECOND + 600 * MILLISECOND),
    ("5.s", 5 * SECOND),
    (".5s", 500 * MILLISECOND),
    ("1.0s", SECOND),
    ("1.00s", SECOND),
    ("1.004s", SECOND + 4 * MILLISECOND),
    ("1.0040s", SECOND + 4 * MILLISECOND),
    ("100.00100s", 100 * SECOND + MILLISECOND),
    ("10ns", 10 * NANOSECOND),
    ("11us", 11 * MICROSECOND),
    ("12\u00b5s", 12 * MICROSECOND),
    ("12\u03bcs", 12 * MICROSECOND),
    ("13ms", 13 * MILLISECOND),
    ("14s", 14 * SECOND),
    ("15m", 15 * MINUTE),
    ("16h", 16 * HOUR),
    ("3h30m", 3 * HOUR + 30 * MINUTE),
    ("10.5s4m", 4 * MINUTE + 10 * SECOND + 500 * MILLISECOND),
    ("-2m3.4s", -(2 * MINUTE + 3 * SECOND + 400 * MILLISECOND)),
    ("1h2m3s4ms5us6ns", HOUR + 2 * MINUTE + 3 * SECOND + 4 * MILLISECOND + 5 * MICROSECOND + 6),
    ("39h9m14.425s", 39 * HOUR + 9 * MINUTE + 14 * SECOND + 425 * MILLISECOND),
    ("52763797000ns", 52763797000),
    ("0.3333333333333333333h", 20 * MINUTE),
    ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", (1 << 63) - 1),
    ("9223372036854775.807us", (1 << 63) - 1),
    ("9223372036s854ms775us807ns", (1 << 63) - 1),
    ("-9223372036854775808ns", -(1 << 63)),
    ("-9223372036854775.808us", -(1 << 63)),
    ("-9223372036s854ms775us808ns", -(1 << 63)),
    ("0.100000000000000000000h", 6 * MINUTE),
    ("0.830103483285477580700h", 49 * MINUTE + 48 * SECOND + 372539827),
]


@pytest.mark.parametrize(("text", "expected"), GO_TABLE)
def test_go_table(text, expected):
    assert parse_duration_ns(text) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60m", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("600s", 600.0),
        ("300ms", 0.3),
        ("2h45m30.5s", 9930.5),
        ("1us", 1e-6),
        ("1\u00b5s", 1e-6),
        ("59m", 3540.0),
    ],
)
def test_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'invalid duration ""'),
        ("3", 'missing unit in duration "3"'),
        ("-", 'invalid duration "-"'),
        ("s", 'invalid duration "s"'),
        (".", 'invalid duration "."'),
        ("-.", 'invalid duration "-."'),
        (".s", 'invalid duration ".s"'),
        ("+.s", 'invalid duration "+.s"'),
        ("1d", 'unknown unit "d" in duration "1d"'),
        ("60x", 'unknown unit "x" in duration "60x"'),
        ("1h 30m", 'unknown unit "h " in duration "1h 30m"'),
        ("\ufffd", 'invalid duration "\ufffd"'),
        ("9223372036854775810ns", 'invalid duration "9223372036854775810ns" (out of range)'),
        ("9223372036854775808ns", 'invalid duration "9223372036854775808ns" (out of range)'),
        ("-9223372036854775809ns", 'invalid duration "-9223372036854775809ns" (out of range)'),
        ("9223372036854776us", 'invalid duration "9223372036854776us" (out of range)'),
        ("3000000h", 'invalid duration "3000000h" (out of range)'),
    ],
)
def test_errors_name_the_text(text, message):
    with pytest.raises(DurationError) as info:
        parse_duration(text)
    assert str(info.value) == message
    assert info.value.text == text
    assert isinstance(info.value, ValueError)


def test_reason_without_text():
    with pytest.raises(DurationError) as info:
        parse_duration("60x")
    assert info.value.reason == 'unknown unit "x"'


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1100, "1.1\u00b5s"),
        (2200 * MICROSECOND, "2.2ms"),
        (3300 * MILLISECOND, "3.3s"),
        (4 * MINUTE + 5 * SECOND, "4m5s"),
        (4 * MINUTE + 5001 * MILLISECOND, "4m5.001s"),
        (5 * HOUR + 6 * MINUTE + 7001 * MILLISECOND, "5h6m7.001s"),
        (8 * MINUTE + 1, "8m0.000000001s"),
        ((1 << 63) - 1, "2562047h47m16.854775807s"),
        (-(1 << 63), "-2562047h47m16.854775808s"),
        (HOUR, "1h0m0s"),
        (-90 * SECOND, "-1m30s"),
    ],
)
def test_format_like_go(ns, text):
    assert format_duration_ns(ns) == text


def test_format_seconds():
    assert format_duration(5400) == "1h30m0s"
    assert format_duration(0.3) == "300ms"
    assert format_duration(600) == "10m0s"


@pytest.mark.parametrize("text", ["1h30m0s", "300ms", "2h45m30.5s", "1.1\u00b5s", "-1m30s", "0s"])
def test_round_trip(text):
    assert format_duration_ns(parse_duration_ns(text)) == text
