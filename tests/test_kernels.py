"""The fused NT-Xent kernel against the reference: value and gradient, odd shapes, dtypes, errors.

Without a GPU the kernels run in Triton's CPU interpreter, which must be switched on with
TRITON_INTERPRET=1 *before triton is imported* (Triton's own helpers such as tl.sum are kernels
decorated at import). This module sets it at the top, and a module fixture removes it again after
the last test, so the notebooks that pytest runs next do not inherit it (on a GPU machine it would
turn every Triton kernel, torch.compile's included, into slow Python). If something imported
triton earlier in this process, the interpreter tests rerun this file in a fresh Python instead.
With a GPU the same parity tests run on CUDA with compiled kernels.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CUDA = torch.cuda.is_available()
_SAVED_INTERPRET = os.environ.get("TRITON_INTERPRET")
if not CUDA and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"

triton = pytest.importorskip("triton")
kt = importlib.import_module("course_lib.kernels.nt_xent_triton")
if not CUDA and not kt.INTERPRETED and os.environ.get("TRITON_INTERPRET") == "1":
    kt = importlib.reload(kt)  # decorated before the variable was set; triton itself is fine
RUNNABLE = CUDA or kt.INTERPRETED
needs_kernels = pytest.mark.skipif(not RUNNABLE, reason="triton was imported before TRITON_INTERPRET=1 could be "
                                   "set; test_interpreter_suite_in_fresh_process runs these instead")


@pytest.fixture(scope="module", autouse=True)
def _restore_interpret_variable():
    yield
    if _SAVED_INTERPRET is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _SAVED_INTERPRET


@pytest.mark.skipif(RUNNABLE, reason="the kernels run in this process")
def test_interpreter_suite_in_fresh_process():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


from course_lib.kernels import nt_xent as fk  # noqa: E402
from course_lib.contrastive.losses import nt_xent, nt_xent_reference  # noqa: E402

DEVICE = torch.device("cuda" if CUDA else "cpu")
# fp32: 1e-5 relative (the parity notebook 04 promises); an absolute floor for losses near 0 (2N = 2 has loss 0).
FP32 = dict(rtol=1e-5, atol=1e-6)
# bf16 (documented in course_lib/kernels/nt_xent.py): against the fp32 reference of the same
# bf16 inputs, loss within 1 % and each gradient entry within 2 % of the gradient's largest entry.
BF16_LOSS_RTOL, BF16_GRAD_FRAC = 1e-2, 2e-2

SHAPES = [(74, 129), (2, 3), (6, 1), (8, 512), (130, 16)]  # (2N, D): odd, tiny, D = 1, D = 512
# 3 x 3 tiles of rows and columns, 3 chunks of D, the last ones partial (slow in the interpreter).
SMALL_TILES = kt.LaunchConfig(block_m=16, block_n=16, block_d=16, num_warps=1, num_stages=1)


def _z(rows: int, dim: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, dim, generator=gen).to(device=DEVICE, dtype=dtype)


def _loss_and_grad(fn, z: torch.Tensor, *args):
    z = z.detach().clone().requires_grad_(True)
    loss = fn(z, *args)
    loss.backward()
    return loss.detach(), z.grad


# Where the exact gradient is 0 (D = 1: every gradient is radial, and the normalisation removes it),
# both sides are fp32 rounding noise: allow two ulps at unit scale there, 2 * 2^-23.
ZERO_GRAD_FLOOR = 2 * torch.finfo(torch.float32).eps


def _assert_grad_close(got: torch.Tensor, want: torch.Tensor, rtol: float, frac: float) -> None:
    got, want = got.double(), want.double()
    torch.testing.assert_close(got, want, rtol=rtol, atol=frac * want.abs().max().item() + ZERO_GRAD_FLOOR)


LSE_SHAPES = [(r, d) for r, d in SHAPES if r > 2]  # 2N = 2 has no negatives: see the test after this one


@needs_kernels
@pytest.mark.parametrize("rows,dim,config", [(r, d, None) for r, d in LSE_SHAPES] + [(40, 40, SMALL_TILES)],
                         ids=[f"{r}x{d}" for r, d in LSE_SHAPES] + ["40x40_16x16x16_tiles"])
def test_negatives_logsumexp_matches_reference_value_and_gradient(rows, dim, config):
    zn = torch.nn.functional.normalize(_z(rows, dim, seed=rows + dim), dim=1)
    temperature = 0.2
    want = fk.negatives_logsumexp_reference(zn, temperature)
    got = fk.NegativesLogSumExp.apply(zn, temperature, config)
    torch.testing.assert_close(got, want, **FP32)
    # A random upstream gradient exercises both terms of the backward (g_k p_kj and g_j p_jk).
    weights = torch.randn(rows, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    zr = zn.clone().requires_grad_(True)
    (fk.negatives_logsumexp_reference(zr, temperature) * weights).sum().backward()
    zk = zn.clone().requires_grad_(True)
    (fk.NegativesLogSumExp.apply(zk, temperature, config) * weights).sum().backward()
    _assert_grad_close(zk.grad, zr.grad, rtol=1e-5, frac=1e-5)


@needs_kernels
def test_two_rows_have_no_negatives_and_a_zero_gradient():
    zn = torch.nn.functional.normalize(_z(2, 3, seed=5), dim=1).requires_grad_(True)
    lse = fk.NegativesLogSumExp.apply(zn, 0.5, None)
    assert torch.isneginf(lse).all()                       # the log of an empty sum, as the reference says
    assert torch.isneginf(fk.negatives_logsumexp_reference(zn.detach(), 0.5)).all()
    lse.sum().backward()                                    # an empty sum does not depend on zn: no NaN
    assert torch.equal(zn.grad, torch.zeros_like(zn))


def _dominant_positives(rows: int, dim: int, noise: float) -> torch.Tensor:
    """(2N, D): the second view of each image is the first plus a little noise, so every positive
    logit stands far above the negatives and the loss is tiny."""
    gen = torch.Generator().manual_seed(rows + dim)
    first = torch.randn(rows // 2, dim, generator=gen)
    return torch.cat([first, first + noise * torch.randn(rows // 2, dim, generator=gen)]).to(DEVICE)


@needs_kernels
@pytest.mark.parametrize("rows,dim,noise", [(4, 128, 0.0), (4, 128, 0.01), (8, 128, 0.05), (74, 129, 0.03)])
def test_small_losses_keep_their_relative_accuracy(rows, dim, noise):
    # Losses of 1e-10 to 1e-6 at t = 0.05. `lse_all - pos` would cancel here (it once gave -3.8e-6 for a
    # loss of about 0); softplus(lse_negatives - pos) must match float64 to 1e-5 relative, as elsewhere.
    z = _dominant_positives(rows, dim, noise)
    want, want_grad = _loss_and_grad(nt_xent_reference, z.double(), 0.05)
    got, got_grad = _loss_and_grad(lambda x, t: nt_xent(x, t, impl="triton"), z, 0.05)
    assert 0 < want.item() < 1e-5
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=0.0)
    _assert_grad_close(got_grad, want_grad, rtol=1e-5, frac=1e-5)


@needs_kernels
@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("rows,dim", SHAPES)
def test_nt_xent_fp32_parity_value_and_gradient(rows, dim, temperature):
    z = _z(rows, dim, seed=rows * dim)
    want, want_grad = _loss_and_grad(nt_xent_reference, z, temperature)
    got, got_grad = _loss_and_grad(lambda x, t: nt_xent(x, t, impl="triton"), z, temperature)
    assert got.dtype == torch.float32 and got.shape == ()
    torch.testing.assert_close(got, want, **FP32)
    _assert_grad_close(got_grad, want_grad, rtol=1e-5, frac=1e-5)


@needs_kernels
@pytest.mark.parametrize("temperature", [0.05, 0.5])
@pytest.mark.parametrize("rows,dim", [(74, 129), (8, 512)])
def test_nt_xent_bf16_within_documented_tolerance(rows, dim, temperature):
    z = _z(rows, dim, seed=3, dtype=torch.bfloat16)
    want, want_grad = _loss_and_grad(nt_xent_reference, z.float(), temperature)  # fp32 truth, same inputs
    got, got_grad = _loss_and_grad(lambda x, t: nt_xent(x, t, impl="triton"), z, temperature)
    assert got.dtype == torch.bfloat16 and got_grad.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=BF16_LOSS_RTOL, atol=1e-3)
    _assert_grad_close(got_grad.float(), want_grad, rtol=0.0, frac=BF16_GRAD_FRAC)


@needs_kernels
def test_finite_and_accurate_at_temperature_0_01():
    # Logits reach 1 / 0.01 = 100: exp(100) overflows fp32 unless the max is subtracted first.
    z = _z(66, 64, seed=5)
    z[33:] = z[:33] + 1e-3 * _z(33, 64, seed=6)  # near-identical positives: logits close to 100
    want, want_grad = _loss_and_grad(nt_xent_reference, z, 0.01)
    got, got_grad = _loss_and_grad(lambda x, t: nt_xent(x, t, impl="triton"), z, 0.01)
    assert torch.isfinite(got) and torch.isfinite(got_grad).all()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    _assert_grad_close(got_grad, want_grad, rtol=1e-4, frac=1e-5)


BAD_INPUTS = {
    "odd rows": (lambda: _z(5, 4), 0.5),
    "one row": (lambda: _z(1, 4), 0.5),
    "1-D": (lambda: _z(4, 1)[:, 0], 0.5),
    "3-D": (lambda: _z(4, 4).view(2, 2, 4), 0.5),
    "D = 0": (lambda: torch.zeros(4, 0, device=DEVICE), 0.5),
    "integer": (lambda: torch.ones(4, 3, dtype=torch.int64, device=DEVICE), 0.5),
    "NaN": (lambda: _z(4, 3).index_fill(0, torch.tensor([2], device=DEVICE), float("nan")), 0.5),
    "inf": (lambda: _z(4, 3).index_fill(0, torch.tensor([1], device=DEVICE), float("inf")), 0.5),
    "temperature 0": (lambda: _z(4, 3), 0.0),
    "negative temperature": (lambda: _z(4, 3), -0.1),
    "NaN temperature": (lambda: _z(4, 3), float("nan")),
    "string temperature": (lambda: _z(4, 3), "0.5"),
    "not a tensor": (lambda: [[1.0, 2.0], [3.0, 4.0]], 0.5),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_same_input_errors_as_reference(case):
    make, temperature = BAD_INPUTS[case]
    with pytest.raises(Exception) as ref_err:
        nt_xent(make(), temperature, impl="torch")
    with pytest.raises(type(ref_err.value)) as fused_err:
        nt_xent(make(), temperature, impl="triton")
    assert str(fused_err.value) == str(ref_err.value)


def test_unsupported_dtype_says_what_to_do():
    with pytest.raises(TypeError, match="impl='torch'"):
        nt_xent(_z(4, 3, dtype=torch.float64), 0.5, impl="triton")


def test_cpu_tensor_without_interpreter_raises_clear_error(monkeypatch):
    monkeypatch.setattr(fk, "interpreting", lambda: False)
    with pytest.raises(RuntimeError, match=r"impl='torch'.*TRITON_INTERPRET=1"):
        nt_xent(torch.randn(4, 3), 0.5, impl="triton")


def test_prefer_fused_only_on_cuda_above_threshold():
    assert not fk.prefer_fused(torch.randn(fk.FUSED_MIN_ROWS, 4))  # CPU, even under the interpreter
    z = torch.randn(8, 3)
    assert torch.equal(nt_xent(z, 0.5, impl="auto"), nt_xent_reference(z, 0.5))


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_prefer_fused_on_cuda():
    small = torch.randn(fk.FUSED_MIN_ROWS - 2, 4, device="cuda")
    large = torch.randn(fk.FUSED_MIN_ROWS, 4, device="cuda")
    assert not fk.prefer_fused(small)
    assert fk.prefer_fused(large)
    assert not fk.prefer_fused(large.double())


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_large_batch_parity_and_memory():
    z = _z(8192, 128, seed=7)
    want, want_grad = _loss_and_grad(nt_xent_reference, z, 0.1)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    got, got_grad = _loss_and_grad(lambda x, t: nt_xent(x, t, impl="triton"), z, 0.1)
    extra = torch.cuda.max_memory_allocated() - base
    torch.testing.assert_close(got, want, **FP32)
    _assert_grad_close(got_grad, want_grad, rtol=1e-5, frac=1e-5)
    assert extra < 64 * z.numel() * 4, f"fused loss used {extra / 2**20:.0f} MiB beyond its inputs"  # O(N D), not O(N^2)


def test_kernels_compile_for_t4_a100_and_h100_without_register_spills(tmp_path):
    """Without a GPU, still check that the kernels build for sm_75, sm_80 and sm_90 with each one's tiles
    (Triton compiles ahead of time for a target it cannot run), fp32 and bf16, in a subprocess with
    compiled, not interpreted, kernels, and that ptxas reports no register spills."""
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if not ptxas.exists():
        pytest.skip("this Triton has no bundled ptxas")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", COMPILE_FOR_GPUS, str(ptxas)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("spills=0") == 3 * 2 * 2, proc.stdout   # 3 GPUs x 2 dtypes x 2 kernels


COMPILE_FOR_GPUS = """
import re, subprocess, sys, tempfile
import torch, triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from course_lib.kernels import nt_xent_triton as kt
assert not kt.INTERPRETED
SCALARS = {"M": "i32", "D": "i32", "stride_row": "i32", "stride_dz_row": "i32", "inv_temp": "fp32"}
for cap, dtype, ty in [(c, d, t) for c in (75, 80, 90) for d, t in ((torch.float32, "fp32"), (torch.bfloat16, "bf16"))]:
    cfg = kt.launch_config(128, dtype, divmod(cap, 10))
    consts = dict(BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_D=cfg.block_d,
                  DOT_PRECISION=kt._dot_precision(dtype))
    for kernel in (kt._lse_fwd_kernel, kt._lse_bwd_kernel):
        names = kernel.arg_names
        sig = {n: (f"*{ty}" if n == "z_ptr" else "*fp32") if n.endswith("_ptr") else SCALARS.get(n, "constexpr")
               for n in names}
        src = ASTSource(fn=kernel, signature=sig, constexprs=consts)
        out = triton.compile(src, target=GPUTarget("cuda", cap, 32),
                             options=dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages))
        with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
            f.write(out.asm["ptx"]); f.flush()
            log = subprocess.run([sys.argv[1], "-v", f"--gpu-name=sm_{cap}" + ("a" if cap == 90 else ""), f.name, "-o", "/dev/null"],
                                 capture_output=True, text=True, check=True).stderr
        spills = int(re.search(r"(\\d+) bytes spill stores", log).group(1))
        regs = re.search(r"Used (\\d+) registers", log).group(1)
        print(f"sm_{cap} {kernel.fn.__name__} {ty} regs={regs} spills={spills}")
"""


def test_exercise_references_pass_their_checks_and_a_minus_inf_start_fails():
    from course_lib.checks import check_negatives_lse_grad, check_online_logsumexp, CheckFailed
    from course_lib.checks.fused_kernel import negatives_lse_grad_reference, online_logsumexp_reference

    check_online_logsumexp(online_logsumexp_reference)
    check_negatives_lse_grad(negatives_lse_grad_reference)

    def starts_at_minus_inf(x, block):
        m, s = torch.full((len(x),), float("-inf")), torch.zeros(len(x))
        for start in range(0, x.shape[1], block):
            tile = x[:, start:start + block]
            new = torch.maximum(m, tile.max(dim=1).values)
            s, m = s * torch.exp(m - new) + torch.exp(tile - new[:, None]).sum(dim=1), new
        return m + torch.log(s)

    with pytest.raises(CheckFailed, match="first tile fully masked"):
        check_online_logsumexp(starts_at_minus_inf)

    def weights(zn, lse, dlse, temperature, mask_partner=True):
        p = torch.exp(zn @ zn.T / temperature - lse[:, None]).fill_diagonal_(0.0)
        if mask_partner:
            p = p.masked_fill(~fk.negatives_mask(len(zn)), 0.0)
        return dlse[:, None] * p

    def forgets_the_column_term(zn, lse, dlse, temperature):
        return weights(zn, lse, dlse, temperature) @ zn / temperature

    def counts_the_partner_as_a_negative(zn, lse, dlse, temperature):
        w = weights(zn, lse, dlse, temperature, mask_partner=False)
        return (w + w.T) @ zn / temperature

    for wrong in (forgets_the_column_term, counts_the_partner_as_a_negative):
        with pytest.raises(CheckFailed, match="wrong values"):
            check_negatives_lse_grad(wrong)


@needs_kernels
def test_benchmark_quick_runs_and_records_both_variants(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import nt_xent as bench

    assert bench.main(["--quick", "--sizes", "66", "--repeats", "1", "--out", str(tmp_path)]) == 0
    records = json.loads(next(tmp_path.glob("nt_xent-*.json")).read_text())
    variants = {(r["variant"], r["metric"], r["dtype"]) for r in records}
    for dtype in ("fp32", "bf16"):
        assert ("naive_torch", "fwd_bwd_time", dtype) in variants
        assert ("fused_triton", "fwd_bwd_time", dtype) in variants
    diffs = [r["value"] for r in records if r["metric"] == "loss_rel_diff_vs_naive" and r["dtype"] == "fp32"]
    assert diffs and diffs[0] < 1e-5
    assert all(r["interpreter"] == (not CUDA) for r in records)


def test_kernels_launch_on_the_device_of_their_input():
    """Triton launches on the current CUDA device: a z on cuda:1 must make cuda:1 current (built, not entered)."""
    context = kt.launch_device(torch.device("cuda", 1))
    assert isinstance(context, torch.cuda.device) and context.idx == 1
    with kt.launch_device(torch.device("cpu")):   # the interpreter: nothing to switch
        pass
