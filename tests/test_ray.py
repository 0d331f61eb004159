"""ner-divscore --backend ray on a local Ray with CPU actors: the bytes of the single-process run.

One local Ray (num_cpus=2) for the module: starting Ray takes seconds."""

from __future__ import annotations

import pytest

from corpus_fixtures import invoke, tiny_bert, write_candidates

CPU = ["--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
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


def test_ray_pool_uses_one_cpu_actor_per_slot_and_keeps_order(ray_local, data):
    from nertools.core.jsonl import read_records
    from nertools.core.shard import blocks
    from nertools.xner.ray_scoring import RayBlockScorer
    from nertools.xner.scoring import block_scorer
    from nertools.xner.seeds import Seed

    seeds = [Seed.make("PER", "Ann")]
    pool = RayBlockScorer(seeds, model=str(data["model"]), device="cpu")
    try:
        assert len(pool.actors) == 2 and pool.device == "cpu"  # num_cpus=2, no GPU
        recs = list(read_records(str(data["cands"])))
        got = [r for out in pool.map(blocks(recs, 3)) for r in out]
        assert [r["id"] for r in got] == [r["id"] for r in recs]
        score = block_scorer(seeds, model=str(data["model"]), device="cpu")
        want = [r for b in blocks(read_records(str(data["cands"])), 3) for r in score(b)]
        assert got == want
    finally:
        pool.shutdown()
    assert ray_local.is_initialized()  # the pool did not stop a Ray it did not start
