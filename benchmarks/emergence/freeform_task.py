"""The free-form grounding task: a noisy fine checker that only a tight crop reveals.

The cell version hid a saturated colour-pair checker at exactly the view's 4x
downsampling; any other factor let its resampling residue through, and every box was
one of four cells. This task is built against the leak sweep
(:mod:`emergence.leak_sweep`) instead:

* a 2240-pixel canvas shown at 224 (10x smaller; 308 pixels, 7.3x smaller, at the 128
  visual tokens the equal-token baseline spends on its one view). A 1568-pixel canvas
  was tried first: its 128-token view (5.1x smaller, close to an odd factor, where a
  1-pixel checker's residue is largest) let the colour pair through to the sweep's
  reader (0.50 against chance 0.25);
* a black-framed target of 224 or 288 pixels (22 or 29 view pixels: plain to see as
  a gray square with a dark outline) anywhere on the canvas;
* inside it, a checker of 1-pixel squares whose colours sit 32 levels either side of
  gray 128 along one of four colour directions, under uniform noise of +-95 levels on
  every pixel and channel: the noise averages away no slower than the checker's
  resampling residue, so once a crop shrinks the target by about 3x or more the
  residue is buried, while a tight crop (at most ~1.25x the target's side, shown
  about 1:1) still shows the checker to a reader that pools many pixels;
* two question types: which colour pair makes up the checker, and which half of the
  frame holds it (the other half is plain noisy gray of the same mean), with options
  shuffled.
"""

from __future__ import annotations

from typing import Any

VIEW = 224
FREEFORM_TASK: dict[str, Any] = dict(
    canvas_size=2240,
    target_sizes=(224, 288),
    grid=4,
    checker_square=1,
    pattern_amplitude=32,
    pattern_noise=95,
    clutter=30,
    question_types=["colour", "checker_half"],
    shuffle_choices=True,
)
