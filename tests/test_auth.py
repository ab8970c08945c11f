"""Unit tests of regbot/http/auth.py: the WWW-Authenticate parser, scopes, and the Bearer
exchange driven with canned replies (no network)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import pytest

from regbot.credhelper import Credential
from regbot.errors import Unauthorized
from regbot.http.auth import (
    Authenticator,
    AuthRefused,
    Challenge,
    Reply,
    TokenCall,
    merge_scopes,
    parse_www_authenticate,
    scopes_cover,
)

PASSWORD = "pa55-Very-Secret"
REG = "registry.test:5000"
CHALLENGE = 'Bearer realm="https://auth.test/token",service="registry.test",scope="repository:lib/app:pull"'


# --- the parser ---


def test_parse_docker_hub_challenge():
    [c] = parse_www_authenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push"'
    )
    assert c == Challenge("bearer", {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:samalba/my-app:pull,push",
    })


def test_parse_several_challenges_quotes_escapes_and_case():
    found = parse_www_authenticate([
        'Basic realm="a, b=c", BEARER Realm="https://x/t" , service=svc,scope="a:b:pull b:c:push"',
        'Bearer realm="es\\"caped", error="invalid_token"',
        "Negotiate YWJjZA==",
    ])
    assert [c.scheme for c in found] == ["basic", "bearer", "bearer", "negotiate"]
    assert found[0].params == {"realm": "a, b=c"}
    assert found[1].params == {"realm": "https://x/t", "service": "svc", "scope": "a:b:pull b:c:push"}
    assert found[2].params == {"realm": 'es"caped', "error": "invalid_token"}
    assert found[3].params == {"": "YWJjZA=="}


def test_parse_bare_scheme_and_malformed_input():
    assert parse_www_authenticate("Basic") == [Challenge("basic", {})]
    assert parse_www_authenticate("") == []
    # An unterminated quote keeps what was read before the fault and never raises.
    assert [c.scheme for c in parse_www_authenticate('Bearer realm="https://x')] == ["bearer"]
    assert parse_www_authenticate("@@@") == []


# --- scopes ---


def test_merge_scopes_unions_actions_per_resource():
    assert merge_scopes([
        "repository:a/b:pull", "repository:a/b:push", "repository:c:pull",
        "registry:catalog:*", "repository:a/b:pull",
    ]) == ("registry:catalog:*", "repository:a/b:pull,push", "repository:c:pull")
    assert merge_scopes(["repository:a:delete,pull push-only"]) == ("repository:a:pull,delete", "push-only")


def test_scopes_cover():
    assert scopes_cover(["repository:a:pull,push"], ["repository:a:pull"])
    assert not scopes_cover(["repository:a:pull"], ["repository:a:pull,push"])
    assert not scopes_cover(["repository:a:pull"], ["repository:b:pull"])
    assert scopes_cover(["registry:catalog:*"], ["registry:catalog:*"])
    assert scopes_cover(["repository:a:pull", "repository:b:pull"], ["repository:b:pull"])


# --- the flow with canned replies ---


@dataclass
class FakeRequest:
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Canned:
    """Answers the flow's calls: `registry(req)` and `token(call)` give replies."""

    def __init__(self, registry, token=None):
        self.registry = registry
        self.token = token or (lambda call: token_reply("tok-1"))
        self.sent: list[tuple[str, dict]] = []

    def run(self, flow):
        out = next(flow)
        while True:
            if isinstance(out, TokenCall):
                self.sent.append(("token", {"method": out.method, "url": out.url, "params": list(out.params),
                                            "headers": dict(out.headers), "form": out.form}))
                reply = self.token(out)
            else:
                self.sent.append(("registry", dict(out.headers)))
                reply = self.registry(out)
            try:
                out = flow.send(reply)
            except StopIteration as stop:
                return stop.value

    def kinds(self):
        return [k for k, _ in self.sent]


def token_reply(value, field_name="token", expires_in=None, status=200, extra=None):
    body = {field_name: value, **(extra or {})}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return Reply(status, {"Content-Type": "application/json"}, body=json.dumps(body).encode())


def registry_needing(valid: set[str], challenge: str = CHALLENGE):
    """A registry that accepts the Authorization values in `valid`, else 401s."""
    def answer(req):
        if req.headers.get("Authorization") in valid:
            return Reply(200, {})
        return Reply(401, {"WWW-Authenticate": challenge})
    return answer


def make_auth(cred=None, clock=None):
    cred = cred or Credential()
    return Authenticator("registry.test", REG, lambda: cred, client_id="regbot-test", clock=clock or Clock())


def url(path="/v2/lib/app/manifests/v1"):
    return f"https://{REG}{path}"


def test_anonymous_request_that_needs_no_auth():
    canned = Canned(lambda req: Reply(200, {}))
    reply = canned.run(make_auth().flow(FakeRequest(url()), ["repository:lib/app:pull"]))
    assert reply.status == 200
    assert canned.sent == [("registry", {})]


def test_bearer_with_basic_credentials_and_scope_union():
    canned = Canned(registry_needing({"Bearer tok-1"}),
                    token=lambda call: token_reply("tok-1", field_name="access_token", expires_in=300))
    auth = make_auth(Credential("alice", PASSWORD))
    reply = canned.run(auth.flow(FakeRequest(url()), ["repository:lib/app:pull,push", "repository:lib/base:pull"]))
    assert reply.status == 200
    assert canned.kinds() == ["registry", "token", "registry"]
    token = canned.sent[1][1]
    assert token["method"] == "GET" and token["url"] == "https://auth.test/token"
    params = token["params"]
    assert ("service", "registry.test") in params and ("account", "alice") in params
    # ours (push + the mount source) united with what the challenge asked
    assert [v for k, v in params if k == "scope"] == ["repository:lib/app:pull,push", "repository:lib/base:pull"]
    assert token["headers"]["Authorization"] == "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert canned.sent[2][1]["Authorization"] == "Bearer tok-1"


def test_token_cached_per_scope_until_expiry():
    clock = Clock()
    tokens = iter(["tok-1", "tok-2", "tok-3"])
    issued = []

    def token(call):
        issued.append(next(tokens))
        return token_reply(issued[-1], expires_in=300)

    canned = Canned(registry_needing({"Bearer tok-1", "Bearer tok-2", "Bearer tok-3"}), token=token)
    auth = make_auth(Credential("alice", PASSWORD), clock)
    push = ["repository:lib/app:pull,push"]
    assert canned.run(auth.flow(FakeRequest(url()), push)).status == 200
    assert issued == ["tok-1"]
    # Same scopes, and a subset (pull after push): the cached token, sent up front.
    canned.sent.clear()
    assert canned.run(auth.flow(FakeRequest(url()), push)).status == 200
    assert canned.run(auth.flow(FakeRequest(url()), ["repository:lib/app:pull"])).status == 200
    assert canned.kinds() == ["registry", "registry"]
    assert all(h["Authorization"] == "Bearer tok-1" for _, h in canned.sent)
    # Another repository: a new token, fetched before the request (challenge known).
    canned.sent.clear()
    assert canned.run(auth.flow(FakeRequest(url("/v2/other/manifests/x")), ["repository:other:pull"])).status == 200
    assert canned.kinds() == ["token", "registry"] and issued == ["tok-1", "tok-2"]
    # Expired (300 s minus the margin): renewed.
    clock.now += 296
    canned.sent.clear()
    assert canned.run(auth.flow(FakeRequest(url()), push)).status == 200
    assert canned.kinds() == ["token", "registry"] and issued[-1] == "tok-3"


def test_expires_in_defaults_to_60_seconds():
    clock = Clock()
    canned = Canned(registry_needing({"Bearer tok-1"}), token=lambda call: token_reply("tok-1"))
    auth = make_auth(clock=clock)
    canned.run(auth.flow(FakeRequest(url()), ["repository:lib/app:pull"]))
    clock.now += 50
    canned.sent.clear()
    canned.run(auth.flow(FakeRequest(url()), ["repository:lib/app:pull"]))
    assert canned.kinds() == ["registry"]
    clock.now += 10
    canned.sent.clear()
    canned.run(auth.flow(FakeRequest(url()), ["repository:lib/app:pull"]))
    assert canned.kinds() == ["token", "registry"]


def test_one_reauth_on_401_with_a_cached_token():
    tokens = iter(["stale", "fresh"])
    valid = {"Bearer stale"}
    canned = Canned(registry_needing(valid), token=lambda call: token_reply(next(tokens), expires_in=600))
    auth = make_auth(Credential("alice", PASSWORD))
    assert canned.run(auth.flow(FakeRequest(url()), ["repository:lib/app:pull"])).status == 200
    valid.clear()
    valid.add("Bearer fresh")  # the registry revoked the cached token
    canned.sent.clear()
    assert canned.run(auth.flow(FakeRequest(url()), ["repository:lib/app:pull"])).status == 200
    assert canned.kinds() == ["registry", "token", "registry"]
    assert [h.get("Authorization") for k, h in canned.sent if k == "registry"] == ["Bearer stale", "Bearer fresh"]


def test_a_second_401_is_returned_not_retried_again():
    canned = Canned(registry_needing(set()), token=lambda call: token_reply("useless"))
    reply = canned.run(make_auth().flow(FakeRequest(url()), ["repository:lib/app:pull"]))
    assert reply.status == 401
    assert canned.kinds() == ["registry", "token", "registry"]


def test_identity_token_uses_oauth2_post_form():
    canned = Canned(registry_needing({"Bearer from-refresh"}),
                    token=lambda call: token_reply("from-refresh", extra={"refresh_token": "rotated"}))
    auth = make_auth(Credential(token="identity-secret"))
    assert canned.run(auth.flow(FakeRequest(url()), ["repository:lib/app:pull,push"])).status == 200
    token = canned.sent[1][1]
    assert token["method"] == "POST"
    assert token["headers"]["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert token["form"] == {
        "grant_type": "refresh_token", "refresh_token": "identity-secret", "client_id": "regbot-test",
        "service": "registry.test", "scope": "repository:lib/app:pull,push",
    }


def test_post_refused_falls_back_to_get():
    def token(call):
        return Reply(405, {}) if call.method == "POST" else token_reply("via-get")
    canned = Canned(registry_needing({"Bearer via-get"}), token=token)
    auth = make_auth(Credential(user="bob", password=PASSWORD, token="identity"))
    assert canned.run(auth.flow(FakeRequest(url()), ["repository:lib/app:pull"])).status == 200
    assert [c[1]["method"] for c in canned.sent if c[0] == "token"] == ["POST", "GET"]


def test_token_server_refusal_raises_without_secrets():
    canned = Canned(registry_needing(set()), token=lambda call: Reply(401, {}))
    auth = make_auth(Credential("alice", PASSWORD))
    with pytest.raises(AuthRefused) as info:
        canned.run(auth.flow(FakeRequest(url()), ["repository:lib/app:pull"]))
    assert isinstance(info.value, Unauthorized) and info.value.status == 401
    assert PASSWORD not in str(info.value) and "alice" not in str(info.value)


def test_garbled_token_answer():
    canned = Canned(registry_needing(set()), token=lambda call: Reply(200, {}, body=b"<html>"))
    with pytest.raises(AuthRefused, match="JSON"):
        canned.run(make_auth().flow(FakeRequest(url()), ["repository:lib/app:pull"]))
    canned = Canned(registry_needing(set()), token=lambda call: Reply(200, {}, body=b'{"expires_in": 3}'))
    with pytest.raises(AuthRefused, match="no token"):
        canned.run(make_auth().flow(FakeRequest(url()), ["repository:lib/app:pull"]))


def test_basic_challenge():
    expected = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    canned = Canned(registry_needing({expected}, challenge='Basic realm="reg"'))
    auth = make_auth(Credential("alice", PASSWORD))
    assert canned.run(auth.flow(FakeRequest(url()), [])).status == 200
    canned.sent.clear()
    assert canned.run(auth.flow(FakeRequest(url()), [])).status == 200
    assert canned.sent == [("registry", {"Authorization": expected})]  # sent up front now
    # Without credentials there is nothing to retry with.
    canned = Canned(registry_needing({expected}, challenge='Basic realm="reg"'))
    assert canned.run(make_auth().flow(FakeRequest(url()), [])).status == 401
    assert canned.kinds() == ["registry"]


def test_relative_realm_and_unsafe_realms():
    canned = Canned(registry_needing({"Bearer tok-1"}, challenge='Bearer realm="/token",service="s"'))
    assert canned.run(make_auth().flow(FakeRequest(url()), [])).status == 200
    assert canned.sent[1][1]["url"] == f"https://{REG}/token"
    for realm in ("http://auth.test/token", "https://127.0.0.1/token", "file:///etc/passwd"):
        canned = Canned(registry_needing(set(), challenge=f'Bearer realm="{realm}"'))
        with pytest.raises(Unauthorized):
            canned.run(make_auth(Credential("alice", PASSWORD)).flow(FakeRequest(url()), []))
        assert canned.kinds() == ["registry"]  # the credentials never went anywhere


def test_no_credentials_for_other_hosts():
    canned = Canned(registry_needing({"Bearer tok-1"}))
    auth = make_auth(Credential("alice", PASSWORD))
    canned.run(auth.flow(FakeRequest(url()), ["repository:lib/app:pull"]))
    canned = Canned(lambda req: Reply(401, {"WWW-Authenticate": CHALLENGE}))
    reply = canned.run(auth.flow(FakeRequest("https://storage.test/blob"), ["repository:lib/app:pull"]))
    assert reply.status == 401 and canned.sent == [("registry", {})]


def test_secrets_stay_out_of_reprs():
    cred = Credential("alice", PASSWORD, "identity-secret")
    assert PASSWORD not in repr(cred) and "identity-secret" not in repr(cred)
    call = TokenCall("POST", "https://auth.test/token", headers={"Authorization": "Basic x"},
                     form={"refresh_token": "identity-secret"})
    assert "identity-secret" not in repr(call) and "Basic" not in repr(call)
    canned = Canned(registry_needing({"Bearer tok-secret"}), token=lambda c: token_reply("tok-secret"))
    auth = make_auth(cred)
    canned.run(auth.flow(FakeRequest(url()), []))
    assert "tok-secret" not in repr(auth._tokens)
    assert parse_qsl(urlsplit(url()).query) == []
