"""``clutchcall bench callpath`` (issue 17): the compute-path benchmark runs the product's
pipeline deterministically -- calls are answered, agent audio flows, and repeated runs give
the same digest (the virtual clock makes every decision and every byte reproducible). No
timing is asserted (benchmarks report, tests do not time)."""

from __future__ import annotations

from clutchcall.prod.cmd_bench_callpath import bench


def test_callpath_bench_is_deterministic_and_exercises_the_reply_path() -> None:
    quiet = bench(2, 4.0, runs=2)
    assert quiet["frames"] == 2 * 200 and quiet["turns"] >= 2 and quiet["agent_frames"] > 50
    assert quiet["us_per_frame"] > 0 and len(quiet["digest"]) == 40
    noisy = bench(2, 4.0, noise_db=-60.0, runs=2)
    assert noisy["frames"] == quiet["frames"] and noisy["turns"] >= 2
    assert noisy["digest"] != quiet["digest"]  # the noise reaches the features and the audio
