"""The Lua runtime of one script run: state, timeout, conversions and error mapping.

One `Sandbox` per script run (a fresh `lupa.lua51` state each time, nothing shared). The
module files (reference.py, tag.py, ...) only register functions; this file owns:
- the runtime itself, built without lupa's `python` module, with the Lua standard library
  as the Go regbot opens it, or restricted (see objects.PRELUDE `restrict_globals`);
- the timeout: a Lua count hook calls `_check_deadline` every `hook_every` instructions,
  and long API calls check `deadline` themselves (`sleep`, `cancel_token`, `heavy_slot`);
- the one converter each way (`to_lua`, `from_lua`);
- error mapping: a Python exception never crosses into Lua (lupa would hand the exception
  object to a script's pcall); every call returns `(ok, ...)` and the Lua closure raises a
  plain string error naming the script line.

Sandbox modes (`defaults.sandbox`, `scripts[].sandbox`):
- `full` (the default, the Go regbot's): the whole Lua 5.1 standard library: `io`, all of
  `os` (`os.exit` ends the script, never the process), `require` of Lua files on
  `package.path` (the config file's directory first; no native modules), `coroutine`,
  `debug` (without `sethook`/`gethook`/`getregistry`: the timeout hook stays);
- `restricted` (for scripts the operator did not write): the base library, string,
  table, math, coroutine, `os.time/date/clock/difftime`, `debug.traceback`; no `io`,
  `os.execute/exit/remove/rename/tmpname/getenv/setlocale`, `require`, `package`,
  `module`, `dofile`, `loadfile`, `newproxy`, `gcinfo`;
- in both: every coroutine gets the timeout hook; `loadstring`/`load`/`loadfile` accept
  source text only (no bytecode), `string.dump` is gone; `collectgarbage` only
  "collect", "count" and "step"; `print` writes to the log like `log`; no `python`.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import lupa.lua51 as lua51

from regbot.config import DEFAULT_COPY_WINDOW, SANDBOX_FULL, SANDBOX_RESTRICTED
from regbot.durations import format_duration
from regbot.errors import LimitTimeout, RegbotError, ScriptError, ScriptTimeout
from regbot.logs import TRACE, ScriptLogger
from regbot.sandbox.client import ScriptClient
from regbot.sandbox.copies import CopyFailed, CopyWindow
from regbot.sandbox.objects import PRELUDE
from regbot.sandbox.schema import lua_schemas, lua_type_name
from regbot.types.manifest import Manifest
from regbot.types.ref import Reference

# Instructions between two deadline checks. A check (a call into Python) costs about
# 0.75 µs; 5000 simple instructions take 25-50 µs, so a tight loop runs ~2-3 % slower
# (measured: 100 -> +150 %, 1000 -> ~+15 %, 10000 -> ~+1.5 %). Costly instructions (big
# string concatenations) stretch the interval, hence not more.
HOOK_EVERY = 5_000
# Longest single sleep inside an API call before the deadline is looked at again.
SLEEP_STEP = 0.2
MAX_DEPTH = 100
# How long a HEAD answer stands for the next read of the same reference: the usual
# `image.ratelimitWait(ref) ... image.copy(ref, ...)` then asks the upstream once.
RECENT_HEAD = 1.0

_SCRIPT_POS = re.compile(r"^script:(\d+): (.*)$", re.S)


class ArgumentError(RegbotError):
    """A script passed a wrong argument to an API function."""


@dataclass
class RunStats:
    """What a run did, for ScriptResult."""

    images_copied: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_copied: int = 0
    tags_deleted: int = 0


class Sandbox:
    """A fresh Lua state for one run of one script.

    `client` is the RegClient every API call goes through; `timeout` (seconds, None for
    none) bounds the whole run; `dry_run` turns every write into a logged no-op;
    `parallel` is defaults.parallel (heavy calls take a cluster-wide slot); `progress` and
    `executor` are handed to the copy engine.
    """

    def __init__(
        self,
        name: str,
        client: Any,
        *,
        dry_run: bool = False,
        timeout: float | None = None,
        parallel: int = 1,
        progress: Any = None,
        executor: Any = None,
        run_tag: Any = None,
        copy_window: int = DEFAULT_COPY_WINDOW,
        logger: ScriptLogger | None = None,
        hook_every: int = HOOK_EVERY,
        cancel: threading.Event | None = None,
        sandbox_mode: str = SANDBOX_FULL,
        module_dir: str | None = None,
    ) -> None:
        self.name = name
        # Copies use the engine's client; every other call waits for the copies it must
        # not overlap (regbot/sandbox/copies.py).
        self.copies = CopyWindow(copy_window, wait=self.wait_for, hold_slot=self._hold_heavy,
                                 drop_slot=self._drop_heavy)
        self.engine_client = client
        self.client = ScriptClient(client, self.copies)
        self.dry_run = dry_run
        self.timeout = timeout
        self.parallel = max(1, int(parallel or 1))
        self.progress = progress
        self.executor = executor
        self.run_tag = run_tag  # labels this run's copies (regbot.copy.RunTag)
        self.log = logger or ScriptLogger(name)
        self.stats = RunStats()
        self._stats_guard = threading.Lock()  # copies count from their own threads
        self._heavy_depth = 0
        self._recent_head: tuple[str, float, Any] = ("", 0.0, None)
        self._heavy_hold: ExitStack | None = None
        self.deadline = time.monotonic() + timeout if timeout is not None else None
        self.timed_out = False
        self._cancel = cancel or threading.Event()
        self._interrupt: BaseException | None = None
        self._functions: list[tuple[str, Callable[..., Any]]] = []
        self._objects: dict[int, tuple[str, Any]] = {}
        self._ids = itertools.count(1)
        self._closers: list[Callable[[], None]] = []

        self._lua = lua51.LuaRuntime(
            encoding=None,
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
        )
        use_hook = timeout is not None or cancel is not None
        self._internal = self._lua.execute(
            PRELUDE,
            self._dispatch,
            self._check_deadline,
            self.to_lua(lua_schemas()),
            hook_every if use_hook else 0,
            name="=regbot",
        )
        self._handles = self._internal[b"handles"]
        self._backing = self._internal[b"backing"]

        from regbot.sandbox import MODULES  # the module files import this one

        for setup in MODULES:
            setup(self)
        self._internal[b"restrict_globals"](
            sandbox_mode == SANDBOX_RESTRICTED,
            module_dir.encode("utf-8", "surrogateescape") if module_dir else None)

    # ------------------------------------------------------------ registration

    def register_global(self, name: str, fn: Callable[..., Any]) -> None:
        self._define("global", name, fn)

    def register_function(self, module: str, name: str, fn: Callable[..., Any]) -> None:
        """`module.name(...)` in Lua calls fn(*lua_args)."""
        self._define(f"module:{module}", name, fn)

    def register_method(self, kind: str, name: str, fn: Callable[..., Any]) -> None:
        """`obj:name(...)` on objects of `kind` calls fn(obj, *lua_args).
        `__tostring` is the object's tostring()."""
        self._define(f"method:{kind}", name, fn)

    def _define(self, where: str, name: str, fn: Callable[..., Any]) -> None:
        fid = len(self._functions)
        label = name if where == "global" else f"{where.split(':', 1)[1]}.{name}"
        self._functions.append((label, fn))
        self._internal[b"define"](where.encode(), name.encode(), fid)

    # ------------------------------------------------------------ objects

    def new_object(self, kind: str, state: Any, document: Any = None, schema: str | None = None) -> Any:
        """A Lua object of `kind` for Python `state` (which must have a `.ref`); with
        `schema`, the object is a view of `document` (manifest, config, blob)."""
        oid = next(self._ids)
        self._objects[oid] = (kind, state)
        data = self.to_lua(document if document is not None else {}) if schema else None
        return self._internal[b"new_object"](
            kind.encode(), oid, data, schema.encode() if schema else None
        )

    def lookup(self, value: Any) -> tuple[str, Any] | None:
        """(kind, state) of a Lua object made by `new_object`, else None."""
        if lua51.lua_type(value) != "table":
            return None
        oid = self._handles[value]
        if oid is None:
            return None
        return self._objects.get(oid)

    def describe(self, value: Any) -> str:
        """What an argument is, for error messages: `a manifest object` or its Lua type."""
        found = self.lookup(value)
        return f"a {found[0]} object" if found is not None else lua_type_name(value)

    def object_state(self, value: Any, kind: str, what: str) -> Any:
        """The state of `value`, a Lua object of `kind`; ArgumentError naming `what` if not."""
        found = self.lookup(value)
        if found is None or found[0] != kind:
            raise ArgumentError(f"{what}: {kind} object expected, got {self.describe(value)}")
        return found[1]

    def fields(self, value: Any) -> Any:
        """The (possibly edited) document of an object, as plain Python values."""
        return self.from_lua(value)

    def on_close(self, fn: Callable[[], None]) -> None:
        """Run fn when the sandbox closes (open streams and the like)."""
        self._closers.append(fn)

    # ------------------------------------------------------------ conversions

    def to_lua(self, value: Any) -> Any:
        """Python -> Lua: str to bytes, lists and dicts to tables (recursively)."""
        if value is None or isinstance(value, (bool, int, float, bytes)):
            return value
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        if lua51.lua_type(value) is not None:
            return value
        if isinstance(value, (list, tuple)):
            # element by element into the table: a long list (tag.ls of 10,000 tags) is
            # not first encoded into a second list of the same length
            return self._lua.table_from((self._encode(v, 1) for v in value), recursive=True)
        if isinstance(value, dict):
            return self._lua.table_from(self._encode(value, 0), recursive=True)
        raise TypeError(f"cannot hand a {type(value).__name__} to Lua")

    def _encode(self, value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError("value nested too deeply")
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        if isinstance(value, dict):
            return {self._encode(k, depth + 1): self._encode(v, depth + 1)
                    for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [self._encode(v, depth + 1) for v in value]
        if value is None or isinstance(value, (bool, int, float, bytes)):
            return value
        if lua51.lua_type(value) is not None:
            return value
        raise TypeError(f"cannot hand a {type(value).__name__} to Lua")

    def from_lua(self, value: Any, depth: int = 0) -> Any:
        """Lua -> Python: strings to str, tables to lists (keys 1..n) or dicts, object
        views to their document. Functions and other Lua values are refused."""
        kind = lua51.lua_type(value)
        if kind is None:
            if isinstance(value, bytes):
                return value.decode("utf-8", "surrogateescape")
            return value
        if kind != "table":
            raise ArgumentError(f"a {kind} value cannot be used here")
        if depth > MAX_DEPTH:
            raise ArgumentError("table nested too deeply (or it contains itself)")
        document = self._backing[value]
        if document is not None:
            value = document
        items = list(value.items())
        if items and all(type(k) is int for k, _ in items):
            keys = sorted(k for k, _ in items)
            if keys == list(range(1, len(keys) + 1)):
                by_key = dict(items)
                return [self.from_lua(by_key[i], depth + 1) for i in keys]
        out: dict[str, Any] = {}
        for key, item in items:
            if isinstance(key, bytes):
                key = key.decode("utf-8", "surrogateescape")
            elif type(key) in (int, float, bool):
                key = str(key)
            else:
                raise ArgumentError(f"a table key of type {lua51.lua_type(key)} cannot be used here")
            out[key] = self.from_lua(item, depth + 1)
        return out

    def text(self, value: Any, what: str) -> str:
        """A string argument (numbers accepted, as Lua's checkstring does)."""
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        if type(value) in (int, float):
            return str(value)
        raise ArgumentError(f"{what}: string expected, got {lua_type_name(value)}")

    def optional_text(self, value: Any, what: str) -> str | None:
        return None if value is None else self.text(value, what)

    def number(self, value: Any, what: str) -> float:
        if type(value) in (int, float):
            return value
        if isinstance(value, bytes):
            try:
                return float(value)
            except ValueError:
                pass
        raise ArgumentError(f"{what}: number expected, got {lua_type_name(value)}")

    def options(self, value: Any, what: str) -> dict[str, Any]:
        """An optional options table, as a dict."""
        if value is None:
            return {}
        if lua51.lua_type(value) != "table":
            raise ArgumentError(f"{what}: options table expected, got {lua_type_name(value)}")
        data = self.from_lua(value)
        return data if isinstance(data, dict) else {}

    # ------------------------------------------------------------ deadline

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def timeout_message(self) -> str:
        if self._cancel.is_set() and not self._deadline_passed():
            return "cancelled"
        return f"timed out after {format_duration(self.timeout or 0)}"

    def _deadline_passed(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def expired(self) -> bool:
        if self.timed_out:
            return True
        if self._deadline_passed() or self._cancel.is_set():
            self.timed_out = True
        return self.timed_out

    def check_deadline(self) -> None:
        """Raise ScriptTimeout when the run's time is up (for long API calls)."""
        if self.expired():
            raise ScriptTimeout(self.name, self.timeout_message())

    def sleep(self, seconds: float) -> None:
        """Sleep in small steps, ending early with ScriptTimeout at the deadline."""
        end = time.monotonic() + max(0.0, seconds)
        while True:
            self.check_deadline()
            left = end - time.monotonic()
            if left <= 0:
                return
            if self._cancel.wait(min(SLEEP_STEP, left)):
                self.check_deadline()

    def wait_for(self, event: threading.Event) -> None:
        """Wait until `event` is set, ending early with ScriptTimeout at the deadline."""
        while not event.is_set():
            self.check_deadline()
            left = self.remaining()
            event.wait(SLEEP_STEP if left is None else min(SLEEP_STEP, max(left, 0.001)))

    @contextmanager
    def heavy_slot(self) -> Iterator[None]:
        """One of defaults.parallel cluster-wide slots for a heavy call, waiting no longer
        than the script may run. A run holds at most one: a heavy call made while its
        copies are in flight (which hold the run's slot) does not take a second."""
        if self._heavy_depth:
            self._heavy_depth += 1
            try:
                yield
            finally:
                self._heavy_depth -= 1
            return
        try:
            with self.client.limits.heavy_slot(self.parallel, timeout=self.remaining()):
                self._heavy_depth += 1
                try:
                    yield
                finally:
                    self._heavy_depth -= 1
        except LimitTimeout:
            if self.expired():
                raise ScriptTimeout(self.name, self.timeout_message()) from None
            raise

    def _hold_heavy(self) -> None:
        hold = ExitStack()
        hold.enter_context(self.heavy_slot())
        self._heavy_hold = hold

    def _drop_heavy(self) -> None:
        hold, self._heavy_hold = self._heavy_hold, None
        if hold is not None:
            hold.close()

    def count(self, **deltas: int) -> None:
        """Add to the run's counters (thread safe: copies end on their own threads)."""
        with self._stats_guard:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    def remember_head(self, ref: Reference, manifest: Manifest) -> None:
        """Keep a HEAD answer of `ref` (image.ratelimitWait's) for the copy that follows."""
        self._recent_head = (ref.common_name(), time.monotonic(), manifest)

    def recent_head(self, ref: Reference) -> Manifest | None:
        """The HEAD answer of `ref` remembered less than RECENT_HEAD seconds ago."""
        name, at, manifest = self._recent_head
        if name == ref.common_name() and time.monotonic() - at < RECENT_HEAD:
            return manifest
        return None

    def current_line(self) -> int | None:
        """The script line running now (for an API call: the line of the call)."""
        line = self._internal[b"script_line"]()
        return int(line) if line else None

    def cancel_token(self) -> Any:
        """A copy-engine cancel token that fires at this run's deadline or cancel."""
        from regbot.copy.cancel import CancelToken

        return CancelToken(deadline=self.deadline, event=self._cancel)

    def _check_deadline(self) -> bytes | None:
        """Called by the Lua count hook: the timeout message once time is up."""
        if self.expired():
            return self.timeout_message().encode()
        return None

    # ------------------------------------------------------------ calls

    def _dispatch(self, fid: int, *args: Any) -> tuple[Any, ...]:
        """The one entry point from Lua: never raises (see module docstring)."""
        label = "?"
        try:
            label, fn = self._functions[fid]
            if self.expired():
                return (False, self.timeout_message().encode(), True)
            result = fn(*args)
            if result is None:
                return (True,)
            if not isinstance(result, tuple):
                result = (result,)
            return (True, *(self.to_lua(r) for r in result))
        except ScriptTimeout:
            self.timed_out = True
            return (False, self.timeout_message().encode(), True)
        except CopyFailed as exc:  # a copy started earlier: name the line that started it
            if self.expired() and _is_cancellation(exc.error):
                return (False, self.timeout_message().encode(), True)
            where = f"script:{exc.line}: " if exc.line else ""
            return (False, _one_line(f"{where}image.copy: {exc}").encode("utf-8", "replace"),
                    False)
        except ArgumentError as exc:  # its message names the call already
            return (False, _one_line(str(exc)).encode("utf-8", "replace"), False)
        except RegbotError as exc:
            if self.expired() and _is_cancellation(exc):
                return (False, self.timeout_message().encode(), True)
            return (False, _one_line(f"{label}: {exc}").encode("utf-8", "replace"), False)
        except Exception as exc:
            self.log.log(TRACE, "Python exception in API call", exc_info=True, call=label)
            text = f"{label}: internal error: {type(exc).__name__}: {exc}"
            return (False, _one_line(text).encode("utf-8", "replace"), False)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: stop the script
            self._interrupt = exc
            self._cancel.set()
            self.timed_out = True
            return (False, b"interrupted", True)

    # ------------------------------------------------------------ running

    def run(self, source: str) -> None:
        """Run the script; raise ScriptError (with the script line) or ScriptTimeout."""
        try:
            out = self._internal[b"run"](source.encode("utf-8", "surrogateescape"))
            ok, message, line = (tuple(out) + (None, None))[:3] if isinstance(out, tuple) else (out, None, None)
        except lua51.LuaError as exc:
            # Only reachable once the hook fails every instruction (timeout), or when Lua
            # itself runs out of memory.
            ok, message, line = False, str(exc).split("\nstack traceback:")[0], None
        if self._interrupt is not None:
            raise self._interrupt
        if self.timed_out:
            raise ScriptTimeout(self.name, self.timeout_message(), line)
        try:
            # The script's copies end before it does; one that failed is the error (it
            # came from an earlier line than anything the script did after it).
            self.copies.drain()
        except CopyFailed as exc:
            if self.expired():
                raise ScriptTimeout(self.name, self.timeout_message(), line) from None
            raise ScriptError(self.name, _one_line(f"image.copy: {exc}"), exc.line) from None
        if ok == b"exit":  # os.exit(status): the script ended there
            status = int(message or 0)
            if status == 0:
                return
            raise ScriptError(self.name, f"os.exit({status}): the script ended with status {status}")
        if ok:
            return
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
        match = _SCRIPT_POS.match(text)
        if match:
            line, text = int(match.group(1)), match.group(2)
        raise ScriptError(self.name, _one_line(text), line)

    def close(self) -> None:
        if self.copies.busy():
            self._cancel.set()  # the run ended early (timeout, interrupt): stop its copies
        self.copies.close()
        for fn in reversed(self._closers):
            try:
                fn()
            except Exception:
                self.log.log(TRACE, "closing sandbox resource failed", exc_info=True)
        self._closers.clear()
        self._objects.clear()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_cancellation(exc: BaseException) -> bool:
    return type(exc).__name__ in ("CopyCancelled", "LimitTimeout")


def _one_line(text: str) -> str:
    return " ".join(text.split())
