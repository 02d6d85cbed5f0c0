"""Stage 2: the semi-supervised round (student + EMA teacher) on cached tile embeddings.

Per step, with labelled crops (accepted labels) and unlabelled crops sampled independently
(never tied to the labelled index, so the two streams stay independent):
- labelled: every stage-1 term (stage1.py) on a weak view, optionally plus the exemplar-
  assistant path supervised by the label (the template bank with the image itself left out),
  which trains the decoder to read exemplar prompts (VESSA's stage 1);
- unlabelled: the teacher decodes the weak view; the text expert (grounding map) and the
  exemplar expert (exemplars.py; after ``feedback_after`` the student's own mask is its dense
  prompt) are fused in logit space (pseudo.py; by default they can confirm or veto the
  teacher's label, not replace it); the CPS4 merge gives one label per pixel,
  confident pixels supervise the student on a strong view, weighted by a sigmoid ramp; plus
  DuSSS's student-vs-text term and L_tg with the pseudo masks.
Every expert and loss has a switch, so a benchmark can ablate it (ssl_config.py).
"""
from __future__ import annotations

import contextlib
import copy
import random
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model.decoder import PromptBatch
from ..model.losses import dice_bce_loss, text_guided_loss
from ..model.segmenter import PromptSegModel
from .augment import (D4_VIEWS, Geometry, apply_geometry, invert_geometry, jitter_pixels, scaled_side,
                      strong_features)
from .crops import pixel_crop, sample_crop, stack_pixels
from .exemplars import TemplateBank, global_feature
from .loop import optimiser_step, run_steps, warmup_cosine
from .pseudo import ema_alpha, ema_update, fuse_logits, multiclass_pseudo_label, sigmoid_ramp
from .ssl_config import METHODS, SSLConfig, method_config  # noqa: F401  (re-exported)
from .stage1 import stage1_losses
from .types import ClassPrompts, LabelledCrop, TrainItem, UnlabelledItem, UnlabelledTargets, UnlabelledViews


def _geo(x: torch.Tensor | None, geo: Geometry, size: int | None = None) -> torch.Tensor | None:
    return None if x is None else apply_geometry(x, geo, size)


def _pb_select(pb: PromptBatch, idx: torch.Tensor) -> PromptBatch:
    return PromptBatch(**{f: (v[idx] if isinstance(v, torch.Tensor) else v) for f, v in vars(pb).items()})


class SSLTrainer:
    """One object per round; ``step()`` runs one optimiser step. Holds the student (the
    model passed in), the EMA teacher, the optimiser and every random stream, so a round can
    be saved and resumed exactly (train_state.py). ``wrap`` lets DDP wrap the student."""

    def __init__(self, model: PromptSegModel, labelled: list[TrainItem], unlabelled: list[UnlabelledItem],
                 prompts: ClassPrompts, cfg: SSLConfig, device: str = "cpu", rank: int = 0,
                 wrap: Callable[[nn.Module], nn.Module] | None = None):
        if not labelled:
            raise ValueError("a semi-supervised round needs at least one labelled image")
        self.model, self.labelled, self.unlabelled, self.cfg, self.device = model, labelled, unlabelled, cfg, device
        self.rng_l = random.Random(cfg.seed * 7919 + rank)
        self.rng_u = random.Random(cfg.seed * 104729 + rank + 1)   # independent unlabelled stream
        self.gen = torch.Generator().manual_seed(cfg.seed * 31 + rank)
        torch.manual_seed(cfg.seed)
        model.to(device).train()
        self.step_module = _StudentLoss(self)
        self.ddp = wrap(self.step_module) if wrap else self.step_module
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False)
        self.params = [p for p in model.parameters() if p.requires_grad]
        sup = cfg.supervised
        # foreach: a few multi-tensor updates per step instead of ~8 ops per parameter tensor
        self.opt = torch.optim.AdamW(self.params, lr=sup.lr, weight_decay=sup.weight_decay, foreach=True)
        self.sched = warmup_cosine(self.opt, cfg.steps)
        self.step_count = 0
        self.prompt_tensors = prompts.tensors(device)
        self.stride = int(model.backbone.stride)
        self.full_pe = model.decoder.dense_pe(model.grid_size, model.grid_size).to(device)
        self.bank = TemplateBank.from_items(labelled)
        self._retrieved = {}
        self.ramp_steps = cfg.ramp_steps or max(1, cfg.steps // 3)
        cuda = str(device).startswith("cuda")
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()

    # -- pieces ----------------------------------------------------------------------------
    def templates_for(self, name: str, emb: torch.Tensor, exclude_self: bool):
        key = (name, exclude_self)
        if key not in self._retrieved:
            self._retrieved[key] = self.bank.retrieve(global_feature(emb), self.cfg.exemplar_k,
                                                      exclude=name if exclude_self else None)
        return self._retrieved[key]

    def geometry(self) -> Geometry:
        return Geometry.sample(self.rng_l, self.cfg.scale_range) if self.cfg.geometric else Geometry()

    def labelled_batch(self, geo: Geometry) -> tuple[list[LabelledCrop], list[TrainItem]]:
        """Labelled crops in the view ``geo``, and the item each was cut from."""
        sup = self.cfg.supervised
        crops, names = [], []
        for _ in range(sup.batch_tiles):
            item = self.rng_l.choice(self.labelled)
            crop = sample_crop(item, sup.crop, self.stride, self.rng_l)
            c2 = scaled_side(crop.window[2], geo, item.emb.shape[-1])
            crops.append(LabelledCrop(apply_geometry(crop.emb, geo, c2),
                                      apply_geometry(crop.labels, geo, c2 * self.stride, nearest=True),
                                      (0, 0, c2), _geo(crop.pixels, geo, c2 * self.stride)))
            names.append(item)
        return crops, names

    def unlabelled_batch(self, geo: Geometry) -> UnlabelledViews:
        """Weak and strong views of crops from the unlabelled pool (or, if there is none, from
        the labelled images with their labels unused), and the pixels of both (or None)."""
        pool = self.unlabelled or [UnlabelledItem(it.name, it.emb, pixels=it.pixels) for it in self.labelled]
        k = self.prompt_tensors[0].shape[0]
        n = max(1, min(self.cfg.unlabelled_tiles, self.cfg.unlabelled_queries // max(1, k)))
        g = pool[0].emb.shape[-1]
        c = g if self.cfg.supervised.crop <= 0 else min(g, self.cfg.supervised.crop)
        c2 = scaled_side(c, geo, g)
        weak, strong, items, weak_px, strong_px = [], [], [], [], []
        s = self.stride
        for _ in range(n):
            it = self.rng_u.choice(pool)
            t = self.rng_u.randrange(it.emb.shape[0])
            y, x = self.rng_u.randint(0, g - c), self.rng_u.randint(0, g - c)
            weak.append(apply_geometry(it.emb[t, :, y:y + c, x:x + c], geo, c2))
            src = it.strong_emb if it.strong_emb is not None else it.emb
            strong.append(apply_geometry(src[t, :, y:y + c, x:x + c], geo, c2))
            weak_px.append(_geo(pixel_crop(it.pixels, t, y, x, c, s), geo, c2 * s))
            src_px = it.strong_pixels if it.strong_pixels is not None else it.pixels
            strong_px.append(_geo(pixel_crop(src_px, t, y, x, c, s), geo, c2 * s))
            items.append(it)
        fmt = torch.channels_last if str(self.device).startswith("cuda") else torch.contiguous_format
        weak = torch.stack(weak).to(self.device, memory_format=fmt)
        strong = torch.stack(strong).to(self.device, memory_format=fmt)
        strong = strong_features(strong, self.rng_u, self.gen, self.cfg.noise, self.cfg.channel_drop, self.cfg.cutout)
        strong_px = stack_pixels(strong_px, self.device)
        if strong_px is not None:
            strong_px = jitter_pixels(strong_px, self.gen, self.cfg.pixel_jitter)
        return UnlabelledViews(weak, strong, items, stack_pixels(weak_px, self.device), strong_px)

    def all_class_queries(self, n_crops: int) -> PromptBatch:
        pooled, tokens, tmask, lat = self.prompt_tensors
        k = pooled.shape[0]
        qc = torch.arange(k, device=self.device).repeat(n_crops)
        qi = torch.arange(n_crops, device=self.device).repeat_interleave(k)
        return PromptBatch(qi, pooled[qc], tokens[qc], tmask[qc], lat[qc])

    def exemplar_batch(self, pb: PromptBatch, embs: torch.Tensor, items, classes: torch.Tensor,
                       exclude_self: bool, feedback: torch.Tensor | None = None):
        """Add exemplar prompts to the queries of ``pb``; returns (batch, has_prompt (N,))."""
        got = []
        # One device->host transfer each, not one sync per query (this runs every step on a GPU).
        image_index, class_index, host_embs = pb.image_index.tolist(), classes.tolist(), embs.detach().float().cpu()
        for b, k in zip(image_index, class_index):
            it = items[b]
            temps = self.templates_for(it.name, it.emb, exclude_self)
            got.append(self.bank.prompts(host_embs[b], k, temps))
        has = torch.tensor([g is not None for g in got], device=self.device)
        if not has.any():
            return None, has
        ref = next(g for g in got if g is not None)
        e_max = max(g.exemplars.shape[0] for g in got if g is not None)

        def pad(g, attr, shape, fill, dtype=torch.float32):
            if g is None:
                return torch.full(shape, fill, dtype=dtype)
            v = getattr(g, attr)
            if attr.startswith("exemplar") and v.shape[0] < e_max:
                v = torch.cat([v, torch.full((e_max - v.shape[0], *v.shape[1:]), fill, dtype=v.dtype)])
            return v

        pts = torch.stack([pad(g, "points", ref.points.shape, 0.0) for g in got]).to(self.device)
        lab = torch.stack([pad(g, "point_labels", ref.point_labels.shape, -1, torch.long) for g in got]).to(self.device)
        box = torch.stack([pad(g, "box", (4,), float("nan")) for g in got]).to(self.device)
        mask = torch.stack([pad(g, "mask", ref.mask.shape, 0.0) for g in got]).to(self.device)
        ex = torch.stack([pad(g, "exemplars", (e_max, ref.exemplars.shape[1]), 0.0) for g in got]).to(self.device)
        exm = torch.stack([pad(g, "exemplar_mask", (e_max,), False, torch.bool) for g in got]).to(self.device)
        if feedback is not None:
            mask = feedback[:, None].to(mask.dtype)
        full = PromptBatch(**{**vars(pb), "points": pts, "point_labels": lab, "boxes": box, "mask_prompt": mask,
                              "exemplars": ex.to(pb.text_pooled.dtype), "exemplar_mask": exm})
        return full, has

    def expert_scale(self) -> float:
        """Factor on the experts' fusion weights: 1, or with ``expert_fade`` falling linearly
        from 1 after the warm-up to 1 − expert_fade at the end of the round."""
        cfg = self.cfg
        start = cfg.warmup * cfg.steps
        progress = min(1.0, max(0.0, (self.step_count - start) / max(1.0, cfg.steps - start)))
        return 1.0 - cfg.expert_fade * progress

    @torch.no_grad()
    def teacher_logits(self, weak: torch.Tensor, pb: PromptBatch, pe: torch.Tensor,
                       weak_px: torch.Tensor | None = None, fine: torch.Tensor | None = None) -> torch.Tensor:
        """The teacher's mask logits, averaged over ``teacher_views`` dihedral views of the
        crop (each mapped back): an ensemble whose pseudo labels are better than one pass.
        ``fine``: the teacher's pixel-branch features of the unturned crop, if already computed."""
        views = D4_VIEWS[:max(1, min(self.cfg.teacher_views, len(D4_VIEWS)))]
        z = 0.0
        for geo in views:
            f = fine if fine is not None and geo == D4_VIEWS[0] else self.teacher.fine_features(_geo(weak_px, geo))
            out = self.teacher.decode(apply_geometry(weak, geo), pb, pe, fine=f).mask_logits.float()
            z = z + invert_geometry(out, geo)
        return z / len(views)

    @torch.no_grad()
    def pseudo_labels(self, weak: torch.Tensor, items, pb: PromptBatch, pe: torch.Tensor,
                      weak_px: torch.Tensor | None = None):
        """Fused logits (N, H, W) and the grounding logits."""
        cfg = self.cfg
        t = self.teacher
        t_fine = t.fine_features(weak_px)   # once: the teacher and the exemplar expert both decode the crop
        z_t = self.teacher_logits(weak, pb, pe, weak_px, t_fine)
        size = z_t.shape[-2:]
        z_g = F.interpolate(t.grounding_logits(weak, pb)[:, None].float(), size=size, mode="bilinear",
                            align_corners=False)[:, 0]
        z_x = None
        if cfg.exemplar_expert and len(self.bank):
            fb = None
            if cfg.student_feedback and self.step_count >= cfg.feedback_after * cfg.steps:
                fb = self.model.decode(weak, pb, pe, fine=self.model.fine_features(weak_px)).mask_logits.float()
            classes = torch.arange(pb.text_pooled.shape[0], device=self.device) % self.prompt_tensors[0].shape[0]
            xb, has = self.exemplar_batch(pb, weak, items, classes, exclude_self=False, feedback=fb)
            if xb is not None:
                z_x = torch.where(has[:, None, None], t.decode(weak, xb, pe, fine=t_fine)
                                  .mask_logits.float(), 0.0)
        fade = self.expert_scale()
        z = fuse_logits(z_t, z_g if cfg.text_expert else None, z_x, fade * cfg.w_grounding, fade * cfg.w_exemplar,
                        cfg.fusion)
        return z, z_g

    # -- one step --------------------------------------------------------------------------
    def step(self) -> dict:
        cfg = self.cfg
        geo = self.geometry()
        crops, litems = self.labelled_batch(geo)
        with self.autocast:
            warm = self.step_count < cfg.warmup * cfg.steps
            if cfg.unlabelled_weight > 0 and not warm:
                views = self.unlabelled_batch(geo)
                side = views.weak.shape[-1]
                pe = self.full_pe[:, :side, :side]
                pb = self.all_class_queries(views.weak.shape[0])
                self.model.eval()
                z, z_g = self.pseudo_labels(views.weak, views.items, pb, pe, views.weak_pixels)
                self.model.train()
                k = self.prompt_tensors[0].shape[0]
                labels, onehot, conf = multiclass_pseudo_label(z.reshape(-1, k, *z.shape[-2:]), cfg.confidence)
                unl = UnlabelledTargets(views.strong, views.strong_pixels, pb, pe, onehot, conf, z_g)
            else:
                unl, labels, conf = None, torch.zeros(1), torch.zeros(1)
            lam = 0.0 if warm else cfg.unlabelled_weight * sigmoid_ramp(
                self.step_count - int(cfg.warmup * cfg.steps), self.ramp_steps)
            losses = self.ddp(crops, litems, unl, lam)
        out = optimiser_step(self.opt, self.sched, self.params, losses, self.step_count + 1)
        # The teacher averages over at most about the last tenth of the round, so a short
        # round's teacher does not lag far behind a student that is still improving.
        ema_update(self.teacher, self.model, ema_alpha(self.step_count, min(cfg.ema, 1 - 10 / max(cfg.steps, 20))))
        self.step_count += 1
        out.update(unlabelled_weight=lam, confident_fraction=float(conf.float().mean()),
                   pseudo_foreground=float((labels > 0).float().mean()))
        return out

    def finish(self) -> None:
        """The round's result is the EMA teacher (the student for supervised-only training)."""
        if self.cfg.unlabelled_weight > 0:
            self.model.load_state_dict(self.teacher.state_dict())
        self.model.eval()


class _StudentLoss(nn.Module):
    """Everything the student's gradient flows through, as one ``forward`` so that
    DistributedDataParallel can wrap it."""

    def __init__(self, trainer: SSLTrainer):
        super().__init__()
        self.model = trainer.model
        self.trainer = trainer

    def forward(self, crops: list[LabelledCrop], litems: list[TrainItem], unl: UnlabelledTargets | None,
                lam: float) -> dict:
        tr, cfg = self.trainer, self.trainer.cfg
        px = stack_pixels([c.pixels for c in crops], tr.device)
        if px is not None:
            px = jitter_pixels(px, tr.gen, cfg.label_jitter)
        fine = self.model.fine_features(px)   # once for both labelled paths
        losses = stage1_losses(self.model, crops, tr.prompt_tensors, tr.full_pe, cfg.supervised, tr.rng_l, tr.device,
                               fine=fine)
        total = losses.pop("total")
        if cfg.exemplar_supervision > 0 and len(tr.bank):
            losses["exemplar_supervised"] = self._exemplar_supervised(crops, litems, crops[0].emb.shape[-1], fine)
            total = total + cfg.exemplar_supervision * losses["exemplar_supervised"]
        if unl is None:
            losses["total"] = total
            return losses
        onehot, conf = unl.onehot, unl.confident
        out = self.model.decode(unl.strong, unl.queries, unl.pe,
                                fine=self.model.fine_features(unl.strong_pixels)).mask_logits.float()
        target = onehot.reshape(-1, *onehot.shape[-2:])
        k = onehot.shape[-3]
        valid = conf.repeat_interleave(k, dim=0)
        lu = dice_bce_loss(out, target, valid) if valid.any() else out.sum() * 0.0
        losses["unlabelled"] = lu
        if cfg.student_vs_text > 0:
            p_text = torch.sigmoid(unl.grounding)
            text_valid = (torch.maximum(p_text, 1 - p_text) >= cfg.confidence).float()
            losses["student_vs_text"] = dice_bce_loss(out, (p_text > 0.5).float(), text_valid)
            lu = (lu + cfg.student_vs_text * losses["student_vs_text"]) / (1 + cfg.student_vs_text)
        if cfg.text_guided_u > 0:
            g_logits, pix, txt = self.model.grounding(unl.strong, tr.prompt_tensors[0])
            grid = F.adaptive_avg_pool2d(onehot * conf[:, None], g_logits.shape[-2:])
            present = grid.flatten(2).amax(2) > 0
            if present.any():
                losses["text_guided_u"] = text_guided_loss(pix, txt, grid, present,
                                                           self.model.grounding.clamped_logit_scale())
                lu = lu + cfg.text_guided_u * losses["text_guided_u"]
        losses["total"] = total + lam * lu
        return losses

    def _exemplar_supervised(self, crops: list[LabelledCrop], litems: list[TrainItem], pe_side: int,
                             fine: torch.Tensor | None) -> torch.Tensor:
        """Decode labelled crops from exemplar prompts of *other* accepted images and
        supervise with the label: teaches the decoder to use the assistant's prompts."""
        tr = self.trainer
        embs = torch.stack([c.emb for c in crops]).to(tr.device)
        glob = torch.stack([c.labels for c in crops]).to(tr.device)
        qi, qc = [], []
        for b, item in enumerate(litems):
            present = [k for k in item.classes if (glob[b] == k + 1).any()]
            if present:
                qi.append(b)
                qc.append(tr.rng_l.choice(present))
        if not qi:
            return embs.sum() * 0.0
        pooled, tokens, tmask, lat = tr.prompt_tensors
        qi_t, qc_t = torch.tensor(qi, device=tr.device), torch.tensor(qc, device=tr.device)
        pb = PromptBatch(qi_t, pooled[qc_t], tokens[qc_t], tmask[qc_t], lat[qc_t])
        xb, has = tr.exemplar_batch(pb, embs, litems, qc_t, exclude_self=True)
        if xb is None:
            return embs.sum() * 0.0
        idx = has.nonzero()[:, 0]
        xb = _pb_select(xb, idx)
        out = self.model.decode(embs, xb, tr.full_pe[:, :pe_side, :pe_side], fine=fine).mask_logits.float()
        target = (glob[xb.image_index] == (qc_t[idx] + 1)[:, None, None]).float()
        valid = (glob[xb.image_index] >= 0).float()
        if out.shape[-1] != target.shape[-1]:
            out = F.interpolate(out[:, None], size=target.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return dice_bce_loss(out, target, valid)


def train_ssl(model: PromptSegModel, labelled: list[TrainItem], unlabelled: list[UnlabelledItem],
              prompts: ClassPrompts, cfg: SSLConfig, device: str = "cpu",
              on_step: Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> dict:
    """Train in place; the model ends with the EMA teacher's weights. Returns the last
    step's losses (``on_step`` gets every step's dict)."""
    tr = SSLTrainer(model, labelled, unlabelled, prompts, cfg, device)
    last = run_steps(tr.step, cfg.steps, tr.step_count, on_step, should_stop)
    tr.finish()
    return last
