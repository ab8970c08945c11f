"""Go text/template strings from regbot.yml, run on jinja2.

Users write `{{env "HUB_USER"}}` or `{{ file "/run/secrets/x" | trimSpace }}` as they did
for the Go regbot. This module parses that Go syntax (actions, pipes, parentheses, string,
raw-string, character and number constants, `.`/`$`, variables, `if`/`else`/`with`/`range`,
`break`/`continue`, comments and `{{- -}}` trimming) and translates it into a jinja2
template run in a SandboxedEnvironment with StrictUndefined. Literal text and constants
never become jinja source: they are passed in as data, so text such as `{%` or `{#` outside
`{{ }}` comes out unchanged.

Functions: regclient's template set (`default`, `env`, `file`, `join`, `json`,
`jsonPretty`, `lower`, `printPretty`, `split`, `trimSpace`, `upper`) with Go's argument order (a piped
value is the last argument: `{{ "x" | default "y" }}` is `default "y" "x"`), and the Go
builtins `and`, `or`, `not`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `len`, `index`, `slice`,
`print`, `printf`, `println`, `html`, `js`, `urlquery`. For regbot.yml the data (`.`) is
nil, as in the Go regbot; other callers (`regbot version --format`) may pass data.
Differences from Go: `and`/`or` evaluate every argument; `define`, `template`, `block`,
`call` and `time` are refused with a clear error; errors are reported at
translation where Go reports some (argument counts) when executing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from regbot.errors import ConfigError
from regbot.gotemplate_funcs import (
    FUNCS,
    UNSUPPORTED_FUNCS,
    ExecError,
    go_quote,
    print_result,
    truth,
    type_name,
)
from regbot.gotemplate_values import GoValue

_SPACE = " \t\r\n"
_CONTROL = {"if", "else", "end", "range", "with", "break", "continue"}
_UNSUPPORTED_KEYWORDS = {"block", "define", "template"}
_KEYWORDS = _CONTROL | _UNSUPPORTED_KEYWORDS


class _GoError(Exception):
    """A template error at an offset.

    `names` are texts the user wrote (function or variable names...), filled into the
    message's `%q` (Go-quoted) and `%s` (as is) places, or hidden for secret fields.
    """

    def __init__(self, pos: int, message: str, *names: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message
        self.names = names

    def render(self, secret: bool) -> str:
        names = iter(self.names)

        def fill(match: re.Match[str]) -> str:
            name = next(names, "")
            if secret:
                return "<hidden>"
            return go_quote(name) if match.group(0) == "%q" else name

        return re.sub(r"%[qs]", fill, self.message) if self.names else self.message


# ---------------------------------------------------------------------------------------
# Lexing: text, comments and actions (each a list of tokens), with trim markers applied.


@dataclass
class _Tok:
    kind: str  # space ( ) | := = , string raw char number bool nil dot field var ident keyword
    text: str
    pos: int


@dataclass
class _Item:
    kind: str  # "text" or "action"
    pos: int
    text: str = ""
    toks: list[_Tok] = field(default_factory=list)


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalpha() or ch.isdigit()


_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?"
    r"|0[oO][0-7_]+|0[bB][01_]+"
    r"|[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?)i?"
)


class _Lexer:
    def __init__(self, src: str) -> None:
        self.src = src

    def items(self) -> list[_Item]:
        src = self.src
        items: list[_Item] = []
        pos = 0
        trim_next = False
        while True:
            start = src.find("{{", pos)
            text = src[pos:] if start < 0 else src[pos:start]
            if trim_next:
                text = text.lstrip(_SPACE)
            if start < 0:
                if text:
                    items.append(_Item("text", pos, text))
                return items
            inner = start + 2
            if src.startswith("-", inner) and len(src) > inner + 1 and src[inner + 1] in _SPACE:
                text = text.rstrip(_SPACE)
                inner += 2
            if text:
                items.append(_Item("text", pos, text))
            if src.startswith("/*", inner):
                pos, trim_next = self._comment(start, inner)
                continue
            toks, pos, trim_next = self._action(start, inner)
            items.append(_Item("action", start, toks=toks))

    def _right_delim(self, pos: int) -> tuple[int, bool] | None:
        """(position after the delimiter, trim) when an action ends at pos."""
        src = self.src
        if len(src) > pos + 1 and src[pos] in _SPACE and src.startswith("-}}", pos + 1):
            return pos + 4, True
        if src.startswith("}}", pos):
            return pos + 2, False
        return None

    def _comment(self, start: int, inner: int) -> tuple[int, bool]:
        end = self.src.find("*/", inner + 2)
        if end < 0:
            raise _GoError(start, "unclosed comment")
        delim = self._right_delim(end + 2)
        if delim is None:
            raise _GoError(end, "comment ends before closing delimiter")
        return delim

    def _action(self, start: int, pos: int) -> tuple[list[_Tok], int, bool]:
        src = self.src
        toks: list[_Tok] = []
        parens = 0
        while True:
            delim = self._right_delim(pos)
            if delim is not None and parens == 0:
                return toks, delim[0], delim[1]
            if pos >= len(src):
                raise _GoError(start, "unclosed action")
            if src.startswith("}}", pos) or (delim is not None):
                raise _GoError(pos, "unclosed left paren")
            ch = src[pos]
            if ch in _SPACE:
                end = pos
                # Stop before a space that starts " -}}" (the loop head checks it).
                while end < len(src) and src[end] in _SPACE and self._right_delim(end) is None:
                    end += 1
                toks.append(_Tok("space", src[pos:end], pos))
                pos = end
                continue
            if ch == "(":
                parens += 1
                toks.append(_Tok("(", ch, pos))
                pos += 1
                continue
            if ch == ")":
                parens -= 1
                if parens < 0:
                    raise _GoError(pos, "unexpected right paren")
                toks.append(_Tok(")", ch, pos))
                pos += 1
                self._check_terminator(pos)
                continue
            if ch == "|":
                toks.append(_Tok("|", ch, pos))
                pos += 1
                continue
            if ch == ",":
                toks.append(_Tok(",", ch, pos))
                pos += 1
                continue
            if src.startswith(":=", pos):
                toks.append(_Tok(":=", ":=", pos))
                pos += 2
                continue
            if ch == "=":
                toks.append(_Tok("=", ch, pos))
                pos += 1
                continue
            if ch == '"':
                end = pos + 1
                while True:
                    if end >= len(src) or src[end] == "\n":
                        raise _GoError(pos, "unterminated quoted string")
                    if src[end] == "\\":
                        end += 2
                        continue
                    if src[end] == '"':
                        break
                    end += 1
                toks.append(_Tok("string", src[pos : end + 1], pos))
                pos = end + 1
                continue
            if ch == "`":
                end = src.find("`", pos + 1)
                if end < 0:
                    raise _GoError(pos, "unterminated raw quoted string")
                toks.append(_Tok("raw", src[pos : end + 1], pos))
                pos = end + 1
                continue
            if ch == "'":
                end = pos + 1
                while True:
                    if end >= len(src) or src[end] == "\n":
                        raise _GoError(pos, "unterminated character constant")
                    if src[end] == "\\":
                        end += 2
                        continue
                    if src[end] == "'":
                        break
                    end += 1
                toks.append(_Tok("char", src[pos : end + 1], pos))
                pos = end + 1
                continue
            if ch == "$":
                end = pos + 1
                while end < len(src) and _is_alnum(src[end]):
                    end += 1
                toks.append(_Tok("var", src[pos:end], pos))
                pos = end
                self._check_terminator(pos)
                continue
            if ch == "." and not (pos + 1 < len(src) and src[pos + 1].isdigit()):
                end = pos + 1
                while end < len(src) and _is_alnum(src[end]):
                    end += 1
                kind = "dot" if end == pos + 1 else "field"
                toks.append(_Tok(kind, src[pos:end], pos))
                pos = end
                self._check_terminator(pos)
                continue
            if ch in "+-." or ch.isdigit():
                match = _NUMBER.match(src, pos)
                end = match.end() if match else pos
                if end == pos or (end < len(src) and _is_alnum(src[end])):
                    bad_end = end
                    while bad_end < len(src) and (_is_alnum(src[bad_end]) or src[bad_end] in "+-."):
                        bad_end += 1
                    raise _GoError(pos, "bad number syntax: %q", src[pos : max(bad_end, pos + 1)])
                toks.append(_Tok("number", src[pos:end], pos))
                pos = end
                continue
            if _is_alnum(ch):
                end = pos
                while end < len(src) and _is_alnum(src[end]):
                    end += 1
                word = src[pos:end]
                if word in _KEYWORDS:
                    kind = "keyword"
                elif word in ("true", "false"):
                    kind = "bool"
                elif word == "nil":
                    kind = "nil"
                else:
                    kind = "ident"
                toks.append(_Tok(kind, word, pos))
                pos = end
                self._check_terminator(pos)
                continue
            raise _GoError(pos, "bad character %q", ch)

    def _check_terminator(self, pos: int) -> None:
        # After a word Go wants a space, a delimiter or one of . , | : ( ).
        src = self.src
        if pos >= len(src) or src[pos] in _SPACE + ".,|:()" or src.startswith("}}", pos):
            return
        raise _GoError(pos, "bad character %q", src[pos])


# ---------------------------------------------------------------------------------------
# Constants


_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
}  # fmt: skip


def _unquote(body: str, quote: str, pos: int) -> str:
    """strconv.Unquote for the inside of a "..." or '...' literal."""
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(body):
            raise _GoError(pos, "invalid syntax in quoted string")
        esc = body[i + 1]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc == quote:
            out.append(quote)
            i += 2
        elif esc in "xuU":
            size = {"x": 2, "u": 4, "U": 8}[esc]
            digits = body[i + 2 : i + 2 + size]
            if len(digits) != size or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise _GoError(pos, "invalid syntax in quoted string")
            code = int(digits, 16)
            if esc != "x" and (code > 0x10FFFF or 0xD800 <= code <= 0xDFFF):
                raise _GoError(pos, "invalid syntax in quoted string")
            out.append(chr(code))
            i += 2 + size
        elif esc in "01234567":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits) or int(digits, 8) > 255:
                raise _GoError(pos, "invalid syntax in quoted string")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise _GoError(pos, "invalid syntax in quoted string")
    return "".join(out)


_INT64 = 1 << 63


def _number(tok: _Tok) -> int | float:
    text = tok.text
    if text.endswith("i"):
        raise _GoError(tok.pos, "complex numbers are not supported: %s", text)
    body = text.lstrip("+-")
    neg = text.startswith("-")
    lower = body.lower()
    try:
        if lower.startswith("0x") and ("." in lower or "p" in lower):
            value: int | float = float.fromhex(body.replace("_", ""))
        elif lower.startswith(("0x", "0o", "0b")):
            value = int(body, 0)
        elif "." in body or "e" in lower:
            value = float(body)
        elif len(body) > 1 and body.startswith("0"):
            value = int(body, 8)  # Go: a leading 0 means octal
        else:
            value = int(body, 10)
    except ValueError:
        raise _GoError(tok.pos, "illegal number syntax: %s", text) from None
    if neg:
        value = -value
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        raise _GoError(tok.pos, "%s overflows int", text)
    return value


# ---------------------------------------------------------------------------------------
# Parsing Go's grammar and emitting jinja2 source.


class _Scope:
    def __init__(self) -> None:
        self.frames: list[dict[str, str]] = [{"$": "_data"}]

    def push(self) -> None:
        self.frames.append({})

    def pop(self) -> None:
        self.frames.pop()

    def declare(self, name: str, target: str) -> None:
        self.frames[-1][name] = target

    def lookup(self, name: str) -> str | None:
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        return None


class _Translator:
    def __init__(self, src: str) -> None:
        self.src = src
        self.items = _Lexer(src).items()
        self.index = 0
        self.consts: list[Any] = []
        self.calls: list[tuple[str, int]] = []  # (function name, position)
        self.fields: list[tuple[str, int]] = []
        self.scope = _Scope()
        self.counter = 0
        self.dot = "_data"  # jinja expression for `.`: the data (nil for regbot.yml)
        self.range_depth = 0
        # per action token cursor
        self.toks: list[_Tok] = []
        self.tpos = 0
        self.action_pos = 0

    # -- helpers -----------------------------------------------------------------------
    def _const(self, value: Any) -> str:
        self.consts.append(value)
        return f"_k[{len(self.consts) - 1}]"

    def _new(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def _peek(self, skip_space: bool = True) -> _Tok | None:
        i = self.tpos
        while i < len(self.toks):
            if not (skip_space and self.toks[i].kind == "space"):
                return self.toks[i]
            i += 1
        return None

    def _next(self, skip_space: bool = True) -> _Tok | None:
        while self.tpos < len(self.toks):
            tok = self.toks[self.tpos]
            self.tpos += 1
            if not (skip_space and tok.kind == "space"):
                return tok
        return None

    def _end_pos(self) -> int:
        return self.toks[-1].pos if self.toks else self.action_pos

    def _expect_end(self, context: str) -> None:
        tok = self._next()
        if tok is not None:
            raise _GoError(tok.pos, f"unexpected %q in {context}", tok.text)

    # -- top level ---------------------------------------------------------------------
    def translate(self) -> str:
        body, end = self._list()
        if end is not None:
            word = next(t.text for t in end.toks if t.kind != "space")
            raise _GoError(end.pos, "unexpected {{" + word + "}}")
        return "{% set _ns = namespace() %}" + body

    def _list(self) -> tuple[str, _Item | None]:
        """Items up to an {{end}} or {{else}} (returned, not consumed), or the end."""
        out: list[str] = []
        while self.index < len(self.items):
            item = self.items[self.index]
            if item.kind == "text":
                self.index += 1
                out.append("{{ " + self._const(item.text) + " }}")
                continue
            first = next((t for t in item.toks if t.kind != "space"), None)
            if first is not None and first.kind == "keyword" and first.text in ("end", "else"):
                return "".join(out), item
            self.index += 1
            out.append(self._action(item))
        return "".join(out), None

    def _start_action(self, item: _Item) -> None:
        self.toks = item.toks
        self.tpos = 0
        self.action_pos = item.pos

    def _action(self, item: _Item) -> str:
        self._start_action(item)
        first = self._peek()
        if first is not None and first.kind == "keyword":
            self._next()
            word = first.text
            if word in ("if", "with", "range"):
                return self._control(word, first)
            if word in ("break", "continue"):
                if self.range_depth == 0:
                    raise _GoError(first.pos, "{{" + word + "}} outside {{range}}")
                self._expect_end(word)
                return "{% " + word + " %}"
            if word in _UNSUPPORTED_KEYWORDS:
                raise _GoError(
                    first.pos, "{{" + word + "}} is not supported in regbot.yml templates"
                )
        return self._pipeline_action()

    def _pipeline_action(self) -> str:
        target, expr = self._pipeline("command", allow_decl=1)
        if target is not None:
            return "{% set " + target + " = " + expr + " %}"
        return "{{ _out(" + expr + ") }}"

    def _closing(self, context: str, start: _Tok) -> _Item:
        if self.index >= len(self.items):
            raise _GoError(start.pos, "unexpected EOF (missing {{end}} for {{" + context + "}})")
        item = self.items[self.index]
        self.index += 1
        self._start_action(item)
        return item

    def _control(self, word: str, start: _Tok) -> str:
        self.scope.push()
        try:
            if word == "range":
                return self._range(start)
            return self._if_with(word, start)
        finally:
            self.scope.pop()

    def _if_with(self, word: str, start: _Tok) -> str:
        target, expr = self._pipeline(word, allow_decl=1)
        out = []
        if target is None and word == "with":
            target = "_ns." + self._new("w")
        if target is not None:
            out.append("{% set " + target + " = " + expr + " %}")
            expr = target
        out.append("{% if _truth(" + expr + ") %}")
        saved_dot = self.dot
        if word == "with":
            self.dot = expr
        body, _ = self._list()
        self.dot = saved_dot
        out.append(body)
        self._closing(word, start)
        keyword = self._next()
        assert keyword is not None
        if keyword.text == "else":
            out.append("{% else %}")
            nested = self._peek()
            if nested is not None and nested.kind == "keyword" and nested.text == word:
                # {{else if ...}} / {{else with ...}}: a nested block sharing our {{end}}.
                self._next()
                out.append(self._control(word, nested))
            else:
                self._expect_end("else")
                body, _ = self._list()
                out.append(body)
                closing = self._closing(word, start)
                keyword = self._next()
                assert keyword is not None
                if keyword.text != "end":
                    raise _GoError(closing.pos, "expected end; found {{else}}")
                self._expect_end("end")
        else:
            self._expect_end("end")
        out.append("{% endif %}")
        return "".join(out)

    def _range(self, start: _Tok) -> str:
        targets, expr = self._range_pipeline()
        key, value = self._new("_i"), self._new("_v")
        out = [
            "{% for " + key + ", " + value + " in _iter(" + str(start.pos) + ", " + expr + ") %}"
        ]
        if len(targets) == 1:
            out.append("{% set " + targets[0] + " = " + value + " %}")
        elif len(targets) == 2:
            out.append("{% set " + targets[0] + " = " + key + " %}")
            out.append("{% set " + targets[1] + " = " + value + " %}")
        saved_dot = self.dot
        self.dot = value
        self.range_depth += 1
        body, _ = self._list()
        self.range_depth -= 1
        self.dot = saved_dot
        out.append(body)
        self._closing("range", start)
        keyword = self._next()
        assert keyword is not None
        if keyword.text == "else":
            self._expect_end("else")
            out.append("{% else %}")
            body, _ = self._list()
            out.append(body)
            closing = self._closing("range", start)
            keyword = self._next()
            assert keyword is not None
            if keyword.text != "end":
                raise _GoError(closing.pos, "expected end; found {{else}}")
        self._expect_end("end")
        out.append("{% endfor %}")
        # The range variables hold nothing in an {{else}}: initialise them first.
        init = "".join("{% set " + t + " = none %}" for t in targets)
        return init + "".join(out)

    def _range_pipeline(self) -> tuple[list[str], str]:
        names: list[_Tok] = []
        save = self.tpos
        first = self._next()
        if first is not None and first.kind == "var":
            names.append(first)
            sep = self._next()
            if sep is not None and sep.kind == ",":
                second = self._next()
                if second is None or second.kind != "var":
                    raise _GoError(sep.pos, "range can only initialize variables")
                names.append(second)
                sep = self._next()
            if sep is None or sep.kind != ":=" and sep.kind != "=":
                names = []
        if not names:
            self.tpos = save
            return [], self._pipe_commands("range")
        assign = self.toks[self.tpos - 1].kind == "="
        expr = self._pipe_commands("range")
        targets = [self._bind(tok, assign) for tok in names]
        return targets, expr

    def _bind(self, tok: _Tok, assign: bool) -> str:
        if assign:
            target = self.scope.lookup(tok.text)
            if target is None:
                raise _GoError(tok.pos, "undefined variable %q", tok.text)
            if target == "_data":
                raise _GoError(tok.pos, "cannot assign to %s", tok.text)
            return target
        target = "_ns." + self._new("v")
        self.scope.declare(tok.text, target)
        return target

    def _pipeline(self, context: str, allow_decl: int) -> tuple[str | None, str]:
        """A pipeline with an optional `$x :=` / `$x =`; returns (target, expression)."""
        save = self.tpos
        first = self._next()
        if allow_decl and first is not None and first.kind == "var":
            op = self._next()
            if op is not None and op.kind in (":=", "="):
                expr = self._pipe_commands(context)
                return self._bind(first, op.kind == "="), expr
            if op is not None and op.kind == ",":
                raise _GoError(op.pos, f"too many declarations in {context}")
        self.tpos = save
        return None, self._pipe_commands(context)

    def _pipe_commands(self, context: str, closing: str | None = None) -> str:
        expr: str | None = None
        stage = 0
        while True:
            stage += 1
            tok = self._peek()
            if tok is None or tok.kind == ")" or tok.kind == "|":
                pos = tok.pos if tok is not None else self._end_pos()
                raise _GoError(pos, f"missing value for {context}")
            expr = self._command(expr, stage)
            tok = self._peek()
            if tok is None:
                if closing:
                    raise _GoError(self._end_pos(), "unclosed left paren")
                return expr
            if tok.kind == "|":
                self._next()
                continue
            if tok.kind == ")" and closing:
                return expr
            raise _GoError(tok.pos, "unexpected %q in operand", tok.text)

    def _command(self, piped: str | None, stage: int) -> str:
        operands: list[tuple[_Tok, str, bool]] = []  # (token, expr, is_function)
        while True:
            tok = self._peek()
            if tok is None or tok.kind in ("|", ")"):
                break
            operands.append(self._operand())
            after = self._peek(skip_space=False)
            if after is not None and after.kind not in ("space", "|", ")"):
                raise _GoError(after.pos, "unexpected %q in operand", after.text)
        head_tok, head_expr, is_func = operands[0]
        args = [expr for _, expr, _ in operands[1:]]
        if piped is not None:
            args.append(piped)
        if is_func:
            return self._call(head_tok, args)
        if stage > 1 and head_tok.kind in ("bool", "dot", "nil", "number", "char", "string", "raw"):
            raise _GoError(head_tok.pos, f"non executable command in pipeline stage {stage}")
        if head_tok.kind == "nil" and len(operands) == 1 and piped is None:
            raise _GoError(head_tok.pos, "nil is not a command")
        if args:
            raise _GoError(head_tok.pos, "can't give argument to non-function %s", head_tok.text)
        return head_expr

    def _call(self, tok: _Tok, args: list[str]) -> str:
        func = FUNCS[tok.text]
        count = len(args)
        if count < func.min_args or (func.max_args is not None and count > func.max_args):
            want = str(func.min_args) if func.max_args is not None else f"at least {func.min_args}"
            raise _GoError(tok.pos, f"wrong number of args for {tok.text}: want {want} got {count}")
        self.calls.append((tok.text, tok.pos))
        return "_call(" + ", ".join([str(len(self.calls) - 1), *args]) + ")"

    def _operand(self) -> tuple[_Tok, str, bool]:
        tok = self._next()
        assert tok is not None
        is_func = False
        if tok.kind == "ident":
            if tok.text in UNSUPPORTED_FUNCS:
                raise _GoError(tok.pos, "function %q is not supported by this regbot", tok.text)
            if tok.text not in FUNCS:
                raise _GoError(tok.pos, "function %q not defined", tok.text)
            expr = ""  # a call, built by the command (it needs the arguments)
            is_func = True
        elif tok.kind == "dot":
            expr = self.dot
        elif tok.kind == "field":
            expr = self._field(self.dot, tok)
        elif tok.kind == "var":
            target = self.scope.lookup(tok.text)
            if target is None:
                raise _GoError(tok.pos, "undefined variable %q", tok.text)
            expr = target
        elif tok.kind == "string":
            expr = self._const(_unquote(tok.text[1:-1], '"', tok.pos))
        elif tok.kind == "raw":
            expr = self._const(tok.text[1:-1].replace("\r", ""))
        elif tok.kind == "char":
            chars = _unquote(tok.text[1:-1], "'", tok.pos)
            if len(chars) != 1:
                raise _GoError(tok.pos, "malformed character constant: %s", tok.text)
            expr = self._const(ord(chars))
        elif tok.kind == "number":
            expr = self._const(_number(tok))
        elif tok.kind == "bool":
            expr = "true" if tok.text == "true" else "false"
        elif tok.kind == "nil":
            expr = "none"
        elif tok.kind == "(":
            expr = "(" + self._pipe_commands("parenthesized pipeline", closing=")") + ")"
            self._next()  # the ")"
        elif tok.kind == "keyword":
            raise _GoError(tok.pos, "unexpected %q in command", tok.text)
        else:
            raise _GoError(tok.pos, "unexpected %q in operand", tok.text)
        # A field chain right after the term: $x.Field, (pipe).Field, .A.B
        while True:
            nxt = self._peek(skip_space=False)
            if nxt is None or nxt.kind != "field":
                break
            if tok.kind in ("string", "raw", "char", "number", "bool", "nil", "dot"):
                raise _GoError(nxt.pos, "unexpected . after term %q", tok.text)
            self._next(skip_space=False)
            if is_func:
                expr = self._call(tok, [])
                is_func = False
            expr = self._field(expr, nxt)
        return tok, expr, is_func

    def _field(self, receiver: str, tok: _Tok) -> str:
        self.fields.append((tok.text[1:], tok.pos))
        return f"_fld({len(self.fields) - 1}, {receiver})"


# ---------------------------------------------------------------------------------------
# Running the translated template


class _Runtime:
    """The callables a translated template sees, bound to its call and field tables."""

    def __init__(self, calls: list[tuple[str, int]], fields: list[tuple[str, int]]) -> None:
        self.calls = calls
        self.fields = fields

    def call(self, index: int, *args: Any) -> Any:
        name, pos = self.calls[index]
        try:
            return FUNCS[name].impl(*args)
        except ExecError as err:
            # The function is one of ours, not user text: no need to hide its name.
            raise _GoError(pos, f"error calling {name}: {err.message}", *err.names) from None
        except RecursionError:
            raise _GoError(pos, f"error calling {name}: too deeply nested") from None

    def field(self, index: int, receiver: Any) -> Any:
        name, pos = self.fields[index]
        if receiver is None:
            return None  # a field of nil data is "no value", as in Go
        if isinstance(receiver, dict):
            return receiver.get(name)
        if isinstance(receiver, GoValue):
            try:
                return receiver.go_field(name)
            except KeyError:
                pass
        raise _GoError(pos, f"can't evaluate field %s in type {type_name(receiver)}", name)

    @staticmethod
    def iterate(pos: int, value: Any) -> list[tuple[Any, Any]]:
        if value is None:
            return []
        if isinstance(value, (bool, float)):
            raise _GoError(pos, f"range can't iterate over type {type_name(value)}")
        if isinstance(value, int):
            return [(i, i) for i in range(max(value, 0))]
        if isinstance(value, list):
            return list(enumerate(value))
        if isinstance(value, dict):
            return [(k, value[k]) for k in sorted(value)]
        raise _GoError(pos, f"range can't iterate over type {type_name(value)}")


_env: Any = None


def _environment() -> Any:
    """The jinja2 environment, made on first use: a template that is one plain call
    (`{{env "X"}}`, `{{jsonPretty .}}`) never needs it, nor its import time."""
    global _env
    if _env is None:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        _env = SandboxedEnvironment(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            extensions=["jinja2.ext.loopcontrols"],
        )
    return _env


# One action calling one function on `.` or string constants, or printing `.`.
_ONE_CALL = re.compile(r'\{\{(?:-\s)?\s*(?:(?P<name>[A-Za-z_]\w*)(?P<args>(?:\s+(?:\.|"(?:[^"\\\n]|\\.)*"))*)|(?P<dot>\.))\s*(?:\s-)?\}\}')
_ONE_ARG = re.compile(r'\.|"(?:[^"\\\n]|\\.)*"')


def _one_call(template: str, data: Any) -> str | None:
    """The expansion of a template that is a single plain call, without the engine; None
    when it is anything else (then the full translation runs, with its own errors)."""
    match = _ONE_CALL.fullmatch(template)
    if match is None:
        return None
    if match.group("dot"):
        return print_result(data)
    func = FUNCS.get(match.group("name"))
    words = _ONE_ARG.findall(match.group("args"))
    if func is None or len(words) < func.min_args or (
            func.max_args is not None and len(words) > func.max_args):
        return None
    try:
        args = [data if w == "." else _unquote(w[1:-1], '"', 0) for w in words]
        return print_result(func.impl(*args))
    except (ExecError, _GoError):
        return None  # the full path reports it, with its position


def _position(src: str, pos: int) -> str:
    line = src.count("\n", 0, pos) + 1
    column = pos - (src.rfind("\n", 0, pos) + 1) + 1
    return f"{line}:{column}"


def translate(template: str) -> tuple[str, list[Any]]:
    """The jinja2 source for a Go template and its constants (for tests and debugging).

    Raises ValueError with a one-line reason for malformed templates.
    """
    try:
        translator = _Translator(template)
        return translator.translate(), translator.consts
    except _GoError as err:
        raise ValueError(f"{_position(template, err.pos)}: {err.render(False)}") from None


def expand(template: str, where: str, *, secret: bool = False, data: Any = None) -> str:
    """Expand a Go text/template string with the regclient functions.

    `where` names the value for errors (e.g. `regbot.yml:9:11: creds[1] (docker.io) pass`).
    `data` is `.` (nil for regbot.yml, as in Go; dicts, lists, scalars and GoValue
    objects otherwise).
    With `secret`, messages leave out names written in the template; expanded values never
    appear in a message. Raises ConfigError.
    """
    if "{{" not in template:
        return template  # nothing to expand (and plain passwords never reach a parser)
    quick = _one_call(template, data)
    if quick is not None:
        return quick
    from jinja2 import TemplateError

    try:
        translator = _Translator(template)
        source = translator.translate()
        runtime = _Runtime(translator.calls, translator.fields)
        compiled = _environment().from_string(source)
        return compiled.render(
            _data=data,
            _k=translator.consts,
            _call=runtime.call,
            _fld=runtime.field,
            _iter=runtime.iterate,
            _out=print_result,
            _truth=truth,
        )
    except _GoError as err:
        problem = f"{_position(template, err.pos)}: {err.render(secret)}"
        raise ConfigError(f"{where}: template {problem}") from None
    except (TemplateError, RecursionError) as err:
        # Not expected (the translation is ours); never echo values, only the kind.
        raise ConfigError(f"{where}: template could not be run ({type(err).__name__})") from None
