"""The bundled corpus generator."""

from tasks.envs.reviews import corpus
from tasks.text import normalize


def test_deterministic_and_sized():
    a = corpus.build_corpus(3, 200, 100, 50)
    b = corpus.build_corpus(3, 200, 100, 50)
    assert a == b
    assert (len(a.texts), len(a.demos), len(a.prompts)) == (200, 100, 50)
    assert corpus.build_corpus(4, 200, 100, 50) != a


def test_texts_are_varied():
    c = corpus.build_corpus(0, 3000, 10, 10)
    assert len({t["text"] for t in c.texts}) > 2000


def test_cycle_prompts_never_appear_as_demonstration_prompts():
    c = corpus.build_corpus(0, 10, 1500, 400)
    demo = {normalize(d["prompt"]) for d in c.demos}
    assert not demo & {normalize(p["prompt"]) for p in c.prompts}


def test_dish_of():
    assert corpus.dish_of("Write a review of the ramen at Blue Door.") == "ramen"
    assert corpus.dish_of("How was the tacos at Red Mill?") == "tacos"
    assert corpus.dish_of("Summarise this article.") is None
