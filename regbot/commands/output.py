"""`--format`: Go templates over a command's result, with regctl's named formats.

regctl turns a few format names into templates before running them (`raw`: headers, a
blank line and the body; `body`: the body; `headers`: one `Name: value` line per header
value); each command says which names it knows, as each regctl command does. A template
that does not parse is a usage error, reported before the command touches a registry.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

HEADERS_TEMPLATE = (
    '{{ range $key,$vals := .RawHeaders}}{{range $val := $vals}}'
    '{{printf "%s: %s\\n" $key $val }}{{end}}{{end}}'
)
BODY_TEMPLATE = '{{printf "%s" .RawBody}}'
RAW_TEMPLATE = HEADERS_TEMPLATE + '{{printf "\\n%s" .RawBody}}'

RAW_FORMATS = {
    "raw": RAW_TEMPLATE,
    "rawBody": BODY_TEMPLATE, "raw-body": BODY_TEMPLATE, "body": BODY_TEMPLATE,
    "rawHeaders": HEADERS_TEMPLATE, "raw-headers": HEADERS_TEMPLATE,
    "headers": HEADERS_TEMPLATE,
}
HEADER_FORMATS = {k: v for k, v in RAW_FORMATS.items() if v == HEADERS_TEMPLATE}


def format_option(default: str, help_text: str = "Format output with Go template syntax"
                  ) -> Callable[[Callable], Callable]:
    return click.option("--format", "fmt", default=default, show_default=bool(default),
                        help=help_text)


def resolve(fmt: str, named: dict[str, str] | None = None) -> str:
    """The template for a --format value (a named format, or the value itself), checked
    to parse; a bad template is a usage error."""
    from regbot.gotemplate import translate

    template = (named or {}).get(fmt, fmt)
    try:
        translate(template)
    except ValueError as err:
        raise click.BadParameter(f"template {err}", param_hint="'--format'") from None
    return template


def render(template: str, data: Any) -> str:
    from regbot.gotemplate import expand

    return expand(template, "--format", data=data)


def write_text(text: str) -> None:
    """Write to stdout as bytes: a body that is not UTF-8 comes out as it was read."""
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
    sys.stdout.buffer.flush()


def show(template: str, data: Any) -> None:
    write_text(render(template, data))
