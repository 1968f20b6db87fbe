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

    # The default against the same scenarios run with each of gpu.sh's AB environments (the same call).
    try:
        with open(os.path.join(out, "ab.txt")) as f:
            envs = [l.strip() for l in f if l.strip()]
    except OSError:
        envs = []
    for i, env in enumerate(envs):
        ab = {s["scenario"]: s for s in (load(os.path.join(out, f"bench_ab_{i}.json")) or {}).get("scenarios", [])}
        if not ab:
            continue
        print(f"\n| scenario | {env} tok/s | default tok/s | default / {env} |")
        print("|---|---:|---:|---:|")
        for s in bench.get("scenarios", []):
            b = ab.get(s["scenario"])
            if not b:
                continue
            for key, what in (("pp_tokens_per_s", "prefill"), ("tg_tokens_per_s", "decode")):
                if s.get(key) and b.get(key) and (key != "pp_tokens_per_s" or s["prompt"] > 1):
                    print(f"| {s['scenario']} {what} | {b[key]:.1f} | {s[key]:.1f} | {s[key] / b[key]:.3f} |")


if __name__ == "__main__":
    main()
