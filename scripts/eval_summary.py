#!/usr/bin/env python3
"""summary.md of scripts/eval_smollm2.sh's output folder: each command's own
table (table.md), the paper's Table 3 ablation (SnapKV -> +SRH selection ->
+error-aware budgets) and the observation-window ablation, both read from
the results.json files (DESIGN.md 6), and the wall time of every command."""
import argparse
import datetime
import json
import os
import re
import sys

ABLATION = [("snapkv", "SnapKV (window + uniform)"), ("srh+uniform", "+ SRH selection (srh + uniform)"),
            ("compresskv", "+ error-aware budgets (= CompressKV)")]


def load(out, name):
    path = os.path.join(out, name, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def summary_value(res, method, budget, key):
    for s in res["summary"]:
        if s["method"] == method and s["budget"] == budget:
            return s.get(key, s.get("score"))
    return None


def fmt(v, key="score"):
    if v is None:
        return "-"
    return f"{v:.4f}" if key.startswith("kl") else f"{v:.1f}" if key == "score" else f"{v:.3f}"


def budgets_of(res):
    return sorted({s["budget"] for s in res["summary"] if s["budget"] is not None})


def ablation_table(res, key, what):
    bs = budgets_of(res)
    lines = [f"| {what} | " + " | ".join(str(b) for b in bs) + " |", "|---|" + "---:|" * len(bs)]
    full = summary_value(res, "full", None, key)
    if full is not None:
        lines.append("| FullKV | " + " | ".join(fmt(full, key) for _ in bs) + " |")
    for m, label in ABLATION:
        lines.append(f"| {label} | " + " | ".join(fmt(summary_value(res, m, b, key), key) for b in bs) + " |")
    return "\n".join(lines) + "\n"


def window_table(out):
    runs = {}
    for d in sorted(os.listdir(out)):
        m = re.fullmatch(r"window_(end|user)_(\d+)", d)
        if m and load(out, d):
            runs[(m.group(1), int(m.group(2)))] = load(out, d)
    if not runs:
        return ""
    windows = sorted({w for _, w in runs})
    any_res = next(iter(runs.values()))
    bs = budgets_of(any_res)
    head = "| method | window | " + " | ".join(f"end @{b} | user @{b}" for b in bs) + " |"
    lines = [head, "|---|---:|" + "---:|" * (2 * len(bs))]
    full = summary_value(any_res, "full", None, "score")
    for method, label in [("snapkv", "SnapKV"), ("compresskv", "CompressKV")]:
        for w in windows:
            cells = []
            for b in bs:
                for at in ("end", "user"):
                    r = runs.get((at, w))
                    cells.append(fmt(summary_value(r, method, b, "score")) if r else "-")
            lines.append(f"| {label} | {w} | " + " | ".join(cells) + " |")
    return (f"FullKV on the same probes: {fmt(full)}.\n\n" if full is not None else "") + "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--device", default="?")
    ap.add_argument("--size", default="?")
    ap.add_argument("--model", default="?")
    ap.add_argument("--commit", default="?")
    a = ap.parse_args()
    out = a.out
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# Evaluation: {os.path.basename(a.model)}\n",
          f"device {a.device}, size {a.size}, commit {a.commit}, {now}. Scores: NIAH = ROUGE-1 recall x 100; "
          "RULER = string_match_all x 100 (mean over tasks); KLD = KL(FullKV || method) in nats over teacher-forced "
          "tokens. FullKV keeps everything (its value in every column).\n"]
    sections = [("niah", "NIAH"), ("ruler", "RULER-style")] + [
        (d, f"KLD, prompt of {d[4:]} tokens") for d in sorted(os.listdir(out)) if re.fullmatch(r"kld_\d+", d)]
    for name, title in sections:
        table = os.path.join(out, name, "table.md")
        if os.path.exists(table):
            with open(table) as f:
                md.append(f"## {title}\n\n" + f.read().strip() + "\n")
    abl = []
    for name, title, key in [("niah", "NIAH", "score"), ("ruler", "RULER", "score")] + [
            (d, f"KLD {d[4:]} (mean KL)", "kl_mean") for d in sorted(os.listdir(out)) if re.fullmatch(r"kld_\d+", d)]:
        res = load(out, name)
        if res:
            abl.append(ablation_table(res, key, title))
    if abl:
        md.append("## Ablation (paper Table 3): SnapKV -> +SRH selection -> +error-aware budgets\n\n" + "\n".join(abl))
    win = window_table(out)
    if win:
        md.append("## Observation window (NIAH; --kv-window W, --kv-window-at end|user)\n\n" + win)
    times = os.path.join(out, "times.md")
    if os.path.exists(times):
        with open(times) as f:
            md.append("## Wall time of each command\n\n" + f.read().strip() + "\n")
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
