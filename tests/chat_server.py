"""A real OpenAI-compatible chat-completions server on 127.0.0.1, serving a local causal LM, for tests.

``POST /v1/chat/completions`` formats the messages with the project's one
formatting function, runs the model once and answers the most likely next
token with its top log-probabilities, as vLLM or llama.cpp's server would for
``max_tokens: 1, logprobs: true``. It can be told to fail its first N requests
with a status (503, 429) and to require a bearer key (401 otherwise).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Served:
    """Serves ``self.httpd`` on a thread for the ``with`` block."""

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class ChatServer(_Served):
    def __init__(self, model_dir, *, api_key: str | None = None, fail_first: int = 0, fail_status: int = 503):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        self.api_key, self.fail_left, self.fail_status = api_key, fail_first, fail_status
        self.requests, self.lock = [], threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "auth": self.headers.get("Authorization")})
                    fail = server.fail_left > 0
                    server.fail_left -= fail
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    return self._send(401, {"error": {"message": "invalid api key"}})
                if fail:
                    return self._send(server.fail_status, {"error": {"message": "try again"}})
                self._send(200, server.answer(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, body: dict) -> dict:
        import torch

        from tasks.prompting import format_prompt

        text = format_prompt(body["messages"], self.tok)
        ids = self.tok(text, return_tensors="pt")["input_ids"][:, -self.model.config.n_positions:]
        with torch.no_grad(), self.lock:
            logp = torch.log_softmax(self.model(input_ids=ids).logits[0, -1].float(), -1)
        k = min(int(body.get("top_logprobs") or 1), logp.shape[0])
        top = torch.topk(logp, k)
        items = [{"token": self.tok.decode([int(i)]), "logprob": float(v)} for v, i in zip(top.values, top.indices)]
        choice = {"index": 0, "message": {"role": "assistant", "content": items[0]["token"]},
                  "finish_reason": "length"}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": [{**items[0], "top_logprobs": items}]}
        return {"id": "cmpl-test", "object": "chat.completion", "model": body.get("model"), "choices": [choice]}


class ScriptedChatServer(_Served):
    """An OpenAI-format chat-completions stand-in on 127.0.0.1 whose answer text is ``reply(body)`` (the request's
    JSON): what a grading model would write. Counts its requests."""

    def __init__(self, reply):
        self.reply, self.requests, self.lock = reply, [], threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                answer = {"id": "cmpl-test", "object": "chat.completion", "model": body.get("model"),
                          "choices": [{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": server.reply(body)}}]}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
