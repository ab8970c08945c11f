"""Go text/template strings (as in regbot.yml) expanded through the jinja2 translation."""

from __future__ import annotations

import pytest

from regbot.errors import ConfigError
from regbot.gotemplate import expand, translate

WHERE = "regbot.yml:7:11: creds[1] (docker.io) pass"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("HUB_USER", "alice")
    monkeypatch.setenv("MIXED", "MiXeD")
    monkeypatch.setenv("LIST", "a,b,c")
    monkeypatch.delenv("UNSET_VAR", raising=False)


def run(template: str, **kw) -> str:
    return expand(template, WHERE, **kw)


def error(template: str, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        expand(template, WHERE, **kw)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(WHERE + ": template ")
    return message[len(WHERE + ": template ") :]


# --- the functions regbot.yml files use ---------------------------------------------------


def test_env():
    assert run('{{env "HUB_USER"}}') == "alice"
    assert run('{{ env "UNSET_VAR" }}') == ""
    assert run('x{{env "UNSET_VAR"}}y') == "xy"


def test_file(tmp_path):
    secret = tmp_path / "hub_token"
    secret.write_text("  s3cr3t-t0ken \n\n")
    assert run(f'{{{{file "{secret}"}}}}') == "s3cr3t-t0ken"
    assert run('{{file "/var/run/secrets/hub_token"}}') == ""  # unreadable: empty, as in Go
    assert run(f'{{{{file "{tmp_path}"}}}}') == ""  # a directory cannot be read either


def test_default_and_pipes_pass_the_value_last():
    assert run('{{ env "UNSET_VAR" | default "fallback" }}') == "fallback"
    assert run('{{ env "HUB_USER" | default "fallback" }}') == "alice"
    assert run('{{ "x" | default "y" }}') == "x"  # default("y", "x")
    assert run('{{ default "y" "" }}') == "y"
    assert run('{{ default "y" 0 }}') == "y"
    assert run('{{ default "y" false }}') == "y"
    assert run('{{ default "y" nil }}') == "y"
    assert run('{{ default "y" . }}') == "y"  # the data is nil
    assert run('{{ default "y" 5 }}') == "5"


def test_string_functions():
    assert run('{{ lower (env "MIXED") }}') == "mixed"
    assert run('{{ env "MIXED" | upper }}') == "MIXED"
    assert run('{{ trimSpace "  padded \\n" }}') == "padded"
    assert run('{{ split (env "LIST") "," }}') == "[a b c]"
    assert run('{{ join (split (env "LIST") ",") "+" }}') == "a+b+c"
    assert run('{{ split "abc" "" }}') == "[a b c]"
    assert run('{{ split "" "," | len }}') == "1"  # strings.Split("", ",") is [""]
    assert run('{{ "a,b" | split "," }}') == "[,]"  # split(",", "a,b"), as Go does it


def test_json():
    assert run('{{ json (split "a,b" ",") }}') == '["a","b"]\n'
    assert run('{{ json "<&>" }}') == '"<&>"\n'  # no HTML escaping
    assert run("{{ json 1.5 }}{{ json 3 }}{{ json true }}{{ json nil }}") == "1.5\n3\ntrue\nnull\n"
    assert run('{{ jsonPretty (split "a,b" ",") }}') == '[\n  "a",\n  "b"\n]\n'
    assert run("{{ jsonPretty . }}", data={"B": 1, "A": [1, 2]}) == (
        '{\n  "B": 1,\n  "A": [\n    1,\n    2\n  ]\n}\n'
    )


# --- syntax ---------------------------------------------------------------------------------


def test_trim_markers():
    assert run('a  {{- "b" -}}  c') == "abc"
    assert run('a \n\t{{- "b" }} c') == "ab c"
    assert run('a {{ "b" -}} \n c') == "a bc"
    assert run("a {{-3}} c") == "a -3 c"  # "{{-3" is the number -3, not a trim marker
    assert run('line1\n{{- "x" }}\n  {{- "y" -}}\n  z') == "line1xyz"


def test_comments():
    assert run("{{/* a comment */}}ok") == "ok"
    assert run("a {{- /* trimmed */ -}} b") == "ab"
    assert run("{{/* multi\nline */}}x") == "x"


def test_literal_text_is_never_jinja():
    text = '{% raw %}{# no comment #}{%- if x %}{{ "}}" }}${x} %} #}'
    assert run(text) == "{% raw %}{# no comment #}{%- if x %}}}${x} %} #}"
    assert run("{% endraw %}{{ `{{` }}{% for %}") == "{% endraw %}{{{% for %}"
    assert run("no actions at all {% %} }}") == "no actions at all {% %} }}"


def test_string_constants():
    assert run('{{ "tab\\there" }}') == "tab\there"
    assert run('{{ "\\x41\\101\\u00e9\\U0001F600\\"q\\"\\\\" }}') == 'AAé😀"q"\\'
    assert run('{{ `raw \\n "x" {{ }}` }}') == 'raw \\n "x" {{ }}'
    assert run("{{ `multi\nline` }}") == "multi\nline"
    assert run('{{ "}}" }}') == "}}"


def test_numbers_and_constants():
    assert run("{{ 42 }} {{ -7 }} {{ 0x1F }} {{ 017 }} {{ 0o17 }} {{ 0b101 }} {{ 1_000 }}") == (
        "42 -7 31 15 15 5 1000"
    )
    assert run("{{ 1.5 }} {{ 1e3 }} {{ 1.0 }} {{ 1e6 }} {{ .5 }} {{ 0.00001 }}") == (
        "1.5 1000 1 1e+06 0.5 1e-05"
    )
    assert run("{{ 'a' }} {{ '\\n' }}") == "97 10"
    assert run("{{ true }} {{ false }}") == "true false"


def test_dot_and_root_of_nil_data():
    assert run("{{ . }}") == "<no value>"
    assert run("{{ $ }}") == "<no value>"
    assert run("{{ .Anything }}") == "<no value>"
    assert run('{{ .A.B | default "d" }}') == "d"


def test_data_for_other_callers():
    info = {"Version": "0.1.0", "VCSTag": "v0.1.0"}
    assert (
        run("{{ .Version }} {{ $.VCSTag }} {{ .Missing }}", data=info) == "0.1.0 v0.1.0 <no value>"
    )


def test_nested_calls_and_pipes():
    assert run('{{ upper (lower (env "MIXED")) }}') == "MIXED"
    assert run('{{ (env "HUB_USER") }}') == "alice"
    assert run('{{ env `HUB_USER` | upper | printf "<%s>" }}') == "<ALICE>"
    assert run('{{ "a" | printf "%s-%s" "b" }}') == "b-a"
    assert run('{{ join (split (lower (env "MIXED")) "x") (upper "-") }}') == "mi-ed"


def test_variables():
    assert run('{{ $u := env "HUB_USER" }}{{ $u }}:{{ $u = "bob" }}{{ $u }}') == "alice:bob"
    assert run('{{ $x := 1 }}{{ range split "a,b" "," }}{{ $x = . }}{{ end }}{{ $x }}') == "b"


def test_if_else():
    assert run('{{ if env "HUB_USER" }}yes{{ else }}no{{ end }}') == "yes"
    assert run('{{ if env "UNSET_VAR" }}yes{{ else }}no{{ end }}') == "no"
    assert run('{{ if env "UNSET_VAR" }}a{{ else if eq 1 1 }}b{{ else }}c{{ end }}') == "b"
    assert run('{{ if $v := env "HUB_USER" }}<{{ $v }}>{{ end }}') == "<alice>"
    assert (
        run("{{ if not 0 }}t{{ end }}{{ if and 1 0 }}x{{ end }}{{ if or 0 1 }}o{{ end }}") == "to"
    )


def test_with():
    assert run('{{ with env "HUB_USER" }}[{{ . }}]{{ else }}none{{ end }}') == "[alice]"
    assert run('{{ with env "UNSET_VAR" }}[{{ . }}]{{ else }}none{{ end }}') == "none"
    assert (
        run('{{ with env "UNSET_VAR" }}a{{ else with env "HUB_USER" }}{{ . }}{{ end }}') == "alice"
    )


def test_range():
    assert run('{{ range $i, $e := split "a,b" "," }}{{ $i }}={{ $e }};{{ end }}') == "0=a;1=b;"
    assert (
        run('{{ range split "a,b,c" "," }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ . }}{{ end }}')
        == "ac"
    )
    assert (
        run('{{ range split "a,b,c" "," }}{{ if eq . "b" }}{{ break }}{{ end }}{{ . }}{{ end }}')
        == "a"
    )
    assert run("{{ range 3 }}{{ . }}{{ end }}") == "012"
    assert run("{{ range 0 }}x{{ else }}empty{{ end }}") == "empty"
    assert run("{{ range $k, $v := . }}{{ $k }}{{ $v }}{{ end }}", data={"b": 2, "a": 1}) == "a1b2"


def test_builtins():
    assert (
        run('{{ len "héllo" }} {{ index (split "a,b" ",") 1 }} {{ slice "hello" 1 3 }}') == "6 b el"
    )
    assert (
        run('{{ lt 1 2 }} {{ ge "b" "a" }} {{ ne 1 2 }} {{ eq "a" "b" "a" }}')
        == "true true true true"
    )
    assert run('{{ print 1 2 "a" "b" 3 }}|{{ println "a" 1 }}') == "1 2ab3|a 1\n"
    assert run(
        '{{ printf "%s-%05d-%q-%v-%x-%5s|%-3s|" "a" 42 "q" (split "a,b" ",") 255 "r" "l" }}'
    ) == ('a-00042-"q"-[a b]-ff-    r|l  |')
    assert run('{{ printf "%d" }} {{ printf "x" 1 }} {{ printf "%d" "s" }}') == (
        "%!d(MISSING) x%!(EXTRA int=1) %!d(string=s)"
    )
    assert run("{{ html \"<a href='x'>&\" }}") == "&lt;a href=&#39;x&#39;&gt;&amp;"
    assert run('{{ js "it\'s <b>" }}') == "it\\'s \\u003Cb\\u003E"
    assert run('{{ urlquery "a b&c/d" }}') == "a+b%26c%2Fd"


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ foo }}", '1:4: function "foo" not defined'),
        ('{{ env "A" | nope }}', '1:14: function "nope" not defined'),
        ("{{ env }}", "1:4: wrong number of args for env: want 1 got 0"),
        ('{{ env "A" "B" }}', "1:4: wrong number of args for env: want 1 got 2"),
        ('{{ "x" | env "A" }}', "1:10: wrong number of args for env: want 1 got 2"),
        ("{{ printf }}", "1:4: wrong number of args for printf: want at least 1 got 0"),
        ("{{", "1:1: unclosed action"),
        ('{{ env "HUB_USER" ', "1:1: unclosed action"),
        ('{{ env "x }}', "1:8: unterminated quoted string"),
        ("{{ `x }}", "1:4: unterminated raw quoted string"),
        ("{{ if 1 }}", "1:4: unexpected EOF (missing {{end}} for {{if}})"),
        ("{{ range 1 }}", "1:4: unexpected EOF (missing {{end}} for {{range}})"),
        ("{{ end }}", "1:1: unexpected {{end}}"),
        ("x{{ else }}", "1:2: unexpected {{else}}"),
        ("{{ if 1 }}a{{ else }}b{{ else }}c{{ end }}", "1:23: expected end; found {{else}}"),
        ("{{ $x }}", '1:4: undefined variable "$x"'),
        ("{{ if 1 }}{{ $y := 1 }}{{ end }}{{ $y }}", '1:36: undefined variable "$y"'),
        ("{{ nil }}", "1:4: nil is not a command"),
        ('{{ "a" | "b" }}', "1:10: non executable command in pipeline stage 2"),
        ('{{ env("X") }}', '1:7: unexpected "(" in operand'),
        ('{{ env"X" }}', '1:7: bad character "\\""'),
        ("{{ 1 2 }}", "1:4: can't give argument to non-function 1"),
        ('{{ .Foo "a" }}', "1:4: can't give argument to non-function .Foo"),
        ("{{ }}", "1:3: missing value for command"),
        ('{{ ( env "A" }}', "1:14: unclosed left paren"),
        ('{{ env "A") }}', "1:11: unexpected right paren"),
        ("{{ break }}", "1:4: {{break}} outside {{range}}"),
        ('{{ define "x" }}{{ end }}', "1:4: {{define}} is not supported in regbot.yml templates"),
        ('{{ template "x" }}', "1:4: {{template}} is not supported in regbot.yml templates"),
        ("{{ time }}", '1:4: function "time" is not supported by this regbot'),
        ('{{ "\\q" }}', "1:4: invalid syntax in quoted string"),
        ("{{/* x }}", "1:1: unclosed comment"),
        ("{{/* x */ }}", "1:8: comment ends before closing delimiter"),
        ("{{ 99999999999999999999 }}", "1:4: 99999999999999999999 overflows int"),
        ("{{ 1x }}", '1:4: bad number syntax: "1x"'),
        ("{{ $x, $y := 1 }}", "1:6: too many declarations in command"),
        ('{{ "a".Foo }}', '1:7: unexpected . after term "\\"a\\""'),
        (
            "{{ if 1 }}{{ else if 2 }}{{ else }}",
            "1:19: unexpected EOF (missing {{end}} for {{if}})",
        ),
        ("ok\n\n  {{ nope }}", '3:6: function "nope" not defined'),
    ],
)
def test_parse_errors(template, message):
    assert error(template) == message


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ lower 5 }}",
            "1:4: error calling lower: wrong type for value; expected string; got int",
        ),
        ('{{ index (split "a" ",") 5 }}', "1:4: error calling index: index out of range: 5"),
        (
            '{{ default "x" (split "a" ",") }}',
            "1:4: error calling default: runtime error: comparing uncomparable type []string",
        ),
        (
            '{{ join "a" "b" }}',
            "1:4: error calling join: wrong type for value; expected []string; got string",
        ),
        (
            '{{ split "a,b" "," | join "-" }}',
            "1:22: error calling join: wrong type for value; expected []string; got string",
        ),
        ('{{ eq 1 "a" }}', "1:4: error calling eq: incompatible types for comparison"),
        ("{{ range 1.5 }}{{ end }}", "1:4: range can't iterate over type float64"),
        ('{{ (split "a" ",").Foo }}', "1:19: can't evaluate field Foo in type []string"),
        ("{{ len 3 }}", "1:4: error calling len: len of type int"),
    ],
)
def test_execution_errors(template, message):
    assert error(template) == message


def test_secret_fields_hide_template_text(tmp_path):
    # A password that happens to look like a template must not leak through the error.
    message = error("{{hunter2}}", secret=True)
    assert message == "1:3: function <hidden> not defined"
    assert "hunter2" not in message
    assert "s3cret" not in error("{{ $s3cret }}", secret=True)
    assert "pa55" not in error('{{ env "x" | pa55 }}', secret=True)


def test_expanded_values_never_in_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_VAL", "topsecretvalue")
    secret = tmp_path / "s"
    secret.write_text("filesecretvalue")
    for template in (
        '{{ env "SECRET_VAL" | lower | index 99 }}',
        '{{ index (env "SECRET_VAL") 99 }}',
        f'{{{{ file "{secret}" | len | lower }}}}',
        '{{ eq (env "SECRET_VAL") 1 }}',
        '{{ (env "SECRET_VAL").Field }}',
        '{{ range env "SECRET_VAL" }}{{ end }}',
    ):
        message = error(template, secret=True)
        assert "topsecretvalue" not in message
        assert "filesecretvalue" not in message


def test_plain_values_are_untouched():
    for value in ("p@ss{w}ord", "}}{%", "", "{ {x} }", "100%", "{x}}"):
        assert run(value) == value


def test_translation_passes_text_as_data():
    source, consts = translate('a{% x %}{{ env "A" | default "b" }}c')
    assert "{% x %}" not in source
    assert consts == ["a{% x %}", "A", "b", "c"]


@pytest.mark.parametrize("template", [
    '{{env "REGBOT_TEST_ONE_CALL"}}', '{{ env "REGBOT_TEST_ONE_CALL" }}',
    '{{- env "REGBOT_TEST_ONE_CALL" -}}', "{{jsonPretty .}}", "{{json .}}", "{{.}}",
    '{{lower "A\\tB"}}', '{{upper "x"}}', '{{default "a" "b"}}', '{{join . ","}}',
])
def test_one_call_templates_expand_as_the_full_engine_does(template, monkeypatch):
    """A template that is one plain call skips the engine; its output is the engine's."""
    from regbot import gotemplate

    monkeypatch.setenv("REGBOT_TEST_ONE_CALL", "hub-user")
    data = ["a", "b"] if "join" in template else {"Version": "1", "N": [1, 2]}
    assert gotemplate._one_call(template, data) is not None
    quick = expand(template, "t", data=data)
    monkeypatch.setattr(gotemplate, "_one_call", lambda *_: None)
    assert quick == expand(template, "t", data=data)
