"""chatbot/labelsync_chatbot/login.py: a refused login says so in words; nothing else changes.

The words as the browser shows them are checked in test_chatbot_browser.py; here,
that only a refused `POST /login` is rewritten, through Starlette's real stack.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from labelsync_chatbot.login import WRONG_LOGIN, ReadableLoginRefusal, password_matches


async def login(request):
    form = await request.form()
    if form.get("password") == "right":
        return JSONResponse({"success": True})
    return JSONResponse({"detail": "credentialssignin"}, status_code=401)


async def elsewhere(request):
    return JSONResponse({"detail": "Unauthorized"}, status_code=401)


def client() -> TestClient:
    app = Starlette(routes=[
        Route("/login", login, methods=["POST"]),
        Route("/project/thread", elsewhere, methods=["POST"]),
    ])
    app.add_middleware(ReadableLoginRefusal)
    return TestClient(app)


def test_a_refused_login_carries_words():
    response = client().post("/login", data={"username": "alice", "password": "wrong"})
    assert response.status_code == 401
    assert response.json() == {"detail": WRONG_LOGIN}


def test_an_accepted_login_and_other_refusals_are_untouched():
    c = client()
    assert c.post("/login", data={"username": "alice", "password": "right"}).json() == {
        "success": True
    }
    refused = c.post("/project/thread")
    assert (refused.status_code, refused.json()) == (401, {"detail": "Unauthorized"})


def test_passwords():
    users = {"alice": "wonderland"}
    assert password_matches(users, "alice", "wonderland")
    assert not password_matches(users, "alice", "wonderlan")
    assert not password_matches(users, "bob", "wonderland")
