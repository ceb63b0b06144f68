"""The chat endpoint: the adapter's own answers and the base's, a clear 4xx for each bad request, a 500 for a failed
generation, and the server keeps serving; generation is serialised; the command line builds the same app."""

import threading
import time

import pytest
from fastapi.testclient import TestClient
from peft import PeftModel
from test_export import make_adapter

from ftlib import generate, models, serve


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {"en": make_adapter(root / "en", seed=2), "ja": make_adapter(root / "ja", seed=3)}


@pytest.fixture(scope="module")
def server(folders):
    model, tok = models.load("tiny-random")
    app = serve.create_app(model, tok, folders, max_new_tokens=16, max_input_chars=200)
    with TestClient(app) as client:
        yield app, client


def ask(client, **body):
    return client.post("/chat", json={"message": "How long is the warranty?", **body})


def test_answers_with_the_adapter_or_the_base(server, folders, tiny):
    _, client = server
    reply = ask(client, adapter="ja", max_new_tokens=8)
    assert reply.status_code == 200, reply.text
    model, tok = models.load("tiny-random")
    expected = generate.generate(PeftModel.from_pretrained(model, str(folders["ja"])), tok,
                                 ["How long is the warranty?"], 8)
    body = reply.json()
    assert body["answer"] == expected.texts[0] and body["tokens"] == expected.new_tokens and body["adapter"] == "ja"
    assert body["seconds"] >= 0
    default = ask(client).json()
    assert default["adapter"] == "en" and default["answer"] != body["answer"] and default["tokens"] == 16
    base = ask(client, adapter="base", max_new_tokens=8).json()
    assert base["answer"] == generate.generate(*tiny, ["How long is the warranty?"], 8).texts[0] != body["answer"]


def test_health_lists_the_adapters(server):
    _, client = server
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["adapters"] == ["base", "en", "ja"] and health["default"] == "en"
    assert health["model"].endswith("tiny-random") and health["max_new_tokens"] == 16


BAD = {
    "empty": ({"message": ""}, 422, "message is empty"),
    "whitespace": ({"message": " \n\t "}, 422, "message is empty"),
    "too long": ({"message": "x" * 201}, 413, "201 characters; the limit is 200"),
    "missing": ({"adapter": "en"}, 422, "Field required"),
    "not a string": ({"message": 42}, 422, "valid string"),
    "tokens as text": ({"message": "Hi", "max_new_tokens": "8"}, 422, "valid integer"),
    "no tokens": ({"message": "Hi", "max_new_tokens": 0}, 422, "between 1 and 16, not 0"),
    "too many tokens": ({"message": "Hi", "max_new_tokens": 17}, 422, "between 1 and 16, not 17"),
    "unknown adapter": ({"message": "Hi", "adapter": "fr"}, 422, "unknown adapter 'fr'; this server has: base, en, ja"),
    "unknown field": ({"message": "Hi", "temperature": 2}, 422, "Extra inputs are not permitted"),
    "not JSON": ("{message: Hi", 422, "JSON"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_request_gets_a_clear_4xx_and_the_server_goes_on(server, case):
    _, client = server
    body, status, message = BAD[case]
    reply = (client.post("/chat", content=body, headers={"content-type": "application/json"}) if isinstance(body, str)
             else client.post("/chat", json=body))
    assert reply.status_code == status and message in reply.text, reply.text
    assert ask(client, max_new_tokens=2).status_code == 200


def test_a_failed_generation_is_a_500_and_the_next_request_works(server, monkeypatch, caplog):
    app, client = server

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(app.state.model, "generate", fail)
    reply = ask(client)
    assert reply.status_code == 500 and reply.json()["detail"] == "generation failed (RuntimeError); try again"
    assert "generation failed" in caplog.text and not app.state.lock.locked()
    monkeypatch.undo()
    assert ask(client, max_new_tokens=2).status_code == 200


def test_generation_is_serialised(server):
    app, client = server
    replies = []
    with app.state.lock:  # another request is generating
        waiting = threading.Thread(target=lambda: replies.append(ask(client, max_new_tokens=2)))
        waiting.start()
        time.sleep(0.5)
        assert waiting.is_alive() and not replies
    waiting.join(timeout=30)
    assert replies[0].status_code == 200


def test_command_line_serves_the_named_adapters(folders, monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append((app, kwargs)))
    serve.main(["--model", "tiny-random", "--adapter", f"en={folders['en']}", "--adapter", str(folders["ja"]),
                "--port", "8765", "--max-new-tokens", "32"])
    app, kwargs = calls[0]
    assert kwargs == {"host": "127.0.0.1", "port": 8765}
    health = TestClient(app).get("/health").json()
    assert health["adapters"] == ["base", "en", "tuned"] and health["max_new_tokens"] == 32
