"""The free-form grounding task: a noisy checker in a named frame that only a tight crop reveals.

The cell version hid a saturated colour-pair checker at exactly the view's 4x
downsampling; any other factor let its resampling residue through, and every box was
one of four cells. This task is built against the leak sweep
(:mod:`emergence.leak_sweep`) instead:

* a 2240-pixel canvas; every image an episode shows, the view and each crop, costs at
  most ``IMAGE_TOKENS`` = 128 visual tokens, the paper's one budget for every image. The
  view is 308 pixels (7.3x smaller); a crop of up to 308 original pixels is shown at its
  own size, so a tight crop around the target is shown at about 1:1; the equal-token
  baseline's single view, at 256 tokens, is 448 pixels (5x smaller). At 64 tokens a crop
  (224 pixels) is shown at least 1.3x smaller, and the tiny VLM read the checker only in
  the tightest crops (probes, thirteenth round). A 1568-pixel canvas was tried first: its
  128-token view (5.1x smaller, close to an odd factor, where a checker's residue is
  largest) let the colour pair through to the sweep's reader;
* one target of 256 or 288 pixels (35 or 40 view pixels) anywhere on the canvas, in a
  56-pixel frame of a named colour (``FRAME_COLOURS``) that the question names ("inside
  the small red frame"); the clutter is muted, so the frame is the only saturated
  object. A frame this thick looks like the solid shapes that grounding pretraining
  boxes, and the question then gets the same boxes as a grounding question (probes,
  twelfth round: IoU 0.037 with a 20-pixel frame, 0.25 with a 56-pixel one);
* inside it, a checker of 2-pixel squares whose colours sit 14 levels either side of
  gray 128 along one of four colour directions, under uniform noise of +-95 levels on
  every pixel and channel. The pixel classifier of the leak sweep reads it at 0.9 or
  better up to 1.8x the target's side (colour up to 2.5x); from 4x, and in the views at
  128 and 256 tokens, the residue that resampling leaves is buried in the noise.
  Amplitude 18 let colour through at the 192- and 256-token views, 14 does not (probes,
  thirteenth round). The 1-pixel checker of earlier settings was read only up to
  1.25-1.4x, a window of 3-6 view pixels around the target that sampled boxes rarely met;
* two question types: which colour pair makes up the checker, and which half of the
  frame holds it (the other half is plain noisy gray of the same mean), with options
  shuffled.
"""

from __future__ import annotations

from typing import Any

from mgpo_agents.config import FREEFORM_TASK as LIBRARY_FREEFORM_TASK
from mgpo_env.image_budget import ImageBudget

IMAGE_TOKENS = 128
"""Visual tokens of every image the task shows the model: the view and each crop."""

EQUAL_TOKEN_VIEW_TOKENS = 2 * IMAGE_TOKENS
"""The single-turn baseline's one view: the tokens of an MGPO episode's view plus its crop."""


def image_budget(tokens: int = IMAGE_TOKENS) -> ImageBudget:
    """The pixel budget that shows an image at up to ``tokens`` visual tokens (28-pixel patches merged 2x2).

    >>> image_budget().view_size((2240, 2240)), image_budget(EQUAL_TOKEN_VIEW_TOKENS).view_size((2240, 2240))
    ((308, 308), (448, 448))
    """
    return ImageBudget(min_pixels=32 * 28 * 28, max_pixels=tokens * 28 * 28)


HIT_CAP = 1.8
"""A hit is a crop that holds the target and is at most this multiple of its side: the largest crop
the leak sweep's pixel classifier reads at 0.9 or better for every question type (checker_half's
1.8x; colour is read up to 2.5x). A test checks it against the committed sweep."""


FREEFORM_TASK: dict[str, Any] = LIBRARY_FREEFORM_TASK
"""The task's settings: they live in the library's ``freeform`` preset (``mgpo train --preset freeform``,
``make run``), so that the main job and this experiment cannot drift apart."""
