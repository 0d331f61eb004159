"""ner-divscore --backend ray on a local Ray with CPU actors: the bytes of the single-process run.

One local Ray (num_cpus=2, so two CPU actors) for the module, and one run: starting Ray and its
actor processes (each imports torch) is the slow part (~2 min on the loaded 2-core machine)."""

from __future__ import annotations

import signal

import pytest

from corpus_fixtures import invoke, tiny_bert, write_candidates

CPU = ["--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from nertools.xner.ray_scoring import ray_init

    previous = signal.getsignal(signal.SIGTERM)
    ray_init(ray, num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    assert signal.getsignal(signal.SIGTERM) is previous  # Ray's handler would outlive ray.shutdown()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray")
    return {"model": tiny_bert(d / "bert"), "cands": write_candidates(d / "cands.jsonl", 30)}


def args(data, *extra):
    return ["--model", str(data["model"]), "--seed", "PER=Ann", "--seed", "LOC=Paris", "--no-progress",
            "--block-records", "4", *CPU, str(data["cands"]), *extra]


def test_ray_backend_equals_the_single_process_run(ray_local, data, tmp_path):
    local, remote = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    r = invoke("ner-divscore", *args(data, "-o", str(local)))
    assert r.exit_code == 0, r.stderr
    r = invoke("ner-divscore", *args(data, "-o", str(remote), "--backend", "ray"))
    assert r.exit_code == 0, (r.stderr, r.exception)
    assert remote.read_bytes() == local.read_bytes()
    assert ray_local.is_initialized()  # the run did not stop a Ray it did not start
