"""Fig. 5: the unrolled walk (eq. 4-5, ``rskp.propagation.method=unrolled``) against the closed form (eq. 6).

Run:  python benchmarks/unrolled_walk.py                 (steps 1..20; the development set if found)
      python benchmarks/unrolled_walk.py --data-root ../shared/data/japanesevowels-tal --max-steps 10

For each number of steps k the relative error ||F^(k) - F*|| / ||F*|| (Frobenius, over all real snippets) of
``walks.unrolled_walks`` to ``propagation.birw_walks`` (w = 0.5, lambda = 5, the defaults), in
float64 so that the error is the walk's and not the arithmetic's, on:

    - "random": T = 750, d = 2048, F and the n = 8 representatives N(0, 1), no structure;
    - "clustered": T = 750, d = 2048, F = |centre_c + 0.5 N(0, 1)| with the snippets in 12 runs over 6 random
      centres (non-negative, cosine-structured like a video of a few actions and backgrounds);
    - "dev set": the 200 test videos of the JapaneseVowelsTAL development set (raw 36-d features, T = 113-376),
      mean of the per-video relative errors (the walk runs per video, batched with padding).

"own": the video's own EM representatives (eq. 2-3, n = 8, untrained: the paper's orthogonal mu^(0), 2
iterations), the intra walk; "other": another video's (the clustered video redrawn with other noise and run order;
on the dev set the next test video's), as the memory bank's mu^e reach the inter walk. EM representatives are
weighted means of F under nearly the affinity the walk uses, so eq. 4-5 starts almost at its fixed point on the
own walk; representatives from elsewhere show the w^2 rate. The last columns time forward + backward (float32,
clustered, own, best of 5) of the unrolled walk and of the closed form; both return the factored ``Propagated``,
timed through ``dense()``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import best_time  # noqa: E402

from rskp_plugin.method.propagation import birw_walks  # noqa: E402
from rskp_plugin.method.walks import unrolled_walks  # noqa: E402
from rskp_plugin.method.summarizer import EMSummarizer  # noqa: E402

W, LAMBDA, N = 0.5, 5.0, 8


def _reps(f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    summarizer = EMSummarizer(f.shape[-1], N, 2, LAMBDA).to(f.dtype)
    with torch.no_grad():
        return summarizer(f, mask)


def synthetic(kind: str, seed: int = 0, t: int = 750, d: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(6, d, generator=g, dtype=torch.float64)  # shared by every clustered video
    g.manual_seed(1 + seed)
    noise = torch.randn(1, t, d, generator=g, dtype=torch.float64)
    if kind == "random":
        return noise, torch.ones(1, t, dtype=torch.bool)
    which = torch.randint(0, 6, (12,), generator=g).repeat_interleave(-(-t // 12))[:t]  # 12 runs of snippets
    return (centres[which][None] + 0.5 * noise).abs(), torch.ones(1, t, dtype=torch.bool)


def dev_set(root: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    from rskp_plugin.data import collate, load_wtalc

    if not (Path(root) / "JapaneseVowelsTAL-I3D-JOINTFeatures.npy").exists():
        return None
    batch = collate(load_wtalc(root, "JapaneseVowelsTAL", "test").videos)
    return torch.as_tensor(batch.features).double(), torch.as_tensor(batch.mask)


def errors(f: torch.Tensor, mask: torch.Tensor, reps: torch.Tensor, max_steps: int, per_video: bool) -> list[float]:
    """Relative error per step count; ``per_video``: the mean of each video's relative error."""
    walks = [(reps, None)]
    star = birw_walks(f, walks, W, LAMBDA, mask)[0].dense()
    out = []
    for k in range(1, max_steps + 1):
        diff = unrolled_walks(f, walks, W, k, LAMBDA, mask)[0].dense() - star
        if per_video:
            out.append(float((diff.flatten(1).norm(dim=1) / star.flatten(1).norm(dim=1)).mean()))
        else:
            out.append(float(diff.norm() / star.norm()))
    return out


def timings(max_steps: int) -> tuple[list[float], float]:
    f, mask = synthetic("clustered")
    f = f.float()
    reps = _reps(f, mask)
    grad = torch.randn_like(f)

    def run(fn):
        def once():
            x, m = f.clone().requires_grad_(True), reps.clone().requires_grad_(True)
            fn(x, m).backward(grad)
        return best_time(once, 5)[0]

    closed = run(lambda x, m: birw_walks(x, [(m, None)], W, LAMBDA, mask)[0].dense())
    unrolled = [run(lambda x, m, k=k: unrolled_walks(x, [(m, None)], W, k, LAMBDA, mask)[0].dense())
                for k in range(1, max_steps + 1)]
    return unrolled, closed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared/data/"
                                                   "japanesevowels-tal"),
                        help="the JapaneseVowelsTAL folder (the column is left out when it is absent)")
    args = parser.parse_args()
    k = args.max_steps
    f, mask = synthetic("random")
    columns = {"random": errors(f, mask, torch.randn(1, N, f.shape[-1], dtype=f.dtype,
                                                     generator=torch.Generator().manual_seed(3)), k, False)}
    f, mask = synthetic("clustered")
    columns["clustered, own"] = errors(f, mask, _reps(f, mask), k, False)
    columns["clustered, other"] = errors(f, mask, _reps(*synthetic("clustered", seed=1)), k, False)
    dev = dev_set(args.data_root)
    if dev is not None:
        f, mask = dev
        reps = _reps(f, mask)
        columns["dev set, own"] = errors(f, mask, reps, k, True)
        columns["dev set, other"] = errors(f, mask, reps.roll(1, dims=0), k, True)
    unrolled, closed = timings(args.max_steps)
    names = list(columns)
    print("| steps k | " + " | ".join(names) + " | unrolled fwd+bwd (ms) | "
          "closed form fwd+bwd (ms) |")
    print("| ---: " * (len(names) + 3) + "|")
    for k in range(args.max_steps):
        cells = " | ".join(f"{columns[n][k]:.2e}" for n in names)
        print(f"| {k + 1} | {cells} | {1e3 * unrolled[k]:.1f} | {1e3 * closed:.1f} |")


if __name__ == "__main__":
    main()
