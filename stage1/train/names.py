"""The names of the training stages whose modules import torch at the top (``sft.py``, ``dpo.py``): one
definition each, which ``spec.py`` declares without importing torch and the stage modules write into
their manifests and step plans. (``merge.py`` is light: it holds its own name.)"""

from __future__ import annotations

from stage1.io.layout import DPO as DPO_ARM

SFT = "sft"
#: DPO after SFT: the name of its arm (``io.layout.DPO``); ``dpo_only`` and the source arms are named there too.
DPO = DPO_ARM.name
