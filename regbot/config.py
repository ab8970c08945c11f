"""regbot.yml: loaded as the Go regbot loads it (goccy/go-yaml into regbot's Config).

Compatibility rules, from the Go source (cmd/regbot/config.go, config/host.go):
- Only the first YAML document is read. Scalars resolve as YAML 1.2 does in go-yaml:
  `yes`/`no`/`on` and dates stay strings; `0x10`, `0o17`, `017` and `1_000` are numbers.
- A duplicated mapping key is accepted (the last one wins); anchors, aliases and merge
  keys (`<<: *a`, `<<: [*a, *b]`) work. Keys apply in order, so a key written after a
  merge overrides the merged one and a merge written after a key overrides it, as in
  go-yaml; within a list of merges the first mapping wins.
- Unknown top-level keys (`x-anchor:`) are ignored. Unknown keys inside `defaults`,
  `scripts[]` and `creds[]` are ignored too, as Go does, but logged as warnings that name
  them and their line, so a typo (`intervall:`) does not pass unseen.
- Numbers may be written as numeric strings (`parallel: "2"`), and string fields take
  numbers or booleans as text, as go-yaml converts them. Durations must be Go duration
  strings (`60m`); `credExpire` also takes an integer of nanoseconds, as Go reads it.
- `version` 0 or missing means 1; above 1 is refused.

Stricter than Go, on purpose (each is a file that cannot work as meant):
- an invalid cron `schedule` is a load error (Go only logs it when the server starts);
- negative `interval`/`timeout`, scripts without a name and duplicate script names are
  errors (names key the locks and task names here).

Every error is a ConfigError, one line, starting with `source:line:column:` when the
place is known. A normal load stops at the first one; `check_config` (for `regbot check`)
goes on past each, collecting every problem: errors, and the unknown keys and other
mistakes a load only warns about. Template values (`user`, `pass`, `regcert`,
`clientCert`, `clientKey`) are expanded at load; secrets never appear in messages or logs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from regbot import __version__
from regbot.cron import Schedule, ScheduleError, every_schedule, parse_schedule
from regbot.durations import SECOND, DurationError, parse_duration, parse_duration_ns
from regbot.errors import ConfigError
from regbot.gotemplate import expand
from regbot.gotemplate_funcs import go_float, go_quote
from regbot.hosts import TLS_DISABLED, TLS_ENABLED, TLS_VALUES, Host
from regbot.types.ref import DOCKER_HUB, DOCKER_HUB_HOST

log = logging.getLogger("regbot.config")

CONFIG_VERSION = 1
DEFAULT_USER_AGENT = f"regbot/{__version__}"
DEFAULT_CRED_EXPIRE = 3600.0  # seconds; Go's default when credExpire is unset
# Beyond the Go regbot (which ignores these keys):
DEFAULT_COPY_WINDOW = 8  # copies one script has in flight at once (copyWindow)
# What the Lua state of a script opens: the whole standard library as the Go regbot does,
# or, for scripts the operator did not write, no files, processes or modules.
SANDBOX_FULL = "full"
SANDBOX_RESTRICTED = "restricted"
SANDBOX_MODES = (SANDBOX_FULL, SANDBOX_RESTRICTED)
DEFAULT_TRANSFER_MIN = 1024 * 1024  # blob bytes from which a cluster sends the blob to a node

# Names the Go client folds into docker.io (config.DockerRegistry*).
_HUB_NAMES = {DOCKER_HUB, DOCKER_HUB_HOST, "index.docker.io", "https://index.docker.io/v1/"}
_KNOWN_API_OPTS = {"disableHead"}
_GO_BOOLS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


@dataclass
class Defaults:
    """The `defaults` section (durations in seconds, None when unset)."""

    parallel: int = 1
    interval: float | None = None
    schedule: str = ""
    timeout: float | None = None
    blob_limit: int = 0
    skip_docker_config: bool = False
    user_agent: str = DEFAULT_USER_AGENT
    copy_window: int = DEFAULT_COPY_WINDOW
    transfer_min: int = DEFAULT_TRANSFER_MIN
    spread_copies: bool = False  # on a cluster: send a small copy whole to a node
    sandbox: str = SANDBOX_FULL


@dataclass
class ScriptConfig:
    """One `scripts` entry with the defaults already applied."""

    name: str
    script: str
    interval: float | None = None
    schedule: str = ""
    timeout: float | None = None
    line_offset: int = 1  # YAML line of the script's first line (Lua line n is n-1 below)
    copy_window: int = DEFAULT_COPY_WINDOW
    sandbox: str = SANDBOX_FULL

    def effective_schedule(self) -> Schedule | None:
        """When the server runs it: the schedule, else `@every <interval>`, else None."""
        if self.schedule:
            return parse_schedule(self.schedule)
        if self.interval:
            return every_schedule(self.interval)
        return None

    def yaml_line(self, lua_line: int) -> int:
        """The regbot.yml line holding line `lua_line` (1-based) of the script."""
        return self.line_offset + lua_line - 1


@dataclass
class Config:
    version: int
    creds: list[Host]
    defaults: Defaults
    scripts: list[ScriptConfig]
    source: str = "regbot.yml"

    def secrets(self) -> list[str]:
        """Every password, token and client key of the creds, for the log redaction."""
        return [v for host in self.creds for v in (host.password, host.token, host.client_key) if v]

    def script(self, name: str) -> ScriptConfig:
        """The script called name; KeyError when there is none."""
        for script in self.scripts:
            if script.name == name:
                return script
        raise KeyError(name)


# ---------------------------------------------------------------------------------------
# YAML: PyYAML's safe composer, with go-yaml's scalar resolution done by us.

_PLAIN = "tag:regbot:plain"
_STR = "tag:yaml.org,2002:str"


class _Loader(yaml.SafeLoader):
    """Composes nodes only; plain scalars keep their text and are resolved by _scalar."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


def _go_number(text: str) -> int | float | None:
    """go-yaml's token.ToNumber: decimal, 0x/0o/0b, leading-0 octal, one dot for floats."""
    if not text or text.startswith("_") or text.count(".") > 1 or not text.isascii():
        return None
    negative = text.startswith("-")
    body = text.removeprefix("-") if negative else text.removeprefix("+")
    body = body.replace("_", "")
    prefix = body[:2].lower()
    try:
        if prefix in ("0x", "0o", "0b"):
            digits = body[2:]
            if not digits.isalnum():
                return None
            value: int | float = int(digits, {"0x": 16, "0o": 8, "0b": 2}[prefix])
        elif "." in body:
            if body == "." or not all(c in "0123456789.eE+-" for c in body):
                return None
            value = float(body)
        elif not body.isdigit():
            return None
        elif body.startswith("0") and len(body) > 1:
            value = int(body, 8)  # a leading 0 is octal; 08 and 09 stay strings
        else:
            value = int(body)
    except ValueError:
        return None
    return -value if negative else value


_PLAIN_CONSTANTS: dict[str, Any] = {
    "": None, "~": None, "null": None, "Null": None, "NULL": None,
    "true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
    ".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"),
    "-.inf": float("-inf"), "-.Inf": float("-inf"), "-.INF": float("-inf"),
    ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan"),
}  # fmt: skip


@dataclass
class CheckReport:
    """What `check_config` found: `problems` make a config wrong (errors, unknown keys),
    `notes` are warnings a load logs (deprecated keys) that do not."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    config: Config | None = None


class _Doc:
    """Turns nodes into typed values; errors and warnings name the place.

    With a `report`, errors inside a `part()` are recorded and parsing goes on."""

    def __init__(self, source: str, report: CheckReport | None = None) -> None:
        self.source = source
        self.report = report

    @contextlib.contextmanager
    def part(self) -> Iterator[None]:
        """One independent piece (a key, an entry): its error ends only this piece when
        collecting, the whole load otherwise."""
        try:
            yield
        except ConfigError as err:
            if self.report is None:
                raise
            self.report.problems.append(str(err))

    # -- places and messages -----------------------------------------------------------
    def at(self, node: Node | None) -> str:
        if node is None:
            return self.source
        mark = node.start_mark
        return f"{self.source}:{mark.line + 1}:{mark.column + 1}"

    def error(self, node: Node | None, message: str) -> ConfigError:
        return ConfigError(f"{self.at(node)}: {message}")

    def warn(self, node: Node | None, message: str, *, problem: bool = False) -> None:
        """Log a warning; when checking, record it (as a problem when it is a mistake Go
        silently ignores, such as an unknown key)."""
        if self.report is None:
            log.warning("%s: %s", self.at(node), message)
        elif problem:
            self.report.problems.append(f"{self.at(node)}: {message}")
        else:
            self.report.notes.append(f"{self.at(node)}: warning: {message}")

    # -- scalars ------------------------------------------------------------------------
    def scalar(self, node: Node) -> Any:
        """The Python value of a scalar node (lists and mappings are returned as nodes)."""
        if not isinstance(node, ScalarNode):
            return node
        if node.tag == _PLAIN:
            if node.value in _PLAIN_CONSTANTS:
                return _PLAIN_CONSTANTS[node.value]
            number = _go_number(node.value)
            return node.value if number is None else number
        if node.tag == _STR:
            return node.value
        # An explicit tag (!!int "5", !!bool ...): resolve the text as a plain scalar.
        plain = ScalarNode(_PLAIN, node.value, node.start_mark, node.end_mark)
        return self.scalar(plain)

    @staticmethod
    def describe(value: Any) -> str:
        if isinstance(value, SequenceNode):
            return "a list"
        if isinstance(value, MappingNode):
            return "a mapping"
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return go_float(value)
        if isinstance(value, int):
            return str(value)
        text = str(value)
        return go_quote(text if len(text) <= 60 else text[:57] + "...")

    def string(self, node: Node, path: str) -> str:
        value = self.scalar(node)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return go_float(value)
        if isinstance(value, (int, str)):
            return str(value)
        raise self.error(node, f"{path}: expected a string, got {self.describe(value)}")

    def integer(self, node: Node, path: str, *, minimum: int | None = None) -> int:
        value = self.scalar(node)
        if value is None:
            return 0
        number: Any = value
        if isinstance(value, str):  # go-yaml: numeric strings (and 1e9) are accepted
            try:
                number = float(value.strip()) if value.strip() else None
            except ValueError:
                number = None
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if not isinstance(number, int) or isinstance(number, bool):
            raise self.error(node, f"{path}: expected an integer, got {self.describe(value)}")
        if not -(1 << 63) <= number < (1 << 63):
            raise self.error(node, f"{path}: {number} is out of range")
        if minimum is not None and number < minimum:
            raise self.error(
                node, f"{path}: expected an integer of at least {minimum}, got {number}"
            )
        return number

    def number(self, node: Node, path: str) -> float:
        value = self.scalar(node)
        if value is None:
            return 0.0
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise self.error(node, f"{path}: expected a number, got {self.describe(value)}")

    def boolean(self, node: Node, path: str) -> bool:
        value = self.scalar(node)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        raise self.error(node, f"{path}: expected true or false, got {self.describe(value)}")

    def duration(self, node: Node, path: str) -> float | None:
        """A Go duration string in seconds; None when unset or zero (Go's "unset")."""
        value = self.scalar(node)
        if value is None or (value == 0 and not isinstance(value, bool)):
            return None
        if not isinstance(value, str):
            raise self.error(
                node, f'{path}: expected a duration such as "60m", got {self.describe(value)}'
            )
        try:
            seconds = parse_duration(value)
        except DurationError as err:
            raise self.error(node, f"{path} {go_quote(value)}: {err.reason}") from None
        if seconds < 0:
            raise self.error(node, f"{path} {go_quote(value)}: must not be negative")
        return seconds or None

    def schedule(self, node: Node, path: str) -> str:
        text = self.string(node, path)
        if text:
            try:
                parse_schedule(text)
            except ScheduleError as err:
                reason = " ".join(str(err).split())  # one line, whatever the text held
                raise self.error(node, f"{path} {go_quote(text)}: {reason}") from None
        return text

    def string_list(self, node: Node, path: str) -> list[str]:
        if self.scalar(node) is None:
            return []
        if not isinstance(node, SequenceNode):
            raise self.error(
                node, f"{path}: expected a list of strings, got {self.describe(self.scalar(node))}"
            )
        return [self.string(item, f"{path}[{i}]") for i, item in enumerate(node.value)]

    # -- collections --------------------------------------------------------------------
    def mapping(self, node: Node | None, path: str) -> dict[str, tuple[Node, Node]]:
        """Keys to (key node, value node), merges applied; {} for null or absent."""
        if node is None or (isinstance(node, ScalarNode) and self.scalar(node) is None):
            return {}
        if not isinstance(node, MappingNode):
            raise self.error(
                node, f"{path}: expected a mapping, got {self.describe(self.scalar(node))}"
            )
        return self._flatten(node, path, [])

    def _flatten(
        self, node: MappingNode, path: str, stack: list[MappingNode]
    ) -> dict[str, tuple[Node, Node]]:
        if any(node is seen for seen in stack):
            raise self.error(node, f"{path}: recursive merge key")
        stack = [*stack, node]
        entries: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if (
                isinstance(key_node, ScalarNode)
                and key_node.tag == _PLAIN
                and key_node.value == "<<"
            ):
                entries.update(self._merge(value_node, path, stack))
                continue
            key = self.string(key_node, f"{path} key")
            entries.pop(key, None)  # a duplicated key: the last one wins, at its place
            entries[key] = (key_node, value_node)
        return entries

    def _merge(
        self, node: Node, path: str, stack: list[MappingNode]
    ) -> dict[str, tuple[Node, Node]]:
        if isinstance(node, MappingNode):
            return self._flatten(node, path, stack)
        if isinstance(node, SequenceNode):
            merged: dict[str, tuple[Node, Node]] = {}
            for item in reversed(node.value):  # the first mapping listed wins
                if not isinstance(item, MappingNode):
                    raise self.error(item, f"{path}: a merge key (<<) takes mappings")
                merged.update(self._flatten(item, path, stack))
            return merged
        raise self.error(node, f"{path}: a merge key (<<) takes a mapping or a list of mappings")

    def sequence(self, node: Node | None, path: str) -> list[Node]:
        if node is None or (isinstance(node, ScalarNode) and self.scalar(node) is None):
            return []
        if not isinstance(node, SequenceNode):
            raise self.error(
                node, f"{path}: expected a list, got {self.describe(self.scalar(node))}"
            )
        return list(node.value)

    def unknown_keys(
        self, entries: dict[str, tuple[Node, Node]], known: set[str], path: str
    ) -> None:
        for key, (key_node, _) in entries.items():
            if key not in known:
                self.warn(key_node, f"{path}: unknown key {go_quote(key)} ignored", problem=True)


def _compose(text: str, doc: _Doc) -> Node | None:
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        return loader.get_node() if loader.check_node() else None  # first document only
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{doc.source}:{mark.line + 1}:{mark.column + 1}" if mark else doc.source
        problem = " ".join(str(err.problem or "").split())
        context = " ".join(str(err.context or "").split())
        detail = f"{context}: {problem}" if context and problem else (problem or context)
        raise ConfigError(f"{where}: invalid YAML: {detail}") from None
    except yaml.reader.ReaderError as err:  # a character YAML does not allow
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        code = err.character if isinstance(err.character, int) else ord(err.character)
        raise ConfigError(
            f"{doc.source}:{line}:{column}: invalid YAML: character #x{code:04x} is not allowed"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


# ---------------------------------------------------------------------------------------
# Sections

_DEFAULT_KEYS = {
    "interval", "schedule", "parallel", "timeout", "blobLimit", "skipDockerConfig", "userAgent",
    "copyWindow", "transferMin", "spreadCopies", "sandbox",
}  # fmt: skip
_SCRIPT_KEYS = {"name", "script", "interval", "schedule", "timeout", "copyWindow", "sandbox"}
_CRED_KEYS = {
    "registry", "hostname", "tls", "scheme", "user", "pass", "token", "credHelper",
    "credExpire", "credHost", "regcert", "clientCert", "clientKey", "pathPrefix", "mirrors",
    "priority", "repoAuth", "api", "apiOpts", "blobChunk", "blobMax", "reqPerSec",
    "reqConcurrent",
}  # fmt: skip


def _node(entries: dict[str, tuple[Node, Node]], key: str) -> Node | None:
    return entries[key][1] if key in entries else None


def _defaults(doc: _Doc, node: Node | None) -> Defaults:
    d = Defaults()
    entries: dict[str, tuple[Node, Node]] = {}
    with doc.part():
        entries = doc.mapping(node, "defaults")
    doc.unknown_keys(entries, _DEFAULT_KEYS, "defaults")
    # each key on its own: when checking, one bad value does not hide the others
    if (n := _node(entries, "parallel")) is not None:
        with doc.part():
            d.parallel = max(doc.integer(n, "defaults.parallel"), 1)  # 0 or less means 1
    if (n := _node(entries, "interval")) is not None:
        with doc.part():
            d.interval = doc.duration(n, "defaults.interval")
    if (n := _node(entries, "schedule")) is not None:
        with doc.part():
            d.schedule = doc.schedule(n, "defaults.schedule")
    if (n := _node(entries, "timeout")) is not None:
        with doc.part():
            d.timeout = doc.duration(n, "defaults.timeout")
    if (n := _node(entries, "blobLimit")) is not None:
        with doc.part():
            d.blob_limit = doc.integer(n, "defaults.blobLimit", minimum=0)
    if (n := _node(entries, "skipDockerConfig")) is not None:
        with doc.part():
            d.skip_docker_config = doc.boolean(n, "defaults.skipDockerConfig")
    if (n := _node(entries, "userAgent")) is not None:
        with doc.part():
            d.user_agent = doc.string(n, "defaults.userAgent") or DEFAULT_USER_AGENT
    if (n := _node(entries, "copyWindow")) is not None:
        with doc.part():
            d.copy_window = doc.integer(n, "defaults.copyWindow", minimum=1)
    if (n := _node(entries, "transferMin")) is not None:
        with doc.part():
            d.transfer_min = doc.integer(n, "defaults.transferMin", minimum=0)
    if (n := _node(entries, "spreadCopies")) is not None:
        with doc.part():
            d.spread_copies = doc.boolean(n, "defaults.spreadCopies")
    if (n := _node(entries, "sandbox")) is not None:
        with doc.part():
            d.sandbox = _sandbox_mode(doc, n, "defaults.sandbox")
    return d


def _sandbox_mode(doc: _Doc, node: Node, path: str) -> str:
    mode = doc.string(node, path)
    if mode not in SANDBOX_MODES:
        raise doc.error(node, f"{path}: expected {' or '.join(SANDBOX_MODES)}, got {go_quote(mode)}")
    return mode


def _scripts(doc: _Doc, node: Node | None, defaults: Defaults) -> list[ScriptConfig]:
    scripts: list[ScriptConfig] = []
    seen: dict[str, tuple[int, Node]] = {}
    items: list[Node] = []
    with doc.part():
        items = doc.sequence(node, "scripts")
    for index, item in enumerate(items):
        with doc.part():
            scripts.append(_script(doc, index, item, seen, defaults))
    return scripts


def _script(doc: _Doc, index: int, item: Node, seen: dict[str, tuple[int, Node]],
            defaults: Defaults) -> ScriptConfig:
    """One `scripts[]` entry; `seen` holds the names of the entries before it."""
    entries = doc.mapping(item, f"scripts[{index}]")
    name_node = _node(entries, "name")
    name = doc.string(name_node, f"scripts[{index}]: name") if name_node is not None else ""
    where = f"scripts[{index}] {go_quote(name)}" if name else f"scripts[{index}]"
    if not name:
        raise doc.error(name_node or item, f"{where}: missing name")
    if name in seen:
        first_index, first_node = seen[name]
        raise doc.error(
            name_node,
            f"{where}: duplicate script name (also scripts[{first_index}], "
            f"line {first_node.start_mark.line + 1})",
        )
    seen[name] = (index, item)
    doc.unknown_keys(entries, _SCRIPT_KEYS, where)
    script_node = _node(entries, "script")
    body = doc.string(script_node, f"{where}: script") if script_node is not None else ""
    if not body.strip():
        doc.warn(script_node or item, f"{where}: empty script")
    line_offset = item.start_mark.line + 1
    if script_node is not None:
        line_offset = script_node.start_mark.line + 1
        if isinstance(script_node, ScalarNode) and script_node.style in ("|", ">"):
            line_offset += 1  # a block scalar's text starts below its indicator
    interval = timeout = None
    schedule = ""
    if (n := _node(entries, "interval")) is not None:
        with doc.part():
            interval = doc.duration(n, f"{where}: interval")
    if (n := _node(entries, "schedule")) is not None:
        with doc.part():
            schedule = doc.schedule(n, f"{where}: schedule")
    if (n := _node(entries, "timeout")) is not None:
        with doc.part():
            timeout = doc.duration(n, f"{where}: timeout")
    # Go's scriptSetDefaults: neither interval nor schedule -> the default schedule,
    # else the default interval; no timeout -> the default timeout.
    if not schedule and not interval:
        if defaults.schedule:
            schedule = defaults.schedule
        elif defaults.interval:
            interval = defaults.interval
    if not timeout:
        timeout = defaults.timeout
    copy_window = defaults.copy_window
    if (n := _node(entries, "copyWindow")) is not None:
        with doc.part():
            copy_window = doc.integer(n, f"{where}: copyWindow", minimum=1)
    sandbox = defaults.sandbox
    if (n := _node(entries, "sandbox")) is not None:
        with doc.part():
            sandbox = _sandbox_mode(doc, n, f"{where}: sandbox")
    return ScriptConfig(
        name=name,
        script=body,
        interval=interval,
        schedule=schedule,
        timeout=timeout,
        line_offset=line_offset,
        copy_window=copy_window,
        sandbox=sandbox,
    )


@dataclass
class _CredEntry:
    host: Host
    given: set[str] = field(default_factory=set)  # Host fields the YAML entry set


def _label(name: str) -> str:
    """A registry name for messages: as written, or quoted when it holds odd characters."""
    return name if name.isprintable() and name.strip() == name else go_quote(name)


def _registry_name(name: str) -> str:
    return DOCKER_HUB if name in _HUB_NAMES else name


def _cred(doc: _Doc, index: int, item: Node) -> _CredEntry | None:
    entries = doc.mapping(item, f"creds[{index}]")
    name_node = _node(entries, "registry")
    raw_name = doc.string(name_node, f"creds[{index}] registry") if name_node is not None else ""
    where = f"creds[{index}] ({_label(raw_name)})" if raw_name else f"creds[{index}]"
    doc.unknown_keys(entries, _CRED_KEYS, where)
    if not raw_name:
        doc.warn(item, f"{where}: no registry name, entry ignored", problem=True)  # as Go does
        return None
    name = _registry_name(raw_name)
    values: dict[str, Any] = {}
    given: set[str] = set()

    def node_of(key: str) -> Node | None:
        return _node(entries, key)

    def take(key: str, attr: str, convert: Callable[[Node, str], Any]) -> None:
        found = node_of(key)
        if found is not None:
            with doc.part():
                values[attr] = convert(found, f"{where} {key}")
                given.add(attr)

    def template(key: str, attr: str, secret: bool) -> None:
        found = node_of(key)
        if found is not None:
            with doc.part():
                text = doc.string(found, f"{where} {key}")
                values[attr] = expand(text, f"{doc.at(found)}: {where} {key}", secret=secret)
                given.add(attr)

    take("hostname", "hostname", doc.string)
    take("token", "token", doc.string)
    take("credHelper", "cred_helper", doc.string)
    take("credHost", "cred_host", doc.string)
    take("pathPrefix", "path_prefix", lambda n, p: doc.string(n, p).strip("/"))
    take("mirrors", "mirrors", doc.string_list)
    take("priority", "priority", lambda n, p: doc.integer(n, p, minimum=0))
    take("repoAuth", "repo_auth", doc.boolean)
    take("blobChunk", "blob_chunk", lambda n, p: max(doc.integer(n, p), 0))
    take("blobMax", "blob_max", doc.integer)
    take("reqPerSec", "req_per_sec", lambda n, p: max(doc.number(n, p), 0.0))
    take("reqConcurrent", "req_concurrent", lambda n, p: max(doc.integer(n, p), 0))
    take("credExpire", "cred_expire", lambda n, p: _cred_expire(doc, n, p))
    template("user", "user", secret=False)
    template("pass", "password", secret=True)
    template("regcert", "regcert", secret=False)
    template("clientCert", "client_cert", secret=False)
    template("clientKey", "client_key", secret=True)

    tls_node = node_of("tls")
    tls_text = ""
    with doc.part():
        tls_raw = doc.string(tls_node, f"{where} tls") if tls_node is not None else ""
        if tls_raw and tls_raw.lower() not in TLS_VALUES:
            raise doc.error(
                tls_node,
                f"{where}: unknown tls value {go_quote(tls_raw)} "
                "(expected enabled, insecure or disabled)",
            )
        tls_text = tls_raw.lower()  # Go's TLSConf.UnmarshalText ignores case
    scheme_node = node_of("scheme")
    scheme = doc.string(scheme_node, f"{where} scheme") if scheme_node is not None else ""
    if scheme:
        if scheme.lower() == "http" and not tls_text:
            tls_text = TLS_DISABLED
            doc.warn(scheme_node, f"{where}: scheme is deprecated; http taken as tls: disabled")
        elif scheme.lower() in ("http", "https"):
            tls_now = tls_text or TLS_ENABLED
            doc.warn(scheme_node, f"{where}: scheme is deprecated and ignored (tls: {tls_now})")
        else:
            doc.warn(scheme_node, f"{where}: unknown scheme {go_quote(scheme)} ignored",
                     problem=True)
    if tls_text:
        values["tls"] = tls_text
        given.add("tls")
    if node_of("api") is not None:
        doc.warn(node_of("api"), f"{where}: api is deprecated and ignored")
    api_opts: dict[str, str] = {}
    with doc.part():
        api_opts = _api_opts(doc, node_of("apiOpts"), f"{where} apiOpts")
    if api_opts:
        values["api_opts"] = api_opts
        given.add("api_opts")

    hostname = values.get("hostname", "")
    if name == DOCKER_HUB and hostname in ("", DOCKER_HUB, "https://index.docker.io/v1/"):
        values["hostname"] = DOCKER_HUB_HOST
    return _CredEntry(Host(name=name, **values), given)


def _cred_expire(doc: _Doc, node: Node, path: str) -> float:
    value = doc.scalar(node)
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value / SECOND  # Go reads this field as integer nanoseconds
    elif isinstance(value, str):
        try:
            seconds = parse_duration_ns(value) / SECOND
        except DurationError as err:
            raise doc.error(node, f"{path} {go_quote(value)}: {err.reason}") from None
    elif value is None:
        seconds = 0.0
    else:
        raise doc.error(
            node, f'{path}: expected a duration such as "1h", got {doc.describe(value)}'
        )
    return seconds if seconds > 0 else DEFAULT_CRED_EXPIRE


def _api_opts(doc: _Doc, node: Node | None, path: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for key, (_, value_node) in doc.mapping(node, path).items():
        value = doc.string(value_node, f"{path}.{key}")
        if key not in _KNOWN_API_OPTS:
            log.debug("%s: %s: unknown option %s ignored", doc.at(value_node), path, go_quote(key))
        elif key == "disableHead" and value not in _GO_BOOLS:
            doc.warn(value_node, f"{path}.{key}: expected true or false, got {go_quote(value)}",
                     problem=True)
        opts[key] = value
    return opts


def _merge_host(old: _CredEntry, new: _CredEntry, doc: _Doc, node: Node) -> None:
    """A later entry for the same registry updates the earlier one, as Go's Host.Merge."""
    name = _label(old.host.name)
    doc.warn(node, f"registry {name} is configured more than once; later values win")
    host, update = old.host, new.host
    if not update.cred_helper and (update.password or update.token):
        host.cred_helper, host.cred_expire = "", DEFAULT_CRED_EXPIRE  # login replaces helper
    if update.cred_helper and not (update.user or update.password or update.token):
        host.user = host.password = host.token = ""  # helper replaces login
    for attr in new.given:
        value = getattr(update, attr)
        if attr == "api_opts":
            host.api_opts = {**host.api_opts, **value}
        elif value:  # Go merges only set (non-zero) values
            setattr(host, attr, value)
    old.given |= new.given


def _creds(doc: _Doc, node: Node | None) -> list[Host]:
    by_name: dict[str, _CredEntry] = {}
    items: list[Node] = []
    with doc.part():
        items = doc.sequence(node, "creds")
    for index, item in enumerate(items):
        entry = None
        with doc.part():
            entry = _cred(doc, index, item)
        if entry is None:
            continue
        if entry.host.name in by_name:
            _merge_host(by_name[entry.host.name], entry, doc, item)
        else:
            by_name[entry.host.name] = entry
    return [entry.host for entry in by_name.values()]


# ---------------------------------------------------------------------------------------
# Entry points


def parse_config(text: str, source: str = "regbot.yml",
                 report: CheckReport | None = None) -> Config:
    """Parse regbot.yml text; `source` names it in errors. Raises ConfigError at the
    first error, or, given a `report`, records every problem there and goes on."""
    doc = _Doc(source, report)
    root = _compose(text.removeprefix("\ufeff"), doc)
    top: dict[str, tuple[Node, Node]] = {}
    if root is not None:
        with doc.part():
            top = doc.mapping(root, "top level")
    for key, (key_node, _) in top.items():
        if key not in ("version", "creds", "defaults", "scripts"):
            log.debug("%s: ignoring top-level key %s", doc.at(key_node), go_quote(key))

    def section(key: str) -> Node | None:
        return top[key][1] if key in top else None

    version_node = section("version")
    with doc.part():
        version = doc.integer(version_node, "version") if version_node is not None else 0
        if version > CONFIG_VERSION:
            raise doc.error(version_node, f"unsupported config version {version}")
    defaults = _defaults(doc, section("defaults"))
    scripts = _scripts(doc, section("scripts"), defaults)
    creds = _creds(doc, section("creds"))
    return Config(
        version=CONFIG_VERSION,
        creds=creds,
        defaults=defaults,
        scripts=scripts,
        source=source,
    )


def load_config(path: str) -> Config:
    """Read and parse a config file; "-" reads standard input. Raises ConfigError."""
    text, source = read_config_text(path)
    return parse_config(text, source)


def read_config_text(path: str) -> tuple[str, str]:
    """The text of a config file ("-": standard input) and its name for messages."""
    if path == "-":
        source = "<stdin>"
        try:
            return sys.stdin.read(), source
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{source}: cannot read config: {_reason(err)}") from None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(), path
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config: {_reason(err)}") from None


def check_config(text: str, source: str = "regbot.yml") -> CheckReport:
    """Every problem of a config, without running or contacting anything (the Lua
    scripts are compiled by regbot/commands/check.py)."""
    report = CheckReport()
    try:
        report.config = parse_config(text, source, report)
    except ConfigError as err:  # YAML that does not parse: nothing more to look at
        report.problems.append(str(err))
    return report


def _reason(err: Exception) -> str:
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text (byte {err.start})"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return type(err).__name__
