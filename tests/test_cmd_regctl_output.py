"""regbot's regctl-style commands print what the Go regctl prints, line for line.

Each case of tests/support/regctl_cases.py runs against a real docker-registry filled
with deterministic images; its output is compared with the regctl output stored in
tests/fixtures/regctl (the registry address and Date headers substituted).
"""

from __future__ import annotations

import pytest

from tests.support import regctl_cases
from tests.support.regbot_cli import isolated_env, run_regbot
from tests.support.registry import start_registry

COPY_CASES = [name for name in regctl_cases.CASES if name.startswith("image_copy")]
READ_CASES = [name for name in regctl_cases.CASES if name not in COPY_CASES]


def _filled_registry(base):
    registry = start_registry()
    regctl_cases.fill(registry.host)
    env = isolated_env(base)
    proc = run_regbot("registry", "set", "--tls", "disabled", registry.host, env=env)
    assert proc.returncode == 0, proc.stderr
    return registry, env


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    registry, env = _filled_registry(tmp_path_factory.mktemp("regctl-output"))
    yield registry, env
    registry.stop()


@pytest.mark.parametrize("name", READ_CASES)
def test_output_matches_regctl(filled, name):
    registry, env = filled
    proc = run_regbot(*regctl_cases.argv(name, registry.host), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # warn level by default, as regctl: nothing to say
    assert regctl_cases.normalize(proc.stdout, registry.host) == regctl_cases.expected(name)


@pytest.mark.parametrize("name", COPY_CASES)
def test_copy_output_matches_regctl(tmp_path, name):
    registry, env = _filled_registry(tmp_path)
    try:
        proc = run_regbot(*regctl_cases.argv(name, registry.host), env=env)
        assert proc.returncode == 0, proc.stderr
        assert regctl_cases.normalize(proc.stdout, registry.host) == regctl_cases.expected(name)
    finally:
        registry.stop()


def test_blob_get_writes_the_blob_bytes(filled):
    registry, env = filled
    proc = run_regbot("blob", "get", f"{registry.host}/library/debian", regctl_cases.LAYER_DIGEST,
                      env=env, text=False)
    assert proc.returncode == 0, proc.stderr
    from tests.support import images

    assert images.sha256(proc.stdout) == regctl_cases.LAYER_DIGEST
    assert proc.stdout == images.get_blob(registry.host, "library/debian", regctl_cases.LAYER_DIGEST)
