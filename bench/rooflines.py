"""Ceilings measured on this GPU, in the same call as the benchmarks
(METHOD.md): device-to-device copy bandwidth (bytes read + written) and the
bf16 GEMM rate on random data, both through PyTorch, median of timed runs
after warm-ups. Prints one JSON object."""
import json
import statistics

import torch


def timed(f, reps, warm=3):
    for _ in range(warm):
        f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        f()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    return statistics.median(ts)


def main():
    n = 2 << 30  # 2 GiB each way: far past the 60 MB L2
    src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src), 20)
    copy_gbs = 2 * n / t / 1e9
    del src, dst
    m = 8192
    a = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    t = timed(lambda: a @ b, 10)
    gemm = 2 * m ** 3 / t / 1e12
    print(json.dumps({"copy_gbs": round(copy_gbs, 1), "gemm_tflops": round(gemm, 1),
                      "device": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    main()
