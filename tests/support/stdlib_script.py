"""A script written for the Go regbot that uses the Lua standard library: it reads the
tags to copy from a file (`io.lines`), a greeting from the environment (`os.getenv`), a
helper module next to the config (`require`), runs a coroutine, writes a report
(`io.open`) and ends with `os.exit(0)` before a line that would fail.

    world = write_stdlib_world(tmp_path, src_host, dst_host, repo, tags)
    # run `regbot once -c world.config` with world.env: every tag is copied, the
    # report says so, and the script succeeds
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

GREETING_VAR = "REGBOT_TEST_GREETING"

HELPER = """\
local M = {}
function M.target(repo, tag) return "dst.test/" .. repo .. ":" .. tag end
return M
"""

SCRIPT = """\
local helper = require("mirrorhelp")
local greeting = os.getenv("{var}") or "no greeting"
log(greeting)
local tags = {{}}
for line in io.lines("{tags_file}") do
  if line ~= "" then tags[#tags + 1] = line end
end
local counter = coroutine.wrap(function()
  for i = 1, #tags do coroutine.yield(i) end
end)
local report = assert(io.open("{report}", "w"))
for _, t in ipairs(tags) do
  image.copy("src.test/{repo}:" .. t, helper.target("{repo}", t))
  report:write(counter(), " ", t, "\\n")
end
report:close()
os.exit(0)
error("the script went on after os.exit")
"""


@dataclass
class StdlibWorld:
    config: Path
    report: Path
    env: dict[str, str]


def write_stdlib_world(root: Path, src_host: str, dst_host: str, repo: str,
                       tags: list[str], *, sandbox: str | None = None) -> StdlibWorld:
    root.mkdir(parents=True, exist_ok=True)
    tags_file = root / "tags.txt"
    tags_file.write_text("\n".join(tags) + "\n")
    (root / "mirrorhelp.lua").write_text(HELPER)
    report = root / "report.txt"
    body = SCRIPT.format(var=GREETING_VAR, tags_file=tags_file, report=report, repo=repo)
    lines = ["version: 1", "creds:",
             "  - registry: src.test", f"    hostname: {src_host}", "    tls: disabled",
             "  - registry: dst.test", f"    hostname: {dst_host}", "    tls: disabled"]
    if sandbox:
        lines += ["defaults:", f"  sandbox: {sandbox}"]
    lines += ["scripts:", "  - name: stdlib", "    timeout: 60s", "    script: |"]
    lines += [f"      {line}" for line in body.splitlines()]
    config = root / "regbot.yml"
    config.write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGBOT_")}
    env[GREETING_VAR] = "hello from the environment"
    return StdlibWorld(config, report, env)
