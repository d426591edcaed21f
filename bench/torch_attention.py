"""PyTorch on the decode attention of bench/graphs/decode_attention.kir (32 heads of 128,
f16, one query token): F.scaled_dot_product_attention over contiguous K and V
[1, 32, kv, 128] (its best layout; kiln reads the cache [kv, 32, 128] in place), median
microseconds after warm-up at two KV lengths, with the bytes floor of K and V at the copy
rate torch_anchors.py measures (4.25 TB/s on an H200)."""
import torch
import torch.nn.functional as F
from triton.testing import do_bench

for kv in (1024, 4096):
    q = torch.randn(1, 32, 1, 128, dtype=torch.float16, device="cuda")
    k = torch.randn(1, 32, kv, 128, dtype=torch.float16, device="cuda")
    v = torch.randn(1, 32, kv, 128, dtype=torch.float16, device="cuda")
    us = do_bench(lambda: F.scaled_dot_product_attention(q, k, v), warmup=50, rep=200,
                  return_mode="median") * 1000.0
    floor = 2 * k.numel() * 2 / 4.25e12 * 1e6
    print(f"decode_attention[kv{kv}] torch sdpa {us:10.2f} us   floor {floor:6.2f} us")
