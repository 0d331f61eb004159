"""LAR's linearised format and parser (on real CrossNER sentences), and the generative trainer
learning a toy task through the console scripts (a tiny random Llama)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nertools.align.linearize import Linearizer, ParseStats, name_map, split_items, table_fields, type_name
from nertools.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
POLITICS = SHARED / "data" / "crossner_politics" / "train.jsonl"
TOKENIZER_DIR = SHARED / "fixtures" / "xner-official" / "roberta-tiny-random"

SOURCES = ["LOC", "MISC", "ORG", "PER"]
ASSIGN = {"politician": "PER", "person": "PER", "politicalparty": "ORG", "organisation": "ORG",
          "country": "LOC", "location": "LOC", "election": "MISC", "event": "MISC", "misc": "MISC"}


def politics(n=None):
    with open(POLITICS, encoding="utf-8") as fh:
        recs = [json.loads(line) for line in fh]
    return recs[:n] if n else recs


def reassign_lin():
    return Linearizer("reassign", sorted(ASSIGN), SOURCES, ASSIGN)


def gold_of(rec, with_source=True):
    out = []
    for s in sorted(rec["spans"], key=lambda s: s["token_start"]):
        t = (s["token_start"], s["token_end"], s["label"])
        out.append(t + ((ASSIGN[s["label"]],) if with_source else ()))
    return out


def got(spans, with_source=True):
    return [(s["token_start"], s["token_end"], s["label"]) + ((s["source_label"],) if with_source else ())
            for s in spans]


# --------------------------------------------------------------------------- names and format


def test_type_names():
    assert [type_name(x) for x in ("PER", "ORG", "LOC", "MISC")] == ["person", "organization", "location",
                                                                      "miscellaneous"]
    assert type_name("politicalparty") == "political party"
    assert type_name("Restaurant_Name") == "restaurant name"
    assert type_name("musicalartist") == "musical artist"
    # two labels with one name keep their raw spellings, so parsing stays unambiguous
    assert name_map(["PER", "PERSON"]) == {"PER": "PER", "PERSON": "PERSON"}


def test_prompt_and_answer_of_a_real_sentence():
    rec = next(r for r in politics() if len(r["spans"]) >= 3)
    lin = reassign_lin()
    prompt = lin.prompt(rec)
    assert prompt.startswith("Source types: location, miscellaneous, organization, person.\nTarget types: ")
    assert "political party" in prompt and prompt.endswith("\nAnswer:\n")
    assert f"Input: {' '.join(t['text'] for t in rec['tokens'])}\n" in prompt
    lines = lin.answer(rec).split("\n")
    assert len(lines) == len(rec["spans"])
    first = min(rec["spans"], key=lambda s: s["token_start"])
    words = " ".join(t["text"] for t in rec["tokens"][first["token_start"]:first["token_end"] + 1])
    assert lines[0] == f"{lin.names[ASSIGN[first['label']]]} : {words} -> {lin.names[first['label']]}"


def test_answers_parse_back_to_the_gold_spans_on_all_politics_sentences():
    lin = reassign_lin()
    direct = Linearizer("direct", sorted(ASSIGN), SOURCES)
    total = ParseStats()
    n_overlapping = 0
    for rec in politics():
        spans, st = lin.parse(lin.answer(rec), rec)
        total.add(st)
        want = gold_of(rec)
        if got(spans) != want:
            # only a gold set with nested/overlapping spans may differ (one word, one span)
            n_overlapping += 1
            assert st.overlap > 0
        dspans, dst = direct.parse(direct.answer(rec), rec)
        assert [(s["token_start"], s["token_end"], s["label"]) for s in dspans] == [w[:3] for w in want] or dst.overlap
        assert all("source_label" not in s for s in dspans)
        # character offsets agree with the tokens
        for s in spans:
            assert rec["text"][s["start"]:s["end"]] == " ".join(
                t["text"] for t in rec["tokens"][s["token_start"]:s["token_end"] + 1])
    assert total.items > 1000 and total.malformed == 0 and total.not_in_text == 0
    assert n_overlapping < 5


def test_parser_drops_spans_not_in_text_malformed_lines_and_off_table_targets():
    rec = next(r for r in politics() if any(s["label"] == "politicalparty" for s in r["spans"]))
    lin = Linearizer("reassign", sorted(ASSIGN), SOURCES, ASSIGN, off_candidate="drop")
    assert reassign_lin().off_candidate == "target"  # the default repairs off-candidate targets
    party = next(s for s in rec["spans"] if s["label"] == "politicalparty")
    words = " ".join(t["text"] for t in rec["tokens"][party["token_start"]:party["token_end"] + 1])
    text = "\n".join([
        f"organization : {words} -> political party",       # kept
        "person : Napoleon Bonaparte Smithson -> politician",  # not in the text
        "this line has no separator",                       # malformed
        f"organization : {words}",                          # malformed in reassign (no ->)
        f"person : {words} -> political party",             # political party is not a candidate of person
        f"vegetable : {words} -> political party",          # unknown source type
        f"organization : {words} -> spaceship",             # unknown target type
        " : -> ",                                           # malformed
    ])
    spans, st = lin.parse(text, rec)
    assert got(spans) == [(party["token_start"], party["token_end"], "politicalparty", "ORG")]
    assert st.as_dict() == {"items": 8, "kept": 1, "malformed": 3, "not_in_text": 1, "overlap": 0,
                            "unknown_source": 1, "unknown_target": 1, "target_not_candidate": 1,
                            "off_candidate_repaired": 0}
    assert st.dropped() == 7 and "target_not_candidate 1" in st.summary()


def test_off_candidate_policies_on_a_real_sentence():
    rec = next(r for r in politics() if any(s["label"] == "politicalparty" for s in r["spans"])
               and any(s["label"] == "politician" for s in r["spans"]))
    party = next(s for s in rec["spans"] if s["label"] == "politicalparty")
    person = next(s for s in rec["spans"] if s["label"] == "politician")

    def words(s):
        return " ".join(t["text"] for t in rec["tokens"][s["token_start"]:s["token_end"] + 1])

    text = "\n".join([
        f"person : {words(party)} -> political party",   # a known target, not a candidate of person
        f"person : {words(person)} -> politician",        # a candidate: kept under every policy
        f"location : {words(person)} -> spaceship",       # unknown target: dropped under every policy
    ])
    # the table's default target of each source type (its most voted candidate)
    default = {"PER": "politician", "ORG": "politicalparty", "LOC": "country", "MISC": "misc"}
    res = {}
    for policy in ("drop", "default", "target"):
        lin = Linearizer("reassign", sorted(ASSIGN), SOURCES, ASSIGN, default=default, off_candidate=policy)
        spans, st = lin.parse(text, rec)
        res[policy] = got(spans)
        assert st.items == 3 and st.unknown_target == 1
        assert (st.kept, st.target_not_candidate, st.off_candidate_repaired) == (
            (1, 1, 0) if policy == "drop" else (2, 0, 1))
        if policy != "drop":
            assert "1 with an off-candidate target repaired" in st.summary()
            assert "target_not_candidate" not in st.summary() and "unknown_target 1" in st.summary()
        # the policy and the default targets survive the model directory's config
        again = Linearizer.from_config(json.loads(json.dumps(lin.config())))
        assert again.off_candidate == policy and again.default == default
        assert again.parse(text, rec)[0] == spans
    p_ = (party["token_start"], party["token_end"])
    q_ = (person["token_start"], person["token_end"], "politician", "PER")
    assert res["drop"] == [q_]
    # default: the generated source type is kept, the target becomes its default
    assert sorted(res["default"]) == sorted([q_, p_ + ("politician", "PER")])
    # target: the generated target is kept, its source becomes the table's
    assert sorted(res["target"]) == sorted([q_, p_ + ("politicalparty", "ORG")])

    # no default given: the first candidate; a default that is not a candidate is not used
    lin = Linearizer("reassign", sorted(ASSIGN), SOURCES, ASSIGN, default={"PER": "election"})
    assert lin.default["PER"] == "person" and lin.default["MISC"] == "election"
    # older directories (no policy in the config) drop, as they did; an override wins
    cfg = {k: v for k, v in lin.config().items() if k not in ("off_candidate", "default")}
    assert Linearizer.from_config(cfg).off_candidate == "drop"
    assert Linearizer.from_config(cfg, off_candidate="target").off_candidate == "target"
    from nertools.errors import UsageError

    with pytest.raises(UsageError, match="off-candidate"):
        Linearizer("reassign", sorted(ASSIGN), SOURCES, ASSIGN, off_candidate="keep")


def test_literal_backslash_n_separator_and_occurrence_rule():
    # a real sentence with a repeated word sequence
    rec = next(r for r in politics() if [t["text"] for t in r["tokens"]].count("Party") >= 2)
    words = [t["text"] for t in rec["tokens"]]
    idx = [i for i, w in enumerate(words) if w == "Party"]
    lin = Linearizer("direct", ["organisation"], [])
    spans, st = lin.parse("organisation : Party \\n organisation : Party \\n organisation : party", rec)
    # left to right, each item takes the first occurrence not yet taken; the case-insensitive
    # fallback finds a third only if there is one
    assert [s["token_start"] for s in spans][:2] == idx[:2]
    assert st.kept == min(3, len(idx)) and st.overlap == 3 - st.kept
    assert split_items("a : b \\n c : d \n\n e : f") == ["a : b", "c : d", "e : f"]


def test_unknown_gold_type_is_refused_and_table_fields():
    lin = reassign_lin()
    rec = dict(politics(1)[0])
    rec["spans"] = [dict(rec["spans"][0], label="spaceship")]
    with pytest.raises(DataError, match="spaceship"):
        lin.check_labels([rec])
    with pytest.raises(DataError, match="assigns no source type to spaceship"):
        Linearizer("reassign", ["spaceship"], SOURCES, ASSIGN)
    table = {"format": "nertools-align-table", "version": 1, "source_labels": SOURCES,
             "target_labels": sorted(ASSIGN), "misc": "MISC", "assign": ASSIGN, "candidates": {}}
    s, t, a, c = table_fields(table)
    assert s == SOURCES and c["PER"] == ["person", "politician"] and a == ASSIGN
    with pytest.raises(DataError):
        table_fields({"assign": {}})


def test_identity_targets_written_none_as_in_figure_4_round_trip_on_politics():
    """--identity-target none: person (under PER, named person), location (LOC) and misc
    (MISC, both "miscellaneous") are written '-> none'; organisation under ORG
    ("organization") is not; the prompt lists none once, last; answers parse back."""
    lin = Linearizer("reassign", sorted(ASSIGN), SOURCES, ASSIGN, identity_target="none")
    assert lin.target_name("person") == lin.target_name("location") == lin.target_name("misc") == "none"
    assert lin.target_name("politician") == "politician" and lin.target_name("organisation") == "organisation"
    rec = next(r for r in politics() if {"person", "politician"} <= {s["label"] for s in r["spans"]})
    prompt = lin.prompt(rec)
    targets = prompt.split("\n")[1]
    assert targets.startswith("Target types: ") and targets.endswith(", none.")
    names = targets[len("Target types: "):-1].split(", ")
    assert names.count("none") == 1 and "person" not in names and "location" not in names
    assert "politician" in names and "political party" in names
    answer = lin.answer(rec)
    assert " -> none" in answer and " -> person" not in answer
    assert answer == reassign_lin().answer(rec).replace(" -> person", " -> none").replace(
        " -> location", " -> none").replace(" -> miscellaneous", " -> none")
    n = 0
    for r in politics():
        spans, st = lin.parse(lin.answer(r), r)
        plain, _ = reassign_lin().parse(reassign_lin().answer(r), r)
        assert got(spans) == got(plain) and st.unknown_target == 0
        n += st.kept
    assert n > 1000
    # "-> none" under a source type without an identity target is not a type; the real name
    # of an identity target is still read
    rec = politics(1)[0]
    w = rec["tokens"][0]["text"]
    spans, st = lin.parse(f"organization : {w} -> none", rec)
    assert spans == [] and st.unknown_target == 1
    spans, st = lin.parse(f"person : {w} -> person", rec)
    assert [s["label"] for s in spans] == ["person"]
    # kept in the model directory's config
    again = Linearizer.from_config(json.loads(json.dumps(lin.config())))
    assert again.identity_target == "none" and again.answer(rec) == lin.answer(rec)
    assert Linearizer.from_config({k: v for k, v in lin.config().items() if k != "identity_target"}
                                  ).identity_target == "name"
    # a target really named "none" cannot be told apart: refused; unknown settings too
    from nertools.errors import UsageError

    with pytest.raises(UsageError, match="already named 'none'"):
        Linearizer("reassign", ["none", "person"], SOURCES, {"none": "MISC", "person": "PER"},
                   identity_target="none")
    with pytest.raises(UsageError):
        Linearizer("reassign", sorted(ASSIGN), SOURCES, ASSIGN, identity_target="blank")


# --------------------------------------------------------------------------- the trainer (tiny Llama)


TOY = [("Alice met Bob in Paris .", [(0, 0, "politician"), (2, 2, "person"), (4, 4, "country")]),
       ("Bob visited Rome .", [(0, 0, "person"), (2, 2, "country")]),
       ("Carol joined Labour .", [(0, 0, "politician"), (2, 2, "politicalparty")]),
       ("Labour won in Rome .", [(0, 0, "politicalparty"), (3, 3, "country")]),
       ("nothing here at all .", []),
       ("Alice and Carol spoke .", [(0, 0, "politician"), (2, 2, "politician")])]


def toy_records():

    out = []
    for k, (text, spans) in enumerate(TOY):
        words = text.split()
        toks, pos = [], 0
        for i, w in enumerate(words):
            toks.append({"text": w, "start": pos, "end": pos + len(w), "id": i, "ws": i < len(words) - 1})
            pos += len(w) + 1
        out.append({"id": f"toy-{k}", "text": text, "tokens": toks, "meta": {},
                    "spans": [{"start": toks[a]["start"], "end": toks[b]["end"], "token_start": a,
                               "token_end": b, "label": lab} for a, b, lab in spans]})
    return out


def run(*args, check=True):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    exe = Path(sys.executable).parent / "ner-align"
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}: {p.stderr[-2000:]}")
    return p


def run_here(*args):
    """``ner-align`` in-process (click's runner)."""
    from click.testing import CliRunner

    from nertools.cli import align

    return CliRunner().invoke(align.main, [str(a) for a in args], prog_name="ner-align")


def write_jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def test_generative_trainer_learns_a_toy_task_through_the_console_scripts(tiny_llama, tmp_path):
    recs = toy_records()
    data = write_jsonl(tmp_path / "toy.jsonl", recs)
    table = {"format": "nertools-align-table", "version": 1, "method": "manual", "source_labels": SOURCES,
             "target_labels": ["country", "person", "politicalparty", "politician"], "misc": "MISC",
             "assign": {"politician": "PER", "person": "PER", "politicalparty": "ORG", "country": "LOC"},
             "candidates": {"PER": ["person", "politician"], "ORG": ["politicalparty"], "LOC": ["country"]},
             "votes": {}, "overrides": {}}
    tpath = tmp_path / "table.json"
    tpath.write_text(json.dumps(table))
    out = tmp_path / "gen"
    p = run("train", "--mode", "generative", "--table", tpath, "--train", data, "--dev", data, "--model", tiny_llama,
            "--out", out, "--max-steps", 80, "--lr", 1e-2, "--batch-size", 6, "--patience", 0, "--eval-every", 40,
            "--max-new-tokens", 40, "--threads", 1, "--warmup-ratio", 0.05)
    meta = json.loads((out / "nertools.json").read_text())
    assert meta["format"] == "nertools-align-generative" and meta["linearizer"]["format"] == "reassign"
    assert meta["dev_metrics"]["f1"] >= 90, p.stderr[-1500:]
    assert "dev F1" in p.stderr
    pred = run("predict", "--model", out, data, "--threads", 1, "--keep-text", "--max-new-tokens", 40)
    rows = [json.loads(line) for line in pred.stdout.splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in recs]
    hits = sum(1 for r, g in zip(rows, recs)
               for s in r["spans"] if any((s["token_start"], s["token_end"], s["label"]) ==
                                          (x["token_start"], x["token_end"], x["label"]) for x in g["spans"]))
    assert hits >= 0.9 * sum(len(g["spans"]) for g in recs)
    assert all(s["source_label"] == table["assign"][s["label"]] for r in rows for s in r["spans"])
    assert "generated item(s) kept" in pred.stderr
    assert "generated" in rows[0]["meta"]

    # --off-candidate at prediction time: a copy of the model whose table no longer lists
    # politician among PER's candidates, so the model's "person : X -> politician" is off-candidate
    import shutil

    moved = tmp_path / "gen-moved"
    shutil.copytree(out, moved)
    m2 = json.loads((moved / "nertools.json").read_text())
    m2["linearizer"]["candidates"]["PER"] = ["person"]
    m2["linearizer"]["default"]["PER"] = "person"
    (moved / "nertools.json").write_text(json.dumps(m2))
    n_pol = sum(1 for r in rows for s in r["spans"] if s["label"] == "politician")
    assert n_pol >= 3
    by_policy = {}
    for policy in ("drop", "default", "target"):
        res = run_here("predict", "--model", moved, data, "--threads", 1, "--max-new-tokens", 40,
                       "--off-candidate", policy)
        assert res.exit_code == 0, res.stderr
        by_policy[policy] = [json.loads(line) for line in res.stdout.splitlines()]
        if policy == "drop":
            assert "target_not_candidate" in res.stderr
        else:
            assert f"{n_pol} with an off-candidate target repaired" in res.stderr
    labels = {p: [[s["label"] for s in r["spans"]] for r in rs] for p, rs in by_policy.items()}
    assert sum(x.count("politician") for x in labels["drop"]) == 0
    assert sum(map(len, labels["drop"])) == sum(map(len, (r["spans"] for r in rows))) - n_pol
    assert sum(x.count("politician") for x in labels["default"]) == 0
    assert labels["target"] == [[s["label"] for s in r["spans"]] for r in rows]
    # without the option the directory's own policy (target, the default) applies
    assert meta["linearizer"]["off_candidate"] == "target"
    res = run_here("predict", "--model", moved, data, "--threads", 1, "--max-new-tokens", 40)
    assert [json.loads(line) for line in res.stdout.splitlines()] == by_policy["target"]
    # a directory written before the policy existed drops, as it did then
    del m2["linearizer"]["off_candidate"]
    (moved / "nertools.json").write_text(json.dumps(m2))
    res = run_here("predict", "--model", moved, data, "--threads", 1, "--max-new-tokens", 40)
    assert [json.loads(line) for line in res.stdout.splitlines()] == by_policy["drop"]


def test_ori_and_refusals_through_the_command(tiny_llama, tmp_path):
    recs = toy_records()
    data = write_jsonl(tmp_path / "toy.jsonl", recs)
    out = tmp_path / "ori"
    p = run_here("train", "--mode", "generative", "--ori", "--train", data, "--dev", data, "--model", tiny_llama,
                 "--out", out, "--max-steps", 2, "--max-new-tokens", 8, "--threads", 1)
    assert p.exit_code == 0, p.stderr
    meta = json.loads((out / "nertools.json").read_text())
    assert meta["linearizer"]["format"] == "direct"
    assert meta["linearizer"]["labels"] == ["country", "person", "politicalparty", "politician"]
    # a gold type the table does not know: exit 65, named
    bad = {"format": "nertools-align-table", "version": 1, "method": "manual", "source_labels": ["PER", "MISC"],
           "target_labels": ["person"], "misc": "MISC", "assign": {"person": "PER"}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    p = run_here("train", "--mode", "generative", "--table", tmp_path / "bad.json", "--train", data, "--dev", data,
                 "--model", tiny_llama, "--out", tmp_path / "x")
    assert p.exit_code == 65 and "politician" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run_here("train", "--mode", "classifier", "--train", data, "--dev", data, "--out", tmp_path / "y")
    assert p.exit_code == 2 and "--source-model" in p.stderr
    # --identity-target belongs to the generative reassignment format only
    p = run_here("train", "--mode", "generative", "--ori", "--identity-target", "none", "--train", data,
                 "--dev", data, "--model", tiny_llama, "--out", tmp_path / "z")
    assert p.exit_code == 2 and "--identity-target" in p.stderr and not (tmp_path / "z").exists()
    # so does --off-candidate (train), and at prediction time it needs a generative directory
    p = run_here("train", "--mode", "generative", "--ori", "--off-candidate", "default", "--train", data,
                 "--dev", data, "--model", tiny_llama, "--out", tmp_path / "z")
    assert p.exit_code == 2 and "--off-candidate" in p.stderr and not (tmp_path / "z").exists()
