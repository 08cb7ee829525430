"""The paper's experiment in miniature (not installed; run ``python benchmarks/emergence.py``).

* :mod:`emergence.experiment`: the stages, gates, RL comparison and results pages;
* :mod:`emergence.grounding_task`: generic "where is the red circle?" questions,
  registered as the ``"grounding"`` dataset when this package is imported;
* :mod:`emergence.position_code`: the image-processor variant the probes tried;
* :mod:`emergence.forced_replies`: an oracle first turn for diagnostics;
* :mod:`emergence.freeform_task`: the free-form grounding task (issue #23, in progress);
* :mod:`emergence.leak_sweep`: what crops of each size reveal of its hidden attribute;
* :mod:`emergence.reading_curriculum`: its reading stage, from a clean checker to the task's noise;
* :mod:`emergence.fixed_box_search`: the best fixed, image-independent box (a baseline).
"""

from mgpo_datasets import register_dataset

from .grounding_task import load_grounding

register_dataset("grounding", load_grounding, needs_path=False, overwrite=True)
