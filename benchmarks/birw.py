"""BiRW forward+backward time: Woodbury closed form vs the official formulation vs a dense solve of eq. 6.

Run:  python benchmarks/birw.py            (T = 750, 2500, 5000; d = 2048; n = 8 and 40; float32)
      python benchmarks/birw.py --quick    (T = 750 only)
      python benchmarks/birw.py --streaming (T = 20,000 and 100,000, d = 2048, n = 8: against a copy, the LU form,
                                             and the peak memory of each)

All variants run side by side in one process on the same inputs; the table gives the median time of
forward + backward and the speed-up of ``birw`` over each reference, plus the maximum relative difference of
the outputs (float32, against the dense solve). The last columns compare ``birw`` with a memory-traffic bound:
forward + backward must at least read F, write F*, read the incoming gradient and F again, and write dF
(5 passes over T x d float32), timed against this machine's measured copy bandwidth.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from rich.console import Console
from rich.table import Table

from rskp_plugin.method.propagation import birw
from rskp_plugin.reference.propagation import birw_dense, birw_lu, birw_official


def _time(fn: Callable[[], None], *, min_total: float = 1.0, max_reps: int = 20, min_reps: int = 3) -> float:
    fn()  # warm-up (allocations, kernel selection)
    times: list[float] = []
    while len(times) < min_reps or (sum(times) < min_total and len(times) < max_reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if times[-1] > 5.0 and len(times) >= 1:  # the slow references: one timed run is enough
            break
    return statistics.median(times)


def _fwd_bwd(fn, f: torch.Tensor, mu: torch.Tensor) -> Callable[[], None]:
    grad = torch.randn_like(f)

    def run() -> None:
        x = f.detach().requires_grad_(True)
        m = mu.detach().requires_grad_(True)
        fn(x, m).backward(grad)

    return run


def copy_bandwidth(numel: int = 64 * 2**20) -> float:
    """Bytes per second of a large out-of-place copy (read + write), the memory-traffic yardstick."""
    src, dst = torch.randn(numel), torch.empty(numel)
    seconds = _time(lambda: dst.copy_(src), min_total=0.5)
    return 2 * numel * 4 / seconds


_PEAK = """
import re, sys, torch
from rskp_plugin.method.propagation import birw
from rskp_plugin.reference.propagation import birw_lu
t, d, n, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
f = torch.empty(1, t, d).uniform_().requires_grad_()  # in place: no transient copy raises the high-water mark
mu, grad = torch.rand(1, n, d, requires_grad=True), torch.empty(1, t, d).normal_()
def status(key):  # kB
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark (ru_maxrss survives exec: not usable)
before = status("VmRSS")
if name == "copy":
    out = f.detach().clone().add_(grad)
else:
    (birw if name == "birw" else birw_lu)(f, mu).backward(grad)
print((status("VmHWM") - before) * 1024 / (t * d * 4))
"""


def peak_extra(t: int, d: int, n: int, name: str) -> float:
    """Peak resident memory added by one forward + backward (a fresh process), in units of T x d float32."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", _PEAK, str(t), str(d), str(n), name], capture_output=True,
                         text=True, check=True)
    return float(run.stdout.strip())


def _birw_before(f: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """``birw`` as it was before the SPD form: its finite check (``torch.isfinite(x).all()``: a bool tensor of F's
    size) and then the LU form."""
    for x in (f, mu):
        assert bool(torch.isfinite(x).all())
    return birw_lu(f, mu, check_finite=False)


def streaming(lengths: list[int], d: int, n: int, repeats: int) -> None:
    """The SPD / Cholesky ``birw`` against one ``clone()`` + one ``add_`` over T x d and against the LU form it
    replaced (``reference.birw_lu``), interleaved in one process (ratios: the machine may be shared)."""
    console = Console(width=160)
    table = Table(title=f"BiRW forward + backward, d = {d}, n = {n}, float32, {torch.get_num_threads()} thread(s): "
                        f"best of {repeats}, interleaved")
    for col in ("T", "clone + add_ (s)", "birw (s)", "LU form (s)", "before (s)", "birw / (clone + add_)",
                "LU / birw", "before / birw",
                "max rel diff", "peak extra, birw", "peak extra, LU", "peak extra, clone + add_"):
        table.add_column(col, justify="right")
    for t in lengths:
        torch.manual_seed(0)
        f, mu = torch.rand(1, t, d), torch.rand(1, n, d)
        grad = torch.randn_like(f)
        runs = {"copy": lambda: f.clone().add_(grad), "birw": _fwd_bwd(birw, f, mu), "lu": _fwd_bwd(birw_lu, f, mu),
                "before": _fwd_bwd(_birw_before, f, mu)}
        best = {k: float("inf") for k in runs}
        for fn in runs.values():
            fn()  # warm-up
        for _ in range(repeats):
            for k, fn in runs.items():
                start = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - start)
        with torch.no_grad():
            diff = float((birw(f, mu) - birw_lu(f, mu)).norm() / birw_lu(f, mu).norm())
        peaks = [peak_extra(t, d, n, k) for k in ("birw", "lu", "copy")]
        table.add_row(str(t), f"{best['copy']:.3f}", f"{best['birw']:.3f}", f"{best['lu']:.3f}",
                      f"{best['before']:.3f}", f"{best['birw'] / best['copy']:.2f}x",
                      f"{best['lu'] / best['birw']:.2f}x", f"{best['before'] / best['birw']:.2f}x", f"{diff:.1e}",
                      *(f"{p:.2f} T d" for p in peaks))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only T = 750")
    parser.add_argument("--streaming", action="store_true", help="T = 20,000 and 100,000 against a copy and LU")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant with --streaming (best)")
    parser.add_argument("--lengths", type=int, nargs="*", default=None, help="snippet counts T to time")
    parser.add_argument("--dim", type=int, default=2048, help="feature size d")
    args = parser.parse_args()
    if args.streaming:
        streaming(args.lengths or [20_000, 100_000], args.dim, 8, args.repeats)
        return
    lengths = args.lengths or ([750] if args.quick else [750, 2500, 5000])
    torch.manual_seed(0)
    bandwidth = copy_bandwidth()
    console = Console(width=160)
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, copy bandwidth "
                  f"{bandwidth / 1e9:.1f} GB/s")
    table = Table(title=f"BiRW forward + backward, d = {args.dim}, float32 (median seconds)")
    for col in ("T", "n", "birw", "official", "dense solve", "x vs official", "x vs solve", "max rel diff",
                "traffic bound", "x of bound"):
        table.add_column(col, justify="right")
    for t in lengths:
        for n in (8, 40):
            f = torch.rand(1, t, args.dim)
            mu = torch.rand(1, n, args.dim)
            fast = _time(_fwd_bwd(birw, f, mu))
            official = _time(_fwd_bwd(birw_official, f, mu))
            dense = _time(_fwd_bwd(birw_dense, f, mu))
            with torch.no_grad():
                ref = birw_dense(f.double(), mu.double())
                diff = max(float(((fn(f, mu).double() - ref).norm() / ref.norm())) for fn in (birw, birw_official))
            bound = 5 * t * args.dim * 4 / bandwidth
            table.add_row(str(t), str(n), f"{fast:.4f}", f"{official:.3f}", f"{dense:.3f}", f"{official / fast:.0f}x",
                          f"{dense / fast:.0f}x", f"{diff:.1e}", f"{bound:.4f}", f"{fast / bound:.1f}x")
    console.print(table)


if __name__ == "__main__":
    main()
