"""Run as ``python -m tests.unit.checkpoint.memory_probe HF_DIR OUTPUT``: imports HF_DIR to OUTPUT,
then loads OUTPUT, in a fresh process, and prints how far each step raised the resident-memory
peak above where it started (bytes, JSON).

The peak is the kernel's ``VmHWM``, reset before each step through ``/proc/self/clear_refs``; a
fresh process keeps memory freed by earlier work from being reused and hiding an allocation.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def peak_growth(step: Callable[[], object]) -> int:
    """Bytes by which running ``step`` raised the resident peak above the resident size before."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # peak := current resident size
    before = _status("VmRSS")
    result = step()
    growth = _status("VmHWM") - before
    del result
    return growth


def load_and_touch(path: str) -> object:
    """Loads and reads every weight, so that weights mapped from the file count as resident."""
    import torch

    import optica.checkpoint as checkpoint

    model = checkpoint.load(path)
    with torch.no_grad():
        for param in model.parameters():
            param.sum()
    return model


def main(hf_dir: str, output: str) -> None:
    import optica.checkpoint as checkpoint
    from optica.models import LlamaConfigTiny, LlamaModel

    # NOTE: the first model built on the meta device makes torch import dynamo (~80 MB of
    # modules, once per process); build one first so that is not counted against the weights.
    LlamaModel(LlamaConfigTiny())
    imported = peak_growth(lambda: checkpoint.import_ckpt("llama", hf_dir, output_path=output))
    loaded = peak_growth(lambda: load_and_touch(output))
    print(json.dumps({"import": imported, "load": loaded}))


if __name__ == "__main__":
    main(*sys.argv[1:])
