"""BP-NAS: per-layer bit-width search under a BitOPs budget with a soft barrier penalty.

Yu et al., "Search What You Want: Barrier Penalty NAS for Mixed Precision Quantization"
(BP-NAS, ECCV 2020, arXiv 2007.10026):

- every searched convolution has a categorical distribution over candidate bit widths for its
  weights (``π^w_l = softmax(θ^w_l)``) and for its input activations (``π^a_l``); the
  super-network convolves the probability-weighted mixtures of the quantized tensors;
- the expected cost ``E[BitOPs] = Σ_l MAC_l E[b_w,l] E[b_a,l]`` is analytic and differentiable
  (:func:`geoseg.nn.quant.bitops.expected_bitops`);
- the **soft barrier** (:func:`barrier_penalty`, a ``−μ log(1 − E/B)`` barrier) is ≈ 0 well
  inside the budget ``B`` and grows without bound at its edge, so the search stays feasible;
- the **Prob-1 regularizer** ``Σ_l (1 − max π_l)`` (:func:`prob1_regularizer`) pushes every
  distribution towards one-hot, so the argmax configuration is close to what was optimised;
- the argmax configuration is then checked exactly against ``B`` and fine-tuned (GDRQ).

Where geoseg differs: the search starts feasible by construction — every layer starts from the
same distribution, centred (in log2 bits) so that ``E = start_fraction · B``, biased further to
the lowest width when needed (an error when even the all-lowest configuration exceeds ``B``;
:func:`initial_logits`) — and an update that would
bring ``E`` above ``(1 − margin) B`` is rejected (the logits are restored), so ``E`` never
leaves the domain even with a finite step size; weights and logits are trained jointly on the
same batches (one level, no held-out split); the barrier is shifted to be exactly 0 below
``barrier_start · B`` and its linear part is removed, so that inside the domain the bit choice
is driven by the task loss only (a plain log barrier has slope ≥ μ everywhere, which under
Adam's normalised steps pushed every layer to the lowest width); the Prob-1 weight is 0 for the first ``prob1_delay`` of the iterations (the task loss alone
moves the distributions) and then ramps up linearly; the first
and output layers keep ``ends_bits`` and are not searched. Should the exact BitOPs of the
argmax configuration still exceed ``B``, it is repaired by lowering, one step at a time, the
larger width of the layer with the most BitOPs (reported in the summary).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from geoseg.errors import ConfigError
from geoseg.nn.checkpoint import Checkpoint, save_checkpoint
from geoseg.nn.fit import FitState
from geoseg.nn.fitting import torch_settings
from geoseg.nn.modelfile import NNModel, model_payload
from geoseg.nn.quant.bitops import expected_bitops, total_bitops
from geoseg.nn.quant.gdrq import MODE, QuantConfig, calibrate, layer_plan, prepare_qat, train_loop, training_setup
from geoseg.nn.quant.qat import LayerBits, quantized_layers

__all__ = ["SearchResult", "barrier_penalty", "initial_logits", "parse_bitops", "prob1_regularizer", "repair", "search_bits"]

log = logging.getLogger("geoseg.nn")
_EDGE = 1.0 - 1e-9  # beyond this ratio the barrier continues as its quadratic Taylor extension


def parse_bitops(text: str | float) -> float:
    """A BitOPs budget: a number (``2.5e9``) or with a suffix K, M, G, T (``"2.5G"``).

    Raises
    ------
    ConfigError
        Not a positive number.
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = text.strip().upper().removesuffix("BITOPS").removesuffix("B").strip()
        mult = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(s[-1:], 1.0)
        try:
            value = float(s[:-1] if mult != 1.0 else s) * mult
        except ValueError:
            raise ConfigError(f"--budget-bitops {text!r}: expected a number such as 2.5e9 or 2.5G") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--budget-bitops {text!r}: must be a positive number")
    return value


def barrier_penalty(expected: Tensor, budget: float, mu: float, start: float = 0.0) -> Tensor:
    """Soft barrier on ``r = E/B``: 0 up to ``start``, then ``μ(−log(1 − t) − t)``, ``t = (r − start)/(1 − start)``.

    With ``start = 0`` this is ``−μ log(1 − E/B)`` less its linear part ``μ E/B``: ≈ μr²/2 well
    inside the budget, unbounded as ``E → B``; with ``start > 0`` it is exactly 0 below
    ``start · B`` and still smooth (value and slope are 0 at ``start``). Beyond
    ``E/B = 1 − 1e-9`` (never reached by the search, which rejects such steps) it continues as
    its quadratic Taylor extension, so it stays finite and differentiable everywhere.
    """
    r = expected / budget
    t = torch.clamp((r - start) / (1.0 - start), min=0.0)
    edge = _EDGE
    inside = torch.clamp(t, max=edge)
    value = -mu * (torch.log1p(-inside) + inside)
    d = 1.0 - edge
    excess = torch.clamp(t - edge, min=0.0)
    slope = mu * edge / d  # derivative of the barrier at the edge
    curv = mu / d**2
    return value + slope * excess + 0.5 * curv * excess**2


def prob1_regularizer(probs: Tensor) -> Tensor:
    """Prob-1 regularizer ``Σ_l (1 − max_i π_li)`` of ``(L, K)`` probabilities: 0 iff all rows are one-hot."""
    return (1.0 - probs.max(dim=1).values).sum()


def initial_logits(macs: Tensor, candidates: Tensor, budget: float, fixed: float, start_fraction: float, spread: float = 0.6) -> Tensor:
    """Logits ``(L, K)`` whose expected BitOPs are at most ``start_fraction · budget`` (the search starts feasible).

    Every layer starts with the same distribution, a Gaussian in ``log2(bits)`` of width
    ``spread`` around a centre found by bisection so that ``E[BitOPs]`` is ``start_fraction · B``
    (the highest width's neighbourhood when even that is feasible). The argmax of this start
    is the uniform width nearest to the budget, which may exceed it: the barrier and the Prob-1
    term then decide which layers move down. When even a centre at the lowest width is too
    expensive, the lowest width's logit is raised further until the start is feasible.

    Raises
    ------
    ConfigError
        The budget is not above the all-lowest configuration's BitOPs.
    """
    L, K = macs.numel(), candidates.numel()
    lowest = float(fixed + (macs.double() * candidates.min().double() ** 2).sum())
    if lowest >= budget:
        raise ConfigError(f"budget {budget:.4g} BitOPs is infeasible: the smallest configuration needs {lowest:.4g}")
    target = start_fraction * budget if lowest < start_fraction * budget else 0.5 * (lowest + budget)
    logb = torch.log2(candidates.double())
    low_idx = int(torch.argmin(candidates))

    def logits_at(centre: float, extra_low: float = 0.0) -> Tensor:
        row = -((logb - centre) ** 2) / (2 * spread**2)
        row[low_idx] += extra_low
        return row.unsqueeze(0).expand(L, K).clone()

    def expected(logits: Tensor) -> float:
        p = torch.softmax(logits, dim=1)
        return float(expected_bitops(macs, p, p, candidates, fixed))

    lo_c, hi_c = float(logb.min()), float(logb.max())
    if expected(logits_at(hi_c)) <= target:
        return logits_at(hi_c).float()
    if expected(logits_at(lo_c)) <= target:
        for _ in range(60):
            mid = 0.5 * (lo_c + hi_c)
            lo_c, hi_c = (mid, hi_c) if expected(logits_at(mid)) <= target else (lo_c, mid)
        return logits_at(lo_c).float()
    lo, hi = 0.0, 1.0
    while expected(logits_at(lo_c, hi)) > target and hi < 1e3:
        lo, hi = hi, hi * 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if expected(logits_at(lo_c, mid)) > target else (lo, mid)
    return logits_at(lo_c, hi).float()


def repair(
    bits: dict[str, LayerBits], macs: dict[str, int], budget: float, candidates: Sequence[int], frozen: Sequence[str] = ()
) -> tuple[dict[str, LayerBits], list[str]]:
    """Lower widths until the exact BitOPs are within ``budget``; return the config and the steps taken.

    Each step picks the searchable layer (not in ``frozen``) with the most BitOPs that can still be lowered and
    lowers its larger width (weights on ties) to the next smaller candidate.
    """
    cands = sorted(candidates)
    out = {n: LayerBits(b.w_bits, b.a_bits) for n, b in bits.items()}
    steps: list[str] = []

    def cost() -> int:
        return total_bitops(macs, {n: (b.w_bits, b.a_bits) for n, b in out.items()})

    while cost() > budget:
        movable = [n for n, b in out.items() if n not in frozen and max(b.w_bits, b.a_bits) > cands[0] and b.w_bits in cands and b.a_bits in cands]
        if not movable:
            raise ConfigError(f"budget {budget:.4g} BitOPs cannot be met even at {cands[0]} bits")
        name = max(movable, key=lambda n: macs[n] * out[n].w_bits * out[n].a_bits)
        b = out[name]
        if b.w_bits >= b.a_bits:
            b.w_bits = cands[cands.index(b.w_bits) - 1]
            steps.append(f"{name}: weights to {b.w_bits} bits")
        else:
            b.a_bits = cands[cands.index(b.a_bits) - 1]
            steps.append(f"{name}: activations to {b.a_bits} bits")
    return out, steps


@dataclass
class SearchResult:
    """Outcome of :func:`search_bits`.

    Attributes
    ----------
    bits : dict
        Conv name → LayerBits of the final (feasible) configuration.
    bitops : int
        Its exact BitOPs per tile.
    budget : float
    expected_bitops : list of float
        ``E[BitOPs]`` after every search iteration (all below the budget).
    repairs : list of str
        Widths lowered after the argmax (empty when the argmax was feasible).
    rejected_steps : int
        Logit updates undone because they left the domain.
    probabilities : dict
        Conv name → {"w": [...], "a": [...]} final probabilities of the searched layers.
    """

    bits: dict[str, LayerBits]
    bitops: int
    budget: float
    expected_bitops: list[float] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    rejected_steps: int = 0
    argmax_bitops: int = 0
    probabilities: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable summary for the model file."""
        return {
            "budget_bitops": self.budget, "bitops": self.bitops, "argmax_bitops": self.argmax_bitops,
            "feasible": self.bitops <= self.budget, "repairs": self.repairs, "rejected_steps": self.rejected_steps,
            "expected_bitops_first_last": [self.expected_bitops[0], self.expected_bitops[-1]] if self.expected_bitops else [],
            "max_expected_ratio": max(self.expected_bitops) / self.budget if self.expected_bitops else None,
            "probabilities": self.probabilities,
        }  # fmt: skip


def search_bits(
    model: NNModel,
    data: Sequence[Any],
    budget: float,
    cfg: QuantConfig,
    *,
    progress: bool = True,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: Checkpoint | None = None,
) -> SearchResult:
    """Search per-layer weight and activation bit widths whose BitOPs stay within ``budget``.

    Parameters
    ----------
    model : NNModel
        The float model (not modified; the search trains a copy).
    data : sequence of SceneData
        Labelled training scenes.
    budget : float
        BitOPs per ``cfg.bitops_tile_px``² tile.
    cfg : QuantConfig
        ``cfg.search`` holds the search settings; ``ends_bits`` the fixed layers' widths.
    progress : bool
        Progress bar on stderr.
    checkpoint_path : path-like, optional
        Checkpoint (phase ``search``) written after every tenth of the iterations.
    resume : Checkpoint, optional
        A ``search`` checkpoint of the same model and budget to continue from.

    Raises
    ------
    ConfigError
        The budget is below the smallest configuration's BitOPs, or differs from the resumed checkpoint's.
    """
    scfg = cfg.search
    cands = torch.tensor(scfg.candidates, dtype=torch.float64)
    macs, ends = layer_plan(model, cfg.bitops_tile_px)
    top = max(scfg.candidates)
    fixed_bits = {n: LayerBits(cfg.ends_bits, cfg.ends_bits) for n in macs if cfg.ends_bits is not None and n in ends}
    searched = [n for n in macs if n not in fixed_bits]
    fixed = float(total_bitops({n: macs[n] for n in fixed_bits}, {n: (b.w_bits, b.a_bits) for n, b in fixed_bits.items()}))
    m = torch.tensor([macs[n] for n in searched], dtype=torch.float64)
    theta0 = initial_logits(m, cands, budget, fixed, scfg.start_fraction)
    theta_w = torch.nn.Parameter(theta0.clone().float())
    theta_a = torch.nn.Parameter(theta0.clone().float())
    arch_opt = torch.optim.Adam([theta_w, theta_a], lr=scfg.lr_arch)
    thetas = torch.nn.ParameterDict({"w": theta_w, "a": theta_a})
    result = SearchResult(bits={}, bitops=0, budget=budget)
    if resume is not None:
        if float(resume.extra["budget"]) != budget:
            raise ConfigError(f"{resume.path}: a search under {resume.extra['budget']:.4g} BitOPs, this run asks for {budget:.4g}")
        resume.load_module("logits", thetas)
        resume.load_optimizer("arch", arch_opt)
        result.expected_bitops, result.rejected_steps = list(resume.extra["expected_bitops"]), int(resume.extra["rejected_steps"])

    with torch_settings(cfg.threads, deterministic=False):
        setup = training_setup(model, data)
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        bits = {n: LayerBits(top, top) for n in searched} | fixed_bits
        module = prepare_qat(model, bits, cfg)
        layers = quantized_layers(module)
        if resume is not None:
            resume.load_module("qat", module)
        else:
            calibrate(module, setup, cfg, gen)

        def set_mix() -> tuple[Tensor, Tensor]:
            pw, pa = torch.softmax(theta_w, dim=1), torch.softmax(theta_a, dim=1)
            for i, n in enumerate(searched):
                layers[n].mix = (pw[i], pa[i], tuple(scfg.candidates))
            return pw, pa

        def extra_loss(it: int) -> tuple[Tensor, dict[str, float]]:
            pw, pa = set_mix_probs["p"]
            e = expected_bitops(m, pw, pa, cands, fixed)
            ramp = max(0.0, (it + 1) / scfg.iterations - scfg.prob1_delay) / (1.0 - scfg.prob1_delay)
            pen = barrier_penalty(e, budget, scfg.mu, scfg.barrier_start).float()
            reg = scfg.prob1 * ramp * (prob1_regularizer(pw) + prob1_regularizer(pa))
            return pen + reg, {"E/B": float(e.detach()) / budget, "barrier": float(pen.detach()), "prob1": float(reg.detach())}

        set_mix_probs: dict[str, tuple[Tensor, Tensor]] = {}
        saved = [theta_w.detach().clone(), theta_a.detach().clone()]

        def after_step(it: int) -> None:
            with torch.no_grad():
                pw, pa = torch.softmax(theta_w, dim=1), torch.softmax(theta_a, dim=1)
                e = float(expected_bitops(m, pw, pa, cands, fixed))
                if e >= (1.0 - scfg.margin) * budget:  # the step left the domain: undo it
                    theta_w.copy_(saved[0])
                    theta_a.copy_(saved[1])
                    result.rejected_steps += 1
                    pw, pa = torch.softmax(theta_w, dim=1), torch.softmax(theta_a, dim=1)
                    e = float(expected_bitops(m, pw, pa, cands, fixed))
                saved[0].copy_(theta_w)
                saved[1].copy_(theta_a)
            result.expected_bitops.append(e)
            set_mix_probs["p"] = set_mix()

        set_mix_probs["p"] = set_mix()
        if resume is None:
            with torch.no_grad():
                pw0, pa0 = set_mix_probs["p"]
                result.expected_bitops.append(float(expected_bitops(m, pw0, pa0, cands, fixed)))

        def write(state: FitState, optimizer: torch.optim.Optimizer) -> None:
            assert checkpoint_path is not None
            extra = {"phase": "search", "budget": budget, "expected_bitops": result.expected_bitops, "rejected_steps": result.rejected_steps}
            modules, optimizers = {"qat": module, "logits": thetas}, {"weights": optimizer, "arch": arch_opt}
            save_checkpoint(checkpoint_path, MODE, state, model=model_payload(model), modules=modules, optimizers=optimizers, extra=extra)

        train_loop(module, setup, cfg, scfg.iterations, scfg.lr, extra_loss=extra_loss, extra_optimizer=arch_opt, after_step=after_step,
                   progress=progress, desc="BP-NAS search", checkpoint=write if checkpoint_path is not None else None, resume=resume)  # fmt: skip
    with torch.no_grad():
        pw, pa = torch.softmax(theta_w, dim=1), torch.softmax(theta_a, dim=1)
    argmax = {n: LayerBits(scfg.candidates[int(pw[i].argmax())], scfg.candidates[int(pa[i].argmax())]) for i, n in enumerate(searched)}
    argmax |= fixed_bits
    result.argmax_bitops = total_bitops(macs, {n: (b.w_bits, b.a_bits) for n, b in argmax.items()})
    final, steps = repair(argmax, macs, budget, scfg.candidates, list(fixed_bits)) if result.argmax_bitops > budget else (argmax, [])
    if steps:
        log.warning("the argmax configuration needs %.4g BitOPs > budget %.4g: repaired by lowering %d width(s)", result.argmax_bitops, budget, len(steps))
    result.bits = final
    result.repairs = steps
    result.bitops = total_bitops(macs, {n: (b.w_bits, b.a_bits) for n, b in final.items()})
    result.probabilities = {n: {"w": [round(float(v), 4) for v in pw[i]], "a": [round(float(v), 4) for v in pa[i]]} for i, n in enumerate(searched)}
    return result
