"""The schedule a simulated annotator follows: how many images are labelled when, and how long each round trains."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class AnnotatorSchedule:
    """Start with `initial` labelled images, then label `per_round` more in each of `rounds` rounds."""

    rounds: int
    per_round: int
    initial: int
    steps_first: int        # training steps of the first round (from scratch)
    steps_per_round: int    # training steps of every later round (continuing from the last weights)

    def steps(self, round_index: int) -> int:
        """Training steps of round `round_index` (0 is the first)."""
        return self.steps_first if round_index == 0 else self.steps_per_round

    def overridden(self, **changes: int | None) -> "AnnotatorSchedule":
        """This schedule with the given fields replaced; a None value keeps the field as it is."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, int]:
        return asdict(self)
