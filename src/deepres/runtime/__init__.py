"""The process's runtime: files written whole (``files``), fault injection for crash tests
(``faults``), one writer per run folder (``runlock``), hardware facts (``hardware``), the
alternating-rounds timer (``timing``) and downloads into a hash-checked cache
(``download``). Uses only ``deepres.errors``."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "faults": ["fault_point", "poison"],
        "files": ["atomic_write", "remove_stale_temporaries"],
        "hardware": ["autocast_dtype", "bf16_is_native", "has_vnni"],
        "runlock": ["RunLock"],
    },
)
