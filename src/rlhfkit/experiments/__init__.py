"""Experiment harnesses behind the feedback-kinds tests and ``bench/feedback_kinds.py``, apart from the loop's steps.

- :mod:`~rlhfkit.experiments.pools`: pools of generations with a spread of true returns (Pendulum segments
  from a mix of policies, text-task completions written like its corpus);
- :mod:`~rlhfkit.experiments.kinds_eval`: asking a simulated human every kind of question about a pool and
  fitting the one reward fit on the answers, to compare kinds per human-minute.
"""
