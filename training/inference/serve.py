"""A small OpenAI-compatible server over a Clover run or export (`clover serve`).

For local judging, candidates and tests without vLLM: POST /v1/chat/completions (messages, n,
temperature, max_tokens, top_p, seed, and vLLM's `guided_choice`: the answer is the listed choice the
model gives the highest log-probability), POST /v1/completions (prompt as text or token ids, n,
temperature, max_tokens, top_p, seed), GET /v1/models.

Requests that arrive within `batch_window_ms` milliseconds of each other and share temperature, top_p and n
decode together in one KV-cached batch (each keeps its own seed and max_tokens), so concurrent
clients share the model instead of queueing behind one lock. Hostile clients are bounded: the body
size (413), the Content-Length (400 when absent, malformed or negative), the time to read a request
(408), the connections served at once (503 beyond), and an optional bearer token (401).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the server itself needs no torch until a model is handed to it
    from training.inference.generate import ChatModel

Rows = list[tuple[list[int], str]]


@dataclass
class ServeOptions:
    """`clover serve`'s config: where it listens and how it bounds its clients and batches."""

    host: str = field(default="127.0.0.1", metadata={"help": "bind address (127.0.0.1: this machine only)"})
    port: int = field(default=8000, metadata={"help": "port (0: any free one)"})
    api_key: str = field(default="", metadata={
        "help": "when set, every request needs 'Authorization: Bearer KEY' (clover serve: $CLOVER_API_KEY when empty)"})
    max_body_bytes: int = field(default=1 << 20, metadata={"help": "larger request bodies get 413"})
    read_timeout: float = field(default=30.0, metadata={
        "help": "seconds to receive a request's headers and body; slower clients get 408 or are dropped"})
    max_connections: int = field(default=32, metadata={"help": "connections served at once; more get 503"})
    batch_window_ms: float = field(default=20.0, metadata={"help": "milliseconds a batch waits for more requests"})
    max_batch_rows: int = field(default=64, metadata={"help": "sequences (prompts x n) decoded together"})
    max_n: int = field(default=16, metadata={"help": "most completions one request may ask for (n)"})


class BadRequest(ValueError):
    """A request the server refuses, with its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    contexts: list[list[int]]
    max_tokens: int
    temperature: float
    top_p: float
    n: int
    seed: int
    shareable: bool  # False when its length would cut a batch's room in the context window
    result: Future

    @property
    def rows(self) -> int:
        return len(self.contexts) * self.n

    def joins(self, other: _Job) -> bool:
        return self.shareable and other.shareable and \
            (self.temperature, self.top_p, self.n) == (other.temperature, other.top_p, other.n)


# (contexts, max_new_tokens, temperature, top_p, samples, seeds) -> per context, its samples: ChatModel.sample_batch
Decode = Callable[[list[list[int]], int, float, float, int, list[int]], list[Rows]]


class Batcher:
    """One worker thread owns decoding: it takes a request, waits up to `window` seconds for others with the
    same temperature, top_p and n, and decodes them all in one call (at most `max_rows` sequences)."""

    def __init__(self, decode: Decode, max_seq_len: int, window: float, max_rows: int):
        self.decode, self.max_seq_len, self.window, self.max_rows = decode, max_seq_len, window, max_rows
        self.queue: queue.Queue[_Job] = queue.Queue()
        self.waiting: list[_Job] = []  # taken from the queue while collecting, for a later batch
        self.batches: list[int] = []  # requests per decoded batch
        threading.Thread(target=self._work, daemon=True, name="clover-batcher").start()

    def submit(self, contexts: list[list[int]], max_tokens: int, temperature: float, top_p: float, n: int,
               seed: int) -> list[Rows]:
        """Per context, its n continuations (blocks until the batch holding this request is decoded)."""
        shareable = max(map(len, contexts)) + max_tokens <= self.max_seq_len
        job = _Job(contexts, max_tokens, temperature, top_p, n, seed, shareable, Future())
        self.queue.put(job)
        return job.result.result()

    def _work(self) -> None:
        while True:
            batch = self._collect(self.waiting.pop(0) if self.waiting else self.queue.get())
            self.batches.append(len(batch))
            try:
                self._decode(batch)
            except Exception as err:  # noqa: BLE001 - handed to the waiting requests, which answer 500
                for job in batch:
                    if not job.result.done():
                        job.result.set_exception(err)

    def _collect(self, first: _Job) -> list[_Job]:
        batch, rows = [first], first.rows

        def take(job: _Job) -> bool:
            nonlocal rows
            if job.joins(first) and rows + job.rows <= self.max_rows:
                batch.append(job)
                rows += job.rows
                return True
            return False

        self.waiting = [job for job in self.waiting if not take(job)]
        deadline = time.monotonic() + self.window
        while first.shareable and rows < self.max_rows and (left := deadline - time.monotonic()) > 0:
            try:
                job = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if not take(job):
                self.waiting.append(job)
        return batch

    def _decode(self, batch: list[_Job]) -> None:
        """One generate_batch for the whole batch at the longest max_tokens; each job is cut to its own."""
        first = batch[0]
        rows = self.decode([c for job in batch for c in job.contexts], max(j.max_tokens for j in batch),
                           first.temperature, first.top_p, first.n, [job.seed for job in batch for _ in job.contexts])
        for job in batch:
            mine, rows = rows[:len(job.contexts)], rows[len(job.contexts):]
            job.result.set_result([[(t[:job.max_tokens], "length") if len(t) >= job.max_tokens else (t, reason)
                                    for t, reason in samples] for samples in mine])


def sampling(request: dict, default_max_tokens: int, options: ServeOptions, chat: ChatModel) -> dict:
    """The sampling settings of a request, checked: n, temperature, top_p, max_tokens, seed."""
    def number(name: str, default, kind: type, low: float, high: float):
        value = request.get(name)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
                or (kind is int and value != int(value)):  # the range first: it also refuses NaN and Infinity
            raise BadRequest(400, f"{name} must be a{'n integer' if kind is int else ' number'} in [{low}, {high}]")
        return kind(value)

    return {"n": number("n", 1, int, 1, options.max_n),
            "temperature": number("temperature", 1.0, float, 0.0, 100.0),
            "top_p": number("top_p", 1.0, float, 1e-6, 1.0),
            "max_tokens": number("max_tokens", default_max_tokens, int, 1, chat.model.cfg.max_seq_len),
            "seed": number("seed", 0, int, 0, 2**63 - 1)}


def completion_prompts(chat: ChatModel, prompt) -> list[list[int]]:
    """/v1/completions' prompt: text (after <s>, like `clover generate --raw`), token ids, or a list of either."""
    single = isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt))
    prompts = [prompt] if single else prompt
    if not isinstance(prompts, list) or not prompts:
        raise BadRequest(400, "prompt must be a string, a list of token ids, or a non-empty list of those")
    contexts = []
    for item in prompts:
        if isinstance(item, str):
            contexts.append([chat.ids["bos"], *chat.processor.encode(item)])
        elif isinstance(item, list) and item and all(type(t) is int and 0 <= t < chat.model.cfg.vocab_size for t in item):
            contexts.append(item)
        else:
            raise BadRequest(400, f"prompt items must be strings or non-empty lists of token ids below "
                                  f"{chat.model.cfg.vocab_size}")
    return contexts


def decode_all(chat: ChatModel, batcher: Batcher, contexts: list[list[int]], settings: dict) -> list[Rows]:
    if len(contexts) * settings["n"] > batcher.max_rows:
        raise BadRequest(400, f"{len(contexts)} prompts x n={settings['n']} exceeds the batch limit of {batcher.max_rows}")
    for context in contexts:
        if len(context) >= chat.model.cfg.max_seq_len:
            raise BadRequest(400, f"a prompt of {len(context)} tokens leaves no room in max_seq_len "
                                  f"{chat.model.cfg.max_seq_len}")
    return batcher.submit(contexts, settings["max_tokens"], settings["temperature"], settings["top_p"],
                          settings["n"], settings["seed"])


def _usage(contexts: list[list[int]], produced: int) -> dict:
    prompt = sum(map(len, contexts))
    return {"prompt_tokens": prompt, "completion_tokens": produced, "total_tokens": prompt + produced}


def chat_completion(chat: ChatModel, request: dict, batcher: Batcher | None = None,
                    options: ServeOptions | None = None) -> dict:
    """An OpenAI chat.completion (messages, n, max_tokens, temperature, top_p, seed, guided_choice).

    Without a batcher (a local judge) the request decodes on its own."""
    options = options or ServeOptions()
    if not isinstance(request.get("messages"), list):
        raise BadRequest(400, "messages must be a list of {role, content}")
    context = chat.context(request["messages"])
    settings = sampling(request, 256, options, chat)
    if request.get("guided_choice"):
        choices = request["guided_choice"]
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise BadRequest(400, "guided_choice must be a list of strings")
        answers, produced = [(chat.choose(context, choices), "stop")] * settings["n"], settings["n"]
    else:
        if batcher is None:
            [rows] = chat.sample_batch([context], settings["max_tokens"], settings["temperature"], settings["top_p"],
                                       settings["n"], [settings["seed"]])
        else:
            [rows] = decode_all(chat, batcher, [context], settings)
        answers = [(chat.processor.decode(tokens), finish) for tokens, finish in rows]
        produced = sum(len(tokens) for tokens, _ in rows)
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model") or chat.name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                        for i, (text, finish) in enumerate(answers)],
            "usage": _usage([context], produced)}


def completion(chat: ChatModel, request: dict, batcher: Batcher, options: ServeOptions) -> dict:
    """An OpenAI text_completion (prompt, n, max_tokens, temperature, top_p, seed); choices prompt-major."""
    contexts = completion_prompts(chat, request.get("prompt"))
    settings = sampling(request, 16, options, chat)
    rows = decode_all(chat, batcher, contexts, settings)
    choices = [(tokens, finish) for samples in rows for tokens, finish in samples]
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": request.get("model") or chat.name,
            "choices": [{"index": i, "text": chat.processor.decode(tokens), "finish_reason": finish, "logprobs": None}
                        for i, (tokens, finish) in enumerate(choices)],
            "usage": _usage(contexts, sum(len(tokens) for tokens, _ in choices))}


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once: beyond that a connection is answered 503
    at once, without a thread (clients such as `clover judge` retry 503 with backoff)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int):
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: socket.socket, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            body = b'{"error": {"message": "server busy: too many connections", "type": "server_busy"}}'
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: socket.socket, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def make_server(chat: ChatModel, host: str, port: int, options: ServeOptions | None = None) -> BoundedServer:
    """A bounded HTTP server whose connections share one request batcher over `chat`."""
    options = options or ServeOptions()
    batcher = Batcher(chat.sample_batch, chat.model.cfg.max_seq_len, options.batch_window_ms / 1000, options.max_batch_rows)
    routes = {"/v1/chat/completions": lambda r: chat_completion(chat, r, batcher, options),
              "/v1/completions": lambda r: completion(chat, r, batcher, options)}
    handler = type("Handler", (_Handler,), {"timeout": options.read_timeout,  # a client that stops sending is dropped
                                            "chat": chat, "batcher": batcher, "options": options, "routes": routes})
    return BoundedServer((host, port), handler, options.max_connections)


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests; make_server subclasses it with its model, batcher, options and routes."""

    protocol_version = "HTTP/1.1"
    chat: ChatModel
    batcher: Batcher
    options: ServeOptions
    routes: dict[str, Callable[[dict], dict]]

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"message": message, "type": "invalid_request_error", "code": status}})

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        if not self.options.api_key or hmac.compare_digest(given.encode(), f"Bearer {self.options.api_key}".encode()):
            return True
        self._error(401, "missing or wrong bearer token")
        return False

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._authorized():
            return
        if self.path.rstrip("/") == "/v1/models":
            return self._send(200, {"object": "list", "data": [{"id": self.chat.name, "object": "model"}]})
        if self.path.rstrip("/") == "/stats":  # how well requests batch: requests per decoded batch
            sizes = list(self.batcher.batches)
            return self._send(200, {"batches": len(sizes), "requests": sum(sizes), "largest_batch": max(sizes, default=0)})
        self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:  # noqa: N802
        try:
            request = read_json(self.headers, self.rfile, self.options.max_body_bytes)  # read first: an unread
            # body left on a closed connection would reset it before the client reads the answer
            if not self._authorized():
                return
            route = self.routes.get(self.path.rstrip("/"))
            if route is None:
                raise BadRequest(404, f"no route {self.path}")
            self._send(200, route(request))
        except BadRequest as err:
            self._error(err.status, str(err))
        except TimeoutError:
            self._error(408, f"request not received within {self.options.read_timeout} s")
        except (ValueError, KeyError, TypeError) as err:
            self._error(400, str(err))
        except Exception as err:  # noqa: BLE001 - a decoding failure (e.g. out of memory) answers 500
            self._error(500, f"{type(err).__name__}: {err}")

    def log_message(self, *args) -> None:
        pass


def read_json(headers, rfile, max_body_bytes: int) -> dict:
    """The request body as a JSON object, refusing what would block or flood a thread (400, 413)."""
    if headers.get("Transfer-Encoding"):
        raise BadRequest(400, "chunked bodies are not accepted: send Content-Length")
    length = headers.get("Content-Length")
    if length is None or not length.strip().isdigit():
        raise BadRequest(400, f"Content-Length must be a non-negative integer, got {length!r}")
    if int(length) > max_body_bytes:
        raise BadRequest(413, f"body of {int(length)} bytes exceeds the limit of {max_body_bytes}")
    body = rfile.read(int(length))
    if len(body) < int(length):
        raise BadRequest(400, f"body ended after {len(body)} of {int(length)} bytes")
    request = json.loads(body)
    if not isinstance(request, dict):
        raise BadRequest(400, "the body must be a JSON object")
    return request
