"""Block structure of weight matrices and the structured products of the streaming step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from snn_fusion_ros.snn.blocks import CSR_MIN_ROWS, BlockProduct, independent_blocks, recurrent_operator

pytestmark = pytest.mark.unit


def _blocky(rng: np.random.Generator, row_sizes, col_sizes, shuffle: bool) -> tuple[np.ndarray, list]:
    """A matrix with one dense block per (row group k, col group k); rows/cols optionally shuffled."""
    n_r, n_c = sum(row_sizes), sum(col_sizes)
    perm_r = rng.permutation(n_r) if shuffle else np.arange(n_r)
    perm_c = rng.permutation(n_c) if shuffle else np.arange(n_c)
    w = np.zeros((n_r, n_c), np.float32)
    expected, r0, c0 = [], 0, 0
    for nr, nc in zip(row_sizes, col_sizes, strict=True):
        rows, cols = perm_r[r0:r0 + nr], perm_c[c0:c0 + nc]
        w[np.ix_(rows, cols)] = rng.normal(size=(nr, nc)).astype(np.float32)
        if nr and nc:
            expected.append((np.sort(rows), np.sort(cols)))
        r0, c0 = r0 + nr, c0 + nc
    return w, sorted(expected, key=lambda b: int(b[0][0]))


@pytest.mark.parametrize("shuffle", [False, True])
def test_independent_blocks_finds_each_block_once(shuffle):
    w, expected = _blocky(np.random.default_rng(1), [4, 6, 3], [5, 2, 7], shuffle)
    got = independent_blocks(w)
    assert len(got) == 3
    for (r, c), (er, ec) in zip(got, expected, strict=True):
        np.testing.assert_array_equal(r, er)
        np.testing.assert_array_equal(c, ec)


def test_independent_blocks_of_dense_zero_and_empty_rows():
    dense = np.ones((3, 4))
    [(r, c)] = independent_blocks(dense)
    np.testing.assert_array_equal(r, [0, 1, 2])
    np.testing.assert_array_equal(c, [0, 1, 2, 3])
    assert independent_blocks(np.zeros((3, 4))) == []
    w = np.zeros((4, 5))
    w[1, 3] = w[2, 3] = 1.0  # rows 0 and 3, columns 0, 1, 2 and 4 hold nothing: they are in no block
    [(r, c)] = independent_blocks(w)
    np.testing.assert_array_equal(r, [1, 2])
    np.testing.assert_array_equal(c, [3])
    with pytest.raises(ValueError, match="2-D"):
        independent_blocks(np.zeros(3))


@pytest.mark.parametrize("shuffle", [False, True])
def test_block_product_equals_dense_product(shuffle):
    rng = np.random.default_rng(2)
    w, _ = _blocky(rng, [8, 0, 5, 9], [6, 3, 0, 4], shuffle)  # a row group without columns: rows stay 0
    x = torch.from_numpy((rng.random((7, w.shape[1])) < 0.3).astype(np.float32))
    prod = BlockProduct(torch.from_numpy(w))
    assert not prod.dense and prod.n_blocks == 2
    torch.testing.assert_close(prod(x), x @ torch.from_numpy(w).T, atol=1e-5, rtol=1e-6)


def test_block_product_of_a_dense_matrix_is_one_matmul():
    w = torch.randn(5, 6, generator=torch.Generator().manual_seed(3))
    prod = BlockProduct(w)
    assert prod.dense and prod.n_blocks == 1
    x = torch.rand(4, 6)
    torch.testing.assert_close(prod(x), x @ w.T)


def test_recurrent_operator_is_csr_when_large_and_sparse_and_dense_otherwise():
    g = torch.Generator().manual_seed(4)
    n = CSR_MIN_ROWS
    w = torch.randn(n, n, generator=g)
    sparse_w = w * (torch.rand(n, n, generator=g) < 0.1)
    s = (torch.rand(n, generator=g) < 0.3).float()
    op = recurrent_operator(sparse_w)
    assert op.layout == torch.sparse_csr
    torch.testing.assert_close(op @ s, sparse_w @ s, atol=1e-5, rtol=1e-6)
    assert recurrent_operator(w).layout == torch.strided  # dense
    assert recurrent_operator(sparse_w[:-1, :-1]).layout == torch.strided  # too small to gain
