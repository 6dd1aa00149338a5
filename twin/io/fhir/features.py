"""Which codes become features: :class:`FeatureSelection`.

The default keeps a code when at least ``min_share`` of the individuals have a value
for it; ``include`` codes are always kept, ``exclude`` codes never.  Codes match a
feature's code (``"33914-3"``) or its full name (``"33914-3[mL/min]"``), so a code in
``include``/``exclude`` covers every unit variant of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureSelection:
    """Rule choosing the features of one modality.

    Parameters
    ----------
    min_share
        Keep a feature observed (at least once) in at least this share of the
        individuals, in ``[0, 1]``; ``0`` keeps everything.
    include
        Codes or feature names always kept (if present in the data).
    exclude
        Codes or feature names never kept (wins over ``include``).
    max_levels
        Categorical features with more distinct values are dropped (free text).
    """

    min_share: float = 0.05
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    max_levels: int = 50

    def __post_init__(self) -> None:
        if not (0.0 <= self.min_share <= 1.0 or math.isinf(self.min_share)):
            raise ValueError(f"min_share must be within [0, 1], got {self.min_share}")
        if self.max_levels < 2:
            raise ValueError(f"max_levels must be at least 2, got {self.max_levels}")
        for name in ("include", "exclude"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise TypeError(f"{name} must be a list of codes, not the string {value!r}")
            if value is not None:
                object.__setattr__(self, name, tuple(str(v) for v in value))

    @classmethod
    def only(cls, codes: Iterable[str], max_levels: int = 50) -> FeatureSelection:
        """Keep exactly the given codes (whatever their share)."""
        return cls(min_share=math.inf, include=tuple(codes), max_levels=max_levels)

    def decide(
        self,
        shares: Mapping[str, float],
        codes: Mapping[str, str],
        n_levels: Mapping[str, int] | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        """Split features into kept names and ``{dropped name: reason}``.

        ``shares`` maps feature name -> share of individuals observed; ``codes`` maps
        feature name -> code; ``n_levels`` gives the level count of categorical ones.
        """
        include = set(self.include or ())
        exclude = set(self.exclude or ())
        kept, dropped = [], {}
        for name, share in shares.items():
            keys = {name, codes.get(name, name)}
            levels = (n_levels or {}).get(name, 0)
            if keys & exclude:
                dropped[name] = "excluded"
            elif levels > self.max_levels:
                dropped[name] = f"{levels} distinct values > max_levels={self.max_levels}"
            elif keys & include or share >= self.min_share:
                kept.append(name)
            else:
                dropped[name] = f"observed in {share:.1%} of individuals < {self.min_share:.1%}"
        return kept, dropped
