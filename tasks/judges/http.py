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
run ``concurrency`` at a time. Each try ends within ``timeout`` seconds in all
(``tasks/deadline.py``: a server that trickles bytes cannot hold it longer), and
all of a stage's requests within ``stage_timeout``. A 429 or 5xx answer, a
timeout, a refused connection or an answer that is not a JSON object is retried
up to ``max_retries`` times with exponential backoff (``backoff * 2**attempt``
seconds, at most 60); a 401, 403 or 404, or an answer over ``max_response_kb``,
stops at once with a message that says what to check. After
``max_consecutive_failures`` failed tries in a row (over all requests) the
server counts as down: the stage fails at once, and so does every other request,
queued or in flight, rather than each retrying on its own.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tasks.deadline import deadline, deadline_client
from tasks.errors import RFTError
from tasks.judgemath import two_choice_probability
from tasks.judges.pairwise import CHOICES, PairwiseJudge, judge_messages
from tasks.prompting import as_messages
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


class _Stopped(JudgeServerError):
    """A request ended because another one failed the stage: that one's error is the one to report."""


class _Failed(Exception):
    """One try failed in a way a retry may cure (a timeout, a refused connection, 429/5xx, a garbled answer)."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


class HttpJudge(PairwiseJudge):
    def __init__(self, name: str, cfg, rubric):
        super().__init__(name, rubric)
        self.judge_key, self.cfg = name, cfg
        self.endpoint = cfg.url.rstrip("/") + "/chat/completions"
        self.shown = redact_url(self.endpoint)                # how messages name it: no credential
        # identity: the answer's size cap (max_response_kb) counts what the server sends, not a decompressed bomb
        self.headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)      # a secret: named in params.yaml, kept in the environment
            if not key:
                raise JudgeServerError(f"judges.{name}.api_key_env: the environment variable "
                                       f"{cfg.api_key_env} is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        self.stats.update(retries=0.0, unparsed=0.0)
        self._lock = threading.Lock()
        self._stop = threading.Event()           # set when the stage fails: the other requests end at once
        self._opened: JudgeServerError | None = None     # the error of the try that opened the circuit breaker
        self._in_a_row = 0                       # failed tries in a row, over all requests (the circuit breaker)
        self._stage_until: float | None = None   # the stage's deadline, from its first request

    def _stage_left(self) -> float:
        if self._stage_until is None:            # the stage's first request starts its clock
            self._stage_until = time.monotonic() + self.cfg.stage_timeout
        left = self._stage_until - time.monotonic()
        if left <= 0:
            raise JudgeServerError(f"judge {self.judge_key}: this stage's requests to {self.shown} took more than "
                                   f"judges.{self.judge_key}.stage_timeout ({self.cfg.stage_timeout:g} s) in all")
        return left

    def _once(self, client, body: dict) -> dict:
        """One try: the answer's JSON object, or _Failed (retry), or JudgeServerError (stop)."""
        import httpx

        cap = self.cfg.max_response_kb * 1024
        try:
            with client.stream("POST", self.endpoint, json=body, headers=self.headers,
                               timeout=self.cfg.timeout) as resp:
                if resp.status_code in FATAL:
                    raise JudgeServerError(f"judge {self.judge_key}: {self.shown} answered {resp.status_code}: "
                                           f"{FATAL[resp.status_code]}")
                if resp.status_code != 200 and resp.status_code != 429 and resp.status_code < 500:
                    raise JudgeServerError(f"judge {self.judge_key}: {self.shown} answered {resp.status_code}: "
                                           f"{_head(resp, 200)}")
                if resp.status_code != 200:
                    raise _Failed(f"status {resp.status_code}")
                data = bytearray()
                for chunk in resp.iter_bytes():
                    data += chunk
                    if len(data) > cap:
                        raise JudgeServerError(f"judge {self.judge_key}: {self.shown} answered more than "
                                               f"judges.{self.judge_key}.max_response_kb "
                                               f"({self.cfg.max_response_kb} kB): not a chat completion")
        except httpx.RequestError as exc:       # a timeout, a lost connection, a body that does not decode
            raise _Failed(type(exc).__name__) from None
        try:
            answer = json.loads(bytes(data))
        except ValueError:
            raise _Failed(f"an answer that is not JSON ({len(data)} bytes)") from None
        if not isinstance(answer, dict):
            raise _Failed(f"a JSON answer that is not an object ({type(answer).__name__})")
        return answer

    def _post(self, client, messages, **settings) -> dict:
        """POST one chat completion (``settings``: max_tokens, temperature, ...) with retries and backoff, each
        try within ``timeout`` seconds in all and the stage's ``stage_timeout``."""
        body = {"model": self.cfg.model, "messages": messages, **settings}
        for attempt in range(self.cfg.max_retries + 1):
            if self._stop.is_set():
                raise _Stopped(f"judge {self.judge_key}: stopped: another request failed")
            try:
                with deadline(min(self.cfg.timeout, self._stage_left())):
                    answer = self._once(client, body)
            except _Failed as failed:
                problem = failed.problem
            else:
                with self._lock:
                    self._in_a_row = 0
                return answer
            limit = self.cfg.max_consecutive_failures
            with self._lock:
                self._in_a_row += 1
                in_a_row, opens = self._in_a_row, self._in_a_row >= limit and self._opened is None
                if opens:                           # this try opens the breaker: its error is the stage's (_map)
                    self._opened = JudgeServerError(
                        f"judge {self.judge_key}: {in_a_row} failed tries in a row at {self.shown} ({problem}): "
                        f"the server looks down, so the stage stops here "
                        f"(judges.{self.judge_key}.max_consecutive_failures: {limit})")
            if in_a_row >= limit:                   # tries failing beside it end too, each naming what opened it
                raise self._opened if opens else _Stopped(str(self._opened))
            if attempt == self.cfg.max_retries:
                self._stage_left()                  # a deadline that passed is named as such
                raise JudgeServerError(f"judge {self.judge_key}: {self.shown} still failing after "
                                       f"{self.cfg.max_retries} retries ({problem})")
            with self._lock:
                self.stats["retries"] += 1
            self._stop.wait(min(backoff_delay(self.cfg.backoff, attempt), max(0.0, self._stage_left())))
        raise AssertionError("unreachable")

    def _map(self, fn, items: list) -> list:
        """``fn(client, item)`` for every item, ``concurrency`` at a time, in order. The first request that fails
        for good fails them all at once: the queued ones are cancelled, the ones in flight end at their next
        check (their deadline bounds the wait), and its error is raised."""
        from concurrent.futures import FIRST_EXCEPTION, wait

        self._stage_left()
        self._stop.clear()
        self._opened = None
        with deadline_client() as client:
            pool = ThreadPoolExecutor(self.cfg.concurrency)
            futures = [pool.submit(fn, client, item) for item in items]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                errors = [f.exception() for f in futures if f in done and f.exception() is not None]
                if errors:
                    # the error that failed the stage, not a request it stopped (whichever of them ended first)
                    raise self._opened or next((e for e in errors if not isinstance(e, _Stopped)), errors[0])
                return [f.result() for f in futures]
            except BaseException:
                self._stop.set()                 # the ones in flight end at their next check, not after retries
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def p_first(self, prompts, first, second) -> list[float]:
        asks = [judge_messages(self.rubric, p, x, y) for p, x, y in zip(prompts, first, second)]
        answers = self._map(lambda client, m: self._post(client, m, max_tokens=1, temperature=0, logprobs=True,
                                                         top_logprobs=20), asks)
        out = []
        for ans in answers:
            choice = (ans.get("choices") or [{}])[0]
            p = p_from_answer(choice) if isinstance(choice, dict) else None
            if p is None:
                self.stats["unparsed"] += 1
                p = 0.5
            out.append(p)
        return out

    def generate(self, prompts: list, *, max_new_tokens: int, temperature: float, seed: int = 0) -> list[str]:
        """The server's reply to each conversation (Constitutional AI's critiques and revisions)."""

        answers = self._map(lambda client, p: self._post(client, as_messages(p), max_tokens=max_new_tokens,
                                                         temperature=temperature, seed=seed), prompts)
        return [(((a.get("choices") or [{}])[0].get("message") or {}).get("content") or "").strip() for a in answers]


def _head(resp, limit: int) -> str:
    """At most ``limit`` characters of an error answer's body, read no further."""
    data = bytearray()
    for chunk in resp.iter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit]).decode("utf-8", "replace")
