"""The annotation model of the ActivityNet1.3-shaped synthetic data (``make_synthetic(preset="activitynet13")``,
``data.synthetic_preset: activitynet13``): 200 classes, long videos, one or two long instances of one class each.

Figures and their sources:

* 200 classes: the paper (section 4.1) and activity-net.org (release 1.3, "ActivityNet 200").
* instances per video: 15,410 instances in 10,024 training videos (activity-net.org, release 1.3; the validation
  subset: 7,654 in 4,926, 1.55), so a video holds two instances with probability 0.537, else one.
* mean video duration: "more than 648 hours of untrimmed videos from a total of ~20K videos" (activity-net.org,
  challenge pages of 2017-2019; 10,024 + 4,926 + 5,044 = 19,994 videos), 116.7 s.
* chosen here, not taken from a source read: durations log-normal with that mean and a log-sd of 0.6 limited to
  10-600 s (YouTube videos of up to 10 minutes), the instances of a video covering a Beta(2, 2) share of it (mean
  one half: long instances, unlike THUMOS14's of a few seconds, ``synthetic_figures.LENGTH_LOG_MEAN``), a video's
  classes uniform over the 200, two instances of a video sharing its class, and families of five
  consecutive classes whose prototypes share a component (ActivityNet's taxonomy groups its leaves under parents).
"""

from __future__ import annotations

import numpy as np

NUM_CLASSES = 200
CLASS_NAMES = tuple(f"activity_{k:03d}" for k in range(NUM_CLASSES))
#: Five consecutive classes per family (chosen), as ``synthetic.FAMILIES`` groups THUMOS14's similar actions.
FAMILIES = tuple(CLASS_NAMES[k : k + 5] for k in range(0, NUM_CLASSES, 5))
TRAIN_VIDEOS, TRAIN_INSTANCES = 10024, 15410  # activity-net.org, release 1.3 (training subset)
INSTANCES_PER_VIDEO = TRAIN_INSTANCES / TRAIN_VIDEOS  # 1.537: two instances with probability 0.537
MEAN_DURATION = 648 * 3600 / (10024 + 4926 + 5044)  # s: 648 hours over the 19,994 videos of release 1.3
LOG_DURATION_SD = 0.6  # chosen
DURATION_RANGE = (10.0, 600.0)  # s, chosen
COVERAGE_BETA = (2.0, 2.0)  # share of a video its instances cover, chosen: mean 0.5
#: The mean share of a video its instances cover (the mean of ``COVERAGE_BETA``).
MEAN_COVERAGE = COVERAGE_BETA[0] / sum(COVERAGE_BETA)


def sample_activitynet_annotations(rng: np.random.Generator, count: int) -> list[dict]:
    """Draw ``count`` annotated ActivityNet1.3-shaped videos.

    Returns:
        One dict per video, as ``synthetic_figures.sample_annotations`` returns: ``duration`` (s), ``segments``
        (K, 2) s rounded to 0.01 s, ``segment_labels`` (K,), ``classes`` and ``feature_class`` (K,), with K 1 or 2.
    """
    lo, hi = DURATION_RANGE
    mu = np.log(MEAN_DURATION) - LOG_DURATION_SD**2 / 2  # the log-normal's mean is exp(mu + sd^2 / 2)
    videos = []
    for _ in range(count):
        duration = float(np.round(np.clip(np.exp(mu + LOG_DURATION_SD * rng.standard_normal()), lo, hi), 2))
        label = int(rng.integers(0, NUM_CLASSES))
        k = 2 if rng.random() < INSTANCES_PER_VIDEO - 1 else 1
        covered = rng.beta(*COVERAGE_BETA) * duration
        lengths = covered * (np.array([1.0]) if k == 1 else rng.dirichlet([4.0, 4.0]))
        gaps = rng.dirichlet(np.ones(k + 1)) * (duration - covered)
        starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
        start = np.round(starts, 2)
        end = np.round(np.minimum(starts + lengths, duration), 2)
        end = np.maximum(end, start + 0.01)
        videos.append(
            {
                "duration": duration,
                "segments": np.stack([start, end], axis=1),
                "segment_labels": np.full(k, label, dtype=np.int64),
                "classes": [label],
                "feature_class": np.full(k, label, dtype=np.int64),
            }
        )
    return videos
