"""Gymnasium spaces for free text.

``gymnasium.spaces.Text`` only *contains* strings whose every character is in its
charset, and its default charset has no spaces, brackets or newlines, so a real
model's reply ("```json\\n[{...}]```") would be outside the action space. A
full-Unicode charset would fix ``contains`` but costs about 0.5 GB and pickles
to ~47 MB, which breaks vector environments. :class:`AnyText` keeps ``Text``'s
small charset for *sampling* (so ``check_env`` and random agents still work)
and accepts any ``str`` of allowed length.
"""

from __future__ import annotations

from typing import Any

from gymnasium import spaces


class AnyText(spaces.Text):
    """A ``Text`` space that contains every ``str`` whose length is within bounds.

    Example:
        >>> space = AnyText(max_length=64)
        >>> space.contains('```json\\n[{"bbox_2d": [1, 2, 3, 4]}]\\n```')
        True
        >>> space.contains(b"bytes are not text")
        False
    """

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"AnyText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, AnyText) and self.min_length == other.min_length and self.max_length == other.max_length
