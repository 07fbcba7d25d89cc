"""In-memory records every loader returns: ``VideoRecord`` (one video) and ``VideoDataset`` (one subset).

Times are in seconds; features are snippet-wise. ``snippets_per_second`` converts between the two: for the usual
W-TALC I3D features one snippet is 16 frames at 25 fps, so there are 25/16 = 1.5625 snippets per second and
snippet k covers [k / f, (k + 1) / f) seconds (docs/evaluation.md 2.3).
"""

from __future__ import annotations

import warnings
from typing import Any, Iterator, Mapping, Sequence

import attrs
import numpy as np

from ..errors import DataError, ShapeError

#: Snippets per second of W-TALC I3D features: 16-frame snippets of video sampled at 25 fps.
I3D_SNIPPETS_PER_SECOND = 25 / 16


def duplicates(names: Sequence[str], limit: int = 5) -> list[str]:
    """The names that occur more than once in ``names`` (at most ``limit``, sorted)."""
    seen: set[str] = set()
    twice = {n for n in names if n in seen or seen.add(n)}
    return sorted(twice)[:limit]


class DataWarning(UserWarning):
    """A loader skipped videos (``on_error="skip"``) or changed annotations; the dataset's ``skipped`` says which."""


def _features(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _labels(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _segments(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1, 2)


def _segment_labels(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.int64).reshape(-1)


_ARRAY_EQ = attrs.cmp_using(eq=np.array_equal)


@attrs.frozen
class VideoRecord:
    """One video: snippet features, video-level labels and temporal ground truth.

    Attributes:
        name: video id (e.g. ``video_test_0000004``).
        features: (T, D) float32 snippet features.
        labels: (C,) float32 multi-hot video-level labels (W-TALC ``labels_all``; the weak training labels).
        duration: video length in seconds.
        segments: (K, 2) float64 ground-truth instances ``[start, end]`` in seconds.
        segment_labels: (K,) int64 class index of each instance.
    """

    name: str
    features: np.ndarray = attrs.field(converter=_features, eq=_ARRAY_EQ, hash=False, repr=False)
    labels: np.ndarray = attrs.field(converter=_labels, eq=_ARRAY_EQ, hash=False)
    duration: float = attrs.field(converter=float)
    segments: np.ndarray = attrs.field(converter=_segments, eq=_ARRAY_EQ, hash=False, repr=False)
    segment_labels: np.ndarray = attrs.field(converter=_segment_labels, eq=_ARRAY_EQ, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.features.ndim != 2:
            raise ShapeError(f"video {self.name}: features must be (T, D), got shape {self.features.shape}")
        if self.labels.ndim != 1:
            raise ShapeError(f"video {self.name}: labels must be (C,) multi-hot, got shape {self.labels.shape}")
        if len(self.segments) != len(self.segment_labels):
            raise ShapeError(
                f"video {self.name}: {len(self.segments)} segments but {len(self.segment_labels)} segment labels"
            )

    @property
    def num_snippets(self) -> int:
        """T, the number of feature snippets."""
        return int(self.features.shape[0])


def _as_ambiguous(x: Mapping[str, Any]) -> Mapping[str, np.ndarray]:
    return {str(k): _segments(v) for k, v in dict(x).items()}


def _ambiguous_eq(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@attrs.frozen
class VideoDataset:
    """One subset of a dataset (e.g. THUMOS14 ``validation`` for training, ``test`` for evaluation).

    Attributes:
        name: dataset name (``Thumos14reduced``, ``synthetic-thumos14``, ...).
        subset: subset name as stored in the annotations (``validation``, ``test``, ``training``, ...).
        class_names: the C class names; position = class index of labels and network outputs.
        videos: the videos, in file order.
        snippets_per_second: snippet-to-seconds factor f; snippet k covers [k / f, (k + 1) / f) seconds.
        ambiguous: video -> (k, 2) seconds of THUMOS "Ambiguous" segments (predictions touching them are ignored
            by the W-TALC protocol); empty where the dataset has none.
        skipped: (video, reason) of every video a loader skipped with ``on_error="skip"``.
    """

    name: str
    subset: str
    class_names: tuple[str, ...] = attrs.field(converter=tuple)
    videos: tuple[VideoRecord, ...] = attrs.field(converter=tuple, repr=False)
    snippets_per_second: float = attrs.field(default=I3D_SNIPPETS_PER_SECOND, converter=float)
    ambiguous: Mapping[str, np.ndarray] = attrs.field(
        factory=dict, converter=_as_ambiguous, eq=attrs.cmp_using(eq=_ambiguous_eq), hash=False, repr=False
    )
    skipped: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=tuple, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.snippets_per_second <= 0:
            raise DataError(
                f"{self.name}/{self.subset}: snippets_per_second must be > 0, got {self.snippets_per_second}"
            )
        widths = {v.features.shape[1] for v in self.videos}
        if len(widths) > 1:
            raise ShapeError(f"{self.name}/{self.subset}: videos have different feature widths {sorted(widths)}")
        for video in self.videos:
            if video.labels.shape != (len(self.class_names),):
                raise ShapeError(
                    f"{self.name}/{self.subset}: video {video.name} has labels of shape {video.labels.shape}, "
                    f"expected ({len(self.class_names)},) for the dataset's classes"
                )
        names = [v.name for v in self.videos]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})[:5]
            raise DataError(f"{self.name}/{self.subset}: duplicate video names {dup}")
        if len(set(self.class_names)) != len(self.class_names):
            raise DataError(f"{self.name}/{self.subset}: duplicate class names {duplicates(self.class_names)} in the "
                            "class list; give every class one name, once")

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> VideoRecord:
        return self.videos[index]

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self.videos)

    @property
    def feature_dim(self) -> int:
        """D, the feature width (0 for an empty dataset)."""
        return int(self.videos[0].features.shape[1]) if self.videos else 0

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self.class_names)

    @property
    def names(self) -> tuple[str, ...]:
        """Video names in dataset order."""
        return tuple(v.name for v in self.videos)

    def video(self, name: str) -> VideoRecord:
        """The video called ``name``; raises ``DataError`` if there is none."""
        for video in self.videos:
            if video.name == name:
                return video
        raise DataError(f"{self.name}/{self.subset} has no video {name!r}")

    def ground_truth(self) -> dict:
        """The temporal ground truth as an ActivityNet-format JSON object.

        Returns:
            ``{"version", "taxonomy", "database": {name: {"subset", "duration", "annotations":
            [{"segment": [start, end], "label": class name}, ...]}}}`` with times in seconds. The taxonomy lists
            every class of the dataset (leaves under one root), so that the evaluation knows the classes that have
            no instance in these videos.
        """
        from ..formats.activitynet import class_taxonomy

        database = {}
        for video in self.videos:
            annotations = [
                {"segment": [float(s), float(e)], "label": self.class_names[int(c)]}
                for (s, e), c in zip(video.segments.tolist(), video.segment_labels.tolist())
            ]
            database[video.name] = {"subset": self.subset, "duration": video.duration, "annotations": annotations}
        return {"version": f"rskp {self.name}", "taxonomy": class_taxonomy(self.class_names), "database": database}

    def subset_of(self, indices: Sequence[int], subset: str | None = None) -> VideoDataset:
        """A dataset holding the videos at ``indices`` (in that order), same classes and settings."""
        videos = tuple(self.videos[int(i)] for i in indices)
        keep = {v.name for v in videos}
        return attrs.evolve(
            self,
            subset=self.subset if subset is None else subset,
            videos=videos,
            ambiguous={k: v for k, v in self.ambiguous.items() if k in keep},
            skipped=(),
        )

    def split(self, fraction: float, seed: int) -> tuple[VideoDataset, VideoDataset]:
        """Hold out part of a training set for honest model selection.

        Videos are assigned per stratum (a video's rarest label): about ``fraction`` of each stratum is held out and,
        where the exact size allows, a stratum of two or more videos keeps a training video. Deterministic for a
        given ``seed``; video order is preserved.

        Args:
            fraction: share of the videos in the held-out part, in (0, 1).
            seed: seed of the assignment.

        Returns:
            ``(train, held_out)`` with subsets ``"<subset>:train"`` and ``"<subset>:heldout"``.
        """
        if not 0 < fraction < 1:
            raise DataError(f"split fraction must be in (0, 1), got {fraction}")
        n = len(self.videos)
        if n < 2:
            raise DataError(f"{self.name}/{self.subset}: cannot split {n} video(s)")
        rng = np.random.default_rng(seed)
        counts = np.sum([v.labels > 0 for v in self.videos], axis=0)
        strata = np.array(
            [int(np.argmin(np.where(v.labels > 0, counts, np.inf))) if v.labels.any() else -1 for v in self.videos]
        )
        target = min(max(int(round(fraction * n)), 1), n - 1)
        held = np.zeros(n, dtype=bool)
        for stratum in np.unique(strata):  # about `fraction` of each stratum, never all of one
            members = rng.permutation(np.flatnonzero(strata == stratum))
            take = int(np.floor(fraction * len(members) + rng.random()))  # unbiased rounding
            held[members[: min(take, len(members) - 1) if len(members) > 1 else take]] = True
        # Reach the exact size: add videos whose stratum keeps another training video, or drop random ones.
        for i in rng.permutation(n):
            if held.sum() >= target:
                break
            if not held[i] and np.sum((strata == strata[i]) & ~held) > 1:
                held[i] = True
        for i in rng.permutation(np.flatnonzero(~held)):  # strata of one video each, if still short
            if held.sum() >= target:
                break
            held[i] = True
        surplus = int(held.sum()) - target
        if surplus > 0:
            held[rng.choice(np.flatnonzero(held), surplus, replace=False)] = False
        return (
            self.subset_of(np.flatnonzero(~held), f"{self.subset}:train"),
            self.subset_of(np.flatnonzero(held), f"{self.subset}:heldout"),
        )


def summarize_skipped(dataset: str, skipped: Sequence[tuple[str, str]], total: int, *, stacklevel: int = 3) -> None:
    """Emit one ``DataWarning`` that counts the skipped videos and names the first few with their reasons.

    Args:
        stacklevel: as ``warnings.warn``'s, counted from here; the default blames the caller's caller.
    """
    if not skipped:
        return
    shown = "; ".join(f"{name}: {reason}" for name, reason in skipped[:5])
    more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
    warnings.warn(
        f"{dataset}: skipped {len(skipped)} of {total} videos: {shown}{more}. The dataset's `skipped` lists all.",
        DataWarning,
        stacklevel=stacklevel,
    )
