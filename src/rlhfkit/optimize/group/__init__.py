"""RLOO and GRPO: the group baselines and the clipped token-level loss (``loss.py``) and their
language-model trainer (``trainer.py``)."""
