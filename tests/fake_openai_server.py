"""A fake OpenAI-compatible ``/v1/chat/completions`` on loopback, with scripted latency and faults for judge tests.

Valid answers are deterministic: each principle id asked in the request's JSON schema gets a score from a hash; a
request without a JSON schema (a responder generating a reply) gets a short reply derived from its messages and seed.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Drawn at random by fault_rate. Also scriptable, never drawn: "401" (not worth retrying) and "disconnect" (the
# connection closes without an answer).
FAULTS = ("429", "500", "timeout", "malformed", "missing", "range")
MAX_BODY = 4 << 20


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops bursts of new connections


def fake_score(user_content: str, principle_id: str) -> int:
    """The score the server gives ``principle_id`` for a request whose last user message is ``user_content``."""
    return int(hashlib.sha256(f"{user_content}\0{principle_id}".encode()).hexdigest(), 16) % 5 + 1


class FakeOpenAIServer:
    """Serves on 127.0.0.1 at a free port in a background thread; use as a context manager.

    Args:
        latency: seconds each answer waits before being sent.
        script: fault kind by request number (1-based, in order of arrival).
        fault_rate / fault_kinds / seed: otherwise a fault with this probability, drawn from a seeded RNG.
        always: fault kind for every request whose last user message contains the given marker.
        timeout_sleep: how long a "timeout" fault waits (set above the client's timeout).
    """

    def __init__(self, latency: float = 0.0, script: dict[int, str] | None = None, fault_rate: float = 0.0,
                 fault_kinds: tuple[str, ...] = FAULTS, seed: int = 0, always: dict[str, str] | None = None,
                 timeout_sleep: float = 2.0) -> None:
        self.latency = latency
        self.script = dict(script or {})
        self.fault_rate = fault_rate
        self.fault_kinds = fault_kinds
        self.always = dict(always or {})
        self.timeout_sleep = timeout_sleep
        self.requests = 0
        self.asked: list[list[str]] = []  # principle ids asked by each valid-or-faulted request, in arrival order
        self.headers_seen: list[str] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- request handling -----------------------------------------------------------------------
    def _next_fault(self, user_content: str) -> tuple[int, str | None]:
        with self._lock:
            self.requests += 1
            number = self.requests
            fault = self.script.get(number)
            if fault is None and self.fault_rate and self._rng.random() < self.fault_rate:
                fault = self._rng.choice(self.fault_kinds)
        for marker, kind in self.always.items():
            if marker in user_content:
                fault = kind
        return number, fault

    def answer(self, body: dict) -> tuple[int, dict]:
        """Status and JSON body for one chat completion request (status 0: close the connection instead)."""
        messages = body.get("messages") or [{"content": ""}]
        user_content = str(messages[-1].get("content", ""))
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
        ids = list(schema.get("properties", {}))
        _, fault = self._next_fault(user_content)
        with self._lock:
            self.asked.append(ids)
        if fault == "429":
            return 429, {"error": {"message": "rate limit reached", "type": "rate_limit_exceeded"}}
        if fault == "500":
            return 500, {"error": {"message": "internal error", "type": "server_error"}}
        if fault == "401":
            return 401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}}
        if fault == "disconnect":
            return 0, {}
        if fault == "timeout":
            self._stopping.wait(self.timeout_sleep)
        if not body.get("response_format"):
            return 200, self.reply(body, user_content, fault)
        if ids == ["better"]:
            answer: dict = {"better": "AB"[fake_score(user_content, "better") % 2]}
        else:
            answer = {pid: fake_score(user_content, pid) for pid in ids}
        if fault == "missing" and answer:
            answer.pop(next(iter(answer)))
        if fault == "range" and answer:
            answer[next(iter(answer))] = 7
        content = json.dumps(answer)
        if fault == "malformed":
            content = content[: max(1, len(content) // 2)] + " not json"
        return 200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": len(user_content) // 4, "completion_tokens": 8,
                      "total_tokens": len(user_content) // 4 + 8},
        }

    @staticmethod
    def reply(body: dict, user_content: str, fault: str | None) -> dict:
        """A free-text completion: deterministic in (messages, seed); cut ("length") when max_tokens < 8."""
        digest = hashlib.sha256(json.dumps([body.get("messages"), body.get("seed")]).encode()).hexdigest()[:8]
        content = f"That sounds hard. What would help most right now? [{digest}]"
        if fault == "malformed":
            return {"choices": []}
        tokens = min(8, int(body.get("max_tokens") or 8))
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop" if tokens == 8 else "length",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": len(user_content) // 4, "completion_tokens": tokens,
                      "total_tokens": len(user_content) // 4 + tokens},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like real endpoints
            # Headers and body go out in two writes; with Nagle on, the body waits ~40 ms for a delayed ACK.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._send(200 if self.path.endswith("/stats") else 404, {"requests": server.requests})

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                if not self.path.endswith("/chat/completions") or length > MAX_BODY:
                    self._send(404, {"error": {"message": "not found"}})
                    return
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.headers_seen.append(self.headers.get("Authorization", ""))
                if server.latency:
                    server._stopping.wait(server.latency)
                status, payload = server.answer(body)
                if status == 0:  # "disconnect": close without answering
                    self.close_connection = True
                    return
                self._send(status, payload)

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout fault)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler


class FakeServerProcess:
    """A ``FakeOpenAIServer`` in its own Python process, as a real endpoint would be (no GIL shared with the client).

    ``requests`` asks the server how many chat completions it has answered.
    """

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self._process: subprocess.Popen | None = None
        self.base_url = ""

    def __enter__(self) -> FakeServerProcess:
        self._process = subprocess.Popen([sys.executable, "-m", "tests.fake_openai_server", str(self.latency)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         cwd=Path(__file__).resolve().parent.parent)
        self.base_url = self._process.stdout.readline().strip()
        if not self.base_url.startswith("http://"):
            raise RuntimeError("the fake server process did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._process is not None
        self._process.stdin.close()  # the server stops when its stdin closes
        self._process.wait(timeout=10)

    @property
    def requests(self) -> int:
        with urllib.request.urlopen(f"{self.base_url}/stats", timeout=10) as response:
            return json.loads(response.read())["requests"]


if __name__ == "__main__":
    with FakeOpenAIServer(latency=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0) as fake:
        print(fake.base_url, flush=True)
        sys.stdin.read()
