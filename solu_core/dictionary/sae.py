"""The TopK sparse autoencoder (SAELens names and shapes) and its AuxK loss.

Speed: the TopK step is computed sparsely. Only the encoder's forward matmul is dense (every
pre-activation is needed for the top-k); the decoder is an ``embedding_bag`` over the k chosen rows
and the encoder's gradient a sparse [d_sae, batch] x [batch, d_in] product over the k chosen latents,
instead of the dense [batch, d_sae] products of a plain implementation
(benchmarks/bench_features.py compares the two).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")


class _GatherPre(torch.autograd.Function):
    """pre[b, idx[b, j]] of pre = (x - b_dec) @ W_enc + b_enc, computed outside (no graph over the dense
    [batch, d_sae] matrix); the backward pass touches only the chosen latents."""

    @staticmethod
    def forward(ctx, W_enc, b_enc, b_dec, x, idx, pre):
        ctx.save_for_backward(W_enc, b_dec, x, idx)
        return pre.gather(1, idx)

    @staticmethod
    def backward(ctx, g):  # g: [batch, j]
        W_enc, b_dec, x, idx = ctx.saved_tensors
        d_sae = W_enc.shape[1]
        g_b_enc = torch.zeros(d_sae, dtype=g.dtype, device=g.device).index_add_(0, idx.reshape(-1), g.reshape(-1))
        G = _sparse_rows(idx, g, d_sae)  # [d_sae, batch]
        g_W_enc = torch.sparse.mm(G, x - b_dec).t()  # [d_in, d_sae]
        g_b_dec = -(W_enc @ g_b_enc)  # d/d b_dec of sum_bj g (x_b - b_dec) . W_enc[:, idx]
        return g_W_enc, g_b_enc, g_b_dec, None, None, None


class _SparseDecode(torch.autograd.Function):
    """sum_j vals[b, j] * W_dec[idx[b, j]] (an embedding_bag); the backward pass is two sparse products
    (torch's own embedding_bag backward is several times slower on the CPU)."""

    @staticmethod
    def forward(ctx, vals, W_dec, idx):
        ctx.save_for_backward(vals, W_dec, idx)
        return F.embedding_bag(idx, W_dec, per_sample_weights=vals, mode="sum")

    @staticmethod
    def backward(ctx, go):  # go: [batch, d_in]
        vals, W_dec, idx = ctx.saved_tensors
        g_W = torch.sparse.mm(_sparse_rows(idx, vals, W_dec.shape[0]), go)  # [d_sae, d_in]
        # g_vals[b, j] = go[b] . W_dec[idx[b, j]]: a sampled dense-dense product at the chosen latents only
        B, j = idx.shape
        crow = torch.arange(0, B * j + 1, j, device=idx.device)
        pattern = torch.sparse_csr_tensor(crow, idx.reshape(-1), torch.zeros(B * j, dtype=go.dtype, device=go.device),
                                          (B, W_dec.shape[0]), check_invariants=False)
        g_vals = torch.sparse.sampled_addmm(pattern, go, W_dec.t()).values().reshape(B, j)
        return g_vals, g_W, None


def _sparse_rows(idx: torch.Tensor, vals: torch.Tensor, d_sae: int) -> torch.Tensor:
    """The sparse [d_sae, batch] matrix with vals[b, j] at (idx[b, j], b)."""
    B, j = idx.shape
    rows = torch.arange(B, device=idx.device).repeat_interleave(j)
    return torch.sparse_coo_tensor(torch.stack([idx.reshape(-1), rows]), vals.reshape(-1), (d_sae, B),
                                   check_invariants=False)


class TopKSAE(nn.Module):
    """f = ReLU(TopK((x - b_dec) @ W_enc + b_enc)), x_hat = f @ W_dec + b_dec (SAELens names and shapes)."""

    def __init__(self, d_in: int, d_sae: int, k: int):
        super().__init__()
        self.d_in, self.d_sae, self.k = d_in, d_sae, k
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae))  # [d_in, d_sae]
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_in))  # [d_sae, d_in], unit rows
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    @torch.no_grad()
    def init_weights(self, gen: torch.Generator, b_dec: torch.Tensor) -> None:
        self.W_dec.copy_(torch.randn(self.d_sae, self.d_in, generator=gen))
        self.normalize_decoder()
        self.W_enc.copy_(self.W_dec.t())  # tied initialisation (Gao et al.)
        self.b_enc.zero_()
        self.b_dec.copy_(b_dec)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient's component along each decoder row (keeps the step on the unit sphere)."""
        if self.W_dec.grad is not None:
            g = self.W_dec.grad
            g.sub_((g * self.W_dec).sum(1, keepdim=True) * self.W_dec)

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc  # [batch, d_sae]

    def decode_sparse(self, idx: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
        return _SparseDecode.apply(vals, self.W_dec, idx)  # [batch, d_in]

    def step_losses(self, x: torch.Tensor, dead: torch.Tensor | None, aux_k: int, aux_coeff: float):
        """(loss, mse, aux, idx, vals) of one batch ``x`` [batch, d_in]; ``dead`` bool [d_sae] or None."""
        with torch.no_grad():
            pre = self.pre(x)
            idx = pre.topk(self.k, dim=1, sorted=False).indices  # [batch, k]
        vals = F.relu(_GatherPre.apply(self.W_enc, self.b_enc, self.b_dec, x, idx, pre))
        recon = self.decode_sparse(idx, vals) + self.b_dec
        e = x - recon  # the main residual
        mse = e.pow(2).sum(1).mean()
        aux = self.aux_loss(x, pre, e.detach(), dead, aux_k)
        return mse + aux_coeff * aux, mse, aux, idx, vals

    def aux_loss(self, x: torch.Tensor, pre: torch.Tensor, e: torch.Tensor, dead: torch.Tensor | None,
                 aux_k: int) -> torch.Tensor:
        """Gao et al.'s AuxK loss: ||e - e_aux||^2 (summed over d_in, mean over the batch), where ``e`` =
        x - x_hat is the main residual (detached) and e_aux = (the top ``aux_k`` dead pre-activations, signed)
        @ W_dec (no b_dec), scaled by min(n_dead / aux_k, 1) (fewer dead latents, a smaller pull).

        The pre-activations enter without a ReLU, as in SAELens' TopK trainer: with one, a dead latent whose
        pre-activations are all negative gets no gradient from this loss and stays dead (measured on the demo's
        SoLU-LN hook_mid, 8x, k 32: 3,489 of 4,096 dead with the ReLU; docs/features.md)."""
        n_dead = int(dead.sum()) if dead is not None else 0
        if not n_dead:
            return x.new_zeros(())
        ka = min(aux_k, n_dead)
        with torch.no_grad():  # the top ka of the dead latents' pre-activations
            cols = torch.nonzero(dead).squeeze(1)
            aidx = cols[pre.index_select(1, cols).topk(ka, dim=1, sorted=False).indices]
        avals = _GatherPre.apply(self.W_enc, self.b_enc, self.b_dec, x, aidx, pre)
        e_aux = self.decode_sparse(aidx, avals)
        return (e - e_aux).pow(2).sum(1).mean() * min(n_dead / aux_k, 1.0)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre(x)
        top = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, top.indices, F.relu(top.values))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x) @ self.W_dec + self.b_dec


def folded_weights(sae: TopKSAE, scale: float) -> dict[str, np.ndarray]:
    """The weights for raw (unscaled) activations. Trained on x * scale: TopK picks the same latents on
    x as on x * scale when b_enc and b_dec are divided by scale, and the features come out divided by
    scale; W_enc and the unit-norm W_dec stay as they are."""
    s = float(scale)
    return {"W_enc": sae.W_enc.detach().cpu().numpy().astype(np.float32),
            "b_enc": (sae.b_enc.detach().cpu().numpy() / s).astype(np.float32),
            "W_dec": sae.W_dec.detach().cpu().numpy().astype(np.float32),
            "b_dec": (sae.b_dec.detach().cpu().numpy() / s).astype(np.float32)}


def encode_topk(x, W_enc, b_enc, b_dec, k):
    pre = (x - b_dec) @ W_enc + b_enc
    top = pre.topk(k, dim=1)
    return torch.zeros_like(pre).scatter_(1, top.indices, F.relu(top.values))
