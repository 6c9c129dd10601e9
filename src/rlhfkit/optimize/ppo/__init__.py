"""PPO: one clipped-surrogate loss and GAE (``loss.py``), a trainer over gymnasium
environments (``env_trainer.py``) and a trainer over language-model tokens (``lm_trainer.py``)."""
