"""mgpo_env: a Gymnasium environment where vision-language models learn to look closely.

Importing the package registers ``mgpo/HighResVQA-v0``::

    import gymnasium as gym
    import mgpo_env  # noqa: F401  (registers the environment)

    env = gym.make("mgpo/HighResVQA-v0")

``gym.make("mgpo_env:mgpo/HighResVQA-v0")`` imports the package itself.
The box parser, the coordinate mapping and the grader are plain functions,
usable without an environment: see :mod:`mgpo_env.box_parser`,
:mod:`mgpo_env.geometry` and :mod:`mgpo_env.grading`. Datasets and tasks come
from :mod:`mgpo_datasets`; this package imports neither torch nor the trainer.
"""

from gymnasium.envs.registration import register, registry

from mgpo_datasets import DataError, Sample

from .box_parser import ParsedBox, format_box, parse_box, parse_boxes
from .geometry import BoxPolicy, iou, to_view_pixels, validate_box, view_to_original
from .grading import GradeResult, answer_reward, extract_answer_text, extract_boxed, grade
from .highres_vqa import EpisodeFinishedError, HighResVQAEnv, InvalidActionError
from .image_budget import ImageBudget, fit_size, resize_to_budget
from .cropping import crop_to_view
from .numeric_wrapper import NumericActionWrapper
from .templates import PromptTemplates
from .vector import make_vector_env

__version__ = "0.1.0"
ENV_ID = "mgpo/HighResVQA-v0"

if ENV_ID not in registry:
    # No max_episode_steps: an episode ends by itself after at most max_turns replies.
    register(id=ENV_ID, entry_point="mgpo_env.highres_vqa:HighResVQAEnv", disable_env_checker=False)

__all__ = [
    "ENV_ID",
    "BoxPolicy",
    "DataError",
    "EpisodeFinishedError",
    "GradeResult",
    "HighResVQAEnv",
    "ImageBudget",
    "InvalidActionError",
    "ParsedBox",
    "PromptTemplates",
    "Sample",
    "NumericActionWrapper",
    "answer_reward",
    "crop_to_view",
    "make_vector_env",
    "extract_answer_text",
    "extract_boxed",
    "fit_size",
    "format_box",
    "grade",
    "iou",
    "parse_box",
    "parse_boxes",
    "resize_to_budget",
    "to_view_pixels",
    "validate_box",
    "view_to_original",
]
