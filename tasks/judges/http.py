"""Judge ``http``: any OpenAI-compatible chat-completions server (vLLM, TGI, Ollama, llama.cpp, a hosted API).

The judge's question (``tasks/judges/pairwise.py``) goes to ``{url}/chat/completions``
with ``max_tokens: 1``, ``temperature: 0`` and ``logprobs: true,
top_logprobs: 20``. P(A) is the softmax over the returned log-probabilities of
the tokens ``A`` and ``B`` (one missing from the top list counts as no mass);
when a server returns no log-probabilities, the answered letter decides (1 or
0), and an answer that is neither letter counts as a tie and is counted in
``stats['unparsed']``. The same position swap as the ``llm`` judge.

The API key is read from the environment variable whose *name* is
``api_key_env``; it is never logged, printed or written to MLflow. Requests
run ``concurrency`` at a time, each with ``timeout`` seconds. A 429 or 5xx
answer, a timeout or a refused connection is retried up to ``max_retries``
times with exponential backoff (``backoff * 2**attempt`` seconds, at most 60); a 401, 403
or 404 stops at once with a message that says what to check.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

from tasks.errors import RFTError
from tasks.judges.math import two_choice_probability
from tasks.judges.pairwise import CHOICES, PairwiseJudge, judge_messages
from tasks.redact import redact_url
from tasks.retry import backoff_delay


class JudgeServerError(RFTError):
    """The judge's server refused or kept failing; the message names the judge, the URL and the status."""


FATAL = {401: "the API key was refused: check the variable named in api_key_env",
         403: "the API key may not use this model or endpoint",
         404: "no such endpoint or model: check url (it should end in /v1) and model"}


def p_from_answer(choice: dict) -> float | None:
    """P(A) from one chat-completions choice: its top log-probabilities, else its answered letter, else None."""
    content = ((choice.get("logprobs") or {}).get("content")) or []
    if content:
        found: dict[str, float] = {}
        for item in content[0].get("top_logprobs") or [content[0]]:
            letter = str(item.get("token", "")).strip()
            if letter in CHOICES and letter not in found:
                found[letter] = float(item["logprob"])
        if found:
            la, lb = found.get("A", -math.inf), found.get("B", -math.inf)
            if la == lb == -math.inf:
                return None
            if lb == -math.inf:
                return 1.0
            if la == -math.inf:
                return 0.0
            return two_choice_probability(la, lb)
    text = ((choice.get("message") or {}).get("content") or "").strip()
    return {"A": 1.0, "B": 0.0}.get(text[:1]) if text else None


class HttpJudge(PairwiseJudge):
    def __init__(self, name: str, cfg, rubric):
        super().__init__(name, rubric)
        self.judge_key, self.cfg = name, cfg
        self.endpoint = cfg.url.rstrip("/") + "/chat/completions"
        self.shown = redact_url(self.endpoint)                # how messages name it: no credential
        self.headers = {"Content-Type": "application/json"}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise JudgeServerError(f"judges.{name}.api_key_env: the environment variable "
                                       f"{cfg.api_key_env} is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        self.stats.update(retries=0.0, unparsed=0.0)

    def _post(self, client, messages, **settings) -> dict:
        """POST one chat completion (``settings``: max_tokens, temperature, ...) with retries and backoff."""
        import httpx

        body = {"model": self.cfg.model, "messages": messages, **settings}
        for attempt in range(self.cfg.max_retries + 1):
            try:
                resp = client.post(self.endpoint, json=body, headers=self.headers, timeout=self.cfg.timeout)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                problem = f"{type(exc).__name__}"
            else:
                if resp.status_code == 200:
                    return resp.json()
                if resp.status_code in FATAL:
                    raise JudgeServerError(f"judge {self.judge_key}: {self.shown} answered {resp.status_code}: "
                                           f"{FATAL[resp.status_code]}")
                if resp.status_code != 429 and resp.status_code < 500:
                    raise JudgeServerError(f"judge {self.judge_key}: {self.shown} answered "
                                           f"{resp.status_code}: {resp.text[:200]}")
                problem = f"status {resp.status_code}"
            if attempt == self.cfg.max_retries:
                raise JudgeServerError(f"judge {self.judge_key}: {self.shown} still failing after "
                                       f"{self.cfg.max_retries} retries ({problem})")
            self.stats["retries"] += 1
            time.sleep(backoff_delay(self.cfg.backoff, attempt))
        raise AssertionError("unreachable")

    def p_first(self, prompts, first, second) -> list[float]:
        import httpx

        asks = [judge_messages(self.rubric, p, x, y) for p, x, y in zip(prompts, first, second)]
        with httpx.Client() as client, ThreadPoolExecutor(self.cfg.concurrency) as pool:
            answers = list(pool.map(lambda m: self._post(client, m, max_tokens=1, temperature=0, logprobs=True,
                                                         top_logprobs=20), asks))
        out = []
        for ans in answers:
            p = p_from_answer((ans.get("choices") or [{}])[0])
            if p is None:
                self.stats["unparsed"] += 1
                p = 0.5
            out.append(p)
        return out

    def generate(self, prompts: list, *, max_new_tokens: int, temperature: float, seed: int = 0) -> list[str]:
        """The server's reply to each conversation (Constitutional AI's critiques and revisions)."""
        import httpx

        from tasks.prompting import as_messages

        with httpx.Client() as client, ThreadPoolExecutor(self.cfg.concurrency) as pool:
            answers = list(pool.map(lambda p: self._post(client, as_messages(p), max_tokens=max_new_tokens,
                                                         temperature=temperature, seed=seed), prompts))
        return [(((a.get("choices") or [{}])[0].get("message") or {}).get("content") or "").strip() for a in answers]
