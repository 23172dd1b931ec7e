"""The hidden ground truth of the embedded default task, and the simulated annotator built on it.

Neither the policy nor the AI judge ever reads this module. It stands in for
human raters in demos and tests, and it is how a cycle's *real* improvement is
measured (the AI judge and the reward model are only proxies of it).

What the simulated user wants from ``Write a review of the ramen at X.``:

1. **warmth about the dish**: a hidden, weighted sentiment lexicon with
   negation ("would not come back") and intensifiers ("really good");
2. **on topic**: the review names the dish that was asked about;
3. **fluency**: every adjacent word pair is one a fluent writer of this domain
   produces (the bigrams of the task's grammar), the text ends a sentence, and
   it neither repeats a content word three times nor repeats a sentence.

The score is ``sentiment + 0.5*on_topic + 2*(fluency - 1) - penalties``.
Fluency and the repetition penalty make the truth reward what users want rather
than a countable surface feature: ``great great great great ...`` has a high
lexicon sum but scores about -3, far below a plain fluent positive review
(about +1.3); ``tests/test_truth.py`` checks this.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import re
from dataclasses import dataclass

from tasks.envs.reviews import corpus
from tasks.envs.reviews.corpus import dish_of

_TOKEN = re.compile(r"[a-z']+|[.,?!]")
_STOP = {"the", "was", "were", "i", "a", "it", "and", "but", "at", "to", "of", "we", "my",
         ".", ",", "?", "!", "would", "is", "that"}

# Hidden lexicon: weights a careful human rater would give; never shown to a model.
_WORD_W = {
    "delicious": 1.0, "wonderful": 1.0, "excellent": 1.0, "perfect": 1.0, "superb": 1.0,
    "amazing": 1.0, "tasty": 0.8, "lovely": 0.8, "great": 0.8, "flavorful": 0.8,
    "fresh": 0.6, "comforting": 0.6, "recommended": 0.9,
    "bland": -0.8, "stale": -0.8, "soggy": -0.8, "disappointing": -0.8, "burnt": -0.8,
    "tasteless": -0.8, "awful": -1.0, "terrible": -1.0, "cold": -0.6, "greasy": -0.6,
    "dull": -0.5, "dry": -0.6, "poor": -0.8, "bad": -0.8, "sadly": -0.3,
    "fine": 0.1, "decent": 0.2, "plain": -0.1,
    "quick": 0.4, "friendly": 0.4, "attentive": 0.4, "generous": 0.4, "kind": 0.4,
    "helpful": 0.4, "large": 0.3, "fair": 0.3, "reasonable": 0.3, "relaxing": 0.3,
    "pleasant": 0.3, "cozy": 0.3, "bright": 0.2, "short": 0.3, "beautiful": 0.3,
    "slow": -0.4, "rude": -0.5, "careless": -0.4, "tiny": -0.4, "small": -0.3, "steep": -0.3,
    "unfair": -0.3, "loud": -0.3, "harsh": -0.3, "cramped": -0.3, "noisy": -0.3, "long": -0.3,
    "unhelpful": -0.4, "gloomy": -0.3,
}
_PHRASE_W = {("come", "back"): 0.8, ("order", "it"): 0.7, ("tell", "my"): 0.6, ("skip", "it"): -0.7}
_INTENSIFIERS = {"really", "very", "truly"}
_NEGATIONS = {"not", "never", "no"}


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


@functools.lru_cache(maxsize=1)
def grammar_bigrams() -> frozenset:
    """Every word pair the task's grammar can produce (the fluency reference).

    Enumerated by sampling the grammar widely with a fixed seed, prompts'
    dishes included, so the set does not depend on any run's corpus settings.
    """

    rng = random.Random(12345)
    pairs = set()
    for _ in range(30):
        for dish in corpus.DISHES:
            for tone in ("pos", "neg", "mid"):
                for _ in range(12):
                    toks = tokenize(corpus.review(rng, dish, tone))
                    pairs.update(zip(toks, toks[1:]))
    return frozenset(pairs)


def sentiment(tokens: list[str]) -> float:
    """Hidden sentiment in (-1, 1): lexicon sum with negation and intensifiers, squashed by tanh(x/1.5)."""
    total = 0.0
    for i, tok in enumerate(tokens):
        w = _WORD_W.get(tok, 0.0)
        if i + 1 < len(tokens):
            w += _PHRASE_W.get((tok, tokens[i + 1]), 0.0)
        if not w:
            continue
        if i >= 1 and tokens[i - 1] in _INTENSIFIERS:
            w *= 1.5
        if any(t in _NEGATIONS for t in tokens[max(0, i - 2):i]):
            w = -w
        total += w
    return math.tanh(total / 1.5)


def fluency(tokens: list[str]) -> float:
    """Share of adjacent word pairs that the grammar produces (1.0 for fluent text)."""
    if len(tokens) < 2:
        return 0.0
    ref = grammar_bigrams()
    pairs = list(zip(tokens, tokens[1:]))
    return sum(p in ref for p in pairs) / len(pairs)


@dataclass(frozen=True)
class TruthScore:
    total: float
    sentiment: float
    on_topic: bool
    fluency: float
    repetition: bool
    ends_sentence: bool


def truth_score(dish: str | None, response: str) -> TruthScore:
    """The hidden score of one response to a prompt about ``dish``."""
    toks = tokenize(response)
    content = [t for t in toks if t not in _STOP]
    counts = {t: content.count(t) for t in set(content)}
    sentences = [s.strip() for s in re.split(r"[.!?]", response.lower()) if s.strip()]
    repetition = (max(counts.values(), default=0) >= 3) or len(sentences) != len(set(sentences))
    ends = bool(toks) and toks[-1] in {".", "!", "?"}
    on_topic = dish is not None and dish in toks
    sent, flu = sentiment(toks), fluency(toks)
    total = sent + 0.5 * on_topic + 2.0 * (flu - 1.0) - 1.0 * repetition - 0.5 * (not ends)
    if len(toks) < 5:
        total -= 1.0
    return TruthScore(total, sent, on_topic, flu, repetition, ends)


# ---- the simulated annotator -------------------------------------------------------------

def preference_probability(score_a: float, score_b: float, temperature: float, noise: float) -> float:
    """P(annotator prefers a over b).

    Bradley-Terry on the hidden scores, ``p = sigmoid((s_a - s_b) / T)``, then
    the label is flipped with probability ``noise``:
    ``P(a) = (1 - noise) * p + noise * (1 - p)``.
    """
    x = (score_a - score_b) / temperature
    # The two forms of the logistic keep exp() from overflowing for sharp annotators.
    p = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
    return (1.0 - noise) * p + noise * (1.0 - p)


def stable_uniform(*key) -> float:
    """A uniform draw in [0, 1) fixed by ``key``: the same pair always gets the same label."""
    digest = hashlib.sha256("\x1f".join(map(str, key)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def simulated_preference(prompt: str, a: str, b: str, *, temperature: float, noise: float,
                         seed: int = 0, key: tuple = ()) -> tuple[bool, float]:
    """The simulated annotator's choice: (prefers a, probability it gave a)."""

    dish = dish_of(prompt)
    p = preference_probability(truth_score(dish, a).total, truth_score(dish, b).total, temperature, noise)
    return stable_uniform(seed, prompt, a, b, *key) < p, p
