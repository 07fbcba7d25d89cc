"""The annotation model of the synthetic data: figures fitted to the real THUMOS14-reduced annotations (both subsets,
412 videos) and the sampler that draws annotated videos from them.

Video durations follow an empirical quantile table, the classes of a video the 28 class sets that occur (with their
frequencies, including the CliffDiving instances that always duplicate a Diving instance), the number of instances is
log-linear in the duration (with a per-class-set offset and log-normal spread) and instance lengths are log-normal per
class (with a per-video random effect). Regenerate the figures below with::

    python -m rskp_plugin.data._fit ../shared/data/thumos14reduced-annotations
"""

from __future__ import annotations

import numpy as np


CLASS_NAMES = (
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling", "CricketShot",
    "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow", "LongJump", "PoleVault",
    "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
)  # fmt: skip
DUPLICATE_OF = {"CliffDiving": "Diving"}  # every CliffDiving instance is also a Diving instance, same bounds

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
