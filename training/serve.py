"""A small OpenAI-compatible chat-completions server over a Clover run or export (`clover serve`).

For local judging and tests without vLLM: POST /v1/chat/completions (messages, temperature,
max_tokens, top_p, seed, and vLLM's `guided_choice`: the answer is the listed choice the model gives
the highest log-probability), GET /v1/models. One request decodes at a time.
"""

from __future__ import annotations

import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from training.generate import ChatModel


def chat_completion(chat: ChatModel, request: dict) -> dict:
    """An OpenAI chat.completion for a request (messages, max_tokens, temperature, top_p, seed, guided_choice)."""
    context = chat.context(request["messages"])
    with chat.lock:
        if request.get("guided_choice"):
            text, finish, produced = chat.choose(context, request["guided_choice"]), "stop", 1
        else:
            [(tokens, finish)] = chat.sample(context, int(request.get("max_tokens") or 256),
                                             float(request.get("temperature", 1.0)), float(request.get("top_p", 1.0)),
                                             seed=int(request.get("seed") or 0))
            text, produced = chat.processor.decode(tokens), len(tokens)
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model") or chat.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": len(context), "completion_tokens": produced, "total_tokens": len(context) + produced}}


def make_server(chat: ChatModel, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": chat.name, "object": "model"}]})
            self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self._send(200, chat_completion(chat, request))
            except (ValueError, KeyError, TypeError) as err:
                self._send(400, {"error": {"message": str(err), "type": "invalid_request_error"}})

        def log_message(self, *args) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)
