"""One HTTP client for OpenAI-compatible endpoints (vLLM, `clover serve`, a hosted API): `clover judge`
and `clover sample-candidates --model URL` share its timeout, retry and backoff rules.

A request has a timeout; connection errors, timeouts and HTTP 408/409/429/5xx are retried with
exponential backoff (`backoff` seconds, doubled each retry); other 4xx and malformed answers fail at
once. The API key, when the named environment variable holds one, is sent as a Bearer token.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


class RequestFailed(RuntimeError):
    """The endpoint could not be reached (after retries) or refused the request."""


class Endpoint:
    """`base` (http(s)://host:port, with or without /v1) and one route under /v1, e.g. "chat/completions"."""

    def __init__(self, base: str, route: str, timeout: float, retries: int, backoff: float, api_key_env: str = ""):
        base = base.rstrip("/")
        self.url = base if base.endswith("/" + route) else f"{base.removesuffix('/v1')}/v1/{route}"
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.key = os.environ.get(api_key_env, "") if api_key_env else ""

    def post(self, body: dict) -> tuple[dict, int]:
        """The JSON answer and the number of attempts it took."""
        return self._call(self.url, json.dumps(body).encode())

    def first_model(self) -> str:
        """The first model id the server lists (GET /v1/models): vLLM wants the name it serves."""
        answer, _ = self._call(self.url[: self.url.rindex("/v1/") + 3] + "/models", None)
        try:
            return answer["data"][0]["id"]
        except (KeyError, IndexError, TypeError) as err:
            raise RequestFailed(f"malformed /v1/models answer: {err}") from err

    def _call(self, url: str, data: bytes | None) -> tuple[dict, int]:
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        for attempt in range(1, self.retries + 2):
            request = urllib.request.Request(url, data, headers, method="POST" if data is not None else "GET")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read()), attempt
            except urllib.error.HTTPError as err:
                if err.code not in RETRYABLE or attempt > self.retries:
                    raise RequestFailed(f"HTTP {err.code}: {err.read()[:300]!r}") from err
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if attempt > self.retries:
                    raise RequestFailed(f"{type(err).__name__}: {err}") from err
            except ValueError as err:
                raise RequestFailed(f"malformed response: {err}") from err
            time.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")
