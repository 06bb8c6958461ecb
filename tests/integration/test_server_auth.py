"""serve-ws auth and abuse: bad tokens, refresh rotation and reuse, origins, the CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from server_helpers import aget, collect, llm, publish, running, subscribe
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from auren_core.server import AuthError, KeyRing, RefreshStore, issue_pair, verify
from auren_tui.cli import main


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    KeyRing.create(path)
    return path


def _token(ring: KeyRing, redis_url: str, **kw: Any) -> tuple[str, str, str]:
    pair, jti = issue_pair(ring, "tester", **kw)
    RefreshStore(redis.Redis.from_url(redis_url, decode_responses=True)).start(pair.family, jti)
    return pair.access, pair.refresh, pair.family


def _forge(
    ring: KeyRing,
    *,
    alg: str = "HS256",
    key: bytes | None = None,
    kid: str | None = None,
    **claims: object,
) -> str:
    now = int(time.time())
    body = {
        "iss": ring.issuer,
        "aud": ring.audience,
        "sub": "x",
        "iat": now,
        "exp": now + 60,
        "jti": "j",
        "typ": "access",
        **claims,
    }
    if alg == "none":
        head = {"alg": "none", "typ": "JWT", "kid": kid or ring.active}
        enc = [
            base64.urlsafe_b64encode(json.dumps(p).encode()).rstrip(b"=").decode()
            for p in (head, body)
        ]
        return f"{enc[0]}.{enc[1]}."
    return jwt.encode(
        body, key or ring.keys[ring.active], algorithm=alg, headers={"kid": kid or ring.active}
    )


async def _refused(port: int, token: str | None, origin: str | None = None) -> str:
    ws = await connect(f"ws://127.0.0.1:{port}/ws", origin=origin)  # type: ignore[arg-type]
    if token is not None:
        await ws.send(json.dumps({"type": "auth", "token": token}))
    await ws.send(json.dumps({"type": "subscribe"}))
    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert frame["type"] == "error"
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 4401, (ws.close_code, ws.close_reason)
    return ws.close_reason or ""


async def test_token_abuse_rejected(redis_url: str, stream: str, key_file: Path) -> None:
    ring = KeyRing.load(key_file)
    other = KeyRing.create(key_file.with_name("other.json"))
    access, refresh, _ = _token(ring, redis_url)
    expired, _, _ = _token(ring, redis_url, now=time.time() - 7200, access_ttl=60)
    head, body, sig = access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["sub"] = "admin"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    cases = {
        "missing": (None, "authenticate first"),
        "garbage": ("not.a.jwt", "malformed"),
        "expired": (expired, "expired"),
        "tampered": (f"{head}.{forged_body}.{sig}", "bad signature"),
        "alg none": (_forge(ring, alg="none"), "not allowed"),
        "HS512": (_forge(ring, alg="HS512", key=ring.keys[ring.active] * 2), "not allowed"),
        "wrong key": (_forge(ring, key=b"k" * 48), "bad signature"),
        "unknown kid": (_forge(other), "unknown key id"),
        "wrong audience": (_forge(ring, aud="someone-else"), "Audience"),
        "wrong issuer": (_forge(ring, iss="mallory"), "issuer"),
        "refresh as access": (refresh, "refresh token cannot"),
    }
    async with running(redis_url, stream, auth="jwt", key_file=key_file) as srv:
        for name, (token, why) in cases.items():
            reason = await _refused(srv.port, token)
            assert why in reason, (name, reason)
        assert srv.metrics.rejected_auth == len(cases) - 1  # "missing" is a protocol error
        ws, _ = await subscribe(srv.port, token=access)
        ids = publish(redis_url, stream, [llm("a", 1)])
        got, _ = await collect(ws, 1)
        assert [e["_sid"] for e in got] == ids
        await ws.close()


async def test_key_rotation(redis_url: str, stream: str, key_file: Path) -> None:
    old = KeyRing.load(key_file)
    old_token, _, _ = _token(old, redis_url)
    rotated = old.rotate()
    rotated.save(key_file)
    new_token, _, _ = _token(rotated, redis_url)
    assert jwt.get_unverified_header(new_token)["kid"] == rotated.active != old.active
    async with running(redis_url, stream, auth="jwt", key_file=key_file) as srv:
        for token in (old_token, new_token):
            ws, _ = await subscribe(srv.port, token=token)
            await ws.close()
    KeyRing({rotated.active: rotated.keys[rotated.active]}, rotated.active).save(key_file)
    async with running(redis_url, stream, auth="jwt", key_file=key_file) as srv:
        assert "unknown key id" in await _refused(srv.port, old_token)


async def test_refresh_rotates_and_reuse_revokes_family(
    redis_url: str, stream: str, key_file: Path
) -> None:
    ring = KeyRing.load(key_file)
    access, refresh, fam = _token(ring, redis_url)
    async with (
        running(redis_url, stream, auth="jwt", key_file=key_file) as a,
        running(redis_url, stream, auth="jwt", key_file=key_file) as b,
    ):
        status, _, body = await aget(
            a.port, "/api/v2/auth/refresh", {"Authorization": f"Bearer {refresh}"}, "POST"
        )
        assert status == 200, body
        pair = json.loads(body)
        assert pair["refresh_token"] != refresh and pair["token_type"] == "Bearer"
        assert verify(ring, pair["access_token"])["fam"] == fam
        # the old refresh token replayed at the *other* server: reuse detected, family revoked
        status, _, body = await aget(
            b.port, "/api/v2/auth/refresh", {"Authorization": f"Bearer {refresh}"}, "POST"
        )
        assert status == 401 and "reused" in json.loads(body)["error"]
        status, _, body = await aget(
            a.port,
            "/api/v2/auth/refresh",
            {"Authorization": f"Bearer {pair['refresh_token']}"},
            "POST",
        )
        assert status == 401 and "revoked" in json.loads(body)["error"]
        status, _, _ = await aget(a.port, "/api/v2/auth/refresh", {"Authorization": "Bearer x"})
        assert status == 405  # it has an effect: POST only
        for srv in (a, b):
            assert "revoked" in await _refused(srv.port, pair["access_token"])
            assert "revoked" in await _refused(srv.port, access)
        store = RefreshStore(redis.Redis.from_url(redis_url, decode_responses=True))
        with pytest.raises(AuthError):
            store.refresh(ring, refresh)


async def test_http_api_requires_token_and_checks_origin(
    redis_url: str, stream: str, key_file: Path
) -> None:
    ring = KeyRing.load(key_file)
    access, _, _ = _token(ring, redis_url)
    good = "http://dash.example:3000"
    async with running(redis_url, stream, auth="jwt", key_file=key_file, origins=(good,)) as srv:
        assert (await aget(srv.port, "/api/v2/agents/active"))[0] == 401
        auth = {"Authorization": f"Bearer {access}"}
        status, headers, _ = await aget(srv.port, "/api/v2/agents/active", {**auth, "Origin": good})
        assert status == 200 and headers["Access-Control-Allow-Origin"] == good
        status, _, _ = await aget(
            srv.port, "/api/v2/agents/active", {**auth, "Origin": "http://evil.example"}
        )
        assert status == 403
        assert (await aget(srv.port, "/healthz"))[0] == 200  # health needs no token
        with pytest.raises(InvalidStatus) as exc:
            await connect(f"ws://127.0.0.1:{srv.port}/ws", origin="http://evil.example")  # type: ignore[arg-type]
        assert exc.value.response.status_code == 403
        ws, _ = await subscribe(srv.port, token=access)  # no Origin: not a browser
        await ws.close()
        ws = await connect(f"ws://127.0.0.1:{srv.port}/ws", origin=good)  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "auth", "token": access}))
        await ws.send(json.dumps({"type": "subscribe"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "snapshot"
        await ws.close()


def test_cli_token_and_refusals(
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUREN_REDIS_URL", redis_url)
    keys = tmp_path / "k.json"
    assert main(["token", "--keys", str(keys)]) == 2  # no key file yet
    assert "auren token --init" in capsys.readouterr().err
    assert main(["token", "--keys", str(keys), "--init", "--subject", "ops"]) == 0
    out = json.loads(capsys.readouterr().out)
    ring = KeyRing.load(keys)
    assert verify(ring, out["access_token"])["sub"] == "ops"
    assert keys.stat().st_mode & 0o777 == 0o600
    assert main(["token", "--keys", str(keys), "--refresh", out["refresh_token"]]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["family"] == out["family"]
    assert main(["token", "--keys", str(keys), "--refresh", out["refresh_token"]]) == 2
    assert "reused" in capsys.readouterr().err
    assert main(["serve-ws", "--auth", "none", "--host", "0.0.0.0"]) == 2
    assert "refused" in capsys.readouterr().err
    assert main(["serve-ws", "--auth", "basic"]) == 2
    assert main(["serve-ws", "--keys", str(tmp_path / "missing.json"), "--port", "1"]) == 2
    assert "auren token --init" in capsys.readouterr().err
