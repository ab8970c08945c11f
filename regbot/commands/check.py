"""`regbot check -c FILE`: every problem of a config, without running anything.

YAML, keys and values, durations, schedules and templates are checked by the config
loader in its collecting mode (regbot/config.py, check_config); each script is compiled
(not run) by Lua 5.1, its syntax errors given with the config file's line. Problems are
printed one per line, `file:line[:column]: message`; the exit status is 2 when there
was any, 0 otherwise. Nothing contacts a registry; template values are never printed.
"""

from __future__ import annotations

import re
from typing import Any

import click

from regbot.commands.options import apply_settings, common_options

_LUA_POSITION = re.compile(r"^\[?[^:]*\]?:(\d+): (.*)$", re.S)
_LUA_LINE_REF = re.compile(r"\bat line (\d+)")
_PLACE = re.compile(r":(\d+)(?::(\d+))?: ")


def lua_problems(config: Any) -> list[str]:
    """The Lua syntax errors of every script, placed at their regbot.yml lines."""
    from lupa import lua51

    runtime = lua51.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
    problems = []
    for index, script in enumerate(config.scripts):
        try:
            runtime.compile(script.script.encode("utf-8", "surrogateescape"), b"=script")
        except lua51.LuaSyntaxError as err:
            raw = err.args[0] if err.args else b""
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            problems.append(_syntax_problem(config.source, index, script, text))
    return problems


def _syntax_problem(source: str, index: int, script: Any, text: str) -> str:
    """`file:line: scripts[i] "name": Lua syntax error: ...`, Lua lines made YAML lines."""
    from regbot.gotemplate_funcs import go_quote

    where = f"scripts[{index}] {go_quote(script.name)}"
    match = _LUA_POSITION.match(text.strip())
    if not match:
        return f"{source}:{script.line_offset}: {where}: Lua syntax error: {' '.join(text.split())}"
    message = _LUA_LINE_REF.sub(lambda m: f"at line {script.yaml_line(int(m.group(1)))}",
                                " ".join(match.group(2).split()))
    line = script.yaml_line(int(match.group(1)))
    return f"{source}:{line}: {where}: Lua syntax error: {message}"


@click.command("check")
@common_options
@click.pass_context
def check(ctx: click.Context, **given: Any) -> None:
    """Validate a config file (YAML, keys, values, durations, schedules, templates and
    Lua syntax) without running a script or contacting a registry; exit 2 on problems."""
    settings = apply_settings(ctx, default_level="warn", **given)
    from regbot.config import check_config, read_config_text
    from regbot.errors import ConfigError

    path = settings.get("config_file")
    if not path:
        raise ConfigError("no config file given: use -c FILE (or -c - for stdin)")
    text, source = read_config_text(path)
    report = check_config(text, source)
    problems = list(report.problems)
    if report.config is not None:
        problems += lua_problems(report.config)
    problems.sort(key=_line_of)
    for line in problems + sorted(report.notes, key=_line_of):
        click.echo(line)
    if problems:
        ctx.exit(2)
    scripts = len(report.config.scripts) if report.config is not None else 0
    click.echo(f"{source}: ok ({scripts} script{'s' if scripts != 1 else ''})")


def _line_of(problem: str) -> tuple[int, int]:
    """Where a problem is, for printing them in file order (unplaced ones first)."""
    match = _PLACE.search(problem)
    if not match:
        return (0, 0)
    return (int(match.group(1)), int(match.group(2) or 0))
