"""Go `time.Duration` text: parsing exactly as `time.ParseDuration`, formatting as `String()`.

regbot.yml files and Lua scripts written for the Go regbot use this syntax (`60m`, `1h30m`,
`1.5h`, `300ms`), so the rules (and the edge cases: signs, a bare "0", fractions, overflow)
follow Go's implementation rather than any Python convention.
"""

from __future__ import annotations

NANOSECOND = 1
MICROSECOND = 1000 * NANOSECOND
MILLISECOND = 1000 * MICROSECOND
SECOND = 1000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,  # U+00B5 micro sign
    "\u03bcs": MICROSECOND,  # U+03BC Greek small letter mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}

_MAX = 1 << 63  # Go durations are int64 nanoseconds


class DurationError(ValueError):
    """A duration string Go would reject; `reason` is the problem without the text."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        if reason.startswith("invalid duration"):
            message = f"invalid duration {_quote(text)}" + reason[len("invalid duration") :]
        else:
            message = f"{reason} in duration {_quote(text)}"
        super().__init__(message)


def _quote(text: str) -> str:
    # Go's time.quote: double quotes, with the quote and backslash escaped.
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _leading_int(s: str) -> tuple[int, str]:
    i = 0
    x = 0
    while i < len(s) and "0" <= s[i] <= "9":
        x = x * 10 + ord(s[i]) - 48
        if x > _MAX:
            raise OverflowError
        i += 1
    return x, s[i:]


def _leading_fraction(s: str) -> tuple[int, float, str]:
    # Digits past int64 precision are consumed but ignored, as in Go.
    i = 0
    x = 0
    scale = 1.0
    overflow = False
    while i < len(s) and "0" <= s[i] <= "9":
        if not overflow:
            if x > (_MAX - 1) // 10:
                overflow = True
            else:
                y = x * 10 + ord(s[i]) - 48
                if y > _MAX:
                    overflow = True
                else:
                    x = y
                    scale *= 10
        i += 1
    return x, scale, s[i:]


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration into integer nanoseconds (may be negative)."""
    if not isinstance(text, str):
        raise DurationError(str(text), "invalid duration")
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise DurationError(text, "invalid duration")
    total = 0
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise DurationError(text, "invalid duration")
        before = len(s)
        try:
            value, s = _leading_int(s)
        except OverflowError:
            raise DurationError(text, "invalid duration (out of range)") from None
        had_int = before != len(s)
        frac, scale, had_frac = 0, 1.0, False
        if s and s[0] == ".":
            s = s[1:]
            before = len(s)
            frac, scale, s = _leading_fraction(s)
            had_frac = before != len(s)
        if not had_int and not had_frac:
            raise DurationError(text, "invalid duration")  # e.g. ".s"
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise DurationError(text, "missing unit")
        unit_text, s = s[:i], s[i:]
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise DurationError(text, f"unknown unit {_quote(unit_text)}")
        if value > _MAX // unit:
            raise DurationError(text, "invalid duration (out of range)")
        value *= unit
        if frac > 0:
            # float64 arithmetic on purpose: Go computes the fraction the same way.
            value += int(float(frac) * (float(unit) / scale))
            if value > _MAX:
                raise DurationError(text, "invalid duration (out of range)")
        total += value
        if total > _MAX:
            raise DurationError(text, "invalid duration (out of range)")
    if neg:
        return -total
    if total > _MAX - 1:
        raise DurationError(text, "invalid duration (out of range)")
    return total


def parse_duration(text: str) -> float:
    """Parse a Go duration (`60m`, `1h30m`, `1.5h`, `300ms`, `-2s`, `0`) into seconds.

    Raises DurationError (a ValueError) whose message names the text.
    """
    return parse_duration_ns(text) / SECOND


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    # The fraction of v/10**prec without trailing zeros (and no point when it is zero).
    digits = []
    printed = False
    for _ in range(prec):
        digit = v % 10
        printed = printed or digit != 0
        if printed:
            digits.append(str(digit))
        v //= 10
    frac = ("." + "".join(reversed(digits))) if printed else ""
    return frac, v


def format_duration_ns(ns: int) -> str:
    """Go's Duration.String(): `1h30m0s`, `1.5s`, `300ms`, `1µs`, `0s`."""
    neg = ns < 0
    u = -ns if neg else ns
    if u < SECOND:
        if u == 0:
            return "0s"
        if u < MICROSECOND:
            prec, unit = 0, "ns"
        elif u < MILLISECOND:
            prec, unit = 3, "\u00b5s"
        else:
            prec, unit = 6, "ms"
        frac, u = _fmt_frac(u, prec)
        text = f"{u}{frac}{unit}"
    else:
        frac, u = _fmt_frac(u, 9)
        text = f"{u % 60}{frac}s"
        u //= 60
        if u > 0:
            text = f"{u % 60}m{text}"
            u //= 60
            if u > 0:
                text = f"{u}h{text}"
    return "-" + text if neg else text


def format_duration(seconds: float) -> str:
    """Format seconds the way Go prints a time.Duration (for logs): 5400 -> `1h30m0s`."""
    return format_duration_ns(round(seconds * SECOND))
