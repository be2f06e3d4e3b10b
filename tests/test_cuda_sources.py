"""Our custom CUDA kernels compile (nvcc, sm_90) as MLX's CUDA backend would
build them. Needs nvcc; skipped without it (the GPU self-checks in
cuda_moe / cuda_gdn_layer / cuda_gdn test what they compute)."""
import shutil
import subprocess

import pytest

from mlxprof.decode.kernels import cuda_common, cuda_gdn, cuda_gdn_layer, cuda_moe

NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not installed")

# MLX 0.32.4's default header includes its device utils; for a syntax and
# type check these standard headers stand in for them.
PRELUDE = """
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cooperative_groups.h>
#include <cuda/std/limits>
#include <cuda/std/array>
using Shape = cuda::std::array<int32_t, 8>;
#define inf cuda::std::numeric_limits<float>::infinity()
"""

BF16, F32, U32 = "__nv_bfloat16", "float", "unsigned int"


def kernel_source(name, inputs, outputs, template, source, header=""):
    """What MLX's CUDA custom_kernel.cpp generates (signature, constants)."""
    args = []
    for n, t in inputs:     # MLX passes <name>_shape when the source names it
        args.append(f"    const {t}* {n}")
        if f"{n}_shape" in source:
            args.append(f"    const __grid_constant__ Shape {n}_shape")
    args += [f"    {t}* {n}" for n, t in outputs]
    consts = []
    for k, v in template:
        if isinstance(v, bool):
            consts.append(f"  constexpr bool {k} = {'true' if v else 'false'};")
        elif isinstance(v, int):
            consts.append(f"  constexpr int {k} = {v};")
        else:
            consts.append(f"  using {k} = {v};")
    return (PRELUDE + header + "namespace mlx::core::cu {\nnamespace cg = cooperative_groups;\n"
            f"__global__ void {name}(\n" + ",\n".join(args) + ") {\n"
            + "\n".join(consts) + "\n" + source + "\n}\n}\n")


def compile_ok(tmp_path, src):
    """Device code only (--cubin: front end, PTX and ptxas), as MLX's JIT builds
    a kernel; skipping the host object (-c) takes a third of the time."""
    f = tmp_path / "k.cu"
    f.write_text(src)
    r = subprocess.run([NVCC, "-arch=sm_90", "--cubin", str(f), "-o", str(tmp_path / "k.cubin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize("norm,sg", [(True, True), (False, False)])
def test_route_kernel_compiles(tmp_path, norm, sg):
    src = kernel_source(
        "route", [("logits", BF16)], [("inds", U32), ("scores", BF16), ("sgate", BF16)],
        [("OutT", BF16), ("E", 256), ("K", 8), ("W", 257), ("BLOCK", 256),
         ("NORM", norm), ("SG", sg)], cuda_moe._ROUTE,
        cuda_common.HEADER + cuda_moe.ROUTE_HEADER)
    compile_ok(tmp_path, src)


@pytest.mark.parametrize("shared,in_y", [(True, True), (True, False), (False, False)])
def test_combine_kernel_compiles(tmp_path, shared, in_y):
    src = kernel_source(
        "combine", [(n, BF16) for n in ("y", "scores", "sgate", "shr", "h")],
        [("out", BF16)],
        [("OutT", BF16), ("K", 8), ("D", 2048), ("YR", 9 if in_y else 8),
         ("SHARED", shared), ("SHARED_IN_Y", in_y)], cuda_moe._COMBINE,
        cuda_common.HEADER + cuda_moe._COMBINE_HEADER)
    compile_ok(tmp_path, src)


@pytest.mark.parametrize("ab_f32", [False, True])
def test_gdn_step_kernel_compiles(tmp_path, ab_f32):
    ins = [("p", BF16), ("conv_state", BF16), ("conv_w", BF16), ("state_in", F32),
           ("A_log", F32), ("dt_bias", F32 if ab_f32 else BF16), ("norm_w", BF16),
           ("consts", F32)]
    src = kernel_source(
        "gdn", ins, [("y", BF16), ("conv_out", BF16), ("state_out", F32)],
        [("OutT", BF16), ("HK", 16), ("HV", 32), ("DK", 128), ("DV", 128), ("KS", 4),
         ("NWARP", 8), ("AB_F32", ab_f32)], cuda_gdn_layer._SOURCE, cuda_common.HEADER)
    compile_ok(tmp_path, src)


def test_gated_delta_kernel_compiles(tmp_path):
    ins = [(n, F32) for n in ("q", "k", "v", "g", "beta", "state_in")]
    src = kernel_source(
        "gd", ins, [("y", BF16), ("state_out", F32)],
        [("OutT", BF16), ("T", 1), ("Dk", 128), ("Dv", 128), ("Hk", 16), ("Hv", 32)],
        cuda_gdn._SOURCE)
    compile_ok(tmp_path, src)


def test_add_norm_kernel_compiles(tmp_path):
    from mlxprof.decode.kernels import cuda_norm
    src = kernel_source(
        "add_norm", [("x", BF16), ("r", BF16), ("w", BF16), ("eps", F32)],
        [("h", BF16), ("n", BF16)], [("OutT", BF16), ("D", 4096), ("BLOCK", 1024)],
        cuda_norm._SOURCE, cuda_common.HEADER)
    compile_ok(tmp_path, src)


@pytest.mark.parametrize("shared,in_y", [(True, True), (False, False)])
def test_combine_norm_kernel_compiles(tmp_path, shared, in_y):
    src = kernel_source(
        "combine_norm", [(n, BF16) for n in ("y", "scores", "sgate", "shr", "h", "w")]
        + [("eps", F32)], [("out", BF16), ("n", BF16)],
        [("OutT", BF16), ("K", 8), ("D", 2048), ("YR", 9 if in_y else 8),
         ("SHARED", shared), ("SHARED_IN_Y", in_y), ("BLOCK", 1024)],
        cuda_moe._COMBINE_NORM, cuda_common.HEADER + cuda_moe._COMBINE_HEADER)
    compile_ok(tmp_path, src)


@pytest.mark.parametrize("trad,norm", [(False, True), (True, True), (False, False)])
def test_qk_norm_rope_kernel_compiles(tmp_path, trad, norm):
    from mlxprof.decode.kernels import cuda_rope
    t, w = (BF16, BF16) if norm else ("__half", F32)   # llama's: fp16, consts as weights
    heads = [("HQ", 16), ("HK", 2), ("D", 256), ("P", 9216)] if norm else \
        [("HQ", 9), ("HK", 3), ("D", 64), ("P", 960)]
    src = kernel_source(
        "qk_rope", [("p", t), ("q_w", w), ("k_w", w), ("offset", "int32_t"),
                    ("consts", F32)], [("q", t), ("k", t), ("v", t)],
        [("OutT", t), *heads, ("DIMS", 64), ("TRAD", trad), ("NORM", norm)],
        cuda_rope._SOURCE, cuda_common.HEADER)
    compile_ok(tmp_path, src)


def test_add_norm_kernel_compiles_with_float32_weight(tmp_path):
    from mlxprof.decode.kernels import cuda_norm
    src = kernel_source(
        "add_norm32", [("x", BF16), ("r", BF16), ("w", F32), ("eps", F32)],
        [("h", BF16), ("n", BF16)], [("OutT", BF16), ("D", 2048), ("BLOCK", 1024)],
        cuda_norm._SOURCE, cuda_common.HEADER)
    compile_ok(tmp_path, src)


@pytest.mark.parametrize("t,k,gs,warps", [(BF16, 4096, 64, 4), (BF16, 12288, 64, 4),
                                         (F32, 2048, 32, 2), ("__half", 512, 128, 1)])
def test_qmv_kernel_compiles(tmp_path, t, k, gs, warps):
    from mlxprof.decode.kernels import cuda_qmv
    src = kernel_source(
        "qmv", [("x", t), ("w", "uint32_t"), ("scales", t), ("biases", t)], [("y", t)],
        [("T", t), ("K", k), ("N", 4096), ("GS", gs), ("ROWS", cuda_qmv.ROWS),
         ("WARPS", warps), ("SWIGLU", False)], cuda_qmv._SOURCE,
        cuda_common.HEADER + cuda_qmv.QMV_HEADER)
    compile_ok(tmp_path, src)


@pytest.mark.parametrize("kind", ["stamp", "hold"])
def test_device_clock_kernels_compile(tmp_path, kind):
    from mlxprof import device_clock as dc
    src, outs = (dc._STAMP, [("y", "int32_t"), ("t", "uint64_t")]) if kind == "stamp" \
        else (dc._HOLD, [("y", "int32_t")])
    consts = [("SIZE", 1)] + ([("NS", 50_000_000)] if kind == "hold" else [])
    compile_ok(tmp_path, kernel_source(kind, [("x", "int32_t")], outs, consts, src))


@pytest.mark.parametrize("t,k,gs,warps", [(BF16, 4096, 64, 4), (BF16, 12288, 64, 4),
                                         (F32, 2048, 32, 2)])
def test_qmv_swiglu_kernel_compiles(tmp_path, t, k, gs, warps):
    from mlxprof.decode.kernels import cuda_qmv
    src = kernel_source(
        "qmv_swiglu", [("x", t), ("w", "uint32_t"), ("scales", t), ("biases", t)],
        [("y", t)], [("T", t), ("K", k), ("N", 12288), ("GS", gs),
                     ("ROWS", cuda_qmv.ROWS_SWIGLU), ("WARPS", warps), ("SWIGLU", True)],
        cuda_qmv._SOURCE, cuda_common.HEADER + cuda_qmv.QMV_HEADER)
    compile_ok(tmp_path, src)


QUANT = [("w_e", "uint32_t"), ("s_e", BF16), ("b_e", BF16), ("w_s", "uint32_t"),
         ("s_s", BF16), ("b_s", BF16)]


@pytest.mark.parametrize("shared", [True, False])
def test_experts_gate_up_kernel_compiles(tmp_path, shared):
    from mlxprof.decode.kernels import cuda_experts, cuda_qmv
    src = kernel_source(
        "gate_up", [("x", BF16), ("inds", U32)] + QUANT, [("y_all", BF16)],
        [("T", BF16), ("K", 2048), ("N", 512), ("GS", 64), ("ROWS", cuda_qmv.ROWS_SWIGLU),
         ("WARPS", 2), ("SWIGLU", True), ("KR", 8), ("SHARED", shared)],
        cuda_experts._GATE_UP, cuda_common.HEADER + cuda_qmv.QMV_HEADER)
    compile_ok(tmp_path, src)


@pytest.mark.parametrize("shared,norm,e", [(True, True, 256), (False, True, 128),
                                           (False, False, 64)])
def test_experts_gate_up_routed_kernel_compiles(tmp_path, shared, norm, e):
    from mlxprof.decode.kernels import cuda_experts, cuda_qmv
    src = kernel_source(
        "gate_up_routed", [("x", BF16), ("logits", BF16)] + QUANT,
        [("y_all", BF16), ("inds", U32), ("scores", BF16), ("sgate", BF16)],
        [("T", BF16), ("K", 2048), ("N", 512), ("GS", 64), ("ROWS", cuda_qmv.ROWS_SWIGLU),
         ("WARPS", 2), ("SWIGLU", True), ("KR", 8), ("SHARED", shared), ("E", e),
         ("NORM", norm), ("SG", shared)],
        cuda_experts._GATE_UP_ROUTED,
        cuda_common.HEADER + cuda_qmv.QMV_HEADER + cuda_moe.ROUTE_HEADER)
    compile_ok(tmp_path, src)


@pytest.mark.parametrize("shared,n", [(True, 512), (False, 768)])
def test_experts_down_kernel_compiles(tmp_path, shared, n):
    from mlxprof.decode.kernels import cuda_experts, cuda_qmv
    ins = [("act", BF16), ("inds", U32), ("scores", BF16), ("sgate", BF16), ("h", BF16)] + QUANT
    src = kernel_source(
        "down", ins, [("out", BF16)],
        [("T", BF16), ("K", n), ("D", 2048), ("GS", 64), ("ROWS", cuda_experts.ROWS_DOWN),
         ("WARPS", 1), ("KR", 8), ("SHARED", shared)],
        cuda_experts._DOWN, cuda_common.HEADER + cuda_qmv.QMV_HEADER)
    compile_ok(tmp_path, src)


@pytest.mark.parametrize("t,d", [(BF16, 64), (BF16, 128), (BF16, 256), (F32, 128)])
def test_decode_attention_kernel_compiles(tmp_path, t, d):
    from mlxprof.decode.kernels import cuda_attention as ca
    src = kernel_source(
        "attn", [("q", t), ("keys", t), ("values", t), ("n", "int32_t")], [("o", t)],
        [("T", t), ("H", 16), ("HKV", 2), ("D", d), ("WARPS", ca.WARPS),
         ("U", ca.UNROLL), ("SCALE_BITS", ca._scale_bits(d ** -0.5))],
        ca._SOURCE, cuda_common.HEADER + ca._ATTN_HEADER)
    compile_ok(tmp_path, src)
