"""The free-form grounding task: a noisy checker in a named frame that only a tight crop reveals.

The cell version hid a saturated colour-pair checker at exactly the view's 4x
downsampling; any other factor let its resampling residue through, and every box was
one of four cells. This task is built against the leak sweep
(:mod:`emergence.leak_sweep`) instead:

* a 2240-pixel canvas shown at 224 (10x smaller; 308 pixels, 7.3x smaller, at the 128
  visual tokens the equal-token baseline spends on its one view). A 1568-pixel canvas
  was tried first: its 128-token view (5.1x smaller, close to an odd factor, where a
  checker's residue is largest) let the colour pair through to the sweep's reader;
* one target of 256 or 288 pixels (26 or 29 view pixels) anywhere on the canvas, in a
  56-pixel frame of a named colour (``FRAME_COLOURS``) that the question names ("inside
  the small red frame"); the clutter is muted, so the frame is the only saturated
  object. A frame this thick looks like the solid shapes that grounding pretraining
  boxes, and the question then gets the same boxes as a grounding question (probes,
  twelfth round: IoU 0.037 with a 20-pixel frame, 0.25 with a 56-pixel one);
* inside it, a checker of 2-pixel squares whose colours sit 18 levels either side of
  gray 128 along one of four colour directions, under uniform noise of +-95 levels on
  every pixel and channel. A crop of up to about 2x the target's side (shown at most
  2.6x smaller) keeps the checker's period above two shown pixels; by 2.5x it blurs into
  gray, and the residue that resampling leaves at larger factors is buried in the
  noise. The 1-pixel checker of the previous settings (amplitude 32) was read only up to
  1.25-1.4x, a window of 3-6 view pixels around the target that sampled boxes rarely
  met (probes, thirteenth round);
* two question types: which colour pair makes up the checker, and which half of the
  frame holds it (the other half is plain noisy gray of the same mean), with options
  shuffled.
"""

from __future__ import annotations

from typing import Any

from mgpo_datasets.synthetic import FRAME_COLOURS

FREEFORM_TASK: dict[str, Any] = dict(
    canvas_size=2240,
    target_sizes=(256, 288),
    grid=4,
    frame_width=56,
    frame_colours=tuple(FRAME_COLOURS),
    candidates=1,
    checker_square=2,
    pattern_amplitude=18,
    pattern_noise=95,
    clutter=30,
    question_types=["colour", "checker_half"],
    shuffle_choices=True,
)
