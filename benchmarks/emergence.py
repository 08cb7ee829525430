"""The paper's experiment in miniature (grounding emerging from a binary reward), one command.

    python benchmarks/emergence.py supervised   # the free-form base from random weights, base seeds 0 and 1
    python benchmarks/emergence.py              # every method x 3 RL seeds from the committed base
    python benchmarks/emergence.py --quick      # one RL seed, fewer steps (about 10 minutes)

``--help`` lists the parts and the superseded cell version's commands. The experiment lives in
``benchmarks/emergence/`` (imported as ``emergence``: this script's folder is first on
``sys.path``, and a package wins over a module of the same name there); it uses the installed
library like any user. Results go to ``outputs/emergence`` (``--output``); the committed
figures are in ``benchmarks/results/`` (the README's section on the miniature says which).
"""

from emergence.commands import main

if __name__ == "__main__":
    raise SystemExit(main())
