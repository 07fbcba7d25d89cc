"""Dropout on (B, T, d) features: ``relu_dropout`` vs ``nn.Dropout(relu(y)) * mask`` (the embedding activation of
FAC-Net, STPN and BM) and ``functional.dropout`` vs ``nn.functional.dropout`` (WUM's classifier input), forward +
backward, side by side.

    python benchmarks/embedding_activation.py                 # (10, 250, 2048) float32, p = 0.6, CPU
    python benchmarks/embedding_activation.py --device cuda

FAC-Net, STPN and BM apply Dropout(0.6) after the ReLU of their embedding, on every (B, T, d) training batch.
``nn.Dropout`` draws its mask with ``bernoulli_``; ``relu_dropout`` draws uniforms and folds ReLU, dropout and the
padding mask into one multiplier, so the forward and the backward each make one pass. All variants are timed in the
same run, interleaved, best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from _timing import best_time
from rskp_plugin.functional import dropout, relu_dropout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=3, default=[10, 250, 2048], metavar=("B", "T", "d"),
                   help="pre-activation shape (a micro-batch of 10 videos of 250 snippets, d = 2048)")
    p.add_argument("--p", type=float, default=0.6, help="drop probability (FAC-Net, STPN, BM: 0.6)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per variant (best reported)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    y = torch.randn(*args.shape, device=device, requires_grad=True)
    mask = torch.ones(args.shape[:2], dtype=torch.bool, device=device)
    grad = torch.randn(*args.shape, device=device)
    module = torch.nn.Dropout(args.p)

    def reference():
        (module(torch.relu(y)) * mask[..., None]).backward(grad)
        sync()

    def fused():
        relu_dropout(y, args.p, True, mask).backward(grad)
        sync()

    def plain_reference():
        torch.nn.functional.dropout(y, args.p, True).backward(grad)
        sync()

    def plain():
        dropout(y, args.p, True).backward(grad)
        sync()

    pairs = [("nn.Dropout(relu(y)) * mask", reference, "relu_dropout", fused),
             ("nn.functional.dropout", plain_reference, "functional.dropout", plain)]
    times = {name: [] for a, _, b, _ in pairs for name in (a, b)}
    for _ in range(args.repeats):  # interleaved, so all see the same machine load
        for a, fa, b, fb in pairs:
            times[a].append(best_time(fa, 1)[0])
            times[b].append(best_time(fb, 1)[0])
    print(f"shape {tuple(args.shape)}, p = {args.p}, {device}, {torch.get_num_threads()} threads, forward + backward")
    for a, _, b, _ in pairs:
        ref, new = min(times[a]), min(times[b])
        print(f"  {a:28s} {ref * 1e3:8.1f} ms   {b:20s} {new * 1e3:8.1f} ms   speed-up {ref / new:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
