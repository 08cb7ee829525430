"""The MGPO-vs-GRPO miniature (grounding emerging from a binary reward), one command.

    python benchmarks/emergence.py              # RL comparison from the committed warm-start, 3 seeds each
    python benchmarks/emergence.py --quick      # one seed each, fewer steps
    python benchmarks/emergence.py supervised   # rebuild the warm-start checkpoint

The experiment lives in ``benchmarks/emergence/`` (imported as ``emergence``: this
script's folder is first on ``sys.path``, and a package wins over a module of the same
name there); it uses the installed library like any user. Results go to
``outputs/emergence`` (``--output``), and ``benchmarks/results/emergence.md`` quotes
the committed run.
"""

from emergence.experiment import main

if __name__ == "__main__":
    raise SystemExit(main())
