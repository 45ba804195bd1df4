"""The process's runtime: files written whole (``files``), fault injection for crash tests
(``faults``), one writer per run folder (``runlock``) and hardware facts (``hardware``).
Uses only ``deepres.errors``."""

from deepres.runtime.faults import fault_point, poison
from deepres.runtime.files import atomic_write, remove_stale_temporaries
from deepres.runtime.hardware import autocast_dtype, bf16_is_native, has_vnni
from deepres.runtime.runlock import RunLock

__all__ = [
    "RunLock",
    "atomic_write",
    "autocast_dtype",
    "bf16_is_native",
    "fault_point",
    "has_vnni",
    "poison",
    "remove_stale_temporaries",
]
