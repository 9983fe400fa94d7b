"""Foundation weights committed with the kit (``reproductions/weights``): used only under their own fingerprint.

The tiny profiles' pretraining stages (the SAM2 box pretraining, the dense grounding) cost more than ``make
reproduce`` can spend; ``make pretrain-mini`` trains them and commits the result with the fingerprint of the data
and settings it was trained for, and a run takes the committed copy only when its own fingerprint is that one.
"""

from __future__ import annotations

from pathlib import Path

from sparrow.storage import read_json


def committed_if_matching(folder: Path, record: str, fingerprint: str, what: str) -> Path | None:
    """``folder`` when its JSON ``record`` file names ``fingerprint``; else None, saying why when it exists
    (``what`` names the weights in the message)."""
    if not (folder / record).is_file():
        return None
    recorded = read_json(folder / record).get("fingerprint")
    if recorded == fingerprint:
        print(f"{what}: using the committed pretrained weights {folder} (fingerprint {fingerprint})")
        return folder
    print(
        f"{what}: the committed weights {folder} were pretrained for fingerprint {recorded}, this run needs "
        f"{fingerprint} (other data, spec or settings); pretraining it here instead"
    )
    return None
