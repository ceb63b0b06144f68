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
so generation runs one request at a time, first come first served. The work one request may ask for is bounded
in tokens (the message's and the answer's); when `max_waiting` requests already wait, the next gets a 503 with
Retry-After; a request whose client has gone is dropped before its turn, or stopped mid-answer.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import logging
import math
import threading
import time
from pathlib import Path

import torch
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, field_validator
from transformers import StoppingCriteria, StoppingCriteriaList

from ftlib import export

log = logging.getLogger(__name__)
POLL = 0.02  # seconds between two looks at the line for the model and at the client's connection


class ChatRequest(BaseModel):
    """The body of POST /chat; unknown fields, wrong types and text that is not valid Unicode are refused (422).

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
        try:
            message.encode("utf-8")
        except UnicodeEncodeError as error:  # JSON allows "\ud800", a half of a UTF-16 pair that is no character
            raise ValueError(f"message is not valid Unicode: a lone surrogate U+{ord(message[error.start]):04X} at "
                             f"character {error.start}") from None
        return message


class ChatReply(BaseModel):
    """The answer of POST /chat, with the adapter that gave it, its new tokens and the seconds it took.

    Taught in notebook 07.
    """

    answer: str
    adapter: str
    tokens: int
    seconds: float


class _ClientGone(StoppingCriteria):
    """Stops a generation as soon as `gone` is set: its client has closed the connection, nobody will read it."""

    def __init__(self):
        self.gone = threading.Event()

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.gone.is_set(), dtype=torch.bool, device=input_ids.device)


async def _take_turn(lock: threading.Lock, line: list, request: Request) -> bool:
    """Wait in `line` (first come, first served) until `lock` is this request's: True; False once its client is gone.
    """
    me = object()
    line.append(me)
    try:
        while True:
            if await request.is_disconnected():
                return False
            if line[0] is me and lock.acquire(blocking=False):
                return True
            await asyncio.sleep(POLL)
    finally:
        line.remove(me)


async def _watch(request: Request, gone: threading.Event) -> None:
    """Set `gone` once the client of `request` has closed the connection."""
    while not await request.is_disconnected():
        await asyncio.sleep(POLL)
    gone.set()


async def _invalid(request: Request, error: RequestValidationError) -> Response:
    """FastAPI's 422 written as ASCII JSON: a lone surrogate echoed from the request cannot turn it into a 500."""
    return Response(json.dumps({"detail": jsonable_encoder(error.errors())}), 422, media_type="application/json")


def create_app(model, tokenizer, adapters: dict[str, str | Path] | None = None, max_new_tokens: int = 128,
               max_input_tokens: int = 512, max_waiting: int = 8, max_input_chars: int = 8000) -> FastAPI:
    """The FastAPI app serving `model` (plain or a PeftModel) and `adapters` ({name: folder}, loaded onto it).

    max_new_tokens: the longest answer a request may ask for, and the default. max_input_tokens: the longest
    message accepted, in the tokenizer's tokens (413 beyond); max_input_chars: a cheap first bound, before the
    message is tokenized. max_waiting: how many requests may wait for the model (503 with Retry-After beyond).
    Taught in notebook 07.
    """
    model = export.load_adapters(model, adapters or {})
    names = export.adapter_names(model)
    default = names[0] if names else export.BASE
    choices = [export.BASE, *names]
    lock, line = threading.Lock(), []  # the model, and the requests waiting for it
    counter = copy.deepcopy(tokenizer)  # counts tokens while a generation changes the padding settings of `tokenizer`
    api = FastAPI(title="ftlib chat", description="A fine-tuned model behind one endpoint (ftlib, notebook 07).",
                  exception_handlers={RequestValidationError: _invalid})
    api.state.model, api.state.lock, api.state.line, api.state.seconds = model, lock, line, 1.0

    @api.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": model.config.name_or_path, "adapters": choices, "default": default,
                "max_new_tokens": max_new_tokens, "max_input_tokens": max_input_tokens,
                "max_input_chars": max_input_chars, "max_waiting": max_waiting, "waiting": len(line)}

    @api.post("/chat", response_model=ChatReply)
    async def chat(body: ChatRequest, request: Request) -> ChatReply:
        start = time.perf_counter()
        if len(body.message) > max_input_chars:
            raise HTTPException(413, f"message has {len(body.message)} characters; the limit is {max_input_chars}")
        n = len(counter(body.message, add_special_tokens=False)["input_ids"])
        if n > max_input_tokens:
            raise HTTPException(413, f"message has {n} tokens; the limit is {max_input_tokens}")
        adapter = default if body.adapter is None else body.adapter
        if adapter not in choices:
            raise HTTPException(422, f"unknown adapter {adapter!r}; this server has: {', '.join(choices)}")
        tokens = max_new_tokens if body.max_new_tokens is None else body.max_new_tokens
        if not 1 <= tokens <= max_new_tokens:
            raise HTTPException(422, f"max_new_tokens must be between 1 and {max_new_tokens}, not {tokens}")
        if len(line) >= max_waiting:
            retry = max(1, math.ceil(api.state.seconds * len(line)))
            raise HTTPException(503, f"the model is busy: {len(line)} requests are waiting; try again in {retry} s",
                                headers={"Retry-After": str(retry)})
        if not await _take_turn(lock, line, request):
            log.info("client gone while waiting: request dropped")
            raise HTTPException(499, "client closed the request")  # nobody reads this answer
        stop = _ClientGone()
        watcher = asyncio.create_task(_watch(request, stop.gone))
        began = time.perf_counter()
        try:
            result = await run_in_threadpool(export.answer_with, model, tokenizer, [body.message], adapter,
                                             max_new_tokens=tokens, stopping_criteria=StoppingCriteriaList([stop]))
        except Exception as error:  # one failed request must not take the server down
            log.exception("generation failed")
            raise HTTPException(500, f"generation failed ({type(error).__name__}); try again") from error
        finally:
            watcher.cancel()
            lock.release()
            api.state.seconds = time.perf_counter() - began  # the next Retry-After's estimate
        if stop.gone.is_set():
            log.info("client gone while generating: stopped after %d tokens", result.new_tokens)
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
    parser.add_argument("--max-input-tokens", type=int, default=512)
    parser.add_argument("--max-waiting", type=int, default=8, help="requests that may wait for the model (503 beyond)")
    parser.add_argument("--max-input-chars", type=int, default=8000)
    args = parser.parse_args(argv)
    model, tokenizer = export.load_base(args.model)
    app = create_app(model, tokenizer, dict(args.adapter), args.max_new_tokens, args.max_input_tokens,
                     args.max_waiting, args.max_input_chars)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
