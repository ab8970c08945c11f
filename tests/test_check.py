"""`regbot check -c FILE`: every problem, one per line with file and line, exit 2; the
repository's regbot.yml passes. Nothing runs and no registry is contacted."""

from __future__ import annotations

import pytest

from tests.support.processes import REPO_ROOT
from tests.support.regbot_cli import isolated_env, run_regbot

GOOD_SCRIPT = '''\
  - name: fine
    script: |
      log("fine")
'''

# (name, config text, what the single problem line holds, its line number)
MISTAKES = [
    ("lua syntax", "version: 1\nscripts:\n  - name: broken\n    script: |\n      x = 1\n"
     "      if x then\n        log(\"x\"\n      end\n",
     ["scripts[0] \"broken\"", "Lua syntax error", "')' expected", "at line 7"], 8),
    ("lua syntax in a quoted script", "version: 1\nscripts:\n  - name: q\n"
     "    script: \"x = = 1\"\n", ["Lua syntax error", "unexpected symbol"], 4),
    ("bad duration", "version: 1\ndefaults:\n  interval: 60x\nscripts:\n" + GOOD_SCRIPT,
     ["defaults.interval", '"60x"', "unknown unit"], 3),
    ("bad cron", "version: 1\nscripts:\n  - name: c\n    schedule: \"61 * * * *\"\n"
     "    script: log(1)\n", ["scripts[0] \"c\"", "schedule", "61"], 4),
    ("unknown key", "version: 1\ndefaults:\n  intervall: 60m\nscripts:\n" + GOOD_SCRIPT,
     ["defaults", 'unknown key "intervall"'], 3),
    ("unknown script key", "version: 1\nscripts:\n  - name: s\n    scrip: log(1)\n",
     ['unknown key "scrip"'], 4),
    ("bad template", 'version: 1\ncreds:\n  - registry: r.example\n    user: "{{env \\"U\\""\n'
     "scripts:\n" + GOOD_SCRIPT, ["creds[0] (r.example) user", "template"], 4),
    ("unknown template function in a secret", 'version: 1\ncreds:\n  - registry: r.example\n'
     '    pass: "{{vault \\"x\\"}}"\n', ["creds[0] (r.example) pass", "not defined"], 4),
    ("bad tls", "version: 1\ncreds:\n  - registry: r.example\n    tls: sometimes\n",
     ['unknown tls value "sometimes"'], 4),
    ("duplicate names", "version: 1\nscripts:\n  - name: a\n    script: log(1)\n"
     "  - name: a\n    script: log(2)\n", ["duplicate script name"], 5),
    ("invalid yaml", "version: 1\nscripts: [\n", ["invalid YAML"], 3),
]


@pytest.fixture
def env(tmp_path):
    return isolated_env(tmp_path)


def _problems(proc) -> list[str]:
    """The problem lines (warnings, which do not fail a check, left out)."""
    return [line for line in proc.stdout.splitlines() if ": warning: " not in line]


def _check(env, tmp_path, text, name="regbot.yml"):
    path = tmp_path / name
    path.write_text(text)
    return run_regbot("check", "-c", str(path), env=env), str(path)


@pytest.mark.parametrize("name, text, words, line", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_kind_of_mistake(env, tmp_path, name, text, words, line):
    proc, path = _check(env, tmp_path, text)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    problem, = _problems(proc)
    assert problem.startswith(f"{path}:{line}:"), problem
    assert all(word in problem for word in words), problem
    assert "Traceback" not in proc.stderr


def test_every_problem_in_one_run_in_file_order(env, tmp_path):
    text = (
        "version: 1\n"
        "creds:\n"
        "  - registry: r.example\n"
        "    tls: maybe\n"                      # 4
        "    intervall: 5\n"                    # 5
        "defaults:\n"
        "  interval: 60x\n"                     # 7
        "  timeout: 10m\n"
        "scripts:\n"
        "  - name: one\n"
        "    timeout: 1y\n"                     # 11
        "    script: |\n"
        "      for i = 1, 3 do\n"
        "        log(i))\n"                     # 14: not Lua
        "      end\n"
        "  - name: two\n"
        "    schedule: \"@weekly-ish\"\n"       # 17
        "    script: log(\"two\")\n"
    )
    proc, path = _check(env, tmp_path, text)
    assert proc.returncode == 2
    lines = [int(p.split(":")[1]) for p in _problems(proc)]
    assert lines == [4, 5, 7, 11, 14, 17], proc.stdout


def test_secrets_are_never_printed(env, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret-token-value-42\n")
    text = (f'version: 1\ncreds:\n  - registry: r.example\n    user: me\n'
            f'    pass: "{{{{file \\"{secret}\\"}}}}"\n    passs: x\n'
            "scripts:\n" + GOOD_SCRIPT)
    proc, _ = _check(env, tmp_path, text)
    assert proc.returncode == 2  # the unknown key
    assert "s3cret-token-value-42" not in proc.stdout + proc.stderr


def test_the_repository_regbot_yml_passes(env):
    proc = run_regbot("check", "-c", str(REPO_ROOT / "regbot.yml"), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].endswith("ok (3 scripts)")
    # a deprecation is shown, but is not a problem
    assert any("warning:" in line and "scheme is deprecated" in line
               for line in proc.stdout.splitlines())


def test_examples_pass(env):
    proc = run_regbot("check", "-c", str(REPO_ROOT / "examples" / "demo" / "regbot.yml"), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_needs_a_file(env, tmp_path):
    assert run_regbot("check", env=env).returncode == 2
    proc = run_regbot("check", "-c", str(tmp_path / "missing.yml"), env=env)
    assert proc.returncode == 2 and "missing.yml" in proc.stderr


def test_check_reads_standard_input_and_runs_nothing(env, tmp_path):
    marker = tmp_path / "ran"
    text = ("version: 1\nscripts:\n  - name: w\n    script: |\n"
            f"      local f = io.open(\"{marker}\", \"w\")\n      f:write(\"x\")\n")
    proc = run_regbot("check", "-c", "-", env=env, stdin=text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not marker.exists()
