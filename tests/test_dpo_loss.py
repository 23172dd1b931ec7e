"""The DPO family's loss settings: cDPO really trains cDPO through TRL, and a label_smoothing no loss reads
is refused."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from tasks.config import parse_params
from tasks.errors import ConfigError


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_cdpo_weights_by_hand():
    from tasks.algorithms.dpo import cdpo_weights, dpo_loss_kwargs

    # eps 0.1: a = 2 - 0.2 = 1.8, b = -(1 - 0.2) = -0.8
    a, b = cdpo_weights(0.1)
    assert a == pytest.approx(1.8) and b == pytest.approx(-0.8)
    # at x = beta * margin = 2: log s(2) = -0.126928, log s(-2) = -2.126928
    #   sigmoid = 0.126928; robust = (0.9 * 0.126928 - 0.1 * 2.126928) / 0.8 = -0.123072
    #   1.8 * 0.126928 + 0.8 * 0.123072 = 0.326928 = 0.9 * 0.126928 + 0.1 * 2.126928 (cDPO) = 0.126928 + 0.1 * 2
    sigmoid, robust = -log_sigmoid(2.0), (-0.9 * log_sigmoid(2.0) + 0.1 * log_sigmoid(-2.0)) / 0.8
    assert a * sigmoid + b * robust == pytest.approx(0.326928, abs=1e-6)
    # no smoothing, or a loss that reads it itself: passed through as it is
    assert dpo_loss_kwargs("sigmoid", 0.0) == {"loss_type": ["sigmoid"], "label_smoothing": 0.0}
    assert dpo_loss_kwargs("robust", 0.2) == {"loss_type": ["robust"], "label_smoothing": 0.2}


def _trainer(tmp_path, policy, ref, tok, loss_type: str, eps: float):
    from datasets import Dataset
    from trl import DPOTrainer

    from tasks.algorithms.dpo import Config, dpo_args

    cfg = Config(beta=0.5, batch_size=1, loss_type=loss_type, label_smoothing=eps)
    run = SimpleNamespace(cfg=cfg, common=SimpleNamespace(checkpoint_every=0, seed=0), policy=policy, precision=None,
                          checkpoint_dir=tmp_path / f"{loss_type}-{eps}")
    rows = [{"prompt": "How do I bake bread?", "chosen": " Mix flour, water and yeast, then bake it.",
             "rejected": " Why did the chicken cross the road?"}]
    return DPOTrainer(model=policy, ref_model=ref, args=dpo_args(run, cfg, num_train_epochs=1.0),
                      train_dataset=Dataset.from_list(rows), processing_class=tok)


def _loss_and_margin(trainer) -> tuple[float, float]:
    """TRL's loss on its one-pair batch, and beta * margin as TRL logged it for that batch."""
    import torch

    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, batch))
    return loss, trainer._metrics["train"]["rewards/margins"][-1]


def test_sigmoid_with_label_smoothing_trains_cdpo_in_trl(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tiny_models import tiny_policy

    path = tiny_policy(tmp_path / "policy")
    tok = AutoTokenizer.from_pretrained(path)
    policy, ref = AutoModelForCausalLM.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    torch.manual_seed(1)
    with torch.no_grad():        # the policy moved away from the reference, so the margin is not 0
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))

    plain, m = _loss_and_margin(_trainer(tmp_path, policy, ref, tok, "sigmoid", 0.0))
    assert abs(m) > 0.01
    assert plain == pytest.approx(-log_sigmoid(m), abs=1e-5)            # DPO: -log s(x), x = beta * margin
    eps = 0.1
    cdpo, m2 = _loss_and_margin(_trainer(tmp_path, policy, ref, tok, "sigmoid", eps))
    assert m2 == pytest.approx(m, abs=1e-6)
    # cDPO: -(1 - eps) log s(x) - eps log s(-x); as log s(-x) = log s(x) - x, that is DPO's loss plus eps * x
    assert cdpo == pytest.approx(-(1 - eps) * log_sigmoid(m) - eps * log_sigmoid(-m), abs=1e-5)
    assert cdpo - plain == pytest.approx(eps * m, abs=1e-5)


@pytest.mark.parametrize("algorithm", ["dpo", "online_dpo", "constitutional"])
@pytest.mark.parametrize("loss_type", ["ipo", "hinge"])
def test_label_smoothing_that_the_loss_ignores_is_refused(algorithm, loss_type):
    def raw(loss: str) -> dict:
        return {"optimize": {"algorithm": algorithm, algorithm: {"loss_type": loss, "label_smoothing": 0.1}}}

    with pytest.raises(ConfigError, match=rf"optimize\.{algorithm}\.label_smoothing: 0\.1 is read only by loss_type "
                                          rf"sigmoid \(cDPO\) and robust; {loss_type} would ignore it"):
        parse_params(raw(loss_type))
    # the losses that read it accept it
    for ok in ("sigmoid", "robust"):
        parse_params(raw(ok))
