#!/usr/bin/env python3
"""What a prompt read costs the running sequences of `compresskv serve`.

One client streams a long greedy answer; after a while a second client sends
a long prompt (its read is sliced between decode steps by --prefill-slice).
Prints the first client's inter-token gaps before, during and after that
read (median and max, milliseconds), and the second's time to first token.

    python3 bench/serve_prefill_slice.py --port PORT [--prompt-tokens 4096] [--api-key KEY]

Start the server first, e.g.
    compresskv serve -m MODEL --port 0 -c 8192 --prefill-slice 1
Standard library only; talks to 127.0.0.1.
"""
import argparse
import http.client
import json
import statistics
import threading
import time


def stream(port, body, key, on_token):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + key
    c.request("POST", "/v1/completions", json.dumps(body), h)
    r = c.getresponse()
    if r.status != 200:
        raise SystemExit("HTTP %d: %s" % (r.status, r.read()[:300]))
    buf = b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            if not ev.startswith(b"data: "):
                continue
            data = ev[6:]
            if data == b"[DONE]":
                return
            j = json.loads(data)
            if "error" in j:
                raise SystemExit("stream error: %s" % j["error"])
            if j.get("choices") and j["choices"][0].get("finish_reason") is None:
                on_token(time.monotonic())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--api-key", default="")
    ap.add_argument("--prompt-tokens", type=int, default=4096)
    ap.add_argument("--decode-tokens", type=int, default=400)
    ap.add_argument("--start-after", type=int, default=40, help="tokens of the first stream before the long prompt")
    a = ap.parse_args()

    times = []
    long_sent = threading.Event()
    window = {}

    def first_token(t):
        times.append(t)
        if len(times) == a.start_after:
            long_sent.set()

    # Token ids: a completion prompt of ids needs no tokenizer and has an exact length.
    short = {"prompt": [1] + [100 + i % 300 for i in range(31)], "max_tokens": a.decode_tokens,
             "temperature": 0, "ignore_eos": True, "stream": True}
    t1 = threading.Thread(target=stream, args=(a.port, short, a.api_key, first_token))
    t1.start()
    long_sent.wait()
    ids = [1] + [200 + (i * 7) % 5000 for i in range(a.prompt_tokens - 1)]
    long_body = {"prompt": ids, "max_tokens": 1, "temperature": 0, "stream": True}
    window["start"] = time.monotonic()
    got = []
    stream(a.port, long_body, a.api_key, lambda t: got.append(t))
    window["end"] = got[0] if got else time.monotonic()
    t1.join()

    # A gap (t0, t1] belongs to the read when it overlaps [sent, first token].
    gaps = [(times[i - 1], times[i]) for i in range(1, len(times))]
    s, e = window["start"], window["end"]
    def summary(name, sel):
        g = [1000 * (t1 - t0) for t0, t1 in gaps if sel(t0, t1)]
        if g:
            print("%-28s %4d gaps  median %8.1f ms  max %8.1f ms  sum %8.1f ms" %
                  (name, len(g), statistics.median(g), max(g), sum(g)))
    print("long prompt: %d tokens, time to first token %.2f s" % (a.prompt_tokens, e - s))
    summary("decode before the read", lambda t0, t1: t1 <= s)
    summary("decode during the read", lambda t0, t1: t1 > s and t0 < e)
    summary("decode after the read", lambda t0, t1: t0 >= e)


if __name__ == "__main__":
    main()
