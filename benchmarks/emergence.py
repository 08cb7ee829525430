"""The MGPO-vs-GRPO miniature (issue: grounding emerging from a binary reward), one command.

    python benchmarks/emergence.py              # RL comparison from the committed warm-start, 3 seeds each
    python benchmarks/emergence.py --quick      # one seed each, fewer steps
    python benchmarks/emergence.py --from-scratch   # also retrain the supervised stages

Everything is in :mod:`mgpo_agents.emergence`; results go to ``outputs/emergence``
(``--output``), and ``benchmarks/results/emergence.md`` quotes the committed run.
"""

from mgpo_agents.emergence import main

if __name__ == "__main__":
    raise SystemExit(main())
