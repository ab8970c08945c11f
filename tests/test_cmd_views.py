"""The pieces behind regctl's formats: Go's tabwriter, JSON re-indenting, Go values in
templates, the manifest text view, sizes and platforms, the user config entries."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from regbot.commands.pretty import descriptor_lines, human_size, manifest_pretty, platform_text
from regbot.commands.views import StructView, blob_view, reference_view
from regbot.errors import ConfigError
from regbot.gotemplate import expand
from regbot.gotemplate_values import GoValue, RawJSON, compact_json, indent_json
from regbot.tabwriter import align
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import Manifest
from regbot.types.platform import Platform
from regbot.types.ref import Reference
from regbot.userconfig import is_default, new_entry, registry_name


def test_tabwriter_pads_each_column_block():
    text = "a:\tone\nlonger:\ttwo\n\tthree\n"
    assert align(text) == "a:      one\nlonger: two\n        three\n"


def test_tabwriter_blocks_end_at_a_line_without_the_column():
    # the second column of lines 1-2 is one block; line 3 has no cell there and ends it
    text = "x\tyy\tz\nxx\ty\tz\nno tabs\nq\tw\n"
    assert align(text) == "x  yy z\nxx y  z\nno tabs\nq w\n"


def test_tabwriter_trailing_empty_cells_are_padded():
    assert align("Config:\t\n\t\nName:\tv\n") == "Config: \n        \nName:   v\n"


def test_json_reindent_keeps_order_numbers_and_strings():
    raw = '{ "b": [1, 2.50, 1e3], "a": {"x": "[{,:}]\\"", "e": []}, "o": {} }'
    compact = compact_json(raw)
    assert compact == '{"b":[1,2.50,1e3],"a":{"x":"[{,:}]\\"","e":[]},"o":{}}'
    assert indent_json(compact, "  ") == (
        '{\n  "b": [\n    1,\n    2.50,\n    1e3\n  ],\n  "a": {\n    "x": "[{,:}]\\"",\n'
        '    "e": []\n  },\n  "o": {}\n}')


class _Thing(GoValue):
    go_type = "*main.Thing"

    def go_field(self, name):
        if name == "Body":
            return b"hi\n"
        if name == "Raw":
            return RawJSON(b'{"z": 1, "a": [ ]}')
        raise KeyError(name)

    def go_json(self):
        return {"inner": RawJSON(b'{"z": 1}'), "n": 2}


@pytest.mark.parametrize("template, out", [
    ('{{printf "%s" .Body}}', "hi\n"),
    ("{{.Body}}", "[104 105 10]"),  # Go prints a []byte as numbers
    ("{{json .}}", '{"inner":{"z":1},"n":2}\n'),
    ("{{jsonPretty .}}", '{\n  "inner": {\n    "z": 1\n  },\n  "n": 2\n}\n'),
    ("{{printPretty .}}", '{\n  "inner": {\n    "z": 1\n  },\n  "n": 2\n}\n'),  # no MarshalPretty
    ("{{json .Raw}}", '{"z":1,"a":[]}\n'),
    ("{{len .Body}}", "3"),
])
def test_go_values_in_templates(template, out):
    assert expand(template, "--format", data=_Thing()) == out


def test_unknown_field_names_the_type():
    with pytest.raises(ConfigError, match=r"can't evaluate field Nope in type \*main.Thing"):
        expand("{{.Nope}}", "--format", data=_Thing())


def test_struct_view_reads_go_names_with_zero_values():
    view = StructView({"architecture": "arm64", "config": {"Labels": {"a": "b"}}}, "Image")
    assert expand("{{.Architecture}} {{.Config.Labels.a}} [{{.Config.User}}] {{len .History}}",
                  "f", data=view) == "arm64 b [] 0"
    assert expand("{{.Platform.Architecture}}", "f", data=view) == "arm64"  # embedded struct
    assert json.loads(expand("{{json .}}", "f", data=view))["rootfs"] == {"type": "", "diff_ids": []}


def test_reference_and_blob_views():
    ref = Reference.parse("alpine")
    assert expand("{{.CommonName}} {{.Registry}} {{.Repository}} {{.Tag}} {{.Reference}}", "f",
                  data=reference_view(ref, "alpine")) == \
        "docker.io/library/alpine:latest docker.io library/alpine latest alpine"
    view = blob_view(Descriptor("application/octet-stream", "sha256:" + "a" * 64, 5),
                     {"Content-Length": ["5"], "Etag": ['"x"']})
    assert expand("{{range $k, $v := .RawHeaders}}{{$k}}={{index $v 0}};{{end}}", "f",
                  data=view) == 'Content-Length=5;Etag="x";'


def test_descriptor_lines_sizes_platforms_and_annotations():
    desc = Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", "sha256:" + "b" * 64,
                      2_345_678, urls=("http://a", "http://b"), annotations={"z": "1", "a": "2"},
                      platform=Platform("windows", "amd64", "", "10.0.1", ("win32k",)))
    assert descriptor_lines(desc) == [
        f"  Digest:\tsha256:{'b' * 64}",
        "  MediaType:\tapplication/vnd.oci.image.layer.v1.tar+gzip",
        "  Size:\t2.346MB",
        "  Platform:\twindows/amd64",
        "  OSVersion:\t10.0.1",
        "  OSFeatures:\twin32k",
        "  URLs:\thttp://a, http://b",
        "  Annotations:\t",
        "    a:\t2",
        "    z:\t1",
    ]


@pytest.mark.parametrize("size, text", [(0, "0.000B"), (600, "600.000B"), (1000, "1.000kB"),
                                        (150_000, "150.000kB"), (1_234_567_890, "1.235GB")])
def test_human_size(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize("platform, text", [
    (Platform("linux", "arm64", "v8"), "linux/arm64"), (Platform("linux", "arm"), "linux/arm/v7"),
    (Platform("linux", "x86_64"), "linux/amd64"), (Platform("", "amd64"), "unknown"),
])
def test_platform_text(platform, text):
    assert platform_text(platform) == text


def test_manifest_pretty_of_a_docker_v1_manifest():
    raw = json.dumps({"schemaVersion": 1, "name": "x", "tag": "v1", "architecture": "amd64",
                      "fsLayers": [{"blobSum": "sha256:" + "c" * 64}], "history": []}).encode()
    manifest = Manifest.from_bytes(raw, "application/vnd.docker.distribution.manifest.v1+json")
    text = manifest_pretty(manifest, "reg.example/x:v1", Reference.parse("reg.example/x:v1"))
    assert text.splitlines() == [
        "Name:      reg.example/x:v1",
        "MediaType: application/vnd.docker.distribution.manifest.v1+json",
        f"Digest:    {manifest.digest}",
        " " * 11,  # the widest cell, "MediaType:", plus the padding
        "Layers:    ",
        f"  Digest:  sha256:{'c' * 64}",
    ]


def test_user_config_entries():
    assert new_entry("localhost:5000") == ("localhost:5000", {
        "tls": "enabled", "hostname": "localhost:5000", "reqConcurrent": 3})
    assert new_entry("http://reg.example:5000") == ("reg.example:5000", {
        "tls": "disabled", "hostname": "reg.example:5000",
        "credHost": "http://reg.example:5000", "reqConcurrent": 3})
    name, hub = new_entry("index.docker.io")
    assert name == "docker.io" and hub["hostname"] == "registry-1.docker.io"
    assert is_default("localhost:5000", {"tls": "enabled", "hostname": "localhost:5000"})
    assert not is_default("localhost:5000", {"tls": "disabled", "hostname": "localhost:5000"})
    for bad in ("a/b", "ftp://a", "", "a b"):
        with pytest.raises(ConfigError):
            registry_name(bad)


def test_commands_load_only_when_used():
    """`regbot version` must stay quick: no command module, client or template engine
    is imported until a command needs it."""
    code = ("import sys; sys.argv = ['regbot', '--help']; from regbot.cli import main; "
            "print(sorted(m for m in sys.modules if m.startswith('regbot.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = ast.literal_eval(out)  # a printed list of module names
    assert "regbot.commands.options" in loaded
    assert not [m for m in loaded if m.startswith(("regbot.commands.tag", "regbot.commands.image",
                                                   "regbot.client", "regbot.engine"))], loaded
