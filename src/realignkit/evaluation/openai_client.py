"""A minimal OpenAI-compatible chat client (stdlib only) with bounded retries and exponential backoff.

Used by the `openai` generation backend and the `rubric` judge. The API key is sent in a header and never
appears in messages, reprs or logs.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from realignkit.common import BadInputError

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_BASE_ENV = "OPENAI_BASE_URL"
_RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class EndpointError(BadInputError):
    """The endpoint stayed unreachable, timed out or returned garbage after all retries."""


@dataclass
class ChatClient:
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    max_retries: int = 3
    backoff: float = 1.0  # seconds before the first retry; doubled after each failure

    @classmethod
    def from_options(
        cls,
        base_url: str | None,
        model: str | None,
        *,
        api_key_env: str = DEFAULT_KEY_ENV,
        require_key: bool = True,
        **kwargs: Any,
    ) -> ChatClient:
        """Take the base URL from the option or $OPENAI_BASE_URL and the key from the named env variable."""
        base = base_url or os.environ.get(DEFAULT_BASE_ENV)
        if not base:
            raise BadInputError(f"no endpoint: pass --api-base URL or set ${DEFAULT_BASE_ENV}")
        if not model:
            raise BadInputError("no endpoint model name: pass --api-model NAME")
        key = os.environ.get(api_key_env)
        if require_key and not key:
            raise BadInputError(f"missing API key: set ${api_key_env} (the key is read from the environment only)")
        return cls(base_url=base.rstrip("/"), model=model, api_key=key, **kwargs)

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else f"{base}/chat/completions"

    def chat(self, messages: Sequence[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0) -> str:
        """The assistant text for `messages`; retries transient failures, then raises EndpointError."""
        body = json.dumps(
            {"model": self.model, "messages": list(messages), "max_tokens": max_tokens, "temperature": temperature}
        ).encode()
        last_problem = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return _content(self._post(body))
            except _Retryable as problem:
                last_problem = str(problem)
        raise EndpointError(f"endpoint {self.url} failed after {self.max_retries + 1} attempts: {last_problem}")

    def _post(self, body: bytes) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in _RETRYABLE_STATUS:
                raise _Retryable(f"HTTP {exc.code}") from exc
            raise EndpointError(f"endpoint {self.url} answered HTTP {exc.code} {exc.reason}") from exc
        except TimeoutError as exc:
            raise _Retryable(f"timed out after {self.timeout:g}s") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {self.timeout:g}s") from exc
            raise _Retryable(f"unreachable ({exc.reason})") from exc
        except (ConnectionError, OSError) as exc:
            raise _Retryable(f"connection failed ({exc.__class__.__name__})") from exc
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Retryable("response is not JSON") from exc


class _Retryable(Exception):
    pass


def _content(payload: Any) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise _Retryable("response has no choices[0].message.content") from exc
    if not isinstance(content, str):
        raise _Retryable("message content is not a string")
    return content
