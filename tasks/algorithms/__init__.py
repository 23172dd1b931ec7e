"""Policy optimizers. GRPO and DPO run from ``tasks/optimize.py``; this package holds the parts of the
project's own PPO that exist so far: ``ppo_math``, the pure functions after "The N Implementation
Details of RLHF with PPO" (Huang et al.), each tested against values worked out by hand."""
