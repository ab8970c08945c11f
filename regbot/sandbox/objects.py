"""The Lua side of the sandbox: object metatables, API closures, globals clean-up.

`PRELUDE` runs first in every fresh Lua state. It receives the two Python entry points
(`dispatch(id, ...)` and `check_deadline()`), the schema tables and the hook interval, and
returns a table of internal functions for runtime.py. Scripts only ever see Lua tables and
Lua closures: the Python callables stay upvalues of those closures, and with the `debug`
library gone no script can reach an upvalue.

Objects (reference, manifest, config, blob) are empty tables with a metatable:
- a reference has methods only (its value lives in Python, found by its handle);
- a manifest/config/blob object is a *view* of a document table kept in `backing`, keyed
  by JSON names; `__index`/`__newindex` map Go-style names (`Layers`) to JSON names
  (`layers`), so reads and edits work through either name. Arrays stay plain Lua tables
  (so `#` and `ipairs` work), their struct elements are views too.
"""

PRELUDE = r"""
local dispatch, check_deadline, schemas, hook_every = ...

-- Everything used below is captured now: a script may replace any global later.
local type, pairs, next, select, error, pcall, xpcall, tostring =
      type, pairs, next, select, error, pcall, xpcall, tostring
local rawget, rawset, setmetatable, loadstring, collectgarbage =
      rawget, rawset, setmetatable, loadstring, collectgarbage
local byte, sub, match, concat = string.byte, string.sub, string.match, table.concat
local sethook, getinfo, traceback = debug.sethook, debug.getinfo, debug.traceback
local cocreate, coresume = coroutine.create, coroutine.resume
local os_time, os_date, os_clock, os_difftime = os.time, os.date, os.clock, os.difftime
local io_open, tonumber = io.open, tonumber
local full_os, full_debug, full_package = os, debug, package
local G = _G

local SCRIPT_SOURCE = "=script"

-- ---------------------------------------------------------------- timeout hook

local timed_out = nil  -- the timeout message, once the deadline has passed
local exit_status = nil  -- os.exit's status, once the script called it
local EXIT = setmetatable({}, {__tostring = function() return "os.exit" end})

local function hook()
  if timed_out == nil then
    local msg = check_deadline()
    if not msg then return end
    timed_out = msg
  end
  -- From now on every instruction fails, so a pcall in the script cannot swallow it.
  sethook(hook, "", 1)
  error(timed_out, 0)
end

local function arm(co)
  if hook_every <= 0 then return end
  local every = timed_out and 1 or hook_every
  if co ~= nil then sethook(co, hook, "", every) else sethook(hook, "", every) end
end

-- ---------------------------------------------------------------- errors

-- The line of the innermost script frame on the stack (API errors point at the call).
local function script_line()
  for level = 2, 250 do
    local info = getinfo(level, "Sl")
    if info == nil then return nil end
    if info.source == SCRIPT_SOURCE and info.currentline and info.currentline > 0 then
      return info.currentline
    end
  end
  return nil
end

local function raise(msg)
  -- A message naming its line already (a copy failing later) keeps it.
  local line = not match(msg, "^script:%d+: ") and script_line()
  if line then msg = "script:" .. line .. ": " .. msg end
  error(msg, 0)
end

local function finish(ok, ...)
  if ok then return ... end
  local msg, is_timeout = ...
  if is_timeout then
    timed_out = timed_out or msg
    sethook(hook, "", 1)
  end
  raise(msg)
end

local function api(id)
  return function(...) return finish(dispatch(id, ...)) end
end

-- ---------------------------------------------------------------- objects

local weak = {__mode = "k"}
local handles = setmetatable({}, weak)  -- object -> handle id (Python side state)
local backing = setmetatable({}, weak)  -- view -> document table
local views = setmetatable({}, weak)    -- view -> {inline type -> view}
local methods = {reference = {}, manifest = {}, config = {}, blob = {}}
local mts = {}

local wrap, wrap_field, mt_for

local function inline_view(t, d, tname)
  local vs = views[t]
  if vs == nil then vs = {}; views[t] = vs end
  local v = vs[tname]
  if v == nil then
    v = setmetatable({}, mt_for(tname))
    backing[v] = d
    vs[tname] = v
  end
  return v
end

local function shallow_copy(t)
  local out = {}
  for k, v in next, (backing[t] or t) do out[k] = v end
  return out
end

local function object_tostring(kind)
  return function(t)
    local f = methods[kind].__tostring
    if f ~= nil then return f(t) end
    return kind
  end
end

mt_for = function(tname, kind, callname)
  local key = tname .. "|" .. (kind or "") .. "|" .. (callname or "")
  local mt = mts[key]
  if mt ~= nil then return mt end
  local s = schemas[tname]
  local aliases, fields = s.aliases, s.fields
  local M = kind and methods[kind] or nil
  mt = {__metatable = kind or "document"}
  mt.__index = function(t, k)
    local d = backing[t]
    local name = aliases[k] or k
    local f = fields[name]
    if f ~= nil and f.inline then return inline_view(t, d, f.type) end
    local v = d[name]
    if v ~= nil then return v end
    if M ~= nil then
      local m = M[k]
      if m ~= nil then return m end
    end
    if f ~= nil then
      -- Go shows zero values for absent fields, and empty tables for maps, slices and
      -- embedded structs; a table made here is kept so edits to it stick.
      if f.zero ~= nil then return f.zero end
      if f.kind == "map" or f.kind == "array" or (f.kind == "struct" and not f.pointer) then
        v = wrap_field({}, f, false)
        d[name] = v
        return v
      end
    end
    return nil
  end
  mt.__newindex = function(t, k, v)
    local d = backing[t]
    local name = aliases[k] or k
    local f = fields[name]
    if f ~= nil and f.inline then
      if type(v) ~= "table" then
        error("cannot assign a " .. type(v) .. " to " .. tostring(k) .. " (a table is expected)", 2)
      end
      local view = inline_view(t, d, f.type)
      for kk, vv in next, (backing[v] or v) do view[kk] = vv end
      return
    end
    if f ~= nil and type(v) == "table" then v = wrap_field(v, f, true) end
    d[name] = v
  end
  if kind ~= nil then mt.__tostring = object_tostring(kind) end
  if callname ~= nil then
    -- m.config is the config descriptor, m:config() fetches the image config.
    mt.__call = function(self, obj, ...) return methods.manifest[callname](obj, ...) end
  end
  mts[key] = mt
  return mt
end

-- Make a view of `data` (a plain table keyed by JSON or Go names) for schema `tname`.
-- `copy`: data comes from the script, leave its table alone.
wrap = function(data, tname, kind, callname, copy)
  if backing[data] ~= nil and kind == nil and callname == nil then return data end
  if copy or backing[data] ~= nil then data = shallow_copy(data) end
  local s = schemas[tname]
  for name, f in pairs(s.fields) do
    if f.inline then
      local v = rawget(data, name)
      if type(v) == "table" then
        rawset(data, name, nil)
        local ialiases = schemas[f.type].aliases
        for kk, vv in next, (backing[v] or v) do
          local js = ialiases[kk] or kk
          if rawget(data, js) == nil then rawset(data, js, vv) end
        end
      end
    end
  end
  for go, js in pairs(s.aliases) do
    local v = rawget(data, go)
    if v ~= nil then
      if rawget(data, js) == nil then rawset(data, js, v) end
      rawset(data, go, nil)
    end
  end
  for name, f in pairs(s.fields) do
    if not f.inline then
      local v = rawget(data, name)
      if type(v) == "table" then rawset(data, name, wrap_field(v, f, copy)) end
    end
  end
  local obj = setmetatable({}, mt_for(tname, kind, callname))
  backing[obj] = data
  return obj
end

wrap_field = function(v, f, copy)
  if f.kind == "struct" then return wrap(v, f.type, nil, f.call, copy) end
  if f.kind == "array" and f.elem_struct and backing[v] == nil then
    if copy then v = shallow_copy(v) end
    for i = 1, #v do
      local e = rawget(v, i)
      if type(e) == "table" then rawset(v, i, wrap(e, f.type, nil, nil, copy)) end
    end
  end
  return v
end

local function plain_mt(kind)
  return {
    __metatable = kind,
    __index = methods[kind],
    __tostring = object_tostring(kind),
    __newindex = function(t, k)
      error(kind .. " objects have no field " .. tostring(k) .. " to set", 2)
    end,
  }
end
local plain_mts = {}

local function new_object(kind, id, data, tname)
  local obj
  if tname ~= nil then
    obj = wrap(data, tname, kind)
  else
    local mt = plain_mts[kind]
    if mt == nil then mt = plain_mt(kind); plain_mts[kind] = mt end
    obj = setmetatable({}, mt)
  end
  handles[obj] = id
  return obj
end

-- ---------------------------------------------------------------- modules

local function define(where, name, id)
  local f = api(id)
  if where == "global" then
    G[name] = f
    return
  end
  local what, mod = match(where, "^(%a+):(%a+)$")
  if what == "method" then
    methods[mod][name] = f
  else
    local t = rawget(G, mod)
    if t == nil then t = {}; G[mod] = t end
    t[name] = f
  end
end

-- ---------------------------------------------------------------- globals clean-up

local function safe_loadstring(s, chunkname)
  if type(s) ~= "string" then
    error("bad argument #1 to 'loadstring' (string expected, got " .. type(s) .. ")", 2)
  end
  if byte(s, 1) == 27 then return nil, "binary chunks are not allowed" end
  return loadstring(s, chunkname)
end

local function co_finish(ok, ...)
  if ok then return ... end
  error((...), 0)
end

-- os.exit ends the script, never the process: its error unwinds to the run, and every
-- protected call (pcall, xpcall, coroutine.resume) passes it on instead of catching it.
local function script_exit(code)
  if code == nil or code == true then
    exit_status = 0
  elseif code == false then
    exit_status = 1
  else
    exit_status = tonumber(code) or 1
  end
  error(EXIT, 0)
end

local function pass_exit(...)
  if exit_status ~= nil then error(EXIT, 0) end
  return ...
end

local function co_resume(c, ...)
  return pass_exit(coresume(c, ...))
end

-- Lua files only: a bytecode chunk can crash the interpreter.
local function safe_loadfile(path)
  if type(path) ~= "string" then
    error("bad argument #1 to 'loadfile' (file name expected)", 2)
  end
  local f, err = io_open(path, "rb")
  if f == nil then return nil, err end
  local src = f:read("*a")
  f:close()
  if byte(src, 1) == 27 then return nil, path .. ": binary chunks are not allowed" end
  return loadstring(src, "@" .. path)
end

-- The whole standard library, as the Go regbot opens it (gopher-lua's lua.NewState):
-- files, processes and the environment, `require` of Lua files on package.path (the
-- config file's directory first), and debug without sethook/gethook (the timeout hook
-- stays) and the registry (lupa's own tables).
local function open_full(module_dir)
  local os_table = {}
  for k, v in pairs(full_os) do os_table[k] = v end
  os_table.exit = script_exit
  G.os = os_table
  G.debug = {
    getfenv = full_debug.getfenv, getinfo = full_debug.getinfo,
    getlocal = full_debug.getlocal, getmetatable = full_debug.getmetatable,
    getupvalue = full_debug.getupvalue, setfenv = full_debug.setfenv,
    setlocal = full_debug.setlocal, setmetatable = full_debug.setmetatable,
    setupvalue = full_debug.setupvalue, traceback = traceback,
  }
  if module_dir ~= nil then
    full_package.path = module_dir .. "/?.lua;" .. module_dir .. "/?/init.lua;" .. full_package.path
  end
  full_package.loaded.python = nil  -- lupa's bridge, registered as a module too
  full_package.preload.python = nil
  full_package.cpath = ""  -- no native modules (gopher-lua has none either)
  full_package.loadlib = nil
  G.loadfile = safe_loadfile
  G.dofile = function(path)
    local chunk, err = safe_loadfile(path)
    if chunk == nil then error(err, 2) end
    return chunk()
  end
end

local function restrict_globals(restricted, module_dir)
  G.python = nil  -- lupa's bridge to the Python process, in every mode
  string.dump = nil
  if restricted then
    -- Nothing that reaches files, processes, the environment or other modules.
    G.io = nil
    G.package = nil
    G.require = nil
    G.module = nil
    G.dofile = nil
    G.loadfile = nil
    G.newproxy = nil
    G.gcinfo = nil
    G.os = {time = os_time, date = os_date, clock = os_clock, difftime = os_difftime}
    G.debug = {traceback = traceback}
  else
    open_full(module_dir)
  end
  G.loadstring = safe_loadstring
  G.load = function(reader, chunkname)
    if type(reader) ~= "function" then
      error("bad argument #1 to 'load' (function expected, got " .. type(reader) .. ")", 2)
    end
    local parts = {}
    while true do
      local piece = reader()
      if piece == nil or piece == "" then break end
      if type(piece) ~= "string" then return nil, "reader function must return a string" end
      parts[#parts + 1] = piece
    end
    return safe_loadstring(concat(parts), chunkname or "=(load)")
  end
  G.collectgarbage = function(opt, arg)
    opt = opt or "collect"
    if opt == "collect" or opt == "count" or opt == "step" then
      return collectgarbage(opt, arg)
    end
    error("collectgarbage(\"" .. tostring(opt) .. "\") is not allowed in regbot scripts", 2)
  end
  -- An error raised by the hook runs the xpcall handler inside the hook, where Lua
  -- runs no hooks: after the timeout, skip the script's handler (it could loop forever).
  G.xpcall = function(f, handler)
    return pass_exit(xpcall(f, function(e)
      if timed_out ~= nil or exit_status ~= nil then return e end
      return handler(e)
    end))
  end
  G.pcall = function(...) return pass_exit(pcall(...)) end
  -- Hooks are per coroutine: give each new one the timeout hook.
  local co = G.coroutine
  local function co_create(f)
    local c = cocreate(f)
    arm(c)
    return c
  end
  co.create = co_create
  co.resume = co_resume
  co.wrap = function(f)
    local c = co_create(f)
    return function(...) return co_finish(co_resume(c, ...)) end
  end
  -- pairs() over an object lists its document fields (Lua 5.1 has no __pairs).
  G.pairs = function(t)
    local d = backing[t]
    if d ~= nil then return next, d, nil end
    if type(t) ~= "table" then
      error("bad argument #1 to 'pairs' (table expected, got " .. type(t) .. ")", 2)
    end
    return pairs(t)
  end
  -- print() goes to the log like log(), never to stdout.
  local log = G.log
  G.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    return log(concat(parts, "\t"))
  end
end

-- ---------------------------------------------------------------- running

local function on_error(e)
  if exit_status ~= nil then return {exit = exit_status} end
  local msg = e
  if type(e) ~= "string" then
    local ok, s = pcall(tostring, e)
    if ok and type(s) == "string" and not match(s, "^%a+: 0x%x+$") and s ~= "nil" then
      msg = s
    else
      msg = "(error object is a " .. type(e) .. " value)"
    end
  end
  local line = nil
  if sub(msg, 1, 7) ~= "script:" then line = script_line() end
  return {msg = msg, line = line}
end

local function run(src)
  if byte(src, 1) == 27 then return false, "binary chunks are not allowed", nil end
  local chunk, err = loadstring(src, SCRIPT_SOURCE)
  if chunk == nil then return false, err, nil end
  arm(nil)
  local ok, info = xpcall(chunk, on_error)
  sethook()
  if ok then return true end
  if type(info) == "table" and info.exit ~= nil then return "exit", info.exit end
  if type(info) == "table" then return false, info.msg, info.line end
  return false, tostring(info), nil
end

return {
  define = define,
  new_object = new_object,
  restrict_globals = restrict_globals,
  run = run,
  script_line = script_line,
  handles = handles,
  backing = backing,
}
"""
