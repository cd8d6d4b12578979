"""What a preset is expected to give, with its evidence; and `paper`, the preset of the published recipe.

Every trainer has one preset per tier (`runtime.TIERS`, chosen with `runtime.pick`); SimCLR and Omniglot's
MAML and ProtoNet add `paper`: the recipe of the paper, for a learner with the GPU-days it costs. No
notebook runs it. Beside each preset the trainer states what it expects, and how that is known:

    EXPECTED["full"]      # Expected(result="...", evidence="unmeasured", source="no GPU run yet ...")
    print(EXPECTED["paper"])   # "kNN ... (cited: ...)"

    measured     run here: `source` names the machine and the date
    cited        published: `source` names the authors, the venue and the year
    unmeasured   nobody ran it: `source` says why, and `result` what to look for
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from course_lib.runtime import TIERS

PAPER = "paper"
PRESET_NAMES = TIERS + (PAPER,)
EVIDENCE = ("measured", "cited", "unmeasured")


@dataclass(frozen=True)
class Expected:
    """The result a preset is expected to give, and the evidence for it (one of EVIDENCE)."""

    result: str
    evidence: str
    source: str

    def __post_init__(self):
        if self.evidence not in EVIDENCE:
            raise ValueError(f"evidence must be one of {', '.join(EVIDENCE)}, got {self.evidence!r}.")
        if not self.source.strip():
            raise ValueError("an expectation needs its source: the machine and date, the paper, or why it is unmeasured.")

    def __str__(self) -> str:
        return f"{self.result} ({self.evidence}: {self.source})"


def expectations_table(presets: Mapping[str, object], expected: Mapping[str, Expected]) -> str:
    """A Markdown table of every preset's expectation, in the order of PRESET_NAMES."""
    missing = [name for name in presets if name not in expected]
    if missing:
        raise KeyError(f"no expectation stated for the presets {missing}.")
    rows = [f"| `{name}` | {expected[name].result} | {expected[name].evidence}: {expected[name].source} |"
            for name in PRESET_NAMES if name in presets]
    return "\n".join(["| preset | expected | evidence |", "|---|---|---|", *rows])


__all__ = ["PAPER", "PRESET_NAMES", "EVIDENCE", "Expected", "expectations_table"]
