"""Values and functions of regbot.yml templates, with Go's semantics.

Go values map to Python ones: string -> str, int -> int, float64 -> float, bool -> bool,
nil -> None, []string -> list, map -> dict, []byte -> bytes; structs with fields and methods
are GoValue objects (regbot/gotemplate_values.py). Printing follows fmt's %v, JSON follows
encoding/json (no HTML escaping, a trailing newline, as regclient's `json`). The function
table holds regclient's template functions (pkg/template) and text/template's builtins.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from regbot.gotemplate_values import GoValue, RawJSON, compact_json, indent_json

# ---------------------------------------------------------------------------------------
# Go values and their printing (fmt's %v, strconv.Quote)


class ExecError(Exception):
    """Raised by template functions; the call wrapper adds the position and function."""

    def __init__(self, message: str, *names: str) -> None:
        super().__init__(message)
        self.message = message
        self.names = names


def go_quote(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def type_name(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]string" if all(isinstance(v, str) for v in value) else "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, bytes):
        return "[]uint8"
    if isinstance(value, GoValue):
        return value.go_type
    return type(value).__name__


def _shortest_digits(value: float) -> tuple[str, int]:
    """The shortest round-trip digits of abs(value) and the decimal exponent of the first."""
    mantissa, _, exp_text = repr(abs(value)).lower().partition("e")
    whole, _, frac = mantissa.partition(".")
    exp = int(exp_text) if exp_text else 0
    digits = (whole + frac).lstrip("0")
    lead = len(whole + frac) - len(digits)  # zeros before the first significant digit
    return digits.rstrip("0") or "0", exp + len(whole) - lead - 1


def go_float(value: float, json_style: bool = False) -> str:
    """strconv.FormatFloat as fmt's %v uses it ('g', shortest); JSON's rules when asked."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1, value) < 0 else ""
    if value == 0:
        return sign + "0"
    digits, exp = _shortest_digits(value)
    # encoding/json switches to exponents outside [1e-6, 1e21); shortest %g uses precision 6.
    use_exp = (abs(value) < 1e-6 or abs(value) >= 1e21) if json_style else (exp < -4 or exp >= 6)
    if use_exp:
        text = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        exp_digits = f"{abs(exp)}" if json_style else f"{abs(exp):02d}"
        return f"{sign}{text}e{'-' if exp < 0 else '+'}{exp_digits}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if len(digits) <= exp + 1:
        return f"{sign}{digits}{'0' * (exp + 1 - len(digits))}"
    return f"{sign}{digits[: exp + 1]}.{digits[exp + 1 :]}"


def _fmt_value(value: Any) -> str:
    """fmt's %v for the values templates handle."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + " ".join(_fmt_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_fmt_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, bytes):
        return "[" + " ".join(str(b) for b in value) + "]"
    if isinstance(value, GoValue):
        # Go prints a struct's fields; its JSON form says the same more readably.
        return _json_value(value, "", 0)
    return str(value)


def print_result(value: Any) -> str:
    # text/template prints a missing value (nil data, nil result) as "<no value>".
    return "<no value>" if value is None else _fmt_value(value)


def truth(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, (bool, int, float, str, list, dict, bytes)):
        return bool(value)
    return True


def _sprint(args: tuple[Any, ...]) -> str:
    # fmt.Sprint: a space between operands when neither is a string.
    out = []
    for i, arg in enumerate(args):
        if i > 0 and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_fmt_value(arg))
    return "".join(out)


def _json_value(value: Any, indent: str, level: int) -> str:
    pad = "\n" + indent * (level + 1) if indent else ""
    end = "\n" + indent * level if indent else ""
    sep = ": " if indent else ":"
    if value is None:
        return "null"
    if isinstance(value, GoValue):
        return _json_value(value.go_json(), indent, level)
    if isinstance(value, RawJSON):
        text = compact_json(value.text)
        return indent_json(text, indent, level) if indent else text
    if isinstance(value, bytes):
        return '"' + base64.b64encode(value).decode() + '"'  # Go encodes []byte as base64
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ExecError("json: unsupported value: %s", go_float(value))
        return go_float(value, json_style=True)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if isinstance(value, list):
        if not value:
            return "[]"
        items = [_json_value(v, indent, level + 1) for v in value]
        return "[" + pad + ("," + pad).join(items) + end + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            _json_value(str(k), indent, level + 1) + sep + _json_value(value[k], indent, level + 1)
            for k in value  # a dict stands for a Go struct here: keep its field order
        ]
        return "{" + pad + ("," + pad).join(items) + end + "}"
    raise ExecError("json: unsupported type %s", type_name(value))


# ---------------------------------------------------------------------------------------
# Template functions. Each receives evaluated arguments; arity is checked at translation.


def _want_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ExecError(f"wrong type for value; expected string; got {type_name(value)}")
    return value


def _fn_env(key: Any) -> str:
    return os.environ.get(_want_str(key), "")


def _fn_file(filename: Any) -> str:
    try:
        with open(_want_str(filename), "rb") as handle:
            data = handle.read()
    except OSError:
        return ""  # as in Go: an unreadable file expands to nothing
    return data.decode("utf-8", errors="replace").strip()


def _is_zero(value: Any) -> bool:
    if isinstance(value, (list, dict)):
        # Go compares interface values with ==, which panics on slices and maps.
        raise ExecError(f"runtime error: comparing uncomparable type {type_name(value)}")
    return (
        value is None
        or value == ""
        or value is False
        or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0)
    )


def _fn_default(default: Any, value: Any) -> Any:
    return default if _is_zero(value) else value


def _fn_join(elems: Any, sep: Any) -> str:
    if not isinstance(elems, list) or not all(isinstance(e, str) for e in elems):
        raise ExecError(f"wrong type for value; expected []string; got {type_name(elems)}")
    return _want_str(sep).join(elems)


def _fn_json(value: Any) -> str:
    return _json_value(value, "", 0) + "\n"


def _fn_json_pretty(value: Any) -> str:
    return _json_value(value, "  ", 0) + "\n"


def _fn_print_pretty(value: Any) -> str:
    # regclient's printPretty: the type's MarshalPretty, else indented JSON.
    if isinstance(value, GoValue):
        pretty = value.go_pretty()
        if pretty is not None:
            return pretty
    return _fn_json_pretty(value)


def _fn_lower(text: Any) -> str:
    return _want_str(text).lower()


def _fn_upper(text: Any) -> str:
    return _want_str(text).upper()


def _fn_trim_space(text: Any) -> str:
    return _want_str(text).strip()


def _fn_split(text: Any, sep: Any) -> list[str]:
    text, sep = _want_str(text), _want_str(sep)
    return list(text) if sep == "" else text.split(sep)


def _fn_and(*args: Any) -> Any:
    for arg in args:
        if not truth(arg):
            return arg
    return args[-1]


def _fn_or(*args: Any) -> Any:
    for arg in args:
        if truth(arg):
            return arg
    return args[-1]


def _fn_not(arg: Any) -> bool:
    return not truth(arg)


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def _basic_eq(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if "other" in (ka, kb):
        raise ExecError("non-comparable type")
    if ka != kb:
        if "nil" in (ka, kb):
            return False
        raise ExecError("incompatible types for comparison")
    return bool(a == b)


def _fn_eq(first: Any, *others: Any) -> bool:
    return any(_basic_eq(first, other) for other in others)


def _fn_ne(a: Any, b: Any) -> bool:
    return not _basic_eq(a, b)


def _ordered(a: Any, b: Any) -> tuple[Any, Any]:
    ka, kb = _kind(a), _kind(b)
    if ka not in ("int", "float", "string") or kb not in ("int", "float", "string"):
        raise ExecError("invalid type for comparison")
    if ka != kb:
        raise ExecError("incompatible types for comparison")
    return a, b


def _fn_lt(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return bool(a < b)


def _fn_le(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return bool(a <= b)


def _fn_gt(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return bool(a > b)


def _fn_ge(a: Any, b: Any) -> bool:
    a, b = _ordered(a, b)
    return bool(a >= b)


def _fn_len(item: Any) -> int:
    if isinstance(item, str):
        return len(item.encode("utf-8"))  # Go strings are bytes
    if isinstance(item, (list, dict, bytes)):
        return len(item)
    raise ExecError(f"len of type {type_name(item)}")


def _int_index(index: Any) -> int:
    if not isinstance(index, int) or isinstance(index, bool):
        raise ExecError(f"cannot index slice/array with type {type_name(index)}")
    return index


def _fn_index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise ExecError("index of untyped nil")
    for index in indexes:
        if isinstance(item, dict):
            if not isinstance(index, str):
                raise ExecError(f"value has type {type_name(index)}; should be string")
            item = item.get(index)
        elif isinstance(item, (list, str)):
            i = _int_index(index)
            data: Any = item.encode("utf-8") if isinstance(item, str) else item
            if i < 0 or i >= len(data):
                raise ExecError(f"index out of range: {i}")
            item = data[i]
        elif item is None:
            raise ExecError("index of nil pointer")
        else:
            raise ExecError(f"can't index item of type {type_name(item)}")
    return item


def _fn_slice(item: Any, *indexes: Any) -> Any:
    if not isinstance(item, (list, str)):
        raise ExecError(f"can't slice item of type {type_name(item)}")
    if len(indexes) > 3:
        raise ExecError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str) and len(indexes) == 3:
        raise ExecError("cannot 3-index slice a string")
    data: Any = item.encode("utf-8") if isinstance(item, str) else item
    bounds = [_int_index(i) for i in indexes]
    cap = len(data)
    for i, b in enumerate(bounds):
        if b < 0 or b > cap:
            raise ExecError(f"index out of range: {b}")
        if i > 0 and b < bounds[i - 1]:
            raise ExecError(f"invalid slice index: {bounds[i - 1]} > {b}")
    low = bounds[0] if bounds else 0
    high = bounds[1] if len(bounds) > 1 else len(data)
    part = data[low:high]
    return part.decode("utf-8", errors="replace") if isinstance(item, str) else list(part)


def _fn_print(*args: Any) -> str:
    return _sprint(args)


def _fn_println(*args: Any) -> str:
    return " ".join(_fmt_value(a) for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d*))?(.)", re.S)


def _pad(text: str, flags: str, width: str | None, numeric: bool) -> str:
    if not width or len(text) >= int(width):
        return text
    size = int(width)
    if "-" in flags:
        return text.ljust(size)
    if "0" in flags and numeric:
        sign = text[0] if text[:1] in "+-" else ""
        return sign + text[len(sign) :].rjust(size - len(sign), "0")
    return text.rjust(size)


def _format_verb(verb: str, flags: str, prec: str | None, arg: Any) -> str | None:
    """One printf verb; None when the verb does not fit the argument (bad verb)."""
    is_int = isinstance(arg, int) and not isinstance(arg, bool)
    if verb == "v":
        if isinstance(arg, str) and "#" in flags:
            return go_quote(arg)
        return _fmt_value(arg)
    if verb == "s":
        if isinstance(arg, str):
            return arg[: int(prec)] if prec else arg
        if isinstance(arg, bytes):  # Go prints []byte as text with %s
            text = arg.decode("utf-8", "surrogateescape")
            return text[: int(prec)] if prec else text
        if isinstance(arg, list) and all(isinstance(a, str) for a in arg):
            return _fmt_value(arg)
        return None
    if verb == "q":
        if isinstance(arg, str):
            return go_quote(arg)
        if is_int:
            return "'" + go_quote(chr(arg))[1:-1].replace("'", "\\'") + "'"
        return None
    if verb == "t":
        return ("true" if arg else "false") if isinstance(arg, bool) else None
    if verb == "d":
        return (("+" if "+" in flags and arg >= 0 else "") + str(arg)) if is_int else None
    if verb in "xXob":
        if is_int:
            base = {"x": "x", "X": "X", "o": "o", "b": "b"}[verb]
            text = format(abs(arg), base)
            if "#" in flags and verb in "xX":
                text = ("0x" if verb == "x" else "0X") + text
            return ("-" if arg < 0 else ("+" if "+" in flags else "")) + text
        if isinstance(arg, (str, bytes)) and verb in "xX":
            text = (arg if isinstance(arg, bytes) else arg.encode("utf-8")).hex()
            return text.upper() if verb == "X" else text
        return None
    if verb == "c":
        return chr(arg) if is_int and 0 <= arg <= 0x10FFFF else None
    if verb in "eEfFgG":
        if not isinstance(arg, float):
            return None
        if verb in "gG" and prec is None:
            text = go_float(arg)
            return text.upper() if verb == "G" else text
        digits = int(prec) if prec else (6 if prec is None else 0)
        text = format(arg, f"{'+' if '+' in flags else ''}.{digits}{verb}")
        return text
    return None


def _fn_printf(fmt_text: Any, *args: Any) -> str:
    text = _want_str(fmt_text)
    out: list[str] = []
    pos = 0
    arg_index = 0
    while True:
        i = text.find("%", pos)
        if i < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:i])
        match = _VERB.match(text, i)
        if not match:
            out.append("%!(NOVERB)")
            break
        flags, width, prec, verb = match.groups()
        pos = match.end()
        if verb == "%":
            out.append("%")
            continue
        if arg_index >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[arg_index]
        arg_index += 1
        formatted = _format_verb(verb, flags, prec, arg)
        if formatted is None:
            out.append(f"%!{verb}({type_name(arg)}={_fmt_value(arg)})")
            continue
        numeric = verb in "dxXobeEfFgG"
        out.append(_pad(formatted, flags, width, numeric))
    if arg_index < len(args):
        extra = ", ".join(f"{type_name(a)}={_fmt_value(a)}" for a in args[arg_index:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _eval_args(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _sprint(args)


def _fn_html(*args: Any) -> str:
    text = _eval_args(args)
    return (
        text.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("\x00", "\ufffd")
    )


def _fn_js(*args: Any) -> str:
    out = []
    for ch in _eval_args(args):
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == '"':
            out.append('\\"')
        elif ch in "<>&=" or code < 0x20 or not ch.isprintable():
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    return "".join(out)


def _fn_urlquery(*args: Any) -> str:
    return urllib.parse.quote_plus(_eval_args(args), safe="")


@dataclass(frozen=True)
class Func:
    impl: Any
    min_args: int
    max_args: int | None  # None: variadic


FUNCS: dict[str, Func] = {
    # regclient pkg/template
    "default": Func(_fn_default, 2, 2),
    "env": Func(_fn_env, 1, 1),
    "file": Func(_fn_file, 1, 1),
    "join": Func(_fn_join, 2, 2),
    "json": Func(_fn_json, 1, 1),
    "jsonPretty": Func(_fn_json_pretty, 1, 1),
    "printPretty": Func(_fn_print_pretty, 1, 1),
    "lower": Func(_fn_lower, 1, 1),
    "split": Func(_fn_split, 2, 2),
    "trimSpace": Func(_fn_trim_space, 1, 1),
    "upper": Func(_fn_upper, 1, 1),
    # text/template builtins
    "and": Func(_fn_and, 1, None),
    "or": Func(_fn_or, 1, None),
    "not": Func(_fn_not, 1, 1),
    "eq": Func(_fn_eq, 2, None),
    "ne": Func(_fn_ne, 2, 2),
    "lt": Func(_fn_lt, 2, 2),
    "le": Func(_fn_le, 2, 2),
    "gt": Func(_fn_gt, 2, 2),
    "ge": Func(_fn_ge, 2, 2),
    "len": Func(_fn_len, 1, 1),
    "index": Func(_fn_index, 1, None),
    "slice": Func(_fn_slice, 1, None),
    "print": Func(_fn_print, 0, None),
    "printf": Func(_fn_printf, 1, None),
    "println": Func(_fn_println, 0, None),
    "html": Func(_fn_html, 0, None),
    "js": Func(_fn_js, 0, None),
    "urlquery": Func(_fn_urlquery, 0, None),
}
UNSUPPORTED_FUNCS = {"call", "time"}
