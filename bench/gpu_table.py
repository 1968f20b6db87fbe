"""The short table scripts/gpu.sh prints last: this engine's figures, their
rooflines from the ceilings measured in the same call, and the transformers
peer's figures from the same call."""
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    out = sys.argv[1]
    roof = load(os.path.join(out, "roof.json")) or {}
    bench = load(os.path.join(out, "bench.json")) or {}
    kern = load(os.path.join(out, "kernels.json")) or {}
    peer = []
    try:
        with open(os.path.join(out, "peer.jsonl")) as f:
            peer = [json.loads(l) for l in f if l.strip().startswith("{")]
    except OSError:
        pass

    def hf(test, **kw):
        for p in peer:
            if p.get("test") == test and all(p.get(k) == v for k, v in kw.items()):
                return p["tokens_per_s"]
        return None

    print(f"\nceilings: copy {roof.get('copy_gbs', '?')} GB/s, bf16 GEMM {roof.get('gemm_tflops', '?')} TFLOP/s "
          f"({roof.get('device', '?')})")
    for k in kern.get("kernels", []):
        print("kernel", json.dumps(k))
    rows = []
    for s in bench.get("scenarios", []):
        name = s["scenario"]
        if s["prompt"] > 1:
            rows.append((f"prefill {s['prompt']} {s['method']}", s["pp_tokens_per_s"], s["pp_roofline"],
                         hf("pp", n_prompt=s["prompt"]) if s["method"] == "full" else None, s))
        depth = s["prompt"] if s["prompt"] > 1 else 0
        peer_tg = hf("tg@0") if depth == 0 else (hf("tg", depth=depth, batch=s["batch"]) if s["method"] == "full" else None)
        rows.append((f"decode {s['batch']}x @{depth} {s['method']}" + (f"@{s['budget']}" if s['budget'] else ""),
                     s["tg_tokens_per_s"], s["tg_roofline"], peer_tg, s))
    print("\n| test (Llama-3.1-8B shapes, random bf16) | compresskv CUDA tok/s | roofline | fraction | transformers | ratio | device GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, tps, rf, p, s in rows:
        ratio = f"{tps / p:.2f}x" if p else "-"
        ps = f"{p:.1f}" if p else "-"
        print(f"| {name} | {tps:.1f} | {rf:.0f} | {100 * tps / rf:.1f}% | {ps} | {ratio} | {s['device_bytes'] / 2**30:.1f} |")

    # The default (fused decode forms) against CKV_CUDA_FUSED=0, scenario by scenario (the same call).
    plain = {s["scenario"]: s for s in (load(os.path.join(out, "bench_plain.json")) or {}).get("scenarios", [])}
    if plain:
        print("\n| scenario | plain tok/s | fused (default) tok/s | fused / plain |")
        print("|---|---:|---:|---:|")
        for s in bench.get("scenarios", []):
            p = plain.get(s["scenario"])
            if not p:
                continue
            for key, what in (("pp_tokens_per_s", "prefill"), ("tg_tokens_per_s", "decode")):
                if s.get(key) and p.get(key) and (key != "pp_tokens_per_s" or s["prompt"] > 1):
                    print(f"| {s['scenario']} {what} | {p[key]:.1f} | {s[key]:.1f} | {s[key] / p[key]:.3f} |")


if __name__ == "__main__":
    main()
