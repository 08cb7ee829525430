"""Crop an original image where a model pointed: the environment's grounding step as pure functions.

:class:`~mgpo_env.highres_vqa.HighResVQAEnv` does this inside ``step``; other
trainers (a TRL tool, a custom rollout loop, an evaluation script) need the same
mapping without an environment. The chain is the one documented in
:mod:`mgpo_env.geometry`, with the same defaults as the environment::

    box (text or 4 numbers, in ``frame`` of the view)  --to_view_pixels-->  view pixels
        --validate_box (BoxPolicy)-->  --view_to_original-->  original pixels (rounded outwards)
        --crop the ORIGINAL-->  --resize to the pixel budget-->  the image the model is shown

``view_size`` is the size of the image the model saw when it wrote the box. Left
as ``None`` it is the budget's view of the whole original, which is what the
environment shows in its first turn, so a box the model wrote about that image
maps exactly as the environment would map it.

Example:
    >>> from PIL import Image
    >>> original = Image.new("RGB", (4000, 3000), "white")
    >>> budget = ImageBudget()
    >>> budget.view_size(original.size)  # what the model saw
    (1148, 840)
    >>> map_box_to_original((287, 210, 574, 420), view_size=(1148, 840), original_size=original.size)
    ((1000, 750, 2000, 1500), None)
    >>> crop = crop_to_view(original, "[287, 210, 574, 420]")
    >>> crop.size  # 1000x750 original pixels, fitted to the budget (sides multiples of 28)
    (1008, 756)
    >>> crop_to_view(original, [0.25, 0.25, 0.5, 0.5], frame="relative").size
    (1008, 756)
    >>> map_box_to_original((10, 10, 20, 20), view_size=(1148, 840), original_size=original.size)[1]
    'box is 10 x 10 view pixels; both sides must be longer than 28'
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

from PIL import Image

from .box_parser import parse_box
from .geometry import BoxPolicy, IntBox, Size, to_pixel_box, to_view_pixels, validate_box, view_to_original
from .image_budget import ImageBudget, resize_image

__all__ = ["InvalidBoxError", "map_box_to_original", "crop_to_view", "crop_original"]

BoxLike = Union[str, Sequence[float]]


class InvalidBoxError(ValueError):
    """The box is missing or breaks the :class:`~mgpo_env.geometry.BoxPolicy`; the message says why."""


def _coords(box: BoxLike) -> tuple[float, float, float, float]:
    if isinstance(box, str):
        parsed = parse_box(box)
        if parsed is None:
            raise InvalidBoxError("no box found in the text")
        return parsed.coords
    values = tuple(float(v) for v in box)
    if len(values) != 4:
        raise InvalidBoxError(f"a box needs 4 numbers (x1, y1, x2, y2), got {len(values)}")
    return values  # type: ignore[return-value]


def map_box_to_original(
    box: BoxLike,
    *,
    view_size: Size,
    original_size: Size,
    frame: str = "pixel",
    policy: BoxPolicy = BoxPolicy(),
) -> tuple[Optional[IntBox], Optional[str]]:
    """Map a box given in ``frame`` of a view of ``view_size`` to whole original pixels.

    Returns ``(box, None)`` for an accepted box, ``(None, reason)`` otherwise: the
    same rules and the same outward rounding as the environment's grounding step.

    Example:
        >>> map_box_to_original((0.5, 0.5, 1.0, 1.0), view_size=(100, 100), original_size=(1000, 800), frame="relative")
        ((500, 400, 1000, 800), None)
    """
    try:
        coords = _coords(box)
    except InvalidBoxError as error:
        return None, str(error)
    view_box = to_view_pixels(coords, frame, view_size)
    accepted, error = validate_box(view_box, view_size, policy)
    if accepted is None:
        return None, error
    crop_box = to_pixel_box(view_to_original(accepted, view_size, original_size), original_size)
    if crop_box[2] <= crop_box[0] or crop_box[3] <= crop_box[1]:
        return None, "box maps to an empty region of the original"
    return crop_box, None


def crop_original(original: Image.Image, crop_box: Sequence[int], budget: ImageBudget = ImageBudget()) -> Image.Image:
    """Cut ``crop_box`` (original pixels) out of ``original`` and fit it to ``budget``.

    Shrinking uses area averaging and enlarging bicubic (see
    :func:`mgpo_env.image_budget.resize_image`), as the environment does.

    Example:
        >>> crop_original(Image.new("RGB", (1000, 1000)), (0, 0, 100, 100)).size  # enlarged to min_pixels
        (448, 448)
    """
    box = tuple(int(v) for v in crop_box)
    crop = original if box == (0, 0, original.width, original.height) else original.crop(box)
    return resize_image(crop, budget.view_size(crop.size))


def crop_to_view(
    image: Image.Image,
    box: BoxLike,
    frame: str = "pixel",
    view_size: Optional[Size] = None,
    budget: ImageBudget = ImageBudget(),
    policy: BoxPolicy = BoxPolicy(),
) -> Image.Image:
    """The image the model is shown after naming ``box``: the original cropped there, fitted to ``budget``.

    Args:
        image: the full-resolution original.
        box: the model's reply (parsed with :func:`~mgpo_env.box_parser.parse_box`) or 4 numbers.
        frame: ``"pixel"`` (of the view), ``"norm1000"`` or ``"relative"``.
        view_size: ``(width, height)`` of the image the model saw; ``None`` means
            ``budget.view_size(image.size)`` (the environment's first view).
        budget: the pixel budget of the crop (and of the default view).
        policy: which boxes are accepted.

    Raises:
        InvalidBoxError: no box in the text, or the box breaks ``policy``; the
            message is the reason the environment would report.
    """
    size = tuple(view_size) if view_size is not None else budget.view_size(image.size)
    crop_box, error = map_box_to_original(box, view_size=size, original_size=image.size, frame=frame, policy=policy)  # type: ignore[arg-type]
    if crop_box is None:
        raise InvalidBoxError(error)
    return crop_original(image, crop_box, budget)
