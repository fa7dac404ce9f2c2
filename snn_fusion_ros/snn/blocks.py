"""Structured products for the streaming step: independent blocks of a weight matrix, sparse recurrence.

A merged network (:mod:`snn_fusion_ros.snn.merge`) stores K members side by side: its fusion weights
``w_fuse`` (F, 3H) are zero outside K blocks (member k's fusion rows read only member k's hidden
neurons), and its recurrent weights ``w_rec`` (3H, 3H) are block-diagonal over modality x member with
a sparse mask inside each block. The dense products compute every stored zero: K members cost K^2
times one member's fusion product.

:class:`BlockProduct` finds the independent blocks of a matrix once (the connected components of the
bipartite graph of its non-zero entries, :func:`scipy.sparse.csgraph.connected_components`) and
computes ``x @ W.T`` block by block. It is exact: an output row outside every block is 0 (its weights
are all zero) and inside a block only the block's own columns are non-zero. A trained single network
has one block covering the whole matrix, and the product is then one dense matmul.

:func:`recurrent_operator` returns the matrix for the per-step recurrent product ``W @ s``: a CSR
tensor on the CPU when the matrix has at least :data:`CSR_MIN_ROWS` rows and at most
:data:`CSR_MAX_DENSITY` of its entries are non-zero (a masked recurrent block is 20 % dense, and the
matrix is block-diagonal over 3K blocks), else the dense matrix (always on CUDA). Both give the same
sums up to float rounding order. Measured here (one thread, 19 % of the neurons spiking): dense /
CSR 3.8 / 6.0 us at 192 rows (one member of 3 x 64), 12 / 9 us at 384, 27 / 8.5 us at 576 (three
members), 67 / 12 us at 960 (five).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: largest fraction of non-zero entries for which a weight matrix is applied in sparse (CSR) form: the torch
#: CPU recurrent product here, the nir backend's large weights, the Lava backend's ``Sparse`` projections
CSR_MAX_DENSITY = 0.25
#: fewest rows for which it does (below, the dense product is faster: see the module docstring)
CSR_MIN_ROWS = 256


def independent_blocks(w: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(rows, cols), ...]``: the blocks of ``w`` (R, C) that share no non-zero entry with each other.

    Every non-zero ``w[r, c]`` lies in exactly one block (``r`` in its rows, ``c`` in its cols); rows
    and columns without any non-zero entry belong to no block. Rows and cols are sorted int64 indices;
    blocks are ordered by their first row.
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {w.shape}")
    n_rows, n_cols = w.shape
    r, c = np.nonzero(w)
    graph = coo_matrix((np.ones(len(r), np.int8), (r, n_rows + c)), shape=(n_rows + n_cols,) * 2)
    _, label = connected_components(graph, directed=False)
    blocks = []
    row_label, col_label = label[:n_rows], label[n_rows:]
    for k in np.unique(row_label[r]):  # components holding a non-zero entry (never a lone row or column)
        blocks.append((np.flatnonzero(row_label == k).astype(np.int64),
                       np.flatnonzero(col_label == k).astype(np.int64)))
    return sorted(blocks, key=lambda b: int(b[0][0]))


class BlockProduct:
    """``x @ W.T`` for ``x`` (T, C) and a fixed ``W`` (R, C), computed over :func:`independent_blocks`.

    One block spanning every row and column (a dense matrix) is a single matmul; several blocks are one
    small matmul each, on the block's columns of ``x``, written into the block's rows of the output.
    ``find_blocks=False`` skips the search (a few ms for a merged network's ``w_fuse``) and is always one
    dense matmul; so is a matrix without a zero entry.
    """

    def __init__(self, w: torch.Tensor, find_blocks: bool = True) -> None:
        w = w.detach()
        self.shape = tuple(w.shape)
        n_rows, n_cols = self.shape
        if find_blocks and bool((w == 0).any()):
            blocks = independent_blocks(w.cpu().numpy())
            self.dense = len(blocks) == 1 and len(blocks[0][0]) == n_rows and len(blocks[0][1]) == n_cols
        else:
            self.dense = True
        dev = w.device
        self.parts: list[tuple[slice | torch.Tensor, torch.Tensor, torch.Tensor]] = []
        if self.dense:
            self.w_t: torch.Tensor | None = w.T.contiguous()
            return
        self.w_t = None
        for rows, cols in blocks:
            contiguous = rows[-1] - rows[0] + 1 == len(rows)
            target = slice(int(rows[0]), int(rows[-1]) + 1) if contiguous else torch.from_numpy(rows).to(dev)
            r_t, c_t = torch.from_numpy(rows).to(dev), torch.from_numpy(cols).to(dev)
            self.parts.append((target, c_t, w.index_select(0, r_t).index_select(1, c_t).T.contiguous()))

    @property
    def n_blocks(self) -> int:
        return 1 if self.dense else len(self.parts)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense:
            return x @ self.w_t
        out = torch.zeros(x.shape[0], self.shape[0], dtype=x.dtype, device=x.device)
        for target, cols, w_t in self.parts:
            prod = x.index_select(1, cols) @ w_t
            if isinstance(target, slice):
                out[:, target] = prod
            else:
                out.index_copy_(1, target, prod)
        return out


def recurrent_operator(w: torch.Tensor) -> torch.Tensor:
    """The matrix for ``op @ s`` with the same result as ``w @ s``: CSR on the CPU when large and sparse
    enough, else ``w``."""
    w = w.detach().contiguous()
    if w.device.type != "cpu" or w.shape[0] < CSR_MIN_ROWS:
        return w
    density = float(torch.count_nonzero(w)) / w.numel()
    if density > CSR_MAX_DENSITY:
        return w
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return w.to_sparse_csr()
