"""Per-sample statistics of a policy's generations, averaged: reward, KL, length, EOS rate."""

import datasets
import evaluate

_DESCRIPTION = "Means of per-sample reward-model score, KL to the reference, length in words and EOS."
_KWARGS = """
Args:
    rewards: list of float, reward-model score of each sample.
    kls: list of float, sum over the sample's tokens of log pi - log pi_ref.
    lengths: list of int, words in each sample.
    ended: list of int, 1 when the sample ended with EOS.
Returns:
    reward_mean, kl, mean_length, eos_rate
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class PolicyStats(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"rewards": datasets.Value("float32"), "kls": datasets.Value("float32"),
                                        "lengths": datasets.Value("int32"), "ended": datasets.Value("int32")}))

    def _compute(self, rewards, kls, lengths, ended):
        n = len(rewards)
        return {"reward_mean": sum(rewards) / n, "kl": sum(kls) / n, "mean_length": sum(lengths) / n,
                "eos_rate": sum(ended) / n}
