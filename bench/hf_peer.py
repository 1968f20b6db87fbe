"""The Hugging Face transformers peer of bench_cuda (issue 10 item 7): the same
model shape with random bf16 weights, sdpa attention, on the same GPU in the
same call. Prefill P tokens (logits of the last position only), then greedy
decode N tokens with the dynamic cache; decode at depth 0; B sequences of P
tokens decoding together. Median of `reps` for the short tests. Prints one
JSON object a line."""
import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM


def sync_time(f):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    r = f()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, r


def decode(model, pkv, nxt, n):
    for _ in range(n):
        out = model(nxt, past_key_values=pkv, use_cache=True)
        pkv = out.past_key_values
        nxt = out.logits[:, -1:].argmax(-1)
    return nxt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--prompt", type=int, default=32768)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batch-prompt", type=int, default=32768)
    args = ap.parse_args()
    d = tempfile.mkdtemp()
    shutil.copy(args.config, os.path.join(d, "config.json"))
    cfg = AutoConfig.from_pretrained(d)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)

    def build():
        with torch.device("cuda"):  # initialised on the GPU: seconds, not a minute of CPU
            return AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa").eval()

    t, model = sync_time(build)
    assert next(model.parameters()).dtype == torch.bfloat16
    print(json.dumps({"peer": "transformers", "event": "loaded", "seconds": round(t, 1),
                      "transformers": __import__("transformers").__version__, "torch": torch.__version__}), flush=True)
    V = cfg.vocab_size
    g = torch.Generator(device="cuda").manual_seed(1)

    def ids(b, n):
        return torch.randint(0, V, (b, n), device="cuda", generator=g)

    with torch.inference_mode():
        # warm-up
        out = model(ids(1, 1024), use_cache=True, logits_to_keep=1)
        decode(model, out.past_key_values, out.logits[:, -1:].argmax(-1), 4)
        # decode at depth 0 (one prompt token)
        out = model(ids(1, 1), use_cache=True, logits_to_keep=1)
        n0 = 64
        t, _ = sync_time(lambda: decode(model, out.past_key_values, out.logits[:, -1:].argmax(-1), n0))
        print(json.dumps({"peer": "transformers", "test": "tg@0", "batch": 1, "tokens_per_s": n0 / t}), flush=True)
        # prefill P, then decode N after it
        x = ids(1, args.prompt)
        t, out = sync_time(lambda: model(x, use_cache=True, logits_to_keep=1))
        print(json.dumps({"peer": "transformers", "test": "pp", "n_prompt": args.prompt,
                          "tokens_per_s": args.prompt / t}), flush=True)
        t, _ = sync_time(lambda: decode(model, out.past_key_values, out.logits[:, -1:].argmax(-1), args.gen))
        print(json.dumps({"peer": "transformers", "test": "tg", "depth": args.prompt, "batch": 1,
                          "tokens_per_s": args.gen / t}), flush=True)
        del out
        torch.cuda.empty_cache()
        if args.batch > 0:
            x = ids(args.batch, args.batch_prompt)
            out = model(x, use_cache=True, logits_to_keep=1)
            t, _ = sync_time(lambda: decode(model, out.past_key_values, out.logits[:, -1:].argmax(-1), args.gen))
            print(json.dumps({"peer": "transformers", "test": "tg", "depth": args.batch_prompt, "batch": args.batch,
                              "tokens_per_s": args.gen * args.batch / t}), flush=True)


if __name__ == "__main__":
    main()
