"""``rskp plot``: per-video figures and training curves of a tiny run, rendered to PNG and decoded back."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from rskp_plugin import cli

matplotlib = pytest.importorskip("matplotlib", reason="rskp plot needs the 'plot' extra (part of 'dev')")
from matplotlib import image  # noqa: E402

from rskp_plugin.plot import VideoTrace, curves_figure, video_figure  # noqa: E402

TINY = [
    "--set", "data.feature_dim=16", "--set", "data.num_train=10", "--set", "data.num_test=4",
    "--set", "head.options={embed_dim: 16}", "--set", "optimizer.lr=1e-3", "--set", "optimizer.accumulation=5",
    "--set", "optimizer.batch_size=5", "--set", "rskp.memory.warmup_epochs=0", "--set", "train.eval_interval=1",
    "--no-progress",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    assert cli.main(["train", "--config", "quick", "--head", "facnet", "--epochs", "2", "--output-dir", str(folder),
                     *TINY]) == 0
    return folder


def _not_blank(path, width: int, height: int) -> None:
    pixels = image.imread(path)  # (H, W, 4) floats in [0, 1]
    assert pixels.shape[:2] == (height, width)
    rgb = pixels[..., :3]
    assert (rgb.min(axis=-1) < 0.9).mean() > 0.03  # a good share of the canvas is drawn on
    assert len(np.unique(rgb.reshape(-1, 3).round(2), axis=0)) > 20  # lines, bars and text in several colours


def test_plot_writes_video_figures_and_curves(run_dir, capsys) -> None:
    out = run_dir / "figures"
    code = cli.main(["plot", "--run", str(run_dir), "--num-videos", "2", "--out", str(out), "--dpi", "40"])
    printed = capsys.readouterr().out.split()
    assert code == 0
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 3 and "curves.png" in files and sum(f.startswith("video_") for f in files) == 2
    assert sorted(str(out / f) for f in files) == sorted(printed)
    _not_blank(out / "curves.png", 15 * 40, int(round(4.2 * 40)))
    for name in files:
        if name.startswith("video_"):
            pixels = image.imread(out / name)
            assert pixels.shape[1] == 12 * 40 and pixels.shape[0] > 350
            _not_blank(out / name, pixels.shape[1], pixels.shape[0])


def test_plot_named_videos_and_default_folder(run_dir, capsys) -> None:
    from rskp_plugin.data import make_synthetic

    _, test = make_synthetic(seed=0, feature_dim=16, num_train=10, num_test=4)
    video = test.videos[1].name
    assert cli.main(["plot", "--checkpoint", str(run_dir / "last.pt"), "--videos", video, "--dpi", "20"]) == 0
    assert (run_dir / "plots" / f"video_{video}.png").is_file() and (run_dir / "plots" / "curves.png").is_file()
    code = cli.main(["plot", "--run", str(run_dir), "--videos", "no_such_video"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "no video 'no_such_video'" in err


def test_figures_have_the_panels_of_fig4_and_the_curves() -> None:
    t = np.arange(20) / 2.0
    trace = VideoTrace(
        name="v", seconds=t, class_names=("a", "b"), segments=np.array([[1.0, 3.0], [5.0, 6.0]]),
        segment_classes=np.array([0, 1]), cas={"main": np.random.default_rng(0).uniform(size=(20, 2)),
                                              "intra": np.zeros((20, 2)), "teacher": np.ones((20, 2))},
        attention={"main": np.linspace(0, 1, 20)}, detections=(("a", 0.9, 1.0, 3.5), ("b", 0.2, 5.0, 6.0)), title="v",
    )
    fig = video_figure(trace)
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert titles[0].startswith("ground truth") and titles[-1] == "attention"
    assert [x.split()[0] for x in titles[1:5]] == ["main", "intra", "inter", "teacher"]
    assert fig.axes[-1].get_xlabel() == "time (s)"
    records = [
        {"epoch": e, "train_loss": 2.0 / e, "losses": {"cls/main": 1.0 / e, "distill": 1.0 / e}, "memory_ready": e > 1,
         "branches": {"fused": {"avg": 10.0 * e, "cmap": 50.0}, "main": {"avg": 9.0 * e, "cmap": 50.0},
                      "intra": None, "inter": None, "teacher": {"avg": 8.0 * e, "cmap": 40.0}}}
        for e in (1, 2, 3)
    ]
    fig = curves_figure(records)
    assert [ax.get_title() for ax in fig.axes] == ["loss terms", "detection mAP AVG (%)", "classification mAP (%)"]
    assert [line.get_label() for line in fig.axes[1].get_lines()][:3] == ["fused", "main", "teacher"]
    assert list(fig.axes[1].get_lines()[2].get_ydata()) == [8.0, 16.0, 24.0]
    epochs = [{"epoch": e, "train_loss": 3.0 / e, "losses": {"cls/main": 1.5 / e}} for e in range(1, 7)]
    fig = curves_figure(records, epochs=epochs)  # the losses of every epoch, the metrics at evaluations
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert list(lines["total"].get_xdata()) == [1, 2, 3, 4, 5, 6] and len(lines["cls/main"].get_xdata()) == 6


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_every_detection_above_the_threshold_is_drawn_wrong_classes_included() -> None:
    t = np.arange(20) / 2.0
    rng = np.random.default_rng(0)
    trace = VideoTrace(
        name="v", seconds=t, class_names=("Diving",), segments=np.array([[1.0, 3.0]]), segment_classes=np.array([0]),
        cas={"main": rng.uniform(size=(20, 1)), "intra": 3 * rng.uniform(size=(20, 1)),
             "inter": np.zeros((20, 1)), "teacher": 0.5 * np.ones((20, 1))},
        attention={}, threshold=0.1, title="v",
        detections=(("Diving", 0.9, 1.0, 3.5), ("Surfing", 0.4, 5.0, 6.0), ("Diving", 0.12, 7.0, 8.0)),
    )
    fig = video_figure(trace)
    panel = fig.axes[0]
    texts = _texts(panel)
    assert "Surfing 0.40 (not in GT)" in texts  # the false positive, with its class
    assert "Diving 0.90" in texts and "Diving 0.12" in texts and "threshold 0.1" in " ".join(texts)
    assert any(line.get_linestyle() == "--" and list(line.get_ydata()) == [0.1, 0.1] for line in panel.get_lines())
    cas_panels = [ax for ax in fig.axes if ax.get_title(loc="left").split(" ")[1:2] == ["CAS"]]
    assert len(cas_panels) == 4 and len({ax.get_ylim() for ax in cas_panels}) == 1  # one y-scale


def test_plot_new_videos_from_predictions(run_dir, tmp_path, capsys) -> None:
    from rskp_plugin.data import make_synthetic

    _, test = make_synthetic(seed=0, feature_dim=16, num_train=10, num_test=4)
    video = test.videos[0]
    np.save(tmp_path / "new_video.npy", video.features)
    preds = tmp_path / "preds.json"
    assert cli.main(["predict", "--checkpoint", str(run_dir / "best.pt"), "--features",
                     str(tmp_path / "new_video.npy"), "--out", str(preds)]) == 0
    capsys.readouterr()
    assert cli.main(["plot", "--predictions", str(preds), "--dpi", "20"]) == 0  # detections alone
    assert (tmp_path / "preds_plots" / "video_new_video.png").is_file()
    capsys.readouterr()
    out = tmp_path / "with_cas"
    assert cli.main(["plot", "--predictions", str(preds), "--checkpoint", str(run_dir / "best.pt"), "--features",
                     str(tmp_path / "new_video.npy"), "--out", str(out), "--dpi", "20", "--min-score", "0"]) == 0
    assert "".join(capsys.readouterr().out.split()) == str(out / "video_new_video.png")
    from rskp_plugin.plot_sources import read_predictions

    assert read_predictions(preds)["new_video"]  # the model detected something to draw
    code = cli.main(["plot", "--predictions", str(preds), "--videos", "other"])
    assert code == 2 and "holds no video 'other'" in " ".join(capsys.readouterr().err.split())


def test_missing_matplotlib_is_one_line(run_dir, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code = cli.main(["plot", "--run", str(run_dir)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "pip install 'rskp-plugin[plot]'" in err and "Traceback" not in err
