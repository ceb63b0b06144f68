"""A chat endpoint for the tuned model: FastAPI, one base with its adapters, safe under bad requests (notebook 07).

Start it from a terminal (uvicorn, http://127.0.0.1:8000, interactive docs at /docs):

    python -m ftlib.serve --model smollm2-135m --adapter runs/03_qlora_smollm2-135m_en/adapter
    python -m ftlib.serve --model smollm2-135m --adapter en=runs/a/adapter --adapter ja=runs/b/adapter

and ask it:

    curl -s http://127.0.0.1:8000/chat -H 'Content-Type: application/json' \\
         -d '{"message": "How long is the warranty?", "adapter": "tuned", "max_new_tokens": 64}'
    curl -s http://127.0.0.1:8000/health

POST /chat takes {"message", "adapter" (a loaded adapter's name or "base"; default: the first adapter),
"max_new_tokens"} and answers {"answer", "adapter", "tokens", "seconds"}. A bad request gets a 4xx saying what
is wrong; a failed generation gets a 500 and the server goes on serving. One model is shared by every request,
so generation runs one request at a time (a lock).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from pathlib import Path

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, field_validator

from ftlib import export

log = logging.getLogger(__name__)


class ChatRequest(BaseModel):
    """The body of POST /chat; unknown fields and wrong types are refused (422).

    Taught in notebook 07.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    message: str
    adapter: str | None = None
    max_new_tokens: int | None = None

    @field_validator("message")
    @classmethod
    def not_empty(cls, message: str) -> str:
        if not message.strip():
            raise ValueError("message is empty: send the question to answer")
        return message


class ChatReply(BaseModel):
    """The answer of POST /chat, with the adapter that gave it, its new tokens and the seconds it took.

    Taught in notebook 07.
    """

    answer: str
    adapter: str
    tokens: int
    seconds: float


def create_app(model, tokenizer, adapters: dict[str, str | Path] | None = None, max_new_tokens: int = 128,
               max_input_chars: int = 2000) -> FastAPI:
    """The FastAPI app serving `model` (plain or a PeftModel) and `adapters` ({name: folder}, loaded onto it).

    max_new_tokens: the longest answer a request may ask for, and the default. max_input_chars: the longest
    message accepted (413 beyond). Taught in notebook 07.
    """
    model = export.load_adapters(model, adapters or {})
    names = export.adapter_names(model)
    default = names[0] if names else export.BASE
    choices = [export.BASE, *names]
    lock = threading.Lock()
    api = FastAPI(title="ftlib chat", description="A fine-tuned model behind one endpoint (ftlib, notebook 07).")
    api.state.model, api.state.lock = model, lock

    @api.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": model.config.name_or_path, "adapters": choices, "default": default,
                "max_new_tokens": max_new_tokens, "max_input_chars": max_input_chars}

    @api.post("/chat", response_model=ChatReply)
    def chat(request: ChatRequest) -> ChatReply:
        if len(request.message) > max_input_chars:
            raise HTTPException(413, f"message has {len(request.message)} characters; the limit is {max_input_chars}")
        adapter = default if request.adapter is None else request.adapter
        if adapter not in choices:
            raise HTTPException(422, f"unknown adapter {adapter!r}; this server has: {', '.join(choices)}")
        tokens = max_new_tokens if request.max_new_tokens is None else request.max_new_tokens
        if not 1 <= tokens <= max_new_tokens:
            raise HTTPException(422, f"max_new_tokens must be between 1 and {max_new_tokens}, not {tokens}")
        start = time.perf_counter()
        with lock:
            try:
                result = export.answer_with(model, tokenizer, [request.message], adapter, max_new_tokens=tokens)
            except Exception as error:  # one failed request must not take the server down
                log.exception("generation failed")
                raise HTTPException(500, f"generation failed ({type(error).__name__}); try again") from error
        return ChatReply(answer=result.texts[0], adapter=adapter, tokens=result.new_tokens,
                         seconds=round(time.perf_counter() - start, 3))

    return api


def _adapter(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    return (name, path) if sep else ("tuned", text)


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m ftlib.serve --model smollm2-135m --adapter runs/.../adapter` (uvicorn).

    Taught in notebook 07.
    """
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m ftlib.serve", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a preset name, a hub id or a saved model folder")
    parser.add_argument("--adapter", action="append", type=_adapter, default=[], metavar="[NAME=]FOLDER",
                        help="a LoRA adapter folder (repeat for several; unnamed is 'tuned')")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--max-input-chars", type=int, default=2000)
    args = parser.parse_args(argv)
    model, tokenizer = export.load_base(args.model)
    uvicorn.run(create_app(model, tokenizer, dict(args.adapter), args.max_new_tokens, args.max_input_chars),
                host=args.host, port=args.port)


if __name__ == "__main__":
    main()
