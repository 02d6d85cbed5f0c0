"""The Predictor facade: ``set_image`` once (cached embedding), then ``predict`` cheaply.

    p = Predictor.load(None, device="cpu")
    p.set_image(img)
    r = p.predict(["nucleus"])     # r.probs (K,H,W), r.labels (H,W), r.presence (K,)
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..fsutil import array_sha256
from ..io.limits import check_pixels
from ..io.normalise import spatial_shape
from ..io.tiling import TileGrid, blend_tiles
from ..model.checkpoint import load_checkpoint
from ..model.heads import merge_classes
from ..model.segmenter import ModelConfig, PromptSegModel, prompt_batch
from ..model.text import TextEncoder, parse_prompt, split_prompts
from .decode import decode_probs
from .embeddings import Cancel, EmbeddingCache, Progress, embed_tiles, image_tiles, quantise_tiles
from .more_like_this import ExemplarMatch, Exemplars, match_exemplars
from .vocabulary import class_knowledge

DEFAULT_CHECKPOINT = Path(__file__).parents[1] / "weights" / "default"


@dataclass
class Prediction:
    prompts: list[str]
    probs: np.ndarray      # (K, H, W) float32 in [0, 1]
    labels: np.ndarray     # (H, W) int32, 0 = background, k + 1 = prompts[k]
    presence: np.ndarray   # (K,) float32 in [0, 1]
    grounding: np.ndarray | None = None  # (K, H, W) text-similarity map, when asked for
    known: np.ndarray | None = None      # (K,) bool: the model or project knows the class; None: no vocabulary
    nearest: list[str | None] | None = None   # the closest known class per prompt
    nearest_similarity: np.ndarray | None = None  # (K,) its text-encoder cosine similarity


@dataclass
class _Embedded:
    emb: torch.Tensor      # (T, C, h, w)
    grid: TileGrid
    shape: tuple[int, int]
    sha: str
    pix: torch.Tensor | None = field(default=None, repr=False)   # grounding pixel features, lazily
    fine: torch.Tensor | None = field(default=None, repr=False)  # pixel-branch features (if the model has one)


def preload_modules(text: bool = True) -> None:
    """Import the model's modules (the encoder, the package's SAM modules, and with ``text`` the
    text encoder's transformers) so a GUI can pay for them on its main thread before starting
    worker threads. Without ``text``, transformers is imported by the first prompt that is not
    in the checkpoint's prompt cache."""
    from ..model import decoder  # noqa: F401
    from ..model.backbones import litemedsam  # noqa: F401
    from ..model.backbones.litemedsam_files import sam_modeling

    sam_modeling()

    if text:
        import transformers.models.bert  # noqa: F401


ENCODER_PRECISIONS = ("float32", "bfloat16", "float16", "float16-compiled")


def fast_precisions(device: str | None) -> tuple[str, str] | None:
    """(encoder, decoder) precision of the fast mode on ``device``: float16 CUDA graphs for the
    encoder on CUDA (the decoder is fast there already), bfloat16 for both on a CPU with native
    bfloat16; None where there is none (float32 only)."""
    from ..model.backbones.reduced_precision import bfloat16_supported

    device = resolve_device(device)
    if device.startswith("cuda"):
        return "float16", "float32"
    if device == "cpu" and bfloat16_supported():
        return "bfloat16", "bfloat16"
    return None


class Predictor:
    def __init__(self, model: PromptSegModel, *, device: str = "cpu", config: dict | None = None,
                 prompt_cache: dict | None = None, source: str | None = None, cache_size: int = 8,
                 encoder_precision: str = "float32", decoder_precision: str = "float32"):
        """``encoder_precision``: "float16" (CUDA only) runs the image encoder in float16 as CUDA
        graphs, "bfloat16" (CPUs with native bfloat16 only) as a bfloat16 copy, each faster than
        float32 (model/backbones/reduced_precision.py); "float16-compiled" (CUDA only) graphs the
        encoder as compiled by torch.compile, the fastest, after a compile on the first image.
        ``decoder_precision`` "bfloat16" (the same CPUs): the decoder's image-sized products in
        bfloat16, on a copy of the model. Masks stay close to float32's (docs/benchmarks.md,
        "Predictor latency" and "Encoder precision")."""
        self.device = resolve_device(device)
        if encoder_precision not in ENCODER_PRECISIONS:
            raise ValueError(f"encoder_precision must be one of {ENCODER_PRECISIONS}, got {encoder_precision!r}")
        if decoder_precision not in ("float32", "bfloat16"):
            raise ValueError(f"decoder_precision must be float32 or bfloat16, got {decoder_precision!r}")
        if decoder_precision == "bfloat16":
            from ..model.backbones.reduced_precision import bfloat16_supported

            if self.device != "cpu":
                raise ValueError("the bfloat16 decoder is for the CPU; on CUDA the decoder stays float32")
            if not bfloat16_supported():
                raise ValueError("this CPU has no native bfloat16 (AVX512-BF16 or AMX): the bfloat16 decoder "
                                 "would be slower than float32 here; use float32")
            model = copy.deepcopy(model)   # the caller's model stays float32
            model.decoder.dense_parts_to(torch.bfloat16)
        self.model = model.to(self.device).eval()
        self.encoder_precision = encoder_precision
        self.decoder_precision = decoder_precision
        self._encoder = None
        if encoder_precision != "float32":
            from ..model.backbones.reduced_precision import BFloat16Encoder, HalfGraphEncoder

            if encoder_precision.startswith("float16"):
                self._encoder = HalfGraphEncoder(self.model.backbone, self.device,
                                                 compiled=encoder_precision == "float16-compiled")
            else:
                self._encoder = BFloat16Encoder(self.model.backbone, self.device)
        self.config = config or {"model": model.cfg.to_dict()}
        self.text = TextEncoder(model.cfg.text_model, device="cpu", cache=prompt_cache)
        self.source = source
        self.model_hash = hashlib.sha256(json.dumps(
            [self.config.get("weights_sha256"), self.config.get("model"), source], sort_keys=True, default=str
        ).encode()).hexdigest()
        self._cache: OrderedDict[tuple[str, str], _Embedded] = OrderedDict()
        self._cache_size = cache_size
        self._current: _Embedded | None = None
        self._image: np.ndarray | None = None
        self.project_classes: set[str] = set()   # classes with accepted labels in the open project
        self._disk: EmbeddingCache | None = None
        self._spatial = None                      # inference/spatial.py, built on first use

    # -- construction ----------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu",
             encoder_precision: str = "float32", decoder_precision: str = "float32") -> "Predictor":
        """``None``: the default model (the shipped checkpoint if present, else the
        pretrained LiteMedSAM encoder + decoder with an untrained text projection)."""
        if path is None and (DEFAULT_CHECKPOINT / "config.json").exists():
            path = DEFAULT_CHECKPOINT
        if path is None:
            return cls(PromptSegModel(ModelConfig()), device=device, source="litemedsam-init",
                       encoder_precision=encoder_precision, decoder_precision=decoder_precision)
        model, cfg, cache = load_checkpoint(path, device="cpu")
        return cls(model, device=device, config=cfg, prompt_cache=cache, source=str(Path(path).resolve()),
                   encoder_precision=encoder_precision, decoder_precision=decoder_precision)

    @property
    def info(self) -> dict:
        cfg = self.model.cfg
        return {
            "backbone": cfg.backbone,
            "text_model": cfg.text_model,
            "pretrained": bool(getattr(self.model.backbone, "pretrained", False)),
            "weights_sha256": getattr(self.model.backbone, "weights_sha256", None),
            "checkpoint_sha256": self.config.get("weights_sha256"),
            "trained_text_projection": self.source not in (None, "litemedsam-init"),
            "classes": list(self.config.get("classes", [])),
            "version": self.config.get("version", self.model_hash[:12]),
            "device": self.device,
            "encoder_precision": self.encoder_precision,
            "decoder_precision": self.decoder_precision,
        }

    # -- image -------------------------------------------------------------------------
    @torch.no_grad()
    def set_image(self, image: np.ndarray, progress: Progress | None = None, cancel: Cancel | None = None) -> None:
        """Validate, normalise, tile and embed ``image`` (H×W or H×W×C). Cached by
        image hash + model hash, so returning to an image costs nothing. ``progress(done, total)``
        hears of each batch of tiles embedded; ``cancel()`` returning True stops with
        EmbeddingCancelled, the previous image staying set."""
        arr = np.asarray(image)
        shape = spatial_shape(arr)   # validates dtype and layout before hashing
        check_pixels(shape)          # before anything the size of the image is allocated
        key = (array_sha256(arr), self.model_hash)
        hit = self._cache.get(key)
        if hit is None:
            x = None
            if self._disk is not None:
                emb, grid = self._disk.get(arr, key[0], progress, cancel)
            else:
                # 8/16-bit images are scaled on the device; the embedding stays there
                x, grid = image_tiles(arr, self.model.tile, self.device)
                emb = embed_tiles(self.model, x, self.device, encoder=self._encoder, progress=progress, cancel=cancel)
            # channels-last: the decoder reads the embedding as (h*w, C) token rows without a copy
            emb = emb.to(self.device).contiguous(memory_format=torch.channels_last)
            hit = _Embedded(emb, grid, shape, key[0])
            if self.model.pixel_branch is not None:   # image work, like the embedding: once per image
                if x is None:
                    x, _ = image_tiles(arr, self.model.tile, self.device)
                # float16: 32 full-resolution channels would otherwise double a cached image's memory
                hit.fine = self.model.fine_features(quantise_tiles(x)).half()
            self._cache[key] = hit
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        self._current = hit
        self._image = arr   # its pixels: colour features of "more like this", box/click views

    def use_embedding_cache(self, folder: str | Path) -> None:
        """Also keep embeddings on disk (e.g. a project's embeddings/ folder)."""
        tag = "" if self._encoder is None else self.encoder_precision   # kept apart from float32 ones
        self._disk = EmbeddingCache(folder, self.model, self.device, encoder=self._encoder, encoder_tag=tag)

    @property
    def is_image_set(self) -> bool:
        return self._current is not None

    def _need_image(self) -> _Embedded:
        if self._current is None:
            raise RuntimeError("call set_image(image) before predict()")
        return self._current

    @torch.no_grad()
    def exemplar_vector(self, mask: np.ndarray) -> np.ndarray:
        """Mask-pooled image features of the current image under ``mask`` (H×W bool)."""
        cur = self._need_image()
        m = np.asarray(mask).astype(bool)
        if m.shape != cur.shape:
            raise ValueError(f"exemplar mask shape {m.shape} != image shape {cur.shape}")
        if not m.any():
            raise ValueError("exemplar mask is empty")
        g = self.model.grid_size
        feats, weights = 0.0, 0.0
        for i, (y, x) in enumerate(cur.grid.starts):
            tm = torch.zeros(1, 1, cur.grid.tile, cur.grid.tile)
            part = m[y:y + cur.grid.tile, x:x + cur.grid.tile]
            tm[0, 0, :part.shape[0], :part.shape[1]] = torch.from_numpy(part.astype(np.float32))
            w = F.adaptive_avg_pool2d(tm, g).to(self.device)[0, 0]
            feats = feats + (cur.emb[i] * w).sum((1, 2))
            weights = weights + w.sum()
        return (feats / weights.clamp_min(1e-6)).float().cpu().numpy()

    def exemplars(self, masks: np.ndarray | Sequence[np.ndarray], image: np.ndarray | None = None) -> Exemplars:
        """Feature vectors of exemplar ``masks`` (binary masks, or one mask whose components are
        the exemplars) of ``image`` (default: the image set); they apply to any image."""
        return Exemplars.from_masks(self._pixels(image), masks)

    def more_like_this(self, exemplars: Exemplars | np.ndarray | Sequence[np.ndarray], image: np.ndarray | None = None,
                       threshold: float = 0.5) -> ExemplarMatch:
        """Every instance like ``exemplars`` in ``image`` (default: the image set). Masks are
        taken as exemplars of that same image; an :class:`Exemplars` (from :meth:`exemplars`)
        may come from another image."""
        img = self._pixels(image)
        if not isinstance(exemplars, Exemplars):
            exemplars = Exemplars.from_masks(img, exemplars)
        return match_exemplars(img, exemplars, threshold)

    def _pixels(self, image: np.ndarray | None) -> np.ndarray:
        if image is not None:
            return np.asarray(image)
        if self._image is None:
            raise RuntimeError("call set_image(image) first, or pass image=")
        return self._image

    # -- prompts -----------------------------------------------------------------------
    @staticmethod
    def _normalise_prompts(prompts: str | Sequence[str]) -> list[str]:
        if isinstance(prompts, str):
            return split_prompts(prompts)
        if not isinstance(prompts, (list, tuple)):
            raise ValueError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}: "
                             f"{prompts!r:.80}")
        if len(prompts) == 0:
            raise ValueError("no prompts given: pass one or more class names, e.g. ['nucleus']")
        return split_prompts(";".join(p if isinstance(p, str) else _bad_prompt(p) for p in prompts))

    @torch.no_grad()
    def predict(self, prompts: str | Sequence[str], *, threshold: float | None = None,
                points: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                box: Sequence[float] | None = None, mask_prompt: np.ndarray | None = None,
                exemplars: dict[str, np.ndarray] | None = None, grounding: bool = False) -> Prediction:
        """Decode every prompt on the cached embedding.

        points: (P, 2) (row, col) image pixels with point_labels (P,) 1 = inside, 0 = outside;
        box: (row0, col0, row1, col1); both apply to every prompt. mask_prompt: (K, H, W)
        probabilities of a previous prediction. exemplars: prompt -> (E, C) feature vectors
        from :meth:`exemplar_vector`.
        """
        cur = self._need_image()
        names = self._normalise_prompts(prompts)
        tau = self.model.cfg.threshold if threshold is None else float(threshold)
        if not 0.0 < tau < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {tau}")
        parsed = [parse_prompt(n) for n in names]
        embs = self.text.encode([p.text for p in parsed])
        k, t = len(names), cur.grid.n_tiles
        pb = prompt_batch(embs, [p.laterality for p in parsed], t, self.device)
        self._add_spatial_prompts(pb, cur, k, points, point_labels, box, mask_prompt, exemplars, names)
        if cur.pix is None and self.model.cfg.grounding_prompt:
            cur.pix = self.model.grounding.pixel_features(cur.emb)   # prompt-independent: once per image
        probs, presence = decode_probs(self.model, cur.emb, cur.grid, pb, k, pix=cur.pix, fine=cur.fine)
        size = cur.grid.tile
        g = None
        if grounding:
            gl, _, _ = self.model.grounding(cur.emb, pb.text_pooled[:k], pix=cur.pix)
            gl = F.interpolate(gl.float(), size=(size, size), mode="bilinear", align_corners=False)
            g = blend_tiles(torch.sigmoid(gl), cur.grid).cpu().numpy()
        labels = merge_classes(probs, tau).to(torch.int32)
        out = Prediction(names, probs.cpu().numpy().astype(np.float32), labels.cpu().numpy(),
                         presence.cpu().numpy().astype(np.float32), g)
        if self.config.get("classes"):   # a model without a recorded vocabulary cannot tell
            kn = class_knowledge(names, self.known_classes, self.text)
            out.known, out.nearest, out.nearest_similarity = kn.known, kn.nearest, kn.similarity
        return out

    @property
    def known_classes(self) -> list[str]:
        """The model's learnt classes, then the project's accepted ones (``project_classes``)."""
        return list(dict.fromkeys([*self.config.get("classes", []), *sorted(self.project_classes)]))

    def _add_spatial_prompts(self, pb, cur, k, points, point_labels, box, mask_prompt, exemplars, names):
        t, dev = cur.grid.n_tiles, self.device
        starts = torch.tensor(cur.grid.starts, dtype=torch.float32, device=dev)  # (T, 2) row, col
        if points is not None:
            pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
            lab = np.ones(len(pts), np.int64) if point_labels is None else np.asarray(point_labels, np.int64)
            if len(lab) != len(pts):
                raise ValueError(f"{len(pts)} points but {len(lab)} point labels")
            p = torch.from_numpy(pts).to(dev)[None] - starts[:, None]           # (T, P, 2) row, col
            inside = ((p >= 0) & (p < cur.grid.tile)).all(-1)
            lab_t = torch.where(inside, torch.from_numpy(lab).to(dev)[None], torch.full_like(inside, -1, dtype=torch.long))
            pb.points = p.flip(-1).repeat_interleave(k, 0)                         # xy for SAM encoding
            pb.point_labels = lab_t.repeat_interleave(k, 0)
        if box is not None:
            r0, c0, r1, c1 = (float(v) for v in box)
            if not (r1 > r0 and c1 > c0):
                raise ValueError(f"box must be (row0, col0, row1, col1) with row1 > row0 and col1 > col0, got {box}")
            b = torch.tensor([c0, r0, c1, r1], device=dev)[None] - starts.flip(-1).repeat(1, 2)
            b = b.clamp(0, cur.grid.tile - 1)
            empty = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
            b[empty] = float("nan")
            pb.boxes = b.repeat_interleave(k, 0)
        if mask_prompt is not None:
            mp = np.asarray(mask_prompt, dtype=np.float32)
            if mp.shape != (k, *cur.shape):
                raise ValueError(f"mask_prompt must have shape {(k, *cur.shape)}, got {mp.shape}")
            lg = torch.logit(torch.from_numpy(mp).clamp(1e-4, 1 - 1e-4)).to(dev)
            tiles = torch.full((t, k, cur.grid.tile, cur.grid.tile), -10.0, device=dev)
            for i, (y, x) in enumerate(cur.grid.starts):
                part = lg[:, y:y + cur.grid.tile, x:x + cur.grid.tile]
                tiles[i, :, :part.shape[1], :part.shape[2]] = part
            pb.mask_prompt = tiles.reshape(t * k, 1, cur.grid.tile, cur.grid.tile)
        if exemplars:
            e_max = max(len(np.atleast_2d(v)) for v in exemplars.values())
            c = cur.emb.shape[1]
            ex = torch.zeros(k, e_max, c, device=dev)
            keep = torch.zeros(k, e_max, dtype=torch.bool, device=dev)
            for j, n in enumerate(names):
                if n in exemplars:
                    v = torch.from_numpy(np.atleast_2d(np.asarray(exemplars[n], np.float32))).to(dev)
                    ex[j, :len(v)], keep[j, :len(v)] = v, True
            pb.exemplars, pb.exemplar_mask = ex.repeat(t, 1, 1), keep.repeat(t, 1)


    # -- boxes and clicks (class-agnostic: LiteMedSAM's frozen spatial path) -----------------
    def _spatial_path(self):
        from .spatial import SpatialSegmenter

        cur = self._need_image()
        if self._spatial is None:
            self._spatial = SpatialSegmenter(device=self.device)
        self._spatial.set_image(self._image, cur.sha)
        return self._spatial

    def predict_boxes(self, boxes, *, zoom: bool = True):
        """One mask per box (N, 4) of (row0, col0, row1, col1), whatever the class: a
        :class:`~promptseg.inference.spatial_result.SpatialPrediction`. ``zoom`` also decodes
        a crop of the box at the encoder's resolution (cached per image and crop)."""
        from .spatial_result import predict_boxes

        return predict_boxes(self._spatial_path(), boxes, zoom=zoom)

    def predict_points(self, points, point_labels=None, *, instances=None, shown=None):
        """The object under clicks (P, 2) (row, col) with ``point_labels`` (1 inside, 0
        outside); ``instances`` (P,) splits them into several objects. One object also comes
        with its candidate masks best first. ``shown``: the object's mask on screen before the
        last click, which that click corrects near itself."""
        from .spatial_result import predict_points

        return predict_points(self._spatial_path(), points, point_labels, instances, shown)


def _bad_prompt(p: object) -> str:
    raise ValueError(f"a prompt must be a string, got {type(p).__name__}: {p!r}")
