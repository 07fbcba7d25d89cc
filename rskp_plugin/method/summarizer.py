"""Representative snippet summarisation by EM attention (paper 3.1, eq. 2-3). One EM step written with autograd,
the reference of the hand-written backward here, is ``rskp_plugin.reference.summarizer.em_step``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..shapes import as_mask, expect
from .propagation import EPS, affinity_parts, float32_compute, column_normalize


class EMSummarizer(nn.Module):
    """EM attention with learnable initial means mu^(0) (updated by back-propagation, as the paper does).

    Args:
        dim: embedding size d.
        num_reps: n, the number of representative snippets per video (8).
        iterations: EM iterations (2).
        temperature: lambda of eq. 2 (5.0).
        init: "orthogonal" — the paper's (semi-)orthogonal mu^(0) — or "xavier", the official code's
            Xavier-uniform initialisation.
    """

    def __init__(
        self, dim: int, num_reps: int = 8, iterations: int = 2, temperature: float = 5.0, init: str = "orthogonal"
    ) -> None:
        super().__init__()
        if num_reps < 1 or iterations < 1 or dim < 1:
            raise ValueError(f"dim, num_reps and iterations must be >= 1, got {dim}, {num_reps}, {iterations}")
        if init not in ("orthogonal", "xavier"):
            raise ValueError(f'init must be "orthogonal" (paper) or "xavier" (official code), got {init!r}')
        self.dim, self.num_reps, self.iterations, self.temperature, self.init = (
            dim, num_reps, iterations, temperature, init
        )
        self.initial_means = nn.Parameter(torch.empty(num_reps, dim))  # mu^(0), (n, d)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == "orthogonal":
            nn.init.orthogonal_(self.initial_means)
        else:
            nn.init.xavier_uniform_(self.initial_means)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """Summarise each video: features (B, T, d), mask (B, T) bool -> representative snippets (B, n, d)."""
        sizes = expect(features, "B T d", name="features", sizes={"d": self.dim})
        mask = as_mask(mask, sizes["B"], sizes["T"], features.device)
        means = self.initial_means.to(features.dtype).expand(sizes["B"], -1, -1)  # (B, n, d)
        # the iterations of em_step with one hand-written backward (same numbers, fewer passes over F); float32
        # under autocast, as the walk
        with float32_compute(features) as cast:
            return _EMAttention.apply(cast(features), cast(means), mask, self.iterations, float(self.temperature))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_reps={self.num_reps}, iterations={self.iterations}, " \
               f"temperature={self.temperature}, init={self.init!r}"


class _EMAttention(torch.autograd.Function):
    """``iterations`` EM steps (eq. 2-3, ``em_step``) with an analytic backward.

    Autograd through the steps writes a (B, T, d) gradient per product and adds them up; here each iteration's
    backward reads F twice (F dmu^T for the M step, dP^T F for the E step) and every contribution to dF is summed
    by one batched product at the end, [N_1, dP_1, ..., N_I, dP_I] [dmu_1; U_1; ...; dmu_I; U_I], plus the norm
    term. Shapes: features (B, T, d), means (B, n, d), mask (B, T) -> means (B, n, d).
    """

    @staticmethod
    def forward(ctx, f, mu, mask, iterations, lam):  # type: ignore[override]
        fnorm = f.norm(dim=-1)  # (B, T)
        saved = []
        for _ in range(iterations):
            fnorm, inv, mnorm, u, p, z = affinity_parts(f, mu, lam, mask, None, fnorm)
            colsum = z.sum(dim=1)  # (B, n)
            nrm = z / colsum.clamp(min=EPS)[:, None, :]  # column_normalize, eq. 3
            saved += [mu, mnorm, u, p, z, colsum, nrm]
            mu = torch.bmm(nrm.transpose(1, 2), f)  # (B, n, d)
        ctx.save_for_backward(f, fnorm, inv, *saved)
        ctx.iterations, ctx.lam = iterations, lam
        return mu

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dmu):  # type: ignore[override]
        f, fnorm, inv, *saved = ctx.saved_tensors
        lam = ctx.lam
        dinv = torch.zeros_like(fnorm)
        lefts, rights = [], []  # dF = sum_i N_i dmu_i + dP_i U_i
        for i in reversed(range(ctx.iterations)):
            mu, mnorm, u, p, z, colsum, nrm = saved[7 * i : 7 * i + 7]
            # mu_i = N^T F
            dn = torch.bmm(f, dmu.transpose(1, 2))  # (B, T, n)
            lefts.append(nrm)
            rights.append(dmu)
            # N = Z / max(colsum, eps)
            scale = colsum.clamp(min=EPS)
            dscale = -(dn * z).sum(dim=1) / (scale * scale) * (colsum > EPS).to(z.dtype)  # (B, n)
            dz = dn / scale[:, None, :] + dscale[:, None, :]
            # Z = softmax(lambda r P) on real rows (z = 0 on padding, so dl = 0 there)
            dl = z * (dz - (dz * z).sum(dim=-1, keepdim=True))
            dp = (lam * inv)[..., None] * dl  # (B, T, n)
            dinv = dinv + lam * (dl * p).sum(dim=-1)
            lefts.append(dp)
            rights.append(u)
            du = torch.bmm(dp.transpose(1, 2), f)  # (B, n, d)
            # U = mu / (|mu| + eps)
            denom = mnorm + EPS
            radial = (mu * du).sum(dim=-1, keepdim=True) / (mnorm.clamp(min=torch.finfo(f.dtype).tiny) * denom * denom)
            radial = torch.where(mnorm > 0, radial, 0.0)  # mu = 0 (all-zero features): 0 / 0 -> 0
            dmu = du / denom - mu * radial
        # r = 1 / (|f| + eps): dr/df = -r^2 f / |f|
        coef = -dinv * inv * inv / fnorm.clamp(min=torch.finfo(f.dtype).tiny)  # (B, T)
        df = torch.baddbmm(coef[..., None] * f, torch.cat(lefts, dim=2), torch.cat(rights, dim=1))
        return df, dmu, None, None, None
