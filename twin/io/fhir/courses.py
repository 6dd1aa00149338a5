"""Medication orders without an end date → courses that end.

A MedicationRequest rarely says when the drug was stopped: Synthea, like many EHR
exports, writes ``status: stopped`` and no end at all, and writes one request per
renewal (a statin renewed every year, a chemotherapy drug every cycle).  Read as they
stand, each order is an exposure that never ends, and renewals stack: the 48th cycle of
cisplatin would be an exposure of 48 doses at once, and a drug stopped years ago
would still act on every later observation.

:func:`close_medication_courses` applies the usual pharmaco-epidemiology reading,
to ``kind="medication"`` rows without an end only:

1. **Renewal.** An order followed by a later order of the same agent for the same
   individual ends where the next one starts: the renewal replaces it, so a chain of
   renewals is one continuous course (exposures never stack).
2. **Stopped, with a known supply.** A ``stopped`` or ``completed`` order with no later
   renewal whose request says how long its supply lasts
   (``dispenseRequest.expectedSupplyDuration`` × (1 + ``numberOfRepeatsAllowed``),
   column ``supply_days``) lasts that long: the record's own answer comes before the
   two assumptions below.
3. **Stopped, last of a chain.** A ``stopped`` or ``completed`` order with no later
   renewal lasts as long as the renewal interval before it (a yearly statin: one more
   year; a monthly cycle: one more month).
4. **Stopped, alone.** A ``stopped`` or ``completed`` order that was never renewed lasts
   ``assumed_days`` (default 30 days: one usual supply).
5. Anything else without an end (``active``, ``on-hold``, no status) stays open-ended:
   still taken when the record ends.

Each rule's count goes to the ingest report's notes (``end-from-renewal``,
``end-from-supply``, ``end-from-renewal-interval``, ``end-assumed``), so a user sees
how much of the exposure rests on an assumption.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["ENDED_STATUSES", "MAX_SUPPLY_DAYS", "close_medication_courses"]

#: Longer supplies are read as unknown (a typo, not a prescription): ten years.
MAX_SUPPLY_DAYS = 3660.0

#: Statuses of an order that is over (MedicationRequest / MedicationStatement).
ENDED_STATUSES = frozenset({"stopped", "completed"})


def close_medication_courses(
    table: pd.DataFrame, assumed_days: float = 30.0
) -> tuple[pd.DataFrame, dict[str, int]]:
    """End the open medication orders of an intervention table (module docstring).

    Parameters
    ----------
    table
        Interventions with ``individual``, ``agent``, ``kind``, ``start``, ``end``
        (datetimes; NaT: none given), ``status`` and optionally ``supply_days``.
    assumed_days
        Duration of a stopped order that was never renewed, in days (> 0).

    Returns
    -------
    (pandas.DataFrame, dict)
        The table with the ends filled (same index and row order) and the number of
        ends set by each rule.
    """
    if not (np.isfinite(assumed_days) and assumed_days > 0):
        raise ValueError(f"assumed_days must be a positive number of days, got {assumed_days!r}")
    out = table.copy()
    counts = {
        "end-from-renewal": 0,
        "end-from-supply": 0,
        "end-from-renewal-interval": 0,
        "end-assumed": 0,
    }
    med = out[(out["kind"] == "medication") & out["start"].notna()]
    if med.empty:
        return out, counts
    keys = ["individual", "agent", "start"]
    # the previous and next *distinct* start of the same agent (orders written at the
    # same time are concurrent, not renewals of each other)
    starts = med[keys].drop_duplicates().sort_values(keys, kind="stable")
    chain = starts.groupby(["individual", "agent"], sort=False)["start"]
    index = pd.MultiIndex.from_frame(starts)
    rows = pd.MultiIndex.from_frame(med[keys])

    def per_order(shift: int) -> pd.Series:
        """The distinct start ``shift`` places along each chain, for every order."""
        by_start = pd.Series(chain.shift(shift).to_numpy(), index=index)
        return pd.Series(by_start.reindex(rows).to_numpy(), index=med.index)

    next_start = per_order(-1)
    previous_gap = med["start"] - per_order(1)
    open_end = med["end"].isna()
    ended = med["status"].isin(ENDED_STATUSES)

    supply = med["supply_days"] if "supply_days" in med else pd.Series(np.nan, index=med.index)
    has_supply = supply.notna() & (supply > 0) & (supply <= MAX_SUPPLY_DAYS)

    renewed = open_end & next_start.notna()
    supplied = open_end & ended & next_start.isna() & has_supply
    last_of_chain = open_end & ended & next_start.isna() & ~has_supply & previous_gap.notna()
    alone = open_end & ended & next_start.isna() & ~has_supply & previous_gap.isna()

    end = med["end"].copy()
    end[renewed] = next_start[renewed]
    end[supplied] = med["start"][supplied] + pd.to_timedelta(supply[supplied], unit="D")
    end[last_of_chain] = med["start"][last_of_chain] + previous_gap[last_of_chain]
    end[alone] = med["start"][alone] + pd.Timedelta(days=float(assumed_days))
    out.loc[med.index, "end"] = end
    counts["end-from-renewal"] = int(renewed.sum())
    counts["end-from-supply"] = int(supplied.sum())
    counts["end-from-renewal-interval"] = int(last_of_chain.sum())
    counts["end-assumed"] = int(alone.sum())
    return out, counts
