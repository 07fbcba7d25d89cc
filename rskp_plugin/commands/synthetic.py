"""``rskp make-synthetic``: write a synthetic dataset to disk in a chosen on-disk format."""

from __future__ import annotations

import argparse

from . import console, markup


# ---------------------------------------------------------------------------------------------------- make-synthetic
def add_make_synthetic(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-synthetic",
        help="write the synthetic THUMOS14- (or ActivityNet1.3-) shaped dataset in the W-TALC format",
        description=(
            "Generate the synthetic dataset (what --data synthetic trains on) and write it in the W-TALC format: "
            "DIR/<NAME>-I3D-JOINTFeatures.npy and DIR/<NAME>-Annotations/*.npy, training videos as subset "
            "'validation' and test videos as 'test' ('training' and 'validation' for the ActivityNet1.3-shaped set of "
            "--config activitynet13), so that --data wtalc --data-root DIR reads it back "
            "identically. At the default width of 2048 the feature file is about 1 GB. --config quick writes exactly "
            "the set that config trains on (its data.seed, feature_dim, difficulty and sizes); options given "
            "explicitly win. --layout folders writes the per-video layout instead (features/{train,test}/{rgb,flow}/"
            "<video>.npy and gt.json: --data folders --data-root DIR)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write (created if missing); a folder that holds files is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a folder that already holds files (the dataset's files are replaced, others kept)")
    p.add_argument("--config", default=None,
                   help="experiment config (file or packaged name, e.g. quick) whose synthetic data to write")
    p.add_argument("--layout", choices=("wtalc", "folders"), default="wtalc",
                   help="W-TALC files (--data wtalc) or per-video folders with gt.json (--data folders)")
    p.add_argument("--seed", type=int, default=None, help="seed of the generator (same seed, same data; default 0)")
    p.add_argument("--feature-dim", type=int, default=None,
                   help="feature width D (>= 16; I3D RGB+flow: 2048, the default)")
    p.add_argument("--difficulty", type=float, default=None,
                   help="0 = trivially separable; 1 = calibrated default; larger = harder")
    p.add_argument("--num-train", type=int, default=None, help="training videos (THUMOS14-reduced: 200, the default)")
    p.add_argument("--num-test", type=int, default=None, help="test videos (THUMOS14-reduced: 212, the default)")
    p.add_argument("--dataset-name", default=None,
                   help="<NAME> prefix of the W-TALC files (default: the config's data.dataset_name, Thumos14reduced)")
    p.set_defaults(handler=_run_make_synthetic)


def _run_make_synthetic(args: argparse.Namespace) -> int:
    import time

    import attrs

    from rich.table import Table

    from ..data import make_synthetic, write_folders, write_wtalc
    from ..engine import load_experiment
    from ..engine.config import MAX_SEED
    from ..errors import ConfigError

    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed must be an integer from 0 to 2**64 - 1, got {args.seed}")
    _check_out(args.out, overwrite=args.overwrite)  # before generating anything
    data = load_experiment(args.config).data  # the defaults without --config
    pairs = (("seed", args.seed), ("feature_dim", args.feature_dim), ("difficulty", args.difficulty),
             ("num_train", args.num_train), ("num_test", args.num_test), ("dataset_name", args.dataset_name))
    try:
        data = attrs.evolve(data, **{key: value for key, value in pairs if value is not None})
    except (TypeError, ValueError) as exc:  # the DataConfig validators: --feature-dim 0, --num-train 1, ...
        raise ConfigError(f"make-synthetic: {exc}; see rskp make-synthetic --help") from exc
    start = time.perf_counter()
    with console.status("generating synthetic videos"):
        train, test = make_synthetic(
            seed=data.seed, feature_dim=data.feature_dim, difficulty=data.difficulty, num_train=data.num_train,
            num_test=data.num_test, preset=data.synthetic_preset,
        )
    generated = time.perf_counter() - start
    with console.status(f"writing {args.out}"):
        if args.layout == "folders":
            out = write_folders(train, test, args.out)
            how = "per-video folders + gt.json: --data folders --data-root"
        else:
            out = write_wtalc(train, test, args.out, dataset_name=data.dataset_name)
            how = f"W-TALC format, {data.dataset_name}: --data wtalc --data-root"
    shape = {"thumos14": "THUMOS14", "activitynet13": "ActivityNet1.3"}[data.synthetic_preset]
    table = Table(title=f"Synthetic {shape}-shaped data ({how} {markup(out)})")
    for column in ("subset", "videos", "instances", "snippets", "feature dim"):
        table.add_column(column, justify="right")
    for ds in (train, test):
        table.add_row(ds.subset, str(len(ds)), str(sum(len(v.segments) for v in ds)),
                      str(sum(v.num_snippets for v in ds)), str(ds.feature_dim))
    console.print(table)
    console.print(f"generated in {generated:.1f} s, written in {time.perf_counter() - start - generated:.1f} s")
    return 0


def _check_out(out: str, *, overwrite: bool) -> None:
    """``--out`` must be a new or empty folder (or ``--overwrite``), and writable."""
    import os
    from pathlib import Path

    from ..engine.output import ensure_writable_dir
    from ..errors import OutputError

    folder = Path(out)
    if folder.is_dir() and not overwrite:
        held = sorted(p.name for p in folder.iterdir())
        if held:
            shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
            raise OutputError(
                f"--out {os.fspath(folder)!r} already holds files ({shown}), perhaps a dataset; pass --overwrite to "
                "write the synthetic dataset's files over them (other files are kept), or another --out"
            )
    ensure_writable_dir(folder, what="--out")
