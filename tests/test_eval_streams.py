"""Evaluation samples the candidate and the champion on independent random streams.

With the same seeds, sample j of each policy read the same random draws: two similar policies then wrote the
same text far more often than independent samples would (more ties), and the win-rate was biased.
"""

import pytest

from tasks.config import EvaluateConfig
from tasks.evaluate import ROLES, role_seed, rollout_pair

pytestmark = pytest.mark.filterwarnings("ignore")

PROMPTS = ["How do I bake bread?", "Tell me a joke.", "Which fruit is red?"]


def test_role_seeds_by_hand():
    # seed * 2 + the role's place in ROLES: the candidate's stream, then the champion's.
    assert ROLES == ("candidate", "champion")
    assert (role_seed(0, "candidate"), role_seed(0, "champion")) == (0, 1)
    assert (role_seed(1, "candidate"), role_seed(1, "champion")) == (2, 3)
    assert (role_seed(7, "candidate"), role_seed(7, "champion")) == (14, 15)
    # No two (seed, role) share a stream.
    assert len({role_seed(s, r) for s in range(-50, 50) for r in ROLES}) == 200
    with pytest.raises(ValueError, match="reference"):
        role_seed(1, "reference")


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    from tasks.policy import load_policy
    from tiny_models import tiny_policy

    return load_policy(tiny_policy(tmp_path_factory.mktemp("policy")))


def test_the_same_policy_as_candidate_and_champion_samples_different_texts(policy, monkeypatch):
    import tasks.rollout

    model, tok = policy
    cfg = EvaluateConfig(samples_per_prompt=2, max_new_tokens=8, batch_size=2, seed=1)
    seeds = []
    real = tasks.rollout.sample_batches

    def spy(*args, seed, **kwargs):
        seeds.append(seed)
        return real(*args, seed=seed, **kwargs)

    monkeypatch.setattr(tasks.rollout, "sample_batches", spy)
    cand, champ = rollout_pair(model, model, tok, PROMPTS, cfg, "cpu")
    assert seeds == [role_seed(1, "candidate"), role_seed(1, "champion")] == [2, 3]
    a = [t for r in cand for t in r.texts]
    b = [t for r in champ for t in r.texts]
    assert len(a) == len(b) == 6
    # One policy, two independent streams: token soup from 300 tokens never repeats a 8-token text by chance.
    # On shared streams every pair was the same text.
    assert sum(x == y for x, y in zip(a, b)) == 0
    # Reproducible: the same seed gives the same two streams again.
    again = rollout_pair(model, model, tok, PROMPTS, cfg, "cpu")
    assert [t for r in again[0] for t in r.texts] == a and [t for r in again[1] for t in r.texts] == b
