"""The bundled corpus of the embedded default task, written by a seeded generator.

The task: **write a review** of a dish at a named restaurant
(``Write a review of the ramen at Blue Lantern.``). Every text here comes from
the small grammar below; nothing is copied from elsewhere.

The generator writes three things:

- ``texts``: a few thousand unannotated reviews and visit notes, for pretraining;
- ``demos``: prompt/response demonstrations for supervised finetuning, with a
  mix of positive, negative and mixed reviews (``corpus.demo_sentiment``), so
  the bootstrapped policy writes all three;
- ``prompts``: the prompts a cycle samples from, none of which is the prompt
  of a demonstration.

What a user of this assistant wants (the hidden truth in ``truth.py`` beside this file) is
a fluent, on-topic review that is warm about the dish. The demonstrations are
only partly like that, so RL from preferences has room to improve the policy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DISHES = [
    "ramen", "pasta", "soup", "curry", "pizza", "burger", "salad", "tacos", "dumplings",
    "risotto", "steak", "pancakes", "noodles", "sandwich", "omelette", "lasagna", "chowder",
    "pie", "stew", "bread", "cake", "coffee", "tea", "fish", "chicken", "waffles", "falafel",
    "paella", "sushi", "brownie",
]
PLACE_FIRST = [
    "Blue", "Golden", "Little", "Old", "Red", "Silver", "Green", "Quiet", "Lucky", "Corner",
    "Sunny", "Copper", "Velvet", "Harbor", "Maple",
]
PLACE_SECOND = [
    "Lantern", "Fork", "Door", "Kettle", "Table", "Garden", "Spoon", "Oven", "Bridge", "Window",
    "Anchor", "Barrel", "Leaf", "Market", "Mill",
]
ASPECTS = ["service", "portion", "price", "music", "room", "wait", "staff", "view"]

POS_ADJ = ["delicious", "wonderful", "excellent", "tasty", "lovely", "fresh", "perfect",
           "superb", "great", "amazing", "flavorful", "comforting"]
NEG_ADJ = ["bland", "cold", "stale", "awful", "soggy", "greasy", "terrible", "dull",
           "disappointing", "dry", "burnt", "tasteless"]
MID_ADJ = ["fine", "okay", "average", "decent", "ordinary", "plain"]
POS_ASPECT = {"service": ["quick", "friendly", "attentive"], "portion": ["generous", "large"],
              "price": ["fair", "reasonable"], "music": ["relaxing", "pleasant"],
              "room": ["cozy", "bright"], "wait": ["short"], "staff": ["kind", "helpful"],
              "view": ["beautiful", "pleasant"]}
NEG_ASPECT = {"service": ["slow", "rude", "careless"], "portion": ["tiny", "small"],
              "price": ["steep", "unfair"], "music": ["loud", "harsh"],
              "room": ["cramped", "noisy"], "wait": ["long"], "staff": ["rude", "unhelpful"],
              "view": ["gloomy", "dull"]}
POS_INTENS = ["really", "very", "truly"]
POS_CLOSERS = ["I would come back again.", "I would order it again.", "I will tell my friends.",
               "Overall, a lovely meal.", "Overall, it was a great visit.", "Highly recommended."]
NEG_CLOSERS = ["I would not come back.", "I would not order it again.", "I will skip it next time.",
               "Overall, a poor meal.", "Overall, it was a bad visit.", "Not recommended."]
MID_CLOSERS = ["It was an ordinary visit.", "Maybe I will try something else next time.",
               "Overall, it was fine."]
DAYS = ["Monday", "Tuesday", "Friday", "Saturday", "Sunday"]
COMPANIONS = ["my sister", "a friend", "my parents", "two colleagues", "my partner"]

PROMPT_TEMPLATES = [
    "Write a review of the {dish} at {place}.",
    "Review the {dish} at {place}.",
    "How was the {dish} at {place}?",
    "Tell me about the {dish} at {place}.",
]


PLURAL = {"tacos", "dumplings", "pancakes", "noodles", "waffles"}


def _was(dish: str) -> str:
    return "were" if dish in PLURAL else "was"


def places() -> list[str]:
    return [f"{a} {b}" for a in PLACE_FIRST for b in PLACE_SECOND]


def _food_sentence(rng: random.Random, dish: str, tone: str) -> str:
    adj = rng.choice({"pos": POS_ADJ, "neg": NEG_ADJ, "mid": MID_ADJ}[tone])
    form = rng.randrange(4)
    if form == 0:
        return f"The {dish} {_was(dish)} {adj}."
    if form == 1 and tone == "pos":
        return f"The {dish} {_was(dish)} {rng.choice(POS_INTENS)} {adj}."
    if form == 2:
        return f"I thought the {dish} {_was(dish)} {adj}."
    if tone == "neg":
        return f"Sadly, the {dish} {_was(dish)} {adj}."
    return f"The {dish} tasted {adj}."


def _aspect_sentence(rng: random.Random, tone: str) -> str:
    aspect = rng.choice(ASPECTS)
    verb = "were" if aspect == "staff" else "was"
    if tone == "mid":  # mixed: one good and one bad aspect
        a2 = rng.choice([a for a in ASPECTS if a != aspect])
        v2 = "were" if a2 == "staff" else "was"
        return (f"The {aspect} {verb} {rng.choice(POS_ASPECT[aspect])}, "
                f"but the {a2} {v2} {rng.choice(NEG_ASPECT[a2])}.")
    words = POS_ASPECT if tone == "pos" else NEG_ASPECT
    return f"The {aspect} {verb} {rng.choice(words[aspect])}."


def review(rng: random.Random, dish: str, tone: str) -> str:
    """One review of ``dish`` in ``tone`` (pos, neg or mid): two to four sentences."""
    sents = [_food_sentence(rng, dish, tone)]
    if rng.random() < 0.7:
        sents.append(_aspect_sentence(rng, tone))
    if rng.random() < 0.3:
        sents.append(_aspect_sentence(rng, tone if tone != "mid" else rng.choice(["pos", "neg"])))
    closers = {"pos": POS_CLOSERS, "neg": NEG_CLOSERS, "mid": MID_CLOSERS}[tone]
    sents.append(rng.choice(closers))
    return " ".join(sents)


def visit_note(rng: random.Random, dish: str, place: str) -> str:
    """A neutral sentence or two about a visit (pretraining variety, no verdict)."""
    day, who = rng.choice(DAYS), rng.choice(COMPANIONS)
    form = rng.randrange(3)
    if form == 0:
        return f"I went to {place} on {day} with {who}. We ordered the {dish}."
    if form == 1:
        return f"On {day}, {who} and I had the {dish} at {place}."
    return f"We sat near the window at {place} and ordered the {dish}."


def prompt_text(rng: random.Random, dish: str, place: str) -> str:
    return rng.choice(PROMPT_TEMPLATES).format(dish=dish, place=place)


@dataclass
class Corpus:
    texts: list[dict]
    demos: list[dict]
    prompts: list[dict]


def build_corpus(seed: int, n_texts: int, n_demos: int, n_prompts: int,
                 demo_sentiment: tuple[float, float, float] = (0.4, 0.4, 0.2)) -> Corpus:
    """Write the whole bundled corpus, deterministically from ``seed``.

    Demonstration prompts and cycle prompts are drawn from disjoint
    (dish, place) pairs, so no cycle prompt, held-out ones included, is ever
    seen verbatim during bootstrap.
    """
    rng = random.Random(seed)
    combos = [(d, p) for d in DISHES for p in places()]
    rng.shuffle(combos)
    n_cycle = min(n_prompts, len(combos) // 3)
    cycle_combos, demo_combos = combos[:n_cycle], combos[n_cycle:]

    texts = []
    for i in range(n_texts):
        dish, place = rng.choice(combos)
        if rng.random() < 0.25:
            text = visit_note(rng, dish, place)
        else:
            text = review(rng, dish, rng.choice(["pos", "neg", "mid"]))
        texts.append({"id": f"t{i:05d}", "text": text})

    tones = rng.choices(["pos", "neg", "mid"], weights=demo_sentiment, k=n_demos)
    demos = []
    for i, tone in enumerate(tones):
        dish, place = rng.choice(demo_combos)
        demos.append({"id": f"d{i:05d}", "prompt": prompt_text(rng, dish, place),
                      "response": review(rng, dish, tone), "tone": tone})

    prompts = []
    for i in range(n_prompts):
        dish, place = cycle_combos[i % len(cycle_combos)]
        prompts.append({"id": f"p{i:05d}", "prompt": prompt_text(rng, dish, place), "source": "bundled"})
    return Corpus(texts=texts, demos=demos, prompts=prompts)


def dish_of(prompt: str) -> str | None:
    """The dish a bundled prompt asks about (None for prompts outside the grammar)."""
    words = prompt.lower().replace("?", " ").replace(".", " ").split()
    for i, w in enumerate(words[:-1]):
        if w == "the" and words[i + 1] in DISHES:
            return words[i + 1]
    return None


def heldout_texts(seed: int, n: int) -> list[dict]:
    """Reviews and visit notes that pretraining never read, on a random stream of their own (the corpus's is left
    as it was): the demo's perplexity regression suite (``evaluate.regression.fluency``)."""
    rng = random.Random(f"heldout-texts-{seed}")
    combos = [(d, p) for d in DISHES for p in places()]
    out = []
    for i in range(n):
        dish, place = rng.choice(combos)
        text = visit_note(rng, dish, place) if rng.random() < 0.25 else review(rng, dish,
                                                                              rng.choice(["pos", "neg", "mid"]))
        out.append({"id": f"h{i:05d}", "text": text})
    return out

