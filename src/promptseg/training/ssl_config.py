"""Training settings: the supervised trainer's (stage1.py) and the semi-supervised round's,
where every expert and loss has a switch; ``method_config`` names the variants a benchmark
compares (ssl.py runs them). Free of torch, so the command line can read ``METHODS``."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace


@dataclass
class LossWeights:
    seg: float = 1.0
    presence: float = 0.5
    contrastive: float = 0.1
    sss: bool = True            # semantic-similarity supervision inside the contrastive term
    token_attention: float = 0.2
    pixel_class: float = 0.5
    text_guided: float = 0.1


@dataclass
class OptimiserRun:
    """A seeded run of ``steps`` AdamW steps: what every trainer here (and the U-Net baseline) shares."""
    steps: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class TrainConfig(OptimiserRun):
    batch_tiles: int = 2
    max_classes: int = 4        # prompts decoded per tile per step (present + absent ones)
    crop: int = 32              # crop of the token grid per tile (0 = whole tile)
    temperature: float = 0.07
    weights: LossWeights = field(default_factory=LossWeights)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SSLConfig:
    steps: int = 300
    supervised: TrainConfig = field(default_factory=TrainConfig)   # lr, crops, stage-1 loss weights
    unlabelled_tiles: int = 2
    unlabelled_queries: int = 8        # cap on crops x classes decoded per unlabelled batch
    ema: float = 0.99
    unlabelled_weight: float = 1.0
    warmup: float = 0.2                # fraction of the steps on labelled data only (the teacher needs a start)
    ramp_steps: int = 0                # 0 -> a third of the steps, counted after the warm-up
    confidence: float = 0.75
    # Turning or flipping cached embeddings shows the decoder features the encoder never makes
    # (TinyViT is not rotation-equivariant) and lowered Dice on MoNuSeg; so both are off by
    # default (image views re-run the encoder instead).
    teacher_views: int = 1             # dihedral views the teacher's logits are averaged over (1 = none)
    geometric: bool = False            # flip / rot90 / rescale of embedding crops as the weak view
    scale_range: tuple[float, float] = (0.8, 1.25)
    noise: float = 0.1
    channel_drop: float = 0.1
    cutout: float = 0.25
    # Photometric jitter of the student's pixel crops (pixel branch only; augment.jitter_pixels):
    # without it the student's branch sees the teacher's exact pixels, and the MoNuSeg bench
    # scored the round higher with it.
    pixel_jitter: float = 0.2
    # The same jitter on the labelled crops' pixels (supervised loss), for stain variation the
    # few labelled images do not show; on the MoNuSeg bench it raised the supervised baseline
    # and did not hurt promptseg.
    label_jitter: float = 0.2
    text_expert: bool = True
    w_grounding: float = 1.0
    exemplar_expert: bool = True
    w_exemplar: float = 1.0
    fusion: str = "veto"               # how the experts' logits join the teacher's: sum | veto | gate (pseudo.py)
    expert_fade: float = 0.0           # 1: the experts' weights fall linearly to 0 over the round after the warm-up
    exemplar_k: int = 3
    exemplar_supervision: float = 0.0  # exemplar-prompted decodes of labelled crops; off: it lowered Dice
    student_feedback: bool = True
    feedback_after: float = 0.3        # fraction of the steps before the student's mask is fed back
    student_vs_text: float = 0.5
    text_guided_u: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SSLConfig":
        d = dict(d)
        sup = dict(d.pop("supervised", {}))
        sup["weights"] = LossWeights(**sup.get("weights", {}))
        d["scale_range"] = tuple(d.get("scale_range", (0.8, 1.25)))
        d.setdefault("label_jitter", 0.0)   # a round saved before it existed resumes as it started
        return cls(supervised=TrainConfig(**sup), **d)


METHODS = ("supervised", "mean_teacher", "promptseg", "promptseg-no_text", "promptseg-no_exemplar",
           "promptseg-no_feedback", "promptseg-no_contrastive")


TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("steps", "seed", "weights"))


def method_config(name: str, steps: int, seed: int = 0, **overrides) -> SSLConfig:
    """The SSL variants a benchmark compares; ablations switch one expert or loss off.
    ``overrides`` may name SSLConfig fields or the labelled trainer's (``crop``, ``batch_tiles``,
    ``lr``...); ``batch_tiles`` also sets ``unlabelled_tiles`` unless that is given too."""
    if name not in METHODS:
        raise ValueError(f"unknown SSL method {name!r}; choose from {', '.join(METHODS)}")
    train = {k: overrides.pop(k) for k in list(overrides) if k in TRAIN_KEYS}
    if "batch_tiles" in train:
        overrides.setdefault("unlabelled_tiles", train["batch_tiles"])
        overrides.setdefault("unlabelled_queries", max(8, train["batch_tiles"]))
    cfg = SSLConfig(steps=steps, seed=seed, supervised=TrainConfig(steps=steps, seed=seed, **train), **overrides)
    if name == "supervised":   # labelled images only, no teacher: the same-backbone baseline
        cfg = replace(cfg, unlabelled_weight=0.0, exemplar_supervision=0.0, text_expert=False,
                      exemplar_expert=False, student_feedback=False)
    elif name == "mean_teacher":
        cfg = replace(cfg, text_expert=False, exemplar_expert=False, exemplar_supervision=0.0,
                      student_feedback=False, student_vs_text=0.0, text_guided_u=0.0)
    elif name == "promptseg-no_text":
        cfg = replace(cfg, text_expert=False, student_vs_text=0.0, text_guided_u=0.0)
    elif name == "promptseg-no_exemplar":
        cfg = replace(cfg, exemplar_expert=False, exemplar_supervision=0.0, student_feedback=False)
    elif name == "promptseg-no_feedback":
        cfg = replace(cfg, student_feedback=False)
    elif name == "promptseg-no_contrastive":
        w = replace(cfg.supervised.weights, contrastive=0.0)
        cfg = replace(cfg, supervised=replace(cfg.supervised, weights=w))
    return cfg
