"""Go values with fields and methods, for templates over regctl-style results.

regctl runs its `--format` templates over Go structs: `{{.Tags}}` reads a field,
`{{.GetDescriptor.Digest}}` calls a method, `{{json .}}` uses the type's MarshalJSON
(often the registry's raw body) and `{{printPretty .}}` its MarshalPretty. A GoValue
stands for such a struct: the template engine asks it for fields by their Go names and
for its JSON and pretty forms.

    class TagListView(GoValue):
        go_type = "*tag.List"
        def go_field(self, name): ...        # KeyError when the type has no such field
        def go_json(self): return RawJSON(self.body)
        def go_pretty(self): return "".join(t + "\\n" for t in sorted(self.tags))
"""

from __future__ import annotations

from typing import Any


class GoValue:
    """Base of the values templates may walk into (see the module docstring)."""

    go_type = "struct"

    def go_field(self, name: str) -> Any:
        """The field or argument-less method `name`; KeyError when there is none."""
        raise KeyError(name)

    def go_json(self) -> Any:
        """What encoding/json makes of it: plain data, or RawJSON from a MarshalJSON."""
        return None

    def go_pretty(self) -> str | None:
        """MarshalPretty's text, or None when the Go type has none (printPretty then
        prints indented JSON)."""
        return None


class RawJSON:
    """JSON bytes a Go MarshalJSON returned: encoded as they are, compacted or indented."""

    def __init__(self, raw: bytes | str) -> None:
        self.text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw


def compact_json(text: str) -> str:
    """encoding/json's Compact: whitespace outside strings removed, nothing else changed."""
    out: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif ch not in " \t\r\n":
            out.append(ch)
    return "".join(out)


def indent_json(text: str, indent: str, level: int = 0) -> str:
    """encoding/json's Indent of compact JSON text, starting at nesting `level` (the
    first line is not indented; empty arrays and objects stay `[]` and `{}`)."""
    out: list[str] = []
    depth = level
    in_string = escaped = False
    skip_close = False
    for i, ch in enumerate(text):
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if skip_close:  # the close of an empty [] or {} was written with its open
            skip_close = False
            continue
        if ch == '"':
            in_string = True
            out.append(ch)
        elif ch in "[{":
            closing = "]" if ch == "[" else "}"
            if i + 1 < len(text) and text[i + 1] == closing:
                out.append(ch + closing)
                skip_close = True
            else:
                depth += 1
                out.append(ch + "\n" + indent * depth)
        elif ch in "]}":
            depth -= 1
            out.append("\n" + indent * depth + ch)
        elif ch == ",":
            out.append(",\n" + indent * depth)
        elif ch == ":":
            out.append(": ")
        else:
            out.append(ch)
    return "".join(out)
