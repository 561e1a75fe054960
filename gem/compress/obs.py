"""The layer-wise solvers: SparseGPT pruning and GPTQ quantization of one
weight matrix given the Hessian of its inputs, and the naive baselines they
must beat (magnitude pruning, round-to-nearest).

Convention: ``W [rows, cols]`` maps an input ``x ∈ R^cols`` to ``W x`` (rows are
output channels), and ``H = Σ_x x xᵀ [cols, cols]``. Both solvers minimise the
layer's output error ``‖(W − Ŵ) X‖²_F = tr((W − Ŵ) H (W − Ŵ)ᵀ)`` one input
column at a time (Optimal Brain Surgeon): when column ``i`` of a row changes by
``δ`` (a weight pruned to 0, or rounded to the grid) the remaining columns
``j > i`` absorb it by ``−δ / [H⁻¹]_ii · [H⁻¹]_ij``, using the upper Cholesky
factor of ``H⁻¹`` so that each step's inverse is the inverse restricted to the
columns still free (Frantar & Alistarh, SparseGPT 2023; Frantar et al., GPTQ 2023).
Which weights to prune is chosen by the OBS saliency ``w² / [H⁻¹]_ii²`` per
block of ``block_size`` columns (unstructured: the lowest share of the block;
n:m: the n lowest of every m consecutive inputs of a row).
"""

from __future__ import annotations

import torch


def _inverse_cholesky(h: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(upper Cholesky factor of (H + λI)⁻¹, dead-column mask). Columns whose input is
    always zero carry no information: their diagonal is set to 1 (their weights are
    then free to go, which is right: they never affect the output)."""
    h = h.clone().double()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    lam = damp * torch.mean(torch.diag(h))
    h += lam * torch.eye(h.shape[0], dtype=h.dtype)
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(hinv, upper=True), dead


def sparsegpt_prune(w: torch.Tensor, h: torch.Tensor, sparsity: float = 0.5,
                    n_m: tuple[int, int] | None = None, damp: float = 0.01,
                    block_size: int = 128) -> torch.Tensor:
    """The pruned copy of ``w`` (exactly ``round(sparsity * cols)`` zeros per row
    block for unstructured, exactly n zeros in every m inputs for n:m)."""
    rows, cols = w.shape
    if n_m is not None and cols % n_m[1]:
        raise ValueError(f"{n_m[0]}:{n_m[1]} pruning needs the input width {cols} to be a "
                         f"multiple of {n_m[1]}")
    u, dead = _inverse_cholesky(h, damp)
    W = w.clone().double()
    W[:, dead] = 0.0
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        U1 = u[i1:i2, i1:i2]
        d = torch.diag(U1)
        mask = torch.zeros_like(W1, dtype=torch.bool)  # True = pruned
        if n_m is None:
            k = int(round(sparsity * count))
            if k:
                score = W1 ** 2 / d.reshape(1, -1) ** 2
                idx = torch.topk(score, k, dim=1, largest=False).indices  # per row: exact count
                mask.scatter_(1, idx, True)
        for i in range(count):
            col = W1[:, i]
            if n_m is not None and i % n_m[1] == 0:
                score = W1[:, i:i + n_m[1]] ** 2 / d[i:i + n_m[1]].reshape(1, -1) ** 2
                idx = torch.topk(score, n_m[0], dim=1, largest=False).indices
                mask.scatter_(1, i + idx, True)
            q = col.clone()
            q[mask[:, i]] = 0.0
            Q1[:, i] = q
            err = (col - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1) @ U1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ u[i1:i2, i2:]
    return W.to(w.dtype)


def magnitude_prune(w: torch.Tensor, sparsity: float = 0.5,
                    n_m: tuple[int, int] | None = None) -> torch.Tensor:
    """The baseline: zero the smallest |w| (per row, or n of every m inputs), no update."""
    rows, cols = w.shape
    out = w.clone()
    if n_m is not None:
        g = out.reshape(rows, cols // n_m[1], n_m[1])
        idx = torch.topk(g.abs(), n_m[0], dim=2, largest=False).indices
        g.scatter_(2, idx, 0.0)
        return g.reshape(rows, cols)
    k = int(round(sparsity * cols))
    if k:
        idx = torch.topk(out.abs(), k, dim=1, largest=False).indices
        out.scatter_(1, idx, 0.0)
    return out


def _scale(w: torch.Tensor, qmax: int) -> torch.Tensor:
    """Symmetric scale per row of ``w`` (``max|w| / qmax``; 1 for an all-zero row)."""
    s = w.abs().amax(dim=1) / qmax
    return torch.where(s > 0, s, torch.ones_like(s))


def _quant(x: torch.Tensor, scale: torch.Tensor, qmax: int) -> torch.Tensor:
    return torch.clamp(torch.round(x / scale), -qmax, qmax) * scale


def rtn_quantize(w: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """The baseline: round to the nearest grid value (same grid as GPTQ's), no update."""
    qmax = 2 ** (bits - 1) - 1
    rows, cols = w.shape
    g = group_size or cols
    out = torch.empty_like(w)
    for j in range(0, cols, g):
        blk = w[:, j:j + g]
        out[:, j:j + g] = _quant(blk, _scale(blk, qmax).unsqueeze(1), qmax)
    return out


def gptq_quantize(w: torch.Tensor, h: torch.Tensor, bits: int, group_size: int | None = None,
                  damp: float = 0.01, block_size: int = 128
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(``w`` quantized with GPTQ -- every value on its symmetric ``bits``-bit grid --,
    the scales ``[rows, groups]``). Scales are taken per output channel, or per
    ``group_size`` inputs from the weights as updated when the group starts."""
    qmax = 2 ** (bits - 1) - 1
    rows, cols = w.shape
    g = group_size or cols
    u, dead = _inverse_cholesky(h, damp)
    W = w.clone().double()
    W[:, dead] = 0.0
    Q = torch.zeros_like(W)
    scales = torch.zeros(rows, (cols + g - 1) // g, dtype=W.dtype)
    scale = _scale(W, qmax) if group_size is None else None
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        U1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = i1 + i
            if c % g == 0:
                if group_size is not None:  # the group's current weights, updated so far
                    cur = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :g]
                    scale = _scale(cur, qmax)
                scales[:, c // g] = scale  # type: ignore[assignment]
            col = W1[:, i]
            q = _quant(col, scale, qmax)  # type: ignore[arg-type]
            Q[:, c] = q
            err = (col - q) / U1[i, i]
            W1[:, i:] -= err.unsqueeze(1) @ U1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ u[i1:i2, i2:]
    return Q.to(w.dtype), scales.to(w.dtype)


def output_error(w: torch.Tensor, w_hat: torch.Tensor, h: torch.Tensor) -> float:
    """``‖(W − Ŵ) X‖²_F`` computed from ``H = X Xᵀ`` (per column of inputs)."""
    d = (w - w_hat).double()
    return float(torch.einsum("ri,ij,rj->", d, h.double(), d))
