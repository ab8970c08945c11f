"""The Lua runtime itself: sandboxing, timeout, errors, conversions, log, reference module."""

from __future__ import annotations

import time

import pytest

from regbot.errors import ScriptError, ScriptTimeout
from regbot.sandbox.runtime import Sandbox
from tests.sandbox_support import LogCapture, RecordingClient, run_lua


@pytest.fixture
def logcap():
    cap = LogCapture()
    yield cap
    cap.close()


@pytest.fixture(scope="module")
def client():
    return RecordingClient([])


# ------------------------------------------------------------------ the interpreter


def test_lua51_globals_and_stdlib(client):
    run_lua(
        """
        assert(_VERSION == "Lua 5.1", _VERSION)
        local a, b, c = unpack({1, 2, 3})
        assert(a + b + c == 6)
        assert(table.getn({1, 2}) == 2)
        assert(string.format("%05.1f", 3.14159) == "003.1")
        assert(math.floor(2.7) == 2)
        assert(type(os.time()) == "number" and os.time() > 1600000000)
        assert(os.date("!%Y-%m-%dT%H:%M:%SZ", 0) == "1970-01-01T00:00:00Z")
        assert(os.difftime(10, 4) == 6)
        assert(type(os.clock()) == "number")
        assert(type(debug.traceback()) == "string")
        local f = loadstring("return 40 + 2")
        assert(f() == 42)
        local parts = {"return ", "7"}
        local i = 0
        local g = load(function() i = i + 1; return parts[i] end)
        assert(g() == 7)
        local co = coroutine.create(function(x) coroutine.yield(x * 2); return "done" end)
        local ok, v = coroutine.resume(co, 21)
        assert(ok and v == 42)
        assert(select(2, coroutine.resume(co)) == "done")
        local w = coroutine.wrap(function() coroutine.yield(1); coroutine.yield(2) end)
        assert(w() == 1 and w() == 2)
        assert(collectgarbage("count") > 0)
        """,
        client,
    )


FORBIDDEN = [
    "io", "os.execute", "os.exit", "os.remove", "os.rename", "os.tmpname", "os.getenv",
    "os.setlocale", "require", "package", "module", "dofile", "loadfile", "string.dump",
    "newproxy", "gcinfo", "debug.sethook", "debug.gethook", "debug.getinfo",
    "debug.getupvalue", "debug.setupvalue", "debug.getregistry", "debug.getlocal",
    "debug.setmetatable", "python",
]


@pytest.mark.parametrize("name", FORBIDDEN)
def test_dangerous_globals_are_gone_when_restricted(client, name):
    run_lua(f"assert({name} == nil, '{name} is reachable')", client, sandbox_mode="restricted")


# Even the full standard library (the Go regbot's) keeps these away: the timeout hook,
# lupa's registry and bridge, bytecode.
FORBIDDEN_ALWAYS = ["debug.sethook", "debug.gethook", "debug.getregistry", "debug.debug",
                    "python", "string.dump", "package.loadlib"]


@pytest.mark.parametrize("name", FORBIDDEN_ALWAYS)
def test_full_library_keeps_the_hook_and_lupa_away(client, name):
    run_lua(f"assert({name} == nil, '{name} is reachable')", client)


@pytest.mark.parametrize("mode", ["full", "restricted"])
def test_no_python_object_is_reachable_from_lua(client, mode):
    """Walk everything a script can reach: only plain Lua values (and, with the full
    library, Lua's own file handles), no Python object."""
    run_lua(
        """
        local seen = {}
        local function walk(v, path)
          local t = type(v)
          if t == "userdata" and io ~= nil and io.type(v) ~= nil then return end
          if t == "userdata" or t == "thread" then error("found a " .. t .. " at " .. path) end
          if t == "function" then
            local env = getfenv(v)
            if env ~= _G then walk(env, path .. "<env>") end
            return
          end
          if t ~= "table" or seen[v] then return end
          seen[v] = true
          for k, x in next, v do
            walk(k, path .. "<key>")
            walk(x, path .. "." .. tostring(k))
          end
          local mt = getmetatable(v)
          if mt ~= nil then walk(mt, path .. "<mt>") end
        end
        walk(_G, "_G")
        walk(getmetatable(""), "string-mt")
        -- objects and their metatables
        local r = reference.new("registry.example/a/b:1")
        walk(r, "ref")
        -- an API error seen through pcall is a plain string
        local ok, err = pcall(reference.new, 42)
        assert(not ok and type(err) == "string", type(err))
        ok, err = pcall(tag.ls)
        assert(not ok and type(err) == "string", type(err))
        """,
        client,
        sandbox_mode=mode,
    )


def test_binary_chunks_are_refused(client):
    run_lua(
        r"""
        local f, err = loadstring("\27LuaQ\0\1\4\8\4\8\0")
        assert(f == nil and err:find("binary chunks are not allowed"), tostring(err))
        local parts = {"\27Lua", "Q"}
        local i = 0
        f, err = load(function() i = i + 1; return parts[i] end)
        assert(f == nil and err:find("binary"), tostring(err))
        """,
        client,
    )
    with pytest.raises(ScriptError, match="binary chunks are not allowed"):
        run_lua("\x1bLuaQ\x00", client)


def test_collectgarbage_is_restricted(client):
    with pytest.raises(ScriptError, match=r'collectgarbage\("stop"\) is not allowed'):
        run_lua('collectgarbage("collect")\ncollectgarbage("stop")', client)


def test_globals_do_not_leak_between_runs(client):
    run_lua("leaked = 42\nfunction string.split(s) return s end\nos.time = nil", client)
    run_lua(
        """
        assert(leaked == nil, "global leaked")
        assert(string.split == nil, "string library change leaked")
        assert(type(os.time) == "function")
        """,
        client,
    )


# ------------------------------------------------------------------ timeout


def test_pure_lua_infinite_loop_ends_at_timeout(client):
    start = time.monotonic()
    with pytest.raises(ScriptTimeout, match="timed out after 1s"):
        run_lua("local n = 0\nwhile true do n = n + 1 end", client, timeout=1.0)
    elapsed = time.monotonic() - start
    assert 0.95 <= elapsed < 1.6


@pytest.mark.parametrize(
    "source",
    [
        # pcall cannot swallow the timeout
        "while true do pcall(function() while true do end end) end",
        # nor xpcall with a handler that loops itself
        "while true do xpcall(function() while true do end end, function() while true do end end) end",
        # coroutines get the hook too
        "local co = coroutine.wrap(function() while true do end end)\nco()",
        "local co = coroutine.create(function() while true do end end)\n"
        "while true do coroutine.resume(co) end",
        # a loop calling the API
        'while true do pcall(reference.new, "a/b") end',
        # an attempt to remove the hook fails, then loops
        "pcall(function() debug.sethook() end)\nwhile true do end",
    ],
)
def test_timeout_cannot_be_escaped(client, source):
    start = time.monotonic()
    with pytest.raises(ScriptTimeout):
        run_lua(source, client, timeout=0.3)
    assert time.monotonic() - start < 1.0


def test_no_timeout_means_no_hook(client):
    sb = run_lua("local x = 0\nfor i = 1, 100000 do x = x + i end", client)
    assert not sb.timed_out


def test_hook_overhead_is_small(client):
    src = "local x = 0\nfor i = 1, 3000000 do x = x + i % 7 end"
    def best(**kw):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            run_lua(src, client, **kw)
            times.append(time.perf_counter() - start)
        return min(times)
    plain, hooked = best(), best(timeout=60)
    assert hooked < plain * 1.5 + 0.1, (plain, hooked)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ('local a = 1\n\nerror "Timed out waiting on rate limit"', 3,
         "Timed out waiting on rate limit"),
        ("local t = nil\nlocal x = t.field", 2, "attempt to index local 't' (a nil value)"),
        ("local x = 1\nlocal y = = 2", 2, "unexpected symbol near '='"),
        ('local x = 1\nlocal r = reference.new("Upper/Case")', 2,
         "reference.new: invalid reference 'Upper/Case': repository name must be lowercase"),
        ("function f()\n  error('inside')\nend\n\nf()", 2, "inside"),
        ("local x = 1\nerror('no position', 0)", 2, "no position"),
        ("local x = 1\nerror({code = 1})", 2, "(error object is a table value)"),
        ("local x = 1\nfor k in pairs(nil) do end", 2,
         "bad argument #1 to 'pairs' (table expected, got nil)"),
        ('local x = 1\n\n\nlog({})', 4, "log: string expected, got table"),
    ],
)
def test_errors_name_the_script_line(client, source, line, message):
    with pytest.raises(ScriptError) as info:
        run_lua(source, client, name="my script")
    err = info.value
    assert not isinstance(err, ScriptTimeout)
    assert err.line == line
    assert err.message == message
    assert str(err) == f"script 'my script' line {line}: {message}"


def test_python_exception_becomes_one_line_and_trace_log(client, logcap):
    sb = Sandbox("boom", client)

    def broken(*_):
        raise ValueError("something odd")

    sb.register_function("testing", "broken", broken)
    sb.run(
        """
        local ok, err = pcall(testing.broken)
        assert(not ok and type(err) == "string")
        assert(err == "script:2: testing.broken: internal error: ValueError: something odd", err)
        assert(not err:find("Traceback"))
        """
    )
    with pytest.raises(ScriptError) as info:
        sb.run("testing.broken()")
    assert str(info.value) == (
        "script 'boom' line 1: testing.broken: internal error: ValueError: something odd")
    traces = logcap.messages(level="trace", msg="Python exception in API call")
    assert traces and "Traceback" in traces[0]["exception"]
    assert traces[0]["script"] == "boom"
    assert all(r["level"] == "trace" for r in logcap.records if "exception" in r)


def test_interrupt_stops_the_script_and_propagates(client):
    sb = Sandbox("intr", client)

    def interrupt(*_):
        raise KeyboardInterrupt

    sb.register_function("testing", "interrupt", interrupt)
    with pytest.raises(KeyboardInterrupt):
        sb.run("while true do pcall(testing.interrupt) end")


# ------------------------------------------------------------------ log and print


def test_log_and_print_write_info_lines_with_the_script_name(client, logcap):
    run_lua('log("Copying 3.20")\nprint("a", 1, nil, true)\nlog(42)', client, name="mirror")
    infos = [r for r in logcap.records if r["level"] == "info"]
    assert [r["msg"] for r in infos] == ["Copying 3.20", "a\t1\tnil\ttrue", "42"]
    assert all(r["script"] == "mirror" for r in infos)


# ------------------------------------------------------------------ conversions


def test_conversions_round_trip(client):
    sb = Sandbox("conv", client)
    value = {"name": "é✓", "list": [1, 2.5, "x", True], "nested": {"a": {"b": []}}, "n": 0}
    back = sb.from_lua(sb.to_lua(value))
    assert back == {"name": "é✓", "list": [1, 2.5, "x", True], "nested": {"a": {"b": {}}},
                    "n": 0}
    assert sb.from_lua(sb.to_lua([])) == {}
    assert sb.from_lua(sb.to_lua("plain")) == "plain"
    holes = sb._lua.eval("{[1] = 'a', [3] = 'c', [2.5] = 'x'}")
    assert sb.from_lua(holes) == {"1": "a", "3": "c", "2.5": "x"}
    with pytest.raises(ScriptError, match="a function value cannot be used here"):
        sb._functions.append(("testing.take", lambda v: sb.from_lua(v)))
        sb._internal[b"define"](b"module:testing", b"take", len(sb._functions) - 1)
        sb.run("testing.take({f = print})")
    cyclic = sb._lua.eval("(function() local t = {} t.self = t return t end)()")
    with pytest.raises(Exception, match="nested too deeply"):
        sb.from_lua(cyclic)


# ------------------------------------------------------------------ reference module


def test_reference_new_tag_digest_tostring(client):
    digest = "sha256:" + "a" * 64
    run_lua(
        f"""
        local r = reference.new("alpine")
        assert(tostring(r) == "docker.io/library/alpine:latest", tostring(r))
        assert(r:tag() == "latest" and r:digest() == "")
        r:tag("3.20")
        assert(tostring(r) == "docker.io/library/alpine:3.20")
        r:digest("{digest}")
        -- as regclient's SetDigest, setting the digest drops the tag
        assert(tostring(r) == "docker.io/library/alpine@{digest}", tostring(r))
        assert(r:tag() == "" and r:digest() == "{digest}")
        local copy = reference.new(r)
        copy:tag("edge")
        assert(tostring(r) == "docker.io/library/alpine@{digest}")
        assert(tostring(copy) == "docker.io/library/alpine:edge")
        assert(tostring(reference.new("registry:5000/library/debian:12")) == "registry:5000/library/debian:12")
        assert(tostring(reference.new("index.docker.io/user/app")) == "docker.io/user/app:latest")
        assert(tostring(reference.new("localhost/app:1")) == "localhost/app:1")
        assert(tostring(reference.new("ocidir://some/dir:v1")) == "ocidir://some/dir:v1")
        local ok, err = pcall(function() return r.tag("v1") end)
        assert(not ok and err:find("reference object expected"), err)
        ok, err = pcall(function() r:tag("bad tag!") end)
        assert(not ok and err:find("invalid tag"), err)
        ok, err = pcall(function() r.anything = 1 end)
        assert(not ok and err:find("no field anything"), err)
        """,
        client,
    )


def test_reference_close(client):
    client.calls.clear()
    run_lua(
        """
        local r = reference.new("ocidir://nowhere:v1")
        r:close()
        reference.close(r)
        reference.close("ocidir://elsewhere:v2")
        """,
        client,
    )
    assert client.calls == [("close", "ocidir://nowhere:v1"), ("close", "ocidir://nowhere:v1"),
                            ("close", "ocidir://elsewhere:v2")]


@pytest.mark.parametrize(
    "source",
    [
        "pcall(os.exit, 0)\nerror('ran on')",
        "xpcall(function() os.exit(true) end, function() while true do end end)\nerror('ran on')",
        "coroutine.resume(coroutine.create(function() os.exit() end))\nerror('ran on')",
        "coroutine.wrap(function() pcall(os.exit, 0) error('ran on') end)()\nerror('ran on')",
    ],
)
def test_os_exit_ends_the_script_wherever_it_is_called(client, source):
    run_lua(source, client, timeout=30)


@pytest.mark.parametrize(("code", "status"), [("1", 1), ("false", 1), ("7", 7)])
def test_os_exit_with_a_failure_status_fails_the_script(client, code, status):
    with pytest.raises(ScriptError, match=rf"os.exit\({status}\): the script ended with status {status}"):
        run_lua(f"log('x')\npcall(os.exit, {code})\nerror('ran on')", client)
