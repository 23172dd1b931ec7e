"""The console's training progress: one named line of key figures, not TRL's every-step dict."""

from tasks.progress import progress_line


def test_progress_line_names_the_phase_and_shows_the_key_figures_in_order():
    logs = {"grad_norm": 1.35312, "loss": -0.050331, "kl": 0.16654, "reward": 2.4531, "epoch": 0.56,
            "completions/mean_length": 14.09, "step_time": "0.77"}
    # SHOWN's order (loss, reward, kl, ..., grad_norm), 4 significant digits; epoch, lengths and strings left out
    assert progress_line("optimize grpo", 10, 60, logs) == \
        "optimize grpo step 10/60: loss=-0.05033 reward=2.453 kl=0.1665 grad_norm=1.353"
    assert progress_line("train_reward", 5, 42, {}) == "train_reward step 5/42:"
