"""Synthetic THUMOS14-shaped data: the default dataset when none is given, built in memory in seconds.

Annotations follow distributions fitted to the real THUMOS14-reduced annotations: the figures and their sampler are
in :mod:`rskp_plugin.data.synthetic_figures` (re-exported here). The preset ``activitynet13`` draws ActivityNet1.3-
shaped annotations instead (200 classes, long videos with one or two long instances:
:mod:`rskp_plugin.data.synthetic_activitynet`) and maps them to features with the same model.

Features stand in for I3D (non-negative, temporally smooth, any width >= 16). Each snippet mixes latent
components that are mapped to the feature space by fixed random non-negative prototypes:

* background: a per-scene mixture of generic background prototypes, drifting smoothly;
* class context: every snippet of a video (background included) carries the context prototype of the video's
  classes (the pool of Diving, the pitch of cricket), which shares part of its direction with the class's actions,
  so that a video-level classifier also fires on background;
* actions: each class has several views (sub-modes) whose prototypes share a class part and a family part (throws,
  jumps, cricket, ...); inside an instance a contiguous core of snippets is fully discriminative, the other
  "partial" snippets are mixed with background (half like background), and snippets cut by an instance boundary
  are mixed in proportion to the overlap;
* a shared "motion" component gives action snippets larger feature magnitudes (WUM's premise);
* unlabelled action-like distractors (replays, run-ups) weakly show a video's class outside its instances;
* smooth low-rank noise plus per-snippet noise.

``difficulty`` (>= 0, default 1) scales what makes weakly supervised localization hard: the share of partial
snippets and how weak they are, the context strength, the distractors and the noise. At 0 every action snippet is
fully discriminative and backgrounds carry no context.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from . import synthetic_activitynet
from .records import I3D_SNIPPETS_PER_SECOND, VideoDataset, VideoRecord
from .synthetic_figures import CLASS_NAMES, DUPLICATE_OF, sample_annotations

# Families of similar actions: their action and context prototypes share a component.
FAMILIES = (
    ("CricketBowling", "CricketShot"),
    ("CliffDiving", "Diving"),
    ("HammerThrow", "JavelinThrow", "Shotput", "ThrowDiscus"),
    ("HighJump", "LongJump", "PoleVault"),
    ("BasketballDunk", "VolleyballSpiking"),
    ("BaseballPitch", "GolfSwing", "TennisSwing"),
    ("Billiards",),
    ("CleanAndJerk",),
    ("FrisbeeCatch", "SoccerPenalty"),
)

# ---- feature model (not fitted: chosen so that a good head alone lands around 30-50 % average mAP) ------------------
NUM_BACKGROUNDS = 8  # generic background prototypes
NUM_VIEWS = 4  # sub-modes per class
NOISE_RANK = 8  # smooth low-rank noise components
NOISE_BANK = 1024  # per-snippet noise vectors drawn from a fixed bank (fast; label-independent)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average over axis 0 (edges use the available neighbours), vectorised over the other axes."""
    if width <= 1 or len(x) == 1:
        return x
    half = width // 2
    padded = np.concatenate([np.zeros((1,) + x.shape[1:], x.dtype), np.cumsum(x, axis=0, dtype=np.float64)])
    idx = np.arange(len(x))
    lo, hi = np.clip(idx - half, 0, len(x)), np.clip(idx + half + 1, 0, len(x))
    shape = (-1,) + (1,) * (x.ndim - 1)
    return ((padded[hi] - padded[lo]) / (hi - lo).reshape(shape)).astype(x.dtype)


class _World:
    """The fixed prototypes shared by the training and test videos (the "feature extractor")."""

    def __init__(
        self,
        rng: np.random.Generator,
        feature_dim: int,
        difficulty: float,
        class_names: tuple[str, ...] = CLASS_NAMES,
        families: tuple[tuple[str, ...], ...] = FAMILIES,
        duplicate_of: dict[str, str] = DUPLICATE_OF,
    ) -> None:
        c, d = len(class_names), feature_dim

        def directions(n: int) -> np.ndarray:  # non-negative, sparse-ish, mean about 0.4 per element
            return np.maximum(rng.standard_normal((n, d), dtype=np.float32), 0)

        family_of = np.zeros(c, dtype=np.int64)
        index = {name: k for k, name in enumerate(class_names)}
        for f, members in enumerate(families):
            for name in members:
                family_of[index[name]] = f
        family = directions(len(families))
        own = directions(c)
        views = directions(c * NUM_VIEWS).reshape(c, NUM_VIEWS, d)
        motion = directions(1)
        # Action prototype of (class, view): family part + class part + view-specific part + shared motion, which
        # gives action snippets larger magnitudes than background.
        self.action = (0.35 * family[family_of][:, None] + 0.35 * own[:, None] + 0.6 * views + 0.5 * motion).reshape(
            c * NUM_VIEWS, d
        )
        share = min(0.25 * difficulty, 0.5)  # how much of a class's own direction its context carries
        family_context = directions(len(families))
        self.context = ((1 - share) * (0.5 * family_context[family_of] + 0.5 * directions(c)) + share * own).astype(
            np.float32
        )
        noise_basis = rng.standard_normal((NOISE_RANK, d), dtype=np.float32) / np.sqrt(NOISE_RANK)
        # Rows of the dense latent -> feature map, in the column order of ``latent``'s weights.
        self.prototypes = np.concatenate([directions(NUM_BACKGROUNDS), noise_basis]).astype(np.float32)
        self.noise = (0.1 + 0.15 * difficulty) * rng.standard_normal((NOISE_BANK, d), dtype=np.float32)
        self.num_classes = c
        self.difficulty = difficulty
        self.class_names = class_names
        self.duplicated = set(duplicate_of.values())  # classes whose instances another class duplicates

    def latent(self, rng: np.random.Generator, video: dict, length: int, sps: float) -> tuple[np.ndarray, ...]:
        """Latent description of one video's T snippets.

        Returns:
            ``(weights (T, G + R) of the background and noise prototypes, context weight (T,), actionness a (T,)
            in [0, 1], action prototype (T,) int)``.
        """
        hard, c = self.difficulty, self.num_classes
        # Background: scenes with their own mixture of generic backgrounds, smoothed transitions.
        scenes = 1 + rng.poisson(length / 150)
        cuts = np.sort(rng.integers(1, max(length, 2), scenes - 1))
        scene_of = np.searchsorted(cuts, np.arange(length), side="right")
        mix = rng.dirichlet(np.full(NUM_BACKGROUNDS, 0.3), scenes).astype(np.float32)
        background = _smooth(mix[scene_of], 5)  # (T, G)
        # Actions: per-snippet strength in [0, 1] of each instance's (class, view) prototype.
        segs, fclass = video["segments"], video["feature_class"]
        real = fclass >= 0
        segs, fclass = segs[real], fclass[real]
        action = np.zeros((length, c * NUM_VIEWS), dtype=np.float32)
        if len(segs):
            lo = np.clip(np.floor(segs[:, 0] * sps).astype(np.int64), 0, length - 1)
            hi = np.clip(np.ceil(segs[:, 1] * sps).astype(np.int64), lo + 1, length)
            counts = hi - lo
            inst = np.repeat(np.arange(len(segs)), counts)  # one entry per (instance, snippet) pair
            t = lo[inst] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            s, e = segs[inst, 0], segs[inst, 1]
            overlap = np.clip((np.minimum(e, (t + 1) / sps) - np.maximum(s, t / sps)) * sps, 0.0, 1.0)
            rel = ((t + 0.5) / sps - s) / np.maximum(e - s, 1e-6)  # position inside the instance, 0..1
            core_len = rng.uniform(0.15, 0.55, len(segs)) ** hard  # share of fully discriminative snippets
            core_at = rng.uniform(0, 1, len(segs)) * (1 - core_len)
            core = (rel >= core_at[inst]) & (rel <= (core_at + core_len)[inst])
            partial = rng.uniform(0.25, 0.65, len(t)) ** hard  # strength of the other, "partial" snippets
            strength = overlap * np.where(core, rng.uniform(0.85, 1.0, len(t)), partial)
            view = rng.integers(0, NUM_VIEWS, len(segs))
            np.add.at(action, (t, fclass[inst] * NUM_VIEWS + view[inst]), strength.astype(np.float32))
        # Distractors: unlabelled, weakly action-like stretches of the video's classes (replays, run-ups).
        own = [k for k in video["classes"] if self.class_names[k] not in self.duplicated] or video["classes"]
        for _ in range(rng.poisson(0.15 * hard * max(len(segs), 1))):
            start = int(rng.integers(0, length))
            stop = min(length, start + 1 + int(rng.integers(1, 6)))
            col = int(rng.choice(own)) * NUM_VIEWS + int(rng.integers(0, NUM_VIEWS))
            action[start:stop, col] += rng.uniform(0.15, 0.45) * hard
        action = _smooth(action, 3)  # I3D snippets overlap in receptive field: neighbours are similar
        a = np.minimum(action.sum(axis=1), 1.0)  # (T,) actionness; overlapping instances share the snippet
        prototype = action.argmax(axis=1)
        context = (1 - 0.5 * a) * rng.uniform(0.2, 0.6) * hard  # the mean context of the video's classes
        noise = _smooth(rng.standard_normal((length, NOISE_RANK), dtype=np.float32), 5)
        weights = np.concatenate([(1 - a)[:, None] * background, (0.1 + 0.15 * hard) * 2 * noise], axis=1)
        return weights, context.astype(np.float32), a.astype(np.float32), prototype

    def features(
        self, rng: np.random.Generator, latents: list[tuple[np.ndarray, ...]], videos: list[dict]
    ) -> list[np.ndarray]:
        """Map every video's latent description to non-negative (T, D) float32 features.

        One small matrix product per video over the dense prototypes plus the few action prototypes the video
        uses (a video shows at most a few classes x views). Small products run single-threaded: a thread pool
        costs more than it saves at this size (measured: 3x less CPU time on 2 cores).
        """
        lengths = [len(x[1]) for x in latents]
        # torch's allocator, not numpy's: numpy asks for transparent huge pages, whose first touch costs ~2x here.
        result = torch.empty(sum(lengths), self.prototypes.shape[1], dtype=torch.float32)
        out = result.numpy()
        noise_rows = torch.from_numpy(rng.integers(0, NOISE_BANK, len(out)))
        dense, action, noise = (torch.from_numpy(x) for x in (self.prototypes, self.action, self.noise))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            offset = 0
            for (weights, context, a, prototype), video, length in zip(latents, videos, lengths):
                used, column = np.unique(prototype, return_inverse=True)
                onehot = np.zeros((length, len(used)), dtype=np.float32)
                onehot[np.arange(length), column] = a  # (T, u): actionness in the column of its prototype
                scene = self.context[video["classes"]].mean(0, keepdims=True)  # (1, D) context of the video
                x = result[offset : offset + length]
                torch.matmul(  # (T, G + R + 1 + u) @ (G + R + 1 + u, D)
                    torch.from_numpy(np.concatenate([weights, context[:, None], onehot], axis=1)),
                    torch.cat([dense, torch.from_numpy(scene), action[torch.from_numpy(used)]]),
                    out=x,
                )
                x += noise[noise_rows[offset : offset + length]]
                x.clamp_(min=0)
                offset += length
        finally:
            torch.set_num_threads(threads)
        return np.split(out, np.cumsum(lengths)[:-1])


#: Synthetic presets: name -> (dataset name, class names, families, duplicates, annotation sampler, subsets).
PRESETS = {
    "thumos14": ("synthetic-thumos14", CLASS_NAMES, FAMILIES, DUPLICATE_OF, sample_annotations,
                 ("validation", "test")),
    "activitynet13": ("synthetic-activitynet13", synthetic_activitynet.CLASS_NAMES, synthetic_activitynet.FAMILIES,
                      {}, synthetic_activitynet.sample_activitynet_annotations, ("training", "validation")),
}


def make_synthetic(
    *,
    seed: int = 0,
    feature_dim: int = 2048,
    difficulty: float = 1.0,
    num_train: int = 200,
    num_test: int = 212,
    snippets_per_second: float = I3D_SNIPPETS_PER_SECOND,
    preset: str = "thumos14",
) -> tuple[VideoDataset, VideoDataset]:
    """Build a THUMOS14-reduced-shaped (or, with ``preset="activitynet13"``, ActivityNet1.3-shaped) training and
    test set in memory.

    Args:
        seed: seeds everything; the same seed gives the same videos and annotations at any ``feature_dim``.
        feature_dim: D, the feature width (>= 16; I3D RGB + flow is 2048).
        difficulty: >= 0; 0 is trivially separable, 1 (default) is calibrated so that a good head alone lands
            around 30-50 % average mAP on the THUMOS14 shape, larger is harder (see the module docstring).
        num_train: videos of the training subset (``"validation"``, as THUMOS14 trains on its validation videos;
            ``"training"`` for ActivityNet1.3).
        num_test: videos of the test subset (``"test"``; ``"validation"`` for ActivityNet1.3).
        snippets_per_second: snippets per second of the generated features (I3D: 25/16).
        preset: "thumos14" (annotations fitted to THUMOS14-reduced, 20 classes) or "activitynet13" (200 classes,
            long videos with one or two long instances; figures in ``synthetic_activitynet``).

    Returns:
        ``(train, test)`` datasets named ``synthetic-<preset>`` with the preset's subsets.
    """
    if preset not in PRESETS:
        raise DataError(f'unknown synthetic preset "{preset}"; choose one of {", ".join(PRESETS)}')
    if feature_dim < 16:
        raise DataError(f"feature_dim must be >= 16, got {feature_dim}")
    if not difficulty >= 0:
        raise DataError(f"difficulty must be >= 0, got {difficulty}")
    if num_train < 1 or num_test < 1:
        raise DataError(f"need at least one training and one test video, got {num_train} and {num_test}")
    name, class_names, families, duplicate_of, sampler, subset_names = PRESETS[preset]
    # The world (class, view and background directions) is the only part whose draws depend on the width; it gets
    # a stream of its own, so that one seed gives the same videos, annotations and temporal structure at any width.
    world_seed, video_seed = np.random.SeedSequence(seed).spawn(2)
    world = _World(np.random.default_rng(world_seed), int(feature_dim), float(difficulty), class_names, families,
                   duplicate_of)
    rng = np.random.default_rng(video_seed)
    subsets = tuple(zip(subset_names, (int(num_train), int(num_test))))
    annotations = {subset: sampler(rng, count) for subset, count in subsets}
    out = []
    for subset, _ in subsets:
        videos = annotations[subset]
        lengths = [max(1, int(np.ceil(v["duration"] * snippets_per_second))) for v in videos]
        latents = [world.latent(rng, v, t, snippets_per_second) for v, t in zip(videos, lengths)]
        feats = world.features(rng, latents, videos)
        records = []
        for i, (video, x) in enumerate(zip(videos, feats)):
            labels = np.zeros(len(class_names), dtype=np.float32)
            labels[video["classes"]] = 1.0
            records.append(
                VideoRecord(
                    name=f"synthetic_{subset}_{i + 1:07d}",
                    features=x,
                    labels=labels,
                    duration=video["duration"],
                    segments=video["segments"],
                    segment_labels=video["segment_labels"],
                )
            )
        out.append(
            VideoDataset(
                name=name,
                subset=subset,
                class_names=class_names,
                videos=tuple(records),
                snippets_per_second=snippets_per_second,
            )
        )
    return out[0], out[1]
