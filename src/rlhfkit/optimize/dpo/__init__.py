"""DPO and IPO: the direct preference losses (``loss.py``) and the trainer on preference records (``trainer.py``)."""
