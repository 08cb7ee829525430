"""Tools around the environment (the folder ``tools/``, imported as ``mgpo_tools``).

* :mod:`mgpo_tools.episode_record`: what one stored episode is, and its JSON form;
* :mod:`mgpo_tools.episode_store`: store finished episodes (JSON lines plus each image once);
* :mod:`mgpo_tools.recording`: records from a live environment, and the loop that plays
  and stores episodes;
* :mod:`mgpo_tools.metrics`: read a run's ``metrics.jsonl``;
* :mod:`mgpo_tools.report`: one self-contained HTML page of a run's curves and episodes;
* :mod:`mgpo_tools.demo` and :mod:`mgpo_tools.scripted_policies`: play episodes with
  scripted policies and save rendered pictures.

None of them needs torch; the trainer (:mod:`mgpo_agents`) uses the episode store.
"""
