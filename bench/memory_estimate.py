"""Memory estimator accuracy (P5): ftlib.memory.estimate vs ftlib.memory.measure for full fine-tuning, LoRA and
QLoRA of smollm2-135m on this machine, component by component, same max_length and batch.

Run: .venv/bin/python bench/memory_estimate.py [--max-length 128] [--batch 4] [--steps 3] [--methods full lora qlora]
     [--malloc-mmap-threshold 131072]

Target (P5): the estimated total within 15% of the measured peak for every method. The last line is the worst
relative error |estimate - measured| / measured.

- measured: memory.measure("smollm2-135m", method, steps, max_length, batch): real SFTTrainer steps on the CPU, the path
  train.train takes (TRL's fused LM head, fused AdamW); total = peak RSS of the process. Each method runs in a fresh
  Python process (this script started again with --one), so no model of an earlier method is left in memory. The
  scored runs set glibc's MALLOC_MMAP_THRESHOLD_=131072, so that RSS follows live memory (as the CUDA peak does on
  a GPU); each method is then run again with glibc's defaults, and the freed heap glibc keeps is printed.
- estimated: memory.estimate("smollm2-135m", method, max_length, batch, dtype="float32"): fp32 on CPU (no autocast,
  TRL's torch fallback for the logits tiles), with measure()'s defaults otherwise (LoRA r=16 on the preset's
  targets, AdamW, gradient checkpointing on for QLoRA only); its overhead is the process's measured RSS after the
  imports, before any model (the interpreter and libraries), instead of the 0.5 GiB meant for a CUDA context.
- measured activations are what autograd saved for backward; the loss's temporaries (the logits tiles) are in the
  measured overhead, and in the estimate's activations.

Findings (2026-11-24, seq 128 x batch 4): full -3.9%, LoRA -3.4%, QLoRA -2.0% (estimate 3.25 / 2.20 / 1.33 GiB,
measured 3.38 / 2.28 / 1.36). Weights, gradients and optimizer state match to the byte. What changed, by mechanism:
- QLoRA: models.load(..., quantization="4bit") left the non-quantized parameters (embedding, norms) as views into
  the mmapped fp32 model.safetensors, keeping the whole 0.5 GiB file resident; it now copies them (tie intact).
- the loss: SFTTrainer (TRL 1.16) never builds the batch x seq x vocab logits; its fused LM head works on tiles of
  at most 4096 tokens x 32768 columns. On a GPU a Triton kernel folds a tile in place (one tile, 64 MiB for a
  1024-token fp16 batch); on CPU TRL's torch fallback keeps 9.25 fp32 tiles alive in backward (9.5 measured,
  0.58 GiB here), the largest single term of LoRA's peak and slower than full logits were. measure() now trains
  through SFTTrainer too, so estimate, measurement and the course's training share one loss path.
- full fine-tuning: gradients and activations never coexist; the Trainer sets gradients to None after each step
  and backward frees activations as gradients fill in. The peak is the larger of the start of backward
  (activations + the output layer's gradient, the first computed: 0.105 GiB for SmolLM2's tied embedding) and the
  optimizer step (all gradients; fused AdamW updates in place, with no temporaries).
- glibc keeps freed heap: with its defaults the peak RSS is higher by 0.21 (full), 0.61 (LoRA), 0.45 (QLoRA) GiB,
  errors -9.4%, -23.8%, -26.4%. It is the allocator's policy, not the training's memory, like the CUDA caching
  allocator's reserve that the CUDA peak leaves out, so the estimate does not model it. Making measure() set
  MALLOC_MMAP_THRESHOLD_ itself (mallopt) was rejected: it slows training steps by 40-95% on this machine
  (full 4.5 -> 8.8 s/step, LoRA 3.2 -> 4.4, QLoRA 4.0 -> 6.9), and measure() reports s/step.
"""

import argparse
import json
import os
import subprocess
import sys
import time

COMPONENTS = ("weights", "gradients", "optimizer_state", "activations", "overhead")
GIB = 2**30


def _status() -> tuple[int, int]:
    """(RssAnon, RssFile) of this process in bytes: heap and anonymous maps vs mapped files (libraries, weights)."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    return tuple(int(fields[k].split()[0]) * 1024 for k in ("RssAnon", "RssFile"))


def _checkpoint_rss() -> int:
    """Resident file pages of mapped .safetensors files (the model checkpoint) in this process, in bytes.

    Copy-on-write pages (weights trained in place in the mapping, as in full fine-tuning) are anonymous memory and
    are left out: smaps' Rss minus Anonymous.
    """
    total, current = 0, ""
    for line in open("/proc/self/smaps"):
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            current = head[-1] if len(head) > 5 else ""
        elif head and current.endswith(".safetensors") and head[0] in ("Rss:", "Anonymous:"):
            total += int(head[1]) * 1024 * (1 if head[0] == "Rss:" else -1)
    return total


def one(method: str, max_length: int, batch: int, steps: int) -> dict:
    """Estimate and measure one method in this process; bytes. Samples RSS by kind while measure() trains."""
    import threading

    import datasets  # noqa: F401  (what measure() imports, so that the floor reading includes it)
    import peft  # noqa: F401
    from transformers import Trainer  # noqa: F401

    from ftlib import memory

    floor = _status()
    peak = {"anon": 0, "file": 0, "checkpoint": 0}
    stop = threading.Event()

    def watch():
        # smaps is slow to read: read it at a new peak when the mapped files changed by 16 MiB since the last
        # reading or 50 ms have passed, so that the checkpoint figure belongs to (about) the peak
        last_file, last_read = -(2**40), 0.0
        while not stop.wait(0.005):
            anon, file = _status()
            if anon + file > peak["anon"] + peak["file"]:
                peak.update(anon=anon, file=file)
                if abs(file - last_file) > 2**24 or time.monotonic() - last_read > 0.05:
                    peak["checkpoint"], last_file, last_read = _checkpoint_rss(), file, time.monotonic()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    start = time.perf_counter()
    got = memory.measure("smollm2-135m", method, steps=steps, max_length=max_length, batch=batch)
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    # on CPU the overhead is the process itself: its RSS after the imports, before any model
    est = memory.estimate("smollm2-135m", method, max_length=max_length, batch=batch, dtype="float32",
                          overhead_gib=sum(floor) / GIB)
    return {"method": method, "floor": floor, "peak": peak, "seconds": seconds, "gc": got.gradient_checkpointing,
            "step_s": got.seconds_per_step, "head_gradient": est.head_gradient,
            "estimate": {c: getattr(est, c) for c in COMPONENTS} | {"total": est.total},
            "measured": {c: getattr(got, c) for c in COMPONENTS} | {"total": got.total},
            "weights_measured": got.weights}


def main() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["full", "lora", "qlora"], choices=["full", "lora", "qlora"])
    parser.add_argument("--malloc-mmap-threshold", type=int, default=131072, metavar="BYTES",
                        help="glibc's MALLOC_MMAP_THRESHOLD_ for the scored runs (0: glibc's default): blocks "
                             "this size and up are mapped and unmapped, so RSS follows live memory")
    parser.add_argument("--one", choices=["full", "lora", "qlora"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print("RESULT " + json.dumps(one(args.one, args.max_length, args.batch, args.steps)))
        return

    def run(method: str, threshold: int) -> dict:
        command = [sys.executable, __file__, "--one", method, "--max-length", str(args.max_length),
                   "--batch", str(args.batch), "--steps", str(args.steps)]
        child_env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
        if threshold:
            child_env["MALLOC_MMAP_THRESHOLD_"] = str(threshold)
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=child_env)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            sys.exit(f"{method} failed:\n{done.stderr[-3000:]}")
        return json.loads(lines[-1].removeprefix("RESULT "))

    results = [run(method, args.malloc_mmap_threshold) for method in args.methods]
    plain = {m: run(m, 0) for m in args.methods} if args.malloc_mmap_threshold else {}

    import pandas as pd

    malloc = f"MALLOC_MMAP_THRESHOLD_={args.malloc_mmap_threshold}" if args.malloc_mmap_threshold else "default glibc"
    print(f"smollm2-135m, max_length {args.max_length} x batch {args.batch}, {args.steps} measured steps each, "
          f"fp32 CPU, "
          f"{malloc} malloc; GiB; error = (estimate - measured) / measured")
    errors = {}
    for r in results:
        rows = {c: {"estimate": r["estimate"][c] / GIB, "measured": r["measured"][c] / GIB}
                for c in (*COMPONENTS, "total")}
        table = pd.DataFrame(rows).T
        table["difference"] = table["estimate"] - table["measured"]
        errors[r["method"]] = (r["estimate"]["total"] - r["measured"]["total"]) / r["measured"]["total"]
        anon, file = r["floor"]
        checkpointing = "on" if r["gc"] else "off"
        print(f"\n{r['method']} (gradient checkpointing {checkpointing}; measured in {r['seconds']:.0f} s)")
        print(table.round(3).to_string())
        e = r["estimate"]
        arm = "activations + the output layer's gradient" if (
            e["activations"] + r["head_gradient"] >= e["gradients"]) else "gradients"
        print(f"estimated total = weights + optimizer state + overhead + {arm} (the larger of the two moments; "
              f"output layer's gradient {r['head_gradient'] / GIB:.3f}); measured total = peak RSS")
        p = r["peak"]
        print(f"RSS after the imports, before any model: {(anon + file) / GIB:.2f} GiB (heap {anon / GIB:.2f}, "
              f"mapped files {file / GIB:.2f}); at the sampled peak: heap {p['anon'] / GIB:.2f}, mapped files "
              f"{p['file'] / GIB:.2f}, of which the .safetensors checkpoint's file pages {p['checkpoint'] / GIB:.2f} "
              f"(weight tensors: {r['weights_measured'] / GIB:.2f})")
        if r["method"] in plain:
            q = plain[r["method"]]
            print(f"with glibc's default malloc: peak RSS {q['measured']['total'] / GIB:.2f} GiB (freed heap glibc "
                  f"keeps: {(q['measured']['total'] - r['measured']['total']) / GIB:+.2f}), {q['step_s']:.2f} s/step "
                  f"vs {r['step_s']:.2f} here; error against it "
                  f"{(r['estimate']['total'] - q['measured']['total']) / q['measured']['total']:+.1%}")
        print(f"{r['method']}: total error {errors[r['method']]:+.1%}")
    worst = max(errors, key=lambda m: abs(errors[m]))
    print("\n" + ", ".join(f"{m} {e:+.1%}" for m, e in errors.items()))
    print(f"memory estimator worst error: {abs(errors[worst]):.1%} ({worst}) (target <= 15%)")


if __name__ == "__main__":
    main()
