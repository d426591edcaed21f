"""PyTorch (cuBLAS) on the square f16 matmul of bench/graphs/matmul_f16.kir, the anchor of
the tiled-matmul target: median microseconds after warm-up and the rate in TFLOPS."""
import torch
from triton.testing import do_bench

n = 4096
a = torch.randn(n, n, dtype=torch.float16, device="cuda")
b = torch.randn(n, n, dtype=torch.float16, device="cuda")
us = do_bench(lambda: a @ b, warmup=50, rep=200, return_mode="median") * 1000.0
print(f"matmul[4096^3,f16] torch {us:10.2f} us   {2 * n**3 / (us * 1e-6) / 1e12:7.1f} TFLOPS")
