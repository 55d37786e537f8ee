"""CPython's cyclic garbage collector tuned for a long-running service; its defaults suit short scripts.

With the defaults, the collector took about 16 % of routing's CPU in the routing hop alone (docs/benchmarks.md,
"The garbage collector"): most of it full collections of about 90 ms each, every one walking all the objects
the imports and the start made (faust, aiokafka, pydantic, FastAPI, OpenTelemetry), which live as long as the
process does. Two changes:

- once the server has started, `gc.freeze()` moves every object alive at that moment into the permanent
  generation, which the collector does not walk. Those objects are still freed by reference counting; only a
  reference cycle among them is never collected, and they were made to last as long as the process;
- the youngest generation is collected after 10,000 allocations instead of 700, so most of a record's
  temporaries are freed by reference counting before any collection has to look at them.
"""

from __future__ import annotations

import gc

YOUNGEST_THRESHOLD = 10_000  # CPython's default is 700


def collect_young_less_often() -> None:
    """Raise the youngest generation's threshold; the older generations keep theirs."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_THRESHOLD, middle, oldest)


def freeze_startup_objects() -> int:
    """Collect what the start left as garbage, then move every object still alive out of the collector's walks.

    Returns how many objects are frozen now.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
