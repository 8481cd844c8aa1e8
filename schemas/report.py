"""The one shape of every stage's report.json, and the accounting check every stage must pass."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


class ReportMismatch(RuntimeError):
    """input != output + removed + quarantined: a record was lost or counted twice."""


@dataclass
class StageReport:
    stage: str
    input: int
    output: int
    removed: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> StageReport:
        accounted = self.output + sum(self.removed.values()) + sum(self.quarantined.values())
        if accounted != self.input:
            raise ReportMismatch(
                f"{self.stage}: {self.input} records in but {accounted} accounted for "
                f"(output {self.output}, removed {self.removed}, quarantined {self.quarantined})"
            )
        return self

    @classmethod
    def from_counts(cls, stage: str, counts: dict[tuple[str, str | None], int], kept: str, removed: str,
                    quarantined: str, **fields: Any) -> StageReport:
        """A report from record counts per (destination, reason), as a stage's groupBy gives them."""
        def reasons(dest: str) -> dict[str, int]:
            return dict(sorted((r, n) for (d, r), n in counts.items() if d == dest))
        return cls(stage=stage, input=sum(counts.values()), output=sum(n for (d, _), n in counts.items() if d == kept),
                   removed=reasons(removed), quarantined=reasons(quarantined), **fields)

    def to_json(self) -> str:
        data = asdict(self)
        data.update(data.pop("extra"))
        return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StageReport:
        data = json.loads(text)
        known = {k: data.pop(k) for k in ("stage", "input", "output", "removed", "quarantined", "seconds", "config")}
        return cls(**known, extra=data)
