"""A small OpenAI-compatible chat-completions server over a Clover run or export (`clover serve`).

For local judging and tests without vLLM: POST /v1/chat/completions (messages, temperature,
max_tokens, top_p, seed, and vLLM's `guided_choice`: the answer is the listed choice the model gives
the highest log-probability), GET /v1/models. One request decodes at a time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from schemas.chat import END, messages_ids, template_ids


class ChatModel:
    def __init__(self, path: str, device: str | None = None):
        import sentencepiece as spm

        from training.export import load_any

        self.model, self.meta, tokenizer_model = load_any(path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.processor = spm.SentencePieceProcessor(model_file=tokenizer_model)
        self.ids = template_ids(self.meta)
        self.stops = (self.meta["special_ids"]["eos"], self.meta["control_ids"][END])
        self.name = path
        self.lock = threading.Lock()

    def complete(self, request: dict) -> dict:
        from training.generate import generate

        context = messages_ids(self.processor.encode, self.ids, request["messages"])
        with self.lock:
            if request.get("guided_choice"):
                text, finish, produced = self._choose(context, request["guided_choice"]), "stop", 1
            else:
                [(tokens, finish)] = generate(
                    self.model, context, int(request.get("max_tokens") or 256), float(request.get("temperature", 1.0)),
                    float(request.get("top_p", 1.0)), 1, self.stops, int(request.get("seed") or 0), self.device)
                text, produced = self.processor.decode(tokens), len(tokens)
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": request.get("model") or self.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                "usage": {"prompt_tokens": len(context), "completion_tokens": produced,
                          "total_tokens": len(context) + produced}}

    @torch.no_grad()
    def _choose(self, context: list[int], choices: list[str]) -> str:
        """The choice whose tokens (and the closing <|end|>) the model finds most likely after the context."""
        scores = []
        for choice in choices:
            answer = [*self.processor.encode(choice), self.ids[END]]
            tokens = torch.tensor([context + answer], device=self.device)
            logprobs = self.model(tokens[:, :-1], tokens[:, 1:])[0, len(context) - 1:]
            scores.append(float(logprobs.sum()))
        return choices[max(range(len(choices)), key=scores.__getitem__)]


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
                self._send(200, chat.complete(request))
            except (ValueError, KeyError, TypeError) as err:
                self._send(400, {"error": {"message": str(err), "type": "invalid_request_error"}})

        def log_message(self, *args) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)
