"""Every judge kind behind the one interface, the position swap, and the HTTP judge against a real local server."""

import json
import secrets

import pytest
from chat_server import ChatServer
from tiny_models import tiny_ab_judge

from tasks.config import parse_params
from tasks.errors import ConfigError
from tasks.judges import JudgeContext, build_judge
from tasks.judges.ensemble import EnsembleJudge
from tasks.judges.http import JudgeServerError, p_from_answer
from tasks.judges.pairwise import PairwiseJudge
from tasks.judging import Judge, ScoringJudge, Verdicts
from tasks.rubric import load_rubric, parse_rubric

pytestmark = pytest.mark.filterwarnings("ignore")

RUBRIC = {"name": "t", "criteria": [
    {"name": "warm", "description": "A warm review that praises the food.",
     "violation": "A cold review that complains about the food.", "weight": 2},
    {"name": "clear", "description": "Clear, well written text.", "weight": 1}]}
PROMPTS = ["Review the soup at Old Mill.", [{"role": "user", "content": "Review the cake at Red Door."}]]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A tiny random GPT-2 with a BPE tokenizer: a local model folder, made in seconds."""
    from tasks.policy import tiny_gpt, train_tokenizer

    path = tmp_path_factory.mktemp("lm")
    texts = ["Response A is better. Response B is worse. A B A B.", "The soup was great. The cake was awful."] * 50
    tok = train_tokenizer(texts, 300)
    tiny_gpt(len(tok), 2, 2, 32, 512, tok.eos_token_id).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def rubric_file(tmp_path_factory):
    import yaml

    path = tmp_path_factory.mktemp("rubric") / "rubric.yaml"
    path.write_text(yaml.safe_dump(RUBRIC))
    return path


def ctx(judges: dict, rubric_file, env="none", seed=0):
    """The judge context of a valid params.yaml that defines ``judges`` (on a user task unless ``env``)."""
    first = next(iter(judges))
    gate = {"winrate_source": "truth"} if env != "none" else {"winrate_source": first}
    judges = {"reward": {"kind": "reward_model"}, **judges}     # optimize.reward's default judge
    params = parse_params({"task": {"env": env, "rubric": str(rubric_file)}, "judges": judges,
                           "policy": {"base_model": "x"}, "label": {"judge": first, "pairs": "all_pairs"},
                           "evaluate": {"judges": [] if env != "none" else [first]},
                           "promote": {**gate, "alarm_judge": None}})
    return JudgeContext.of(params, seed)


class FirstPosition(PairwiseJudge):
    """A judge built to always prefer whatever it is shown first."""

    def p_first(self, prompts, first, second):
        return [1.0] * len(first)


def test_position_swap_cancels_a_judge_that_always_prefers_position_a():
    j = FirstPosition("first", parse_rubric(RUBRIC, "r"))
    v = j.compare(["p"] * 4, ["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"])
    # Shown A first it says A; shown B first it says B: the average is a coin, and every pair flips.
    assert v.p_a == [0.5] * 4 and v.a_wins == [None] * 4
    assert j.stats["position_disagreement"] == 1.0


def test_rubric_file_errors_name_the_key(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("criteria:\n  - name: a\n    description: d\n    weight: -1\n")
    with pytest.raises(ConfigError, match=r"criteria\[0\]\.weight: must be a number > 0"):
        load_rubric(bad)
    with pytest.raises(ConfigError, match="file not found \\(task.rubric names it\\)"):
        load_rubric(tmp_path / "missing.yaml")
    assert "1. warm (weight 2): A warm review" in parse_rubric(RUBRIC, "r").as_text()


def test_embedding_judge_reads_the_rubric(rubric_file):
    j = build_judge("emb", ctx({"emb": {"kind": "embedding"}}, rubric_file))
    good, bad = "The soup was wonderful and I loved it.", "The soup was awful and cold, I hated it."
    s = j.score(PROMPTS, [good, bad])
    v = j.compare(PROMPTS[:1] * 2, [good, bad], [bad, good])
    assert s[0] > s[1] and v.a_wins == [True, False]
    assert j.name == "ai:emb" and j.score(PROMPTS[:1], [""]) == [-1.0]       # empty response: the floor


def test_reward_model_judge_is_bradley_terry_on_its_scores(tmp_path, rubric_file):
    import math

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tasks.reward_model import minilm_path

    AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1).save_pretrained(tmp_path / "rm")
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path / "rm")
    j = build_judge("rm", ctx({"rm": {"kind": "reward_model", "path": str(tmp_path / "rm")}}, rubric_file))
    sa, sb = j.score(PROMPTS, ["yes", "no"]), j.score(PROMPTS, ["no", "yes"])
    v = j.compare(PROMPTS, ["yes", "no"], ["no", "yes"])
    assert v.p_a == pytest.approx([1 / (1 + math.exp(-(x - y))) for x, y in zip(sa, sb)])
    # Without max_length in its entry, a judge reads texts at the length its model was trained with.
    assert j.model.max_length == 128
    (tmp_path / "rm" / "rft_reward.json").write_text('{"max_length": 32}')
    assert build_judge("rm", ctx({"rm": {"kind": "reward_model", "path": str(tmp_path / "rm")}},
                                 rubric_file)).model.max_length == 32
    with pytest.raises(ConfigError, match="not a reward-model folder"):
        build_judge("rm", ctx({"rm": {"kind": "reward_model", "path": str(tmp_path)}}, rubric_file))


def test_llm_judge_decides_by_choice_token_logprobs_with_the_swap(tiny_lm, rubric_file):
    j = build_judge("local", ctx({"local": {"kind": "llm", "model": str(tiny_lm), "batch_size": 2}}, rubric_file))
    a, b = ["The soup was great.", "Nice cake."], ["The soup was awful.", "Bad cake."]
    v1, v2 = j.compare(PROMPTS, a, b), j.compare(PROMPTS, b, a)
    assert all(0.0 < p < 1.0 for p in v1.p_a)
    # The swap makes the judge antisymmetric: P(A beats B) = 1 - P(B beats A), whatever its position bias.
    assert v1.p_a == pytest.approx([1 - p for p in v2.p_a], abs=1e-6)
    # stats cover both calls: 4 comparisons, of which k flipped with the order
    assert j.stats["position_disagreement"] in (0.0, 0.25, 0.5, 0.75, 1.0) and j.stats["comparisons"] == 4
    with pytest.raises(ConfigError, match="judges.bad.model: cannot load a causal LM"):
        build_judge("bad", ctx({"bad": {"kind": "llm", "model": str(rubric_file.parent)}}, rubric_file))


def test_ensemble_mean_majority_and_agreement():
    class Fixed(Judge):
        def __init__(self, ps):
            super().__init__()
            self.ps, self.name = ps, "ai:fixed"

        def compare(self, prompts, a, b, keys=None, rows=None):
            return Verdicts(self.ps)

    from tasks.judges.configs import EnsembleJudgeConfig

    members = [Fixed([0.9, 0.4]), Fixed([0.7, 0.2]), Fixed([0.2, 0.3])]
    mean = EnsembleJudge("e", EnsembleJudgeConfig(members=["a", "b", "c"], combine="mean"), members)
    v = mean.compare(["p", "p"], ["a", "a"], ["b", "b"])
    assert v.p_a == pytest.approx([0.6, 0.3]) and mean.stats["agreement"] == 0.5
    vote = EnsembleJudge("e", EnsembleJudgeConfig(members=["a", "b", "c"], combine="majority"), members)
    assert vote.compare(["p", "p"], ["a", "a"], ["b", "b"]).p_a == pytest.approx([2 / 3, 0.0])


def test_a_mean_ensemble_of_scoring_judges_rewards_what_it_prefers():
    """A reward model (scale 1) scores a 0.5 and b 0; the embedding judge (scale 10) a 0 and b 0.3. Its members'
    mean probability preferred b (0.335) while the mean of their raw scores rewarded a (0.25 > 0.15). On one
    scale: a = (0.5 + 10 * 0) / 2 = 0.25, b = (0 + 10 * 0.3) / 2 = 1.5, P(a better) = sigmoid(-1.25) = 0.222700."""
    from tasks.judges.configs import EnsembleJudgeConfig

    class Fixed(ScoringJudge):
        def __init__(self, scores, scale):
            super().__init__()
            self.scores, self.scale, self.name = scores, scale, "ai:fixed"

        def score(self, prompts, responses, rows=None):
            return [self.scores[r] for r in responses]

    rm, emb = Fixed({"a": 0.5, "b": 0.0}, 1.0), Fixed({"a": 0.0, "b": 0.3}, 10.0)
    panel = EnsembleJudge("panel", EnsembleJudgeConfig(members=["rm", "emb"], combine="mean"), [rm, emb])
    assert panel.scores_responses
    score_a, score_b = panel.score(["p", "p"], ["a", "b"])
    assert (score_a, score_b) == pytest.approx((0.25, 1.5))
    v = panel.compare(["p"], ["a"], ["b"])
    assert v.p_a == pytest.approx([0.222700], abs=1e-6) and v.a_wins == [False]
    assert (v.p_a[0] > 0.5) == (score_a > score_b)           # the reward and the verdict agree
    assert panel.stats["agreement"] == 0.0                   # the members disagree: rm prefers a, emb b
    # Equal combined scores tie, as a scoring judge's equal scores do.
    tie = EnsembleJudge("panel", EnsembleJudgeConfig(members=["rm", "emb"], combine="mean"),
                        [Fixed({"a": 3.0, "b": 0.0}, 1.0), Fixed({"a": 0.0, "b": 0.3}, 10.0)])
    assert tie.compare(["p"], ["a"], ["b"]).a_wins == [None]


def test_ensemble_built_by_name(rubric_file, tiny_lm):
    judges = {"emb": {"kind": "embedding"}, "local": {"kind": "llm", "model": str(tiny_lm)},
              "panel": {"kind": "ensemble", "members": ["emb", "local"], "combine": "majority"}}
    j = build_judge("panel", ctx(judges, rubric_file))
    v = j.compare(PROMPTS, ["The soup was wonderful.", "Lovely cake."], ["Awful soup.", "Bad cake."])
    assert len(v.p_a) == 2 and "agreement" in j.stats and "local.position_disagreement" in j.stats
    assert j.batch_size == 128          # shards cut at multiples of both members' batches: lcm(128, 8)


def test_simulated_judge_only_in_an_environment_with_a_truth(rubric_file):
    j = build_judge("sim", ctx({"sim": {"kind": "simulated"}}, rubric_file, env="reviews", seed=3))
    v = j.compare(["Review the soup at Old Mill."] * 2, ["The soup was delicious. I would come back again."] * 2,
                  ["soup soup soup"] * 2, keys=[("a",), ("b",)])
    assert j.name == "human:simulated-annotator" and all(p > 0.8 for p in v.p_a)
    with pytest.raises(ConfigError, match="judges.sim.kind: simulated needs an environment"):
        ctx({"sim": {"kind": "simulated"}}, rubric_file)


def test_p_from_answer():
    lp = lambda items: {"logprobs": {"content": [{"token": items[0][0], "logprob": items[0][1],  # noqa: E731
                                                  "top_logprobs": [{"token": t, "logprob": v} for t, v in items]}]}}
    import math

    # softmax over A and B only: log 0.6 vs log 0.2 -> 0.6 / 0.8 = 0.75
    assert p_from_answer(lp([(" A", math.log(0.6)), ("x", -0.1), (" B", math.log(0.2))])) == pytest.approx(0.75)
    assert p_from_answer(lp([("B", -0.1), ("x", -3.0)])) == 0.0            # A not in the top list: no mass
    assert p_from_answer({"message": {"content": "B"}}) == 0.0              # no log-probs: the answered letter
    assert p_from_answer({"message": {"content": "maybe"}}) is None


def _http(url, rubric_file, **kw):
    entry = {"kind": "http", "url": url, "model": "tiny", "backoff": 0.01, "max_retries": 3, **kw}
    return build_judge("api", ctx({"api": entry}, rubric_file))


@pytest.fixture(scope="module")
def ab_judge(tmp_path_factory):
    return tiny_ab_judge(tmp_path_factory.mktemp("ab"))


def test_http_judge_retries_503_then_answers(ab_judge, rubric_file, monkeypatch):
    key = secrets.token_hex(8)                                       # a throwaway key, new each run
    monkeypatch.setenv("TEST_JUDGE_KEY", key)
    with ChatServer(ab_judge, api_key=key, fail_first=2, fail_status=503) as server:
        j = _http(server.url, rubric_file, api_key_env="TEST_JUDGE_KEY", concurrency=1)
        v = j.compare(PROMPTS, ["Great soup.", "Nice cake."], ["Awful soup.", "Bad cake."])
    # Both letters lead the served model's next token: every answer is a real probability, none unparsed.
    assert len(v.p_a) == 2 and all(0.0 < p < 1.0 for p in v.p_a) and j.stats["unparsed"] == 0
    assert j.stats["retries"] == 2                                  # the two 503s, each retried once
    assert len(server.requests) == 2 + 4                            # 2 failures + 2 pairs x 2 orders
    assert all(r["auth"] == f"Bearer {key}" for r in server.requests)
    # The key is read from the environment and never kept where it could be logged.
    assert key not in json.dumps(j.stats) and key not in repr(j.cfg)


def test_http_judge_stops_at_once_on_401_without_showing_the_key(tiny_lm, rubric_file, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "wrong-key-value")
    with ChatServer(tiny_lm, api_key="right") as server:
        j = _http(server.url, rubric_file, api_key_env="TEST_JUDGE_KEY")
        with pytest.raises(JudgeServerError) as exc:
            j.compare(PROMPTS[:1], ["a"], ["b"])
    assert "answered 401" in str(exc.value) and "api_key_env" in str(exc.value)
    assert "wrong-key-value" not in str(exc.value)
    assert len(server.requests) <= 2                                 # no retries on 401 (two orders in flight)


def test_http_judge_gives_up_after_its_retries_and_names_404(tiny_lm, rubric_file):
    with ChatServer(tiny_lm, fail_first=100, fail_status=429) as server:
        with pytest.raises(JudgeServerError, match="still failing after 3 retries \\(status 429\\)"):
            _http(server.url, rubric_file, concurrency=1).compare(PROMPTS[:1], ["a"], ["b"])
    with ChatServer(tiny_lm) as server:
        with pytest.raises(JudgeServerError, match="answered 404: no such endpoint"):
            _http(server.url.replace("/v1", "/v2"), rubric_file).compare(PROMPTS[:1], ["a"], ["b"])


def test_http_judge_needs_its_key_variable(rubric_file, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(JudgeServerError, match="judges.api.api_key_env: the environment variable NO_SUCH_KEY_VAR"):
        _http("http://127.0.0.1:9/v1", rubric_file, api_key_env="NO_SUCH_KEY_VAR")


def test_judge_files_are_the_model_folders_judges_read(rubric_file):
    from tasks.judges import judge_files

    judges = {"emb": {"kind": "embedding"}, "gold": {"kind": "reward_model", "path": "data/incoming/gold"},
              "local": {"kind": "llm", "model": "/models/judge"},
              "panel": {"kind": "ensemble", "members": ["gold", "emb"]}}
    c = ctx(judges, rubric_file)
    assert judge_files(c.judges, ["panel", "local", "gold", "emb"]) == ["data/incoming/gold", "/models/judge"]
    assert judge_files(c.judges, ["emb"]) == []


def test_merge_stats_adds_counts_and_weights_rates_by_shard_size():
    from tasks.judges.sharded import merge_stats

    parts = [({"position_disagreement": 0.5, "comparisons": 4.0, "llm.comparisons": 4.0}, 4),
             ({"position_disagreement": 0.25, "comparisons": 8.0, "llm.comparisons": 8.0, "retries": 1.0}, 8)]
    # Rates: (0.5 * 4 + 0.25 * 8) / 12 = 4 / 12 = 1/3, the rate over all 12 comparisons.
    # Counts add up, under an ensemble member's prefix too (4 + 8); a count only one shard has is its own.
    assert merge_stats(parts) == pytest.approx({"position_disagreement": 1 / 3, "comparisons": 12.0,
                                                "llm.comparisons": 12.0, "retries": 1.0})
    assert merge_stats([]) == {}


def _sharded_ctx(judges, rubric_file, workers):
    import dataclasses

    from tasks.config import ScaleConfig

    return dataclasses.replace(ctx(judges, rubric_file), scale=ScaleConfig(runner="local", workers=workers))


def test_sharded_judge_cuts_at_its_batches_and_joins_what_one_judge_gives(tiny_lm, rubric_file):
    from tasks.judges.sharded import ShardedJudge, judge_spans

    judges = {"local": {"kind": "llm", "model": str(tiny_lm), "batch_size": 2}}
    whole = build_judge("local", ctx(judges, rubric_file))
    sharded = build_judge("local", _sharded_ctx(judges, rubric_file, workers=3))
    assert isinstance(sharded, ShardedJudge) and sharded.name == "ai:local" and sharded.batch_size == 2
    # 5 comparisons in batches of 2 -> batches (2, 2, 1), one per worker: each shard's batches are the whole run's.
    assert judge_spans(5, 2, 3) == [(0, 2), (2, 4), (4, 5)]
    a = ["The soup was great.", "Nice cake.", "Fine bread.", "Cold tea.", "Warm pie."]
    b = ["The soup was awful.", "Bad cake.", "Stale bread.", "Hot tea.", "Burnt pie."]
    prompts = [PROMPTS[i % 2] for i in range(5)]
    v, w = sharded.compare(prompts, a, b), whole.compare(prompts, a, b)
    assert v.p_a == w.p_a and v.a_wins == w.a_wins
    assert v.first == w.first and len(v.first) == 5      # the asks' first-position shares, joined in order
    assert sharded.stats["comparisons"] == 5.0
    assert sharded.stats["position_disagreement"] == pytest.approx(whole.stats["position_disagreement"])


def test_sharded_scoring_judge_scores_as_one_and_people_are_never_sharded(rubric_file):
    from tasks.judges.sharded import ShardedJudge

    judges = {"emb": {"kind": "embedding", "batch_size": 2}, "people": {"kind": "label_studio"}}
    whole, sharded = build_judge("emb", ctx(judges, rubric_file)), build_judge("emb", _sharded_ctx(judges,
                                                                                                rubric_file, 2))
    texts = ["The soup was wonderful.", "Awful soup.", "Lovely cake, warm room.", "Bad cake.", "ok"]
    assert sharded.score([PROMPTS[0]] * 5, texts) == whole.score([PROMPTS[0]] * 5, texts)
    assert hasattr(sharded, "compare_scored")                 # labelling decides from the scores it already has
    people = build_judge("people", _sharded_ctx(judges, rubric_file, 2))
    assert not isinstance(people, ShardedJudge)               # one Label Studio project for the whole list


class _WordCount(ScoringJudge):
    """Scores a response by its word count: deterministic and per response."""

    name = "ai:words"

    def score(self, prompts, responses, rows=None):
        return [float(len(r.split())) for r in responses]


class _LikesExclamations(PairwiseJudge):
    """Prefers the response with '!' in either position; between two without, position A: those pairs flip."""

    def p_first(self, prompts, first, second):
        return [1.0 if "!" in f else 0.0 if "!" in s else 0.6 for f, s in zip(first, second)]


def _generations(n_prompts: int, k: int) -> list[dict]:
    rows = []
    for p in range(n_prompts):
        for i in range(k):
            text = ["", "same", "good food!", "Same ", "ok", "fine place to eat", "meh"][(p + i * 2) % 7]
            rows.append({"prompt_id": f"p{p}", "response_id": f"p{p}-{i}", "response": text})
    return rows


@pytest.mark.parametrize("kind, pairs", [("scoring", "best_vs_worst"), ("scoring", "all_pairs"),
                                         ("scoring", "random_pairs"), ("pairwise", "all_pairs"),
                                         ("pairwise", "random_pairs")])     # best_vs_worst needs scores
def test_labelling_in_chunks_gives_the_rows_and_stats_of_one_call(pairs, kind):
    """Chunks of 4 responses (whole prompt groups) against one chunk holding everything: the same pairs (one
    random stream), the same verdicts, and the judge's stats over all of its calls."""
    from types import SimpleNamespace

    from tasks.labelers.judged import iter_groups, label_groups

    cfg = SimpleNamespace(pairs=pairs, random_pairs_per_prompt=2, seed=3)
    prompts = {f"p{p}": f"prompt {p}" for p in range(9)}
    gens = _generations(9, 3)
    make = (lambda: _WordCount()) if kind == "scoring" else (lambda: _LikesExclamations("x", None))
    whole = label_groups(iter_groups(gens, "g.jsonl"), prompts, cfg, make(), chunk=10**9)
    parts = label_groups(iter_groups(gens, "g.jsonl"), prompts, cfg, make(), chunk=4)
    assert parts == whole
    rows, stats = whole
    assert rows and stats["pairs"] == len(rows) and stats["skipped_empty"] > 0
    if pairs == "all_pairs":
        assert stats["skipped_identical"] > 0
    if kind == "pairwise":
        # every pair is compared once whatever the chunks; "!" shown first flips the verdict of such pairs
        assert stats["judge.comparisons"] == len(rows) + stats["skipped_tie"]
        assert 0 < stats["judge.position_disagreement"] < 1


def test_generations_of_one_prompt_must_be_together():
    from tasks.errors import DataError
    from tasks.labelers.judged import iter_groups

    rows = [{"prompt_id": "a"}, {"prompt_id": "a"}, {"prompt_id": "b"}, {"prompt_id": "a"}]
    with pytest.raises(DataError, match=r"g.jsonl: column 'prompt_id' rule 'the responses of one prompt on "
                                        r"consecutive rows' failed(.|\n)*row 4: a"):
        list(iter_groups(rows, "g.jsonl"))
    assert [(p, len(g)) for p, g in iter_groups(rows[:3], "g.jsonl")] == [("a", 2), ("b", 1)]


def test_the_http_judges_backoff_is_capped(rubric_file, monkeypatch):
    """A refused connection, ten retries at a 1 s backoff: 1, 2, ..., 32 s, then 60 s each (tasks/retry.py), where
    the uncapped doubling waited 512 s before the last."""
    import httpx

    from tasks.judges import http

    slept = []
    j = _http("http://127.0.0.1:9/v1", rubric_file, backoff=1.0, max_retries=10, concurrency=1,
              max_consecutive_failures=20)
    monkeypatch.setattr(j._stop, "wait", slept.append)          # the backoff waits on the stop event
    with httpx.Client() as client, pytest.raises(http.JudgeServerError, match="after 10 retries"):
        j._post(client, [{"role": "user", "content": "hi"}])
    assert slept == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]


class _BadServer:
    """A loopback HTTP server that misbehaves in one way per test: ``stall`` (reads the request, never answers),
    ``trickle`` (sends its status line and headers one byte every 0.1 s, for ever), ``trickle_body`` (headers at once,
    then the body one byte every 0.1 s), ``junk`` (200 with an HTML page), ``huge`` (200 with 3 MB of JSON)."""

    def __init__(self, how: str):
        import socket
        import threading

        self.how, self.requests, self.stop = how, 0, threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import threading

        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        import time

        try:
            # The whole request (headers, then Content-Length bytes of body) is read before answering: closing a
            # socket with unread bytes resets the connection, and the client would see a ReadError, not the answer.
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            if self.how == "stall":
                self.stop.wait(60)
            elif self.how == "trickle":
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100000:
                    conn.sendall(bytes([byte]))
                    if self.stop.wait(0.1):
                        break
            elif self.how == "trickle_body":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
                for _ in range(100000):
                    conn.sendall(b" ")
                    if self.stop.wait(0.1):
                        break
            else:
                body = b"<html><body>Service temporarily in maintenance</body></html>" if self.how == "junk" else \
                    b'{"choices": [' + b'{"x": 1},' * 330000 + b'{}]}'
                # Connection: close, as this server closes each connection: a client that kept it for its next try
                # would meet a closed socket (a ReadError) instead of this answer.
                conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
                             + body)
                time.sleep(0.2)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("how, says", [("stall", "ReadTimeout"), ("trickle", "ReadTimeout"),
                                       ("trickle_body", "ReadTimeout"), ("junk", "not JSON"),
                                       ("huge", "more than judges.api.max_response_kb")])
def test_the_http_judge_bounds_a_server_that_stalls_trickles_or_answers_junk(rubric_file, how, says):
    # timeout 0.6 s is the whole request's bound: a server that sends a byte every 0.1 s never trips httpx's own
    # per-read timeout, and before the deadline it held a request for hours. 8 queued comparisons, 2 retries
    # each at 4 in flight: the first request to fail for good fails the stage, and the queued ones never start.
    import time

    server = _BadServer(how)
    try:
        j = _http(server.url, rubric_file, timeout=0.6, max_retries=2, backoff=0.0, concurrency=4,
                  max_response_kb=1024)
        t0 = time.monotonic()
        with pytest.raises(JudgeServerError, match=says):
            j.p_first(["Name a fruit."] * 8, ["apple"] * 8, ["pear"] * 8)
        took = time.monotonic() - t0
    finally:
        server.close()
    # Each try ends within 0.6 s; 3 tries of the first requests, in parallel: about 2 s, never 8 x 3 tries.
    assert took < 5.0, took
    assert server.requests <= 4 * 3 + 4, server.requests


def test_the_http_judge_stops_the_stage_when_the_server_is_down(rubric_file):
    # A refused port, 2,000 queued requests with 4 retries each: the circuit breaker opens after 8 failed tries in
    # a row, and everything else is cancelled, where before each request retried on its own (2,000 x 5 tries).
    import time

    j = _http("http://127.0.0.1:9/v1", rubric_file, max_retries=4, backoff=0.01, concurrency=4)
    t0 = time.monotonic()
    with pytest.raises(JudgeServerError, match="^judge api: 8 failed tries in a row .* the server looks down"):
        j.p_first(["Name a fruit."] * 2000, ["apple"] * 2000, ["pear"] * 2000)
    assert time.monotonic() - t0 < 10.0
    assert j.stats["retries"] < 20
    # The message counts exactly 8: tries that failed beside the one that opened the breaker, before the stop
    # reached them, end with it, but are never the error reported, whichever of them ended first. Called again, the
    # breaker is still open: the first failed try stops the stage (its count depends on how many failed beside the
    # 8th before the stop reached them).
    with pytest.raises(JudgeServerError, match=r"^judge api: \d+ failed tries in a row at http.* looks down"):
        j.p_first(["Name a fruit."], ["apple"], ["pear"])


def test_the_http_judge_keeps_to_its_stage_timeout(rubric_file):
    # A stalling server and a stage_timeout of 1.5 s: requests of 1 s with retries would go on for 3 tries each;
    # the stage's own bound stops them, naming the key.
    server = _BadServer("stall")
    try:
        j = _http(server.url, rubric_file, timeout=1.0, max_retries=5, backoff=0.0, concurrency=1,
                  stage_timeout=1.5, max_consecutive_failures=100)
        with pytest.raises(JudgeServerError, match="took more than judges.api.stage_timeout"):
            j.p_first(["Name a fruit."] * 3, ["apple"] * 3, ["pear"] * 3)
    finally:
        server.close()
