"""Custom CUDA kernels for one-token decode, each with an MLX-ops reference.

Each module builds its kernel with `mx.fast.cuda_kernel`, checks it against its
reference on the device before "auto" options use it (`cuda_common.self_checked`),
and refuses a non-CUDA device with a clear error.
"""
