"""Why the SSL round does not rotate or flip cached embeddings by default (SSLConfig.geometric).

The backbone (LiteMedSAM's TinyViT) is not rotation-equivariant: the embedding of a turned
image is not the turned embedding of the image. Augmenting on the cached embedding grid
therefore shows the decoder features the encoder never produces. This script embeds one
256² tile and its rotated / flipped versions and prints the mean cosine similarity per token
between embed(T(image)) and T(embed(image)), against the identity (1.0) and against a
one-token shift of the same embedding (a feature map that is spatially wrong).

    OMP_NUM_THREADS=2 .venv/bin/python scripts/feature_equivariance_check.py ../shared/data/monuseg/images/X.png
"""
from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from skimage.io import imread

from promptseg.model.segmenter import ModelConfig, PromptSegModel
from promptseg.io.normalise import prepare_image


def token_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0).mean())


def main(path: str) -> None:
    torch.manual_seed(0)
    model = PromptSegModel(ModelConfig()).eval()
    img = prepare_image(imread(path))[:256, :256]
    with torch.no_grad():
        def embed(x: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float()
            return model.embed(t)[0].float()
        e = embed(img)
        print(f"embedding {tuple(e.shape)}; mean cosine per token, embed(T(image)) vs T(embed(image)):")
        print(f"  one-token shift of the same embedding (reference): {token_cosine(e[:, :, 1:], e[:, :, :-1]):.3f}")
        for name, img_t, emb_t in [
            ("rot90", np.rot90(img, 1, axes=(0, 1)), torch.rot90(e, 1, dims=(-2, -1))),
            ("rot180", np.rot90(img, 2, axes=(0, 1)), torch.rot90(e, 2, dims=(-2, -1))),
            ("flip left-right", img[:, ::-1], torch.flip(e, dims=(-1,))),
        ]:
            print(f"  {name:16s} {token_cosine(embed(img_t), emb_t):.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
