"""TokenAuthFront and FaultFront, in front of a real docker-registry."""

from __future__ import annotations

import re
import threading
import time

import pytest
import requests

from tests.support import images as im
from tests.support.fronts import FaultFront, TokenAuthFront

CREDS = ("alice", "s3cret-Pa55")
ACCEPT = {"Accept": im.ACCEPT_ALL}  # 2.8 hides OCI manifests from requests without it


def _token(front: TokenAuthFront, scope: str, auth=CREDS) -> requests.Response:
    return requests.get(f"{front.url}/token", params={"service": "registry.test", "scope": scope},
                        auth=auth, timeout=10)


def _challenge(resp: requests.Response) -> dict[str, str]:
    header = resp.headers["WWW-Authenticate"]
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


@pytest.fixture
def pushed(registry, repo):
    image = im.build_image(seed=11, layer_size=50_000)
    im.push_image(registry.host, repo, image, "v1")
    return image


def test_token_flow_401_token_200(token_front, repo, pushed):
    url = f"{token_front.url}/v2/{repo}/manifests/v1"
    resp = requests.get(url, headers={"Accept": im.ACCEPT_ALL}, timeout=10)
    assert resp.status_code == 401
    assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"
    params = _challenge(resp)
    assert params == {"realm": f"http://{token_front.host}/token", "service": "registry.test",
                      "scope": f"repository:{repo}:pull"}
    tok = requests.get(params["realm"], params={"service": params["service"],
                                                "scope": params["scope"]}, auth=CREDS, timeout=10)
    assert tok.status_code == 200
    body = tok.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    assert body["issued_at"]
    resp = requests.get(url, headers={"Accept": im.ACCEPT_ALL,
                                      "Authorization": f"Bearer {body['token']}"}, timeout=10)
    assert resp.status_code == 200 and resp.content == pushed.manifest
    assert "RateLimit-Limit" not in resp.headers  # no rate_limit configured
    assert token_front.token_requests == [(f"repository:{repo}:pull", "alice")]
    assert ("GET", f"/v2/{repo}/manifests/v1") in token_front.requests
    assert token_front.manifest_gets == 1
    assert token_front.challenges == [("GET", f"/v2/{repo}/manifests/v1")]  # the 401 only
    assert CREDS[1] not in repr(token_front)


def test_token_checks_password_repository_and_action(token_front, repo, pushed):
    assert _token(token_front, f"repository:{repo}:pull", ("alice", "wrong")).status_code == 401
    anon = _token(token_front, f"repository:{repo}:pull,push", None).json()["token"]
    bearer = {"Authorization": f"Bearer {anon}", **ACCEPT}
    assert requests.get(f"{token_front.url}/v2/{repo}/manifests/v1", headers=bearer,
                        timeout=10).status_code == 200
    post = requests.post(f"{token_front.url}/v2/{repo}/blobs/uploads/", headers=bearer, timeout=10)
    assert post.status_code == 401  # anonymous: pull only
    assert _challenge(post)["scope"] == f"repository:{repo}:pull,push"
    assert requests.get(f"{token_front.url}/v2/other/manifests/v1", headers=bearer,
                        timeout=10).status_code == 401  # token is for `repo` only
    assert requests.get(f"{token_front.url}/v2/{repo}/manifests/v1",
                        headers={"Authorization": "Bearer forged"}, timeout=10).status_code == 401
    users = [user for _, user in token_front.token_requests]
    assert users == ["alice", ""]
    assert all(CREDS[1] not in scope for scope, _ in token_front.token_requests)


def test_push_and_mount_through_token_front(token_front, repo, pushed):
    other = im.build_image(seed=12)
    im.push_image(token_front.host, repo + "-b", other, "v1", auth=CREDS)
    assert im.manifest_json(token_front.host, repo + "-b", "v1", auth=CREDS) == other.data
    digest = pushed.config["digest"]
    url = f"{token_front.url}/v2/{repo}-c/blobs/uploads/?mount={digest}&from={repo}"
    resp = requests.post(url, timeout=10)
    assert _challenge(resp)["scope"] == f"repository:{repo}-c:pull,push repository:{repo}:pull"
    tok = _token(token_front, _challenge(resp)["scope"]).json()["token"]
    resp = requests.post(url, headers={"Authorization": f"Bearer {tok}"}, timeout=10)
    assert resp.status_code == 201
    assert resp.headers["Location"].startswith(token_front.url)  # rewritten to the front


def test_post_token_endpoint_and_expiry(token_front_factory, repo, pushed):
    front = token_front_factory(token_ttl=0)
    resp = requests.post(f"{front.url}/token", data={
        "grant_type": "password", "username": "alice", "password": CREDS[1],
        "service": "registry.test", "scope": f"repository:{repo}:pull"}, timeout=10)
    assert resp.status_code == 200
    time.sleep(0.01)
    expired = requests.get(f"{front.url}/v2/{repo}/manifests/v1", timeout=10,
                           headers={"Authorization": f"Bearer {resp.json()['token']}"})
    assert expired.status_code == 401


def test_rate_limit_headers_and_429(token_front_factory, repo, pushed):
    front = token_front_factory(rate_limit=3, window=60)
    sess = im.session(CREDS)
    url = f"{front.url}/v2/{repo}/manifests/v1"
    head = sess.head(url, timeout=10)
    assert head.headers["RateLimit-Limit"] == "3;w=60"
    assert head.headers["RateLimit-Remaining"] == "3;w=60"  # HEAD does not count
    assert head.headers["Docker-RateLimit-Source"] == "127.0.0.1"
    seen = [sess.get(url, timeout=10) for _ in range(4)]
    assert [r.status_code for r in seen] == [200, 200, 200, 429]
    assert [r.headers["RateLimit-Remaining"] for r in seen] == ["2;w=60", "1;w=60", "0;w=60",
                                                                "0;w=60"]
    assert seen[-1].json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert front.manifest_gets == 4
    assert sess.get(f"{front.url}/v2/{repo}/blobs/{pushed.config['digest']}",
                    timeout=10).status_code == 200  # blobs are not limited
    front.set_remaining(1)
    assert sess.get(url, timeout=10).status_code == 200


def test_fault_kinds(fault_front, repo, pushed):
    digest = pushed.layers[0]["digest"]
    url = f"{fault_front.url}/v2/{repo}/blobs/{digest}"
    status = fault_front.add("GET", r"/blobs/sha256:", "status", status=503)
    fault_front.add("GET", "/blobs/", "retry_after", seconds=7)
    fault_front.add("GET", "/blobs/", "truncate", bytes=100)
    fault_front.add("GET", "/blobs/", "corrupt", offset=5)
    fault_front.add("GET", "/blobs/", "drop")
    fault_front.add("GET", "/blobs/", "delay", seconds=0.3)
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 503 and resp.json()["errors"][0]["code"] == "UNAVAILABLE"
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, timeout=10)
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and len(resp.content) == pushed.layers[0]["size"]
    assert im.sha256(resp.content) != digest
    assert resp.headers["Docker-Content-Digest"] == digest
    assert sum(a != b for a, b in zip(resp.content, pushed.blobs[digest], strict=True)) == 1
    assert resp.content[5] == pushed.blobs[digest][5] ^ 0xFF
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=10)
    start = time.monotonic()
    resp = requests.get(url, timeout=10)
    assert time.monotonic() - start >= 0.3 and im.sha256(resp.content) == digest
    assert im.sha256(requests.get(url, timeout=10).content) == digest  # all used up
    assert status.hits == 1 and fault_front.hits() == 6
    assert fault_front.hits("drop") == 1
    assert len(fault_front.requests) == 7


def test_fault_matching_times_and_pass_through(fault_front, repo, pushed):
    fault = fault_front.add("HEAD", "/manifests/v1$", "status", times=2, status=500)
    url = f"{fault_front.url}/v2/{repo}/manifests/v1"
    codes = [requests.head(url, headers=ACCEPT, timeout=10).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    assert requests.get(url, headers=ACCEPT, timeout=10).status_code == 200  # GET not matched
    assert fault.hits == 2
    forever = fault_front.add("*", "/manifests/", "status", times=-1, status=502)
    assert [requests.get(url, timeout=10).status_code for _ in range(3)] == [502] * 3
    assert forever.hits == 3
    fault_front.clear()
    assert requests.get(url, headers=ACCEPT, timeout=10).status_code == 200
    with pytest.raises(ValueError):
        fault_front.add("GET", ".", "explode")


def test_push_through_fault_front_rewrites_location(fault_front, repo):
    image = im.build_image(seed=13)
    im.push_image(fault_front.host, repo, image, "v1")
    put = [p for m, p in fault_front.requests if m == "PUT" and "/blobs/uploads/" in p]
    assert put, "uploads went through the front (Location rewritten)"
    assert im.get_manifest(fault_front.host, repo, "v1").content == image.manifest


def test_concurrency_gauge(fault_front, repo, pushed):
    fault_front.add("*", "/manifests/", "delay", times=-1, seconds=0.3)
    url = f"{fault_front.url}/v2/{repo}/manifests/v1"
    threads = [threading.Thread(target=requests.get, args=(url,), kwargs={"timeout": 10})
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fault_front.max_concurrent == 4
    # a handler may still be finishing after its client got the whole answer
    deadline = time.monotonic() + 5
    while fault_front.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    fault_front.reset_gauge()
    requests.get(url, timeout=10)
    assert fault_front.max_concurrent == 1


def test_bandwidth_cap_and_chunked_upload(registry, repo, pushed):
    with FaultFront(registry, bandwidth=200_000) as front:
        start = time.monotonic()
        body = requests.get(f"{front.url}/v2/{repo}/blobs/{pushed.layers[0]['digest']}",
                            timeout=10).content
        assert time.monotonic() - start >= 0.2  # 50 kB at 200 kB/s
        assert im.sha256(body) == pushed.layers[0]["digest"]
        # a chunked (generator) upload is relayed as chunked
        loc = requests.post(f"{front.url}/v2/{repo}/blobs/uploads/", timeout=10)
        data = im.random_blob(70_000, 3)
        patch = requests.patch(loc.headers["Location"], timeout=10,
                               data=(data[i:i + 10_000] for i in range(0, len(data), 10_000)))
        assert patch.status_code == 202
        done = requests.put(patch.headers["Location"] + f"&digest={im.sha256(data)}", timeout=10)
        assert done.status_code == 201
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{front.url}/v2/", timeout=2)


def test_token_front_over_basic_auth_registry_and_stacking(auth_registry, token_front_factory,
                                                           repo):
    upstream_creds = (auth_registry.user, auth_registry.password)
    front = token_front_factory(auth_registry, upstream_auth=upstream_creds)
    image = im.build_image(seed=14)
    im.push_image(front.host, repo, image, "v1", auth=CREDS)
    assert im.get_manifest(auth_registry.host, repo, "v1", upstream_creds).content == image.manifest
    with FaultFront(front) as faults:  # faults before token auth: the realm stays the front's
        faults.add("GET", "/manifests/", "status", status=500)
        sess = im.session(CREDS)
        assert sess.get(f"{faults.url}/v2/{repo}/manifests/v1", timeout=10).status_code == 500
        assert sess.get(f"{faults.url}/v2/{repo}/manifests/v1",
                        timeout=10).content == image.manifest
