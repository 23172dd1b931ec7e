"""Training progress on the console: a bar named by its stage and phase, and one line of key figures every
``log_every`` steps. TRL reports a dict of figures at every step; those go to MLflow only (the stages'
callbacks), not under the bar."""

from __future__ import annotations

# The figures a person watches, in this order, where the trainer reports them.
SHOWN = ("loss", "reward", "reward_std", "kl", "entropy", "rewards/accuracies", "rewards/margins", "accuracy",
         "mean_reward", "grad_norm")


def progress_line(label: str, step: int, max_steps: int, logs: dict) -> str:
    """``optimize grpo step 10/60: loss=0.0123 reward=2.45``: the step and the ``SHOWN`` figures in ``logs``."""
    shown = [f"{k}={logs[k]:.4g}" for k in SHOWN if isinstance(logs.get(k), (int, float))]
    return " ".join([f"{label} step {step}/{max_steps}:", *shown])


def label_progress(trainer, label: str, every: int) -> None:
    """Swap the trainer's ``ProgressCallback`` (an unnamed bar, every step's dict printed under it) for one
    whose bar is named ``label`` and that prints ``progress_line`` every ``every`` steps and once at the end."""
    from tqdm.auto import tqdm
    from transformers.trainer_callback import ProgressCallback

    class LabelledProgress(ProgressCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True, desc=label)
            self.current_step = 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not (state.is_world_process_zero and self.training_bar is not None and logs):
                return
            if "train_runtime" in logs:        # the trainer's closing summary
                self.training_bar.write(f"{label}: {state.global_step} steps in {logs['train_runtime']:.1f} s, "
                                        f"mean loss {logs.get('train_loss', float('nan')):.4g}")
            elif state.global_step % every == 0:
                self.training_bar.write(progress_line(label, state.global_step, state.max_steps, logs))

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LabelledProgress())
