"""Write fresh held-out sets for one-click rules, in the format of `promptseg bench prompts --data`.

A rule tuned on the dev set and first read on the cerebellar check (`--make-cerebellar-check`)
needs data neither has seen. Three folders under OUT:
- ``cereb``: every cerebellar structure on Colin27 slices at other positions (0.05 + 0.04 k of
  each plane's labelled extent, away from the dev set's slices; the check's are 0.06 + 0.04 k);
- ``brain``: every fifth other AAL structure on the same slices (what a rule costs elsewhere);
- ``nuclei``: 10 stardist instances per image and 5 per MoNuSeg ``val`` image, seed 7 (the dev set
  uses seed 0, the stardist-40 check seed 1).

    python scripts/make_fresh_click_sets.py OUT [--monuseg DIR]   (default: $PROMPTSEG_DATA/monuseg)
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from promptseg.bench import prompt_data as pd

FIRST, SEED = 0.05, 7


def brain_part(group: str, every: int):
    for name, img, targets in pd.brain_targets(pd.MRICRON, pd.check_slices(FIRST), min_area=40):
        yield name, img, [t for t in targets if t[2]["group"] == group][::every]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--monuseg", default=str(Path(os.environ.get("PROMPTSEG_DATA", "data")) / "monuseg"))
    a = ap.parse_args()
    nuclei = [pd._instance_targets(pd._stardist_images(), "stardist-nuclei", 10, 20, SEED)]
    if (Path(a.monuseg) / "captions.csv").is_file():
        nuclei.append(pd._instance_targets(pd._monuseg_images(Path(a.monuseg), None), "monuseg-nuclei", 5, 30, SEED))
    for sub, sources in (("cereb", [brain_part("brain-cerebellar", 1)]), ("brain", [brain_part("brain", 5)]),
                         ("nuclei", nuclei)):
        folder = Path(a.out) / sub
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        print(pd._write_targets(folder, sources))


if __name__ == "__main__":
    main()
