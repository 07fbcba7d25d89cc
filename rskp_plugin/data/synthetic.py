"""Synthetic THUMOS14-shaped data: the default dataset when none is given, built in memory in seconds.

Annotations follow distributions fitted to the real THUMOS14-reduced annotations (both subsets, 412 videos): video
durations (an empirical quantile table), the classes of a video (the 28 class sets that occur, with their
frequencies, including the CliffDiving instances that always duplicate a Diving instance), the number of instances
(log-linear in the duration, with a per-class-set offset and log-normal spread) and instance lengths (log-normal per
class, with a per-video random effect). Regenerate the figures below with::

    python -m rskp_plugin.data._fit ../shared/data/thumos14reduced-annotations

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
from .records import I3D_SNIPPETS_PER_SECOND, VideoDataset, VideoRecord

CLASS_NAMES = (
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling", "CricketShot",
    "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow", "LongJump", "PoleVault",
    "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
)  # fmt: skip
DUPLICATE_OF = {"CliffDiving": "Diving"}  # every CliffDiving instance is also a Diving instance, same bounds
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

# ---- fitted figures -----------------------------------------------------------------------------------------------
# Fitted by: python -m rskp_plugin.data._fit ../shared/data/thumos14reduced-annotations
LOG_DURATION_QUANTILES = (  # log seconds minus the class set's shift, at 0, 5, ..., 100 %
    2.2270, 3.7543, 4.0578, 4.2406, 4.4328, 4.5678, 4.7121, 4.7757, 4.8692, 4.9542,
    5.0270, 5.0907, 5.1821, 5.2593, 5.3568, 5.4625, 5.5774, 5.6720, 5.8189, 6.0710,
    6.7170,
)
DURATION_OFFSETS = {  # log-duration shift of class sets with >= 5 real videos; 'rare': the others
    ('BaseballPitch',): -0.5687,
    ('BasketballDunk',): 0.3875,
    ('Billiards',): 0.1034,
    ('CleanAndJerk',): -0.1460,
    ('CliffDiving', 'Diving'): 0.0141,
    ('CricketBowling', 'CricketShot'): -0.3251,
    ('CricketBowling',): -0.4467,
    ('CricketShot',): -0.3083,
    ('Diving',): 0.2031,
    ('FrisbeeCatch',): -0.7722,
    ('GolfSwing',): -0.1989,
    ('HammerThrow',): 0.7391,
    ('HighJump',): 0.6189,
    ('JavelinThrow',): 1.1302,
    ('LongJump',): 0.4839,
    ('PoleVault',): 0.8307,
    ('Shotput',): -0.2809,
    ('SoccerPenalty',): -0.6683,
    ('TennisSwing',): -0.4259,
    ('ThrowDiscus',): -0.3842,
    ('VolleyballSpiking',): -0.5472,
    'rare': 0.4748,
}
CLASS_SETS = (  # (classes of a video, number of real videos)
    (('CricketBowling', 'CricketShot'), 27),
    (('CliffDiving', 'Diving'), 26),
    (('Shotput',), 23),
    (('VolleyballSpiking',), 23),
    (('BaseballPitch',), 21),
    (('CleanAndJerk',), 21),
    (('SoccerPenalty',), 21),
    (('BasketballDunk',), 20),
    (('Billiards',), 20),
    (('Diving',), 20),
    (('HighJump',), 20),
    (('JavelinThrow',), 20),
    (('LongJump',), 20),
    (('HammerThrow',), 19),
    (('PoleVault',), 19),
    (('GolfSwing',), 18),
    (('TennisSwing',), 18),
    (('ThrowDiscus',), 18),
    (('FrisbeeCatch',), 16),
    (('CricketShot',), 8),
    (('CricketBowling',), 6),
    (('Shotput', 'ThrowDiscus'), 2),
    (('BaseballPitch', 'FrisbeeCatch'), 1),
    (('CleanAndJerk', 'HammerThrow'), 1),
    (('CleanAndJerk', 'ThrowDiscus'), 1),
    (('GolfSwing', 'TennisSwing'), 1),
    (('HighJump', 'JavelinThrow', 'Shotput'), 1),
    (('LongJump', 'PoleVault'), 1),
)
COUNT_INTERCEPT, COUNT_SLOPE = -2.1927, 0.8534
COUNT_SPREAD = 0.7333  # sd of log(instances) around the fit
COUNT_OFFSETS = {  # log-count offset of class sets with >= 5 real videos; 'rare': the others
    ('BaseballPitch',): -0.8218,
    ('BasketballDunk',): 0.8208,
    ('Billiards',): -0.2119,
    ('CleanAndJerk',): -0.6411,
    ('CliffDiving', 'Diving'): 0.2507,
    ('CricketBowling', 'CricketShot'): 0.8406,
    ('CricketBowling',): -0.4344,
    ('CricketShot',): 0.2303,
    ('Diving',): 0.6585,
    ('FrisbeeCatch',): 0.1435,
    ('GolfSwing',): -1.0003,
    ('HammerThrow',): -0.1040,
    ('HighJump',): -0.0698,
    ('JavelinThrow',): -0.5046,
    ('LongJump',): -0.3397,
    ('PoleVault',): -0.0086,
    ('Shotput',): -0.1616,
    ('SoccerPenalty',): -0.2235,
    ('TennisSwing',): 0.3029,
    ('ThrowDiscus',): 0.1219,
    ('VolleyballSpiking',): 0.4409,
    'rare': 0.0895,
}
LENGTH_LOG_MEAN = (  # log seconds, per class (classlist order), mean over (video, class) groups
    1.169, 0.565, 0.840, 2.465, 1.321, 0.492, 0.320, 1.105, 1.296, 1.807,
    1.913, 1.572, 1.746, 1.867, 1.933, 1.552, 1.000, 0.614, 1.922, 0.911,
)
LENGTH_BETWEEN_SD, LENGTH_WITHIN_SD = 0.5279, 0.4341
LENGTH_COUNT_CORR = -0.3892  # count residual vs length effect
LENGTH_MIN = 0.20
MAX_COVERAGE = 0.9  # instances never cover more than this share of a video (real maximum: 0.89)

# ---- feature model (not fitted: chosen so that a good head alone lands around 30-50 % average mAP) ------------------
NUM_BACKGROUNDS = 8  # generic background prototypes
NUM_VIEWS = 4  # sub-modes per class
NOISE_RANK = 8  # smooth low-rank noise components
NOISE_BANK = 1024  # per-snippet noise vectors drawn from a fixed bank (fast; label-independent)


def _log_duration_quantile(u: np.ndarray) -> np.ndarray:
    return np.interp(u, np.linspace(0.0, 1.0, len(LOG_DURATION_QUANTILES)), LOG_DURATION_QUANTILES)


def sample_annotations(rng: np.random.Generator, count: int) -> list[dict]:
    """Draw ``count`` annotated videos from the fitted distributions.

    Returns:
        One dict per video: ``duration`` (s), ``segments`` (K, 2) s rounded to 0.1 s as in THUMOS14,
        ``segment_labels`` (K,) class indices, ``classes`` (the video's class indices) and, for the feature
        generator, ``feature_class`` (K,) the class whose prototype each instance shows (-1 for duplicates).
    """
    index = {c: i for i, c in enumerate(CLASS_NAMES)}
    set_probs = np.array([n for _, n in CLASS_SETS], dtype=np.float64)
    set_probs /= set_probs.sum()
    videos = []
    for _ in range(count):  # a handful of small draws per video; the features are the vectorised part
        classes = CLASS_SETS[rng.choice(len(CLASS_SETS), p=set_probs)][0]
        shift = DURATION_OFFSETS.get(classes, DURATION_OFFSETS["rare"])
        duration = float(np.round(np.exp(_log_duration_quantile(rng.random()) + shift), 3))
        base = [c for c in classes if c not in DUPLICATE_OF] or list(classes)
        log_count = COUNT_INTERCEPT + COUNT_SLOPE * np.log(duration) + COUNT_OFFSETS.get(classes, COUNT_OFFSETS["rare"])
        z = rng.standard_normal()
        unique = int(np.clip(np.round(np.exp(log_count + COUNT_SPREAD * z)), len(base), None))
        unique = min(unique, max(len(base), int(MAX_COVERAGE * duration / (2 * LENGTH_MIN))))
        owner = np.concatenate([np.arange(len(base)), rng.integers(0, len(base), unique - len(base))])
        owner = rng.permutation(owner)
        cls = np.array([index[base[o]] for o in owner], dtype=np.int64)
        rho = LENGTH_COUNT_CORR
        effect = {
            c: LENGTH_BETWEEN_SD * (rho * z + np.sqrt(1 - rho**2) * rng.standard_normal())
            for c in sorted(set(cls.tolist()))
        }
        log_len = np.array([LENGTH_LOG_MEAN[c] + effect[c] for c in cls]) + LENGTH_WITHIN_SD * rng.standard_normal(
            unique
        )
        lengths = np.maximum(np.exp(log_len), LENGTH_MIN)
        budget = MAX_COVERAGE * duration
        if lengths.sum() > budget:
            lengths = np.maximum(lengths * budget / lengths.sum(), LENGTH_MIN / 2)
        gaps = rng.dirichlet(np.ones(unique + 1)) * max(duration - lengths.sum(), 0.0)
        starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
        start = np.round(starts, 1)
        end = np.minimum(np.round(starts + lengths, 1), np.floor(duration * 10) / 10)
        end = np.round(np.maximum(end, start + 0.1), 1)
        start = np.round(np.minimum(start, end - 0.1), 1)
        segments = np.stack([start, end], axis=1)
        labels, feature_class = cls, cls.copy()
        dups = [index[d] for d in classes if d in DUPLICATE_OF]
        for dup in dups:  # CliffDiving: copies of the Diving instances, listed first as in the real files
            twin = cls == index[DUPLICATE_OF[CLASS_NAMES[dup]]]
            feature_class = np.where(twin, dup, feature_class)  # the instances look like the more specific class
            segments = np.concatenate([segments[twin], segments])
            labels = np.concatenate([np.full(int(twin.sum()), dup), labels])
            feature_class = np.concatenate([np.full(int(twin.sum()), -1), feature_class])
        videos.append(
            {
                "duration": duration,
                "segments": segments,
                "segment_labels": labels.astype(np.int64),
                "classes": sorted({index[c] for c in classes}),
                "feature_class": feature_class,
            }
        )
    return videos


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

    def __init__(self, rng: np.random.Generator, feature_dim: int, difficulty: float) -> None:
        c, d = len(CLASS_NAMES), feature_dim

        def directions(n: int) -> np.ndarray:  # non-negative, sparse-ish, mean about 0.4 per element
            return np.maximum(rng.standard_normal((n, d), dtype=np.float32), 0)

        family_of = np.zeros(c, dtype=np.int64)
        for f, members in enumerate(FAMILIES):
            for name in members:
                family_of[CLASS_NAMES.index(name)] = f
        family = directions(len(FAMILIES))
        own = directions(c)
        views = directions(c * NUM_VIEWS).reshape(c, NUM_VIEWS, d)
        motion = directions(1)
        # Action prototype of (class, view): family part + class part + view-specific part + shared motion, which
        # gives action snippets larger magnitudes than background.
        self.action = (0.35 * family[family_of][:, None] + 0.35 * own[:, None] + 0.6 * views + 0.5 * motion).reshape(
            c * NUM_VIEWS, d
        )
        share = min(0.25 * difficulty, 0.5)  # how much of a class's own direction its context carries
        family_context = directions(len(FAMILIES))
        self.context = ((1 - share) * (0.5 * family_context[family_of] + 0.5 * directions(c)) + share * own).astype(
            np.float32
        )
        noise_basis = rng.standard_normal((NOISE_RANK, d), dtype=np.float32) / np.sqrt(NOISE_RANK)
        # Rows of the dense latent -> feature map, in the column order of ``latent``'s weights.
        self.prototypes = np.concatenate([directions(NUM_BACKGROUNDS), noise_basis]).astype(np.float32)
        self.noise = (0.1 + 0.15 * difficulty) * rng.standard_normal((NOISE_BANK, d), dtype=np.float32)
        self.num_classes = c
        self.difficulty = difficulty

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
        own = [k for k in video["classes"] if CLASS_NAMES[k] not in DUPLICATE_OF.values()] or video["classes"]
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


def make_synthetic(
    *,
    seed: int = 0,
    feature_dim: int = 2048,
    difficulty: float = 1.0,
    num_train: int = 200,
    num_test: int = 212,
    snippets_per_second: float = I3D_SNIPPETS_PER_SECOND,
) -> tuple[VideoDataset, VideoDataset]:
    """Build a THUMOS14-reduced-shaped training and test set in memory.

    Args:
        seed: seeds everything; the same seed gives the same videos and annotations at any ``feature_dim``.
        feature_dim: D, the feature width (>= 16; I3D RGB + flow is 2048).
        difficulty: >= 0; 0 is trivially separable, 1 (default) is calibrated so that a good head alone lands
            around 30-50 % average mAP, larger is harder (see the module docstring).
        num_train: videos of the training subset (``"validation"``, as THUMOS14 trains on its validation videos).
        num_test: videos of the test subset (``"test"``).
        snippets_per_second: snippets per second of the generated features (I3D: 25/16).

    Returns:
        ``(train, test)`` datasets named ``synthetic-thumos14`` with subsets ``validation`` and ``test``.
    """
    if feature_dim < 16:
        raise DataError(f"feature_dim must be >= 16, got {feature_dim}")
    if not difficulty >= 0:
        raise DataError(f"difficulty must be >= 0, got {difficulty}")
    if num_train < 1 or num_test < 1:
        raise DataError(f"need at least one training and one test video, got {num_train} and {num_test}")
    # The world (class, view and background directions) is the only part whose draws depend on the width; it gets
    # a stream of its own, so that one seed gives the same videos, annotations and temporal structure at any width.
    world_seed, video_seed = np.random.SeedSequence(seed).spawn(2)
    world = _World(np.random.default_rng(world_seed), int(feature_dim), float(difficulty))
    rng = np.random.default_rng(video_seed)
    subsets = (("validation", int(num_train)), ("test", int(num_test)))
    annotations = {subset: sample_annotations(rng, count) for subset, count in subsets}
    out = []
    for subset, _ in subsets:
        videos = annotations[subset]
        lengths = [max(1, int(np.ceil(v["duration"] * snippets_per_second))) for v in videos]
        latents = [world.latent(rng, v, t, snippets_per_second) for v, t in zip(videos, lengths)]
        feats = world.features(rng, latents, videos)
        records = []
        for i, (video, x) in enumerate(zip(videos, feats)):
            labels = np.zeros(len(CLASS_NAMES), dtype=np.float32)
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
                name="synthetic-thumos14",
                subset=subset,
                class_names=CLASS_NAMES,
                videos=tuple(records),
                snippets_per_second=snippets_per_second,
            )
        )
    return out[0], out[1]
