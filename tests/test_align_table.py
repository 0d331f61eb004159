"""ner-align table / names: votes, ties, never-recognised types, overlap fallback, min recall,
overrides, the JSON format and its validation, unknown and absent types, the name-based table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from nertools.align.names import label_name, names_table
from nertools.align.table import (AlignmentTable, build_table, check_labels, load_table, read_overrides,
                                  table_from_json)
from nertools.cli.align import align
from nertools.core.record import normalize_record
from nertools.errors import DataError

TEXT = "Ann Lee met Bob in Paris with Acme Corp staff ."
#        0   4   8   12  16 19    25   30   35   40


def rec(rid: str, spans, text: str = TEXT) -> dict:
    """A record with spans given as (word, label) by their first occurrence in the text."""
    out = []
    for words, label in spans:
        start = text.index(words)
        out.append({"start": start, "end": start + len(words), "label": label})
    return normalize_record({"id": rid, "text": text, "spans": out})


def pair(*items):
    """(pred records, gold records) from (id, pred spans, gold spans) triples."""
    preds = [rec(i, p) for i, p, _ in items]
    golds = [rec(i, g) for i, _, g in items]
    return preds, golds


def test_votes_pick_the_source_type_that_recognises_a_target_most():
    preds, golds = pair(
        ("1", [("Ann Lee", "PER"), ("Paris", "LOC"), ("Acme Corp", "ORG")],
              [("Ann Lee", "politician"), ("Paris", "country"), ("Acme Corp", "party")]),
        ("2", [("Ann Lee", "PER"), ("Bob", "ORG"), ("Acme Corp", "ORG")],
              [("Ann Lee", "politician"), ("Bob", "politician"), ("Acme Corp", "party")]),
    )
    t = build_table(preds, golds)
    assert t.assign == {"country": "LOC", "party": "ORG", "politician": "PER"}
    assert t.votes["politician"] == {"PER": 2, "ORG": 1}
    assert t.mentions == {"politician": 3, "country": 1, "party": 2}
    assert t.recall["politician"] == pytest.approx(2 / 3)
    assert t.candidates == {"LOC": ["country"], "MISC": [], "ORG": ["party"], "PER": ["politician"]}
    assert t.misc == "MISC" and "MISC" in t.source_labels


def test_never_recognised_target_goes_to_misc_and_missed_mentions_vote_O():
    preds, golds = pair(("1", [("Ann Lee", "PER")], [("Ann Lee", "person"), ("Paris", "election")]))
    t = build_table(preds, golds, source_labels=["PER", "LOC", "ORG", "MISC"])
    assert t.assign == {"election": "MISC", "person": "PER"}
    assert t.votes["election"] == {"O": 1}
    assert t.settings["reason"]["election"] == "no vote"
    assert t.candidates["MISC"] == ["election"]


def test_ties_go_to_the_source_with_more_votes_overall_then_alphabetically():
    # "leader": one PER vote and one ORG vote; ORG has more votes over all targets -> ORG
    preds, golds = pair(
        ("1", [("Ann Lee", "PER"), ("Bob", "ORG")], [("Ann Lee", "leader"), ("Bob", "leader")]),
        ("2", [("Acme Corp", "ORG"), ("Paris", "LOC")], [("Acme Corp", "company"), ("Paris", "city")]),
    )
    assert build_table(preds, golds).assign["leader"] == "ORG"
    # a full tie (same votes, same totals) -> alphabetical
    preds, golds = pair(("1", [("Ann Lee", "PER"), ("Bob", "ORG")], [("Ann Lee", "leader"), ("Bob", "leader")]))
    assert build_table(preds, golds).assign["leader"] == "ORG"
    preds, golds = pair(("1", [("Ann Lee", "PER"), ("Bob", "LOC")], [("Ann Lee", "leader"), ("Bob", "leader")]))
    assert build_table(preds, golds).assign["leader"] == "LOC"


def test_overlap_is_the_fallback_only_without_exact_votes_and_counts_half():
    # "Acme Corp" gold, predicted "Acme" (overlap) as ORG; "Paris" exactly as LOC for city
    preds, golds = pair(("1", [("Acme", "ORG"), ("Paris", "LOC"), ("Ann", "PER")],
                         [("Acme Corp", "company"), ("Paris", "city"), ("Ann Lee", "city")]))
    t = build_table(preds, golds)
    assert t.assign["company"] == "ORG" and t.settings["reason"]["company"] == "overlap"
    assert t.recall["company"] == 0.5
    assert t.overlap_votes == {"company": {"ORG": 1}, "city": {"PER": 1}}
    assert t.assign["city"] == "LOC"  # exact votes win over the overlapping PER


def test_min_recall_sends_rarely_recognised_targets_to_misc():
    preds, golds = pair(
        ("1", [("Paris", "LOC")], [("Paris", "event"), ("Acme Corp", "event"), ("Bob", "event"), ("Ann Lee", "person")]),
    )
    assert build_table(preds, golds).assign["event"] == "LOC"
    t = build_table(preds, golds, min_recall=0.5)
    assert t.assign["event"] == "MISC" and t.settings["reason"]["event"] == "min recall"
    assert t.recall["event"] == pytest.approx(1 / 3)


def test_overrides_win_and_unknown_sources_are_refused():
    preds, golds = pair(("1", [("Ann Lee", "PER")], [("Ann Lee", "person"), ("Paris", "country")]))
    t = build_table(preds, golds, overrides={"country": "LOC"}, source_labels=["LOC"])
    assert t.assign["country"] == "LOC" and t.overrides == {"country": "LOC"}
    with pytest.raises(DataError, match="'GPE' is not a source type"):
        build_table(preds, golds, overrides={"country": "GPE"})


def test_a_target_absent_from_the_gold_is_kept_and_named():
    preds, golds = pair(("1", [("Ann Lee", "PER")], [("Ann Lee", "person")]))
    t = build_table(preds, golds, target_labels=["person", "award"])
    assert t.assign["award"] == "MISC" and t.absent == ["award"]
    assert "award" in t.summary()


def test_unknown_types_on_use_and_check_labels():
    preds, golds = pair(("1", [("Ann Lee", "PER")], [("Ann Lee", "person")]))
    t = build_table(preds, golds, target_labels=["person", "award"])
    assert t.source_of("person") == "PER" and t.source_of("nosuch") == "MISC"
    assert t.candidates_of("GPE") == []
    report = check_labels(t, [rec("x", [("Ann Lee", "person"), ("Paris", "city")])])
    assert report == {"unknown": {"city": 1}, "absent": ["award"]}


def test_records_are_paired_by_id_and_mismatches_are_errors():
    preds, golds = pair(("1", [("Ann Lee", "PER")], [("Ann Lee", "person")]))
    other = [rec("2", [("Ann Lee", "person")])]
    with pytest.raises(DataError, match="no prediction"):
        build_table(preds, golds + other)
    assert build_table(preds, golds + other, missing="empty").votes["person"] == {"PER": 1, "O": 1}
    changed = [rec("1", [("Ann", "person")], text="Ann is here .")]
    with pytest.raises(DataError, match="text differs"):
        build_table(preds, changed)


def test_json_round_trip_and_format(tmp_path):
    preds, golds = pair(("1", [("Ann Lee", "PER"), ("Acme Corp", "ORG"), ("Bob", "PER")],
                         [("Ann Lee", "politician"), ("Acme Corp", "party"), ("Bob", "person"),
                          ("Paris", "country")]))
    t = build_table(preds, golds)
    obj = t.to_json()
    assert obj["format"] == "nertools-align-table" and obj["version"] == 1 and obj["method"] == "votes"
    assert set(obj) >= {"source_labels", "target_labels", "misc", "assign", "candidates", "votes", "overrides"}
    assert obj["candidates"]["PER"] == ["person", "politician"]
    assert obj["default"]["PER"] == "person"   # a tie in votes: alphabetical
    p = tmp_path / "t.json"
    p.write_bytes(t.dumps())
    back = load_table(p)
    assert back.to_json() == obj


@pytest.mark.parametrize("edit,message", [
    (lambda o: o.update(format="x"), "not an alignment table"),
    (lambda o: o.update(version=2), "unsupported table version 2"),
    (lambda o: o.update(method="guess"), '"method" must be one of'),
    (lambda o: o["assign"].pop("person"), "without a source in \"assign\": person"),
    (lambda o: o["assign"].update(person="GPE"), "source type(s) not in source_labels: GPE"),
    (lambda o: o["assign"].update(writer="PER"), "not in target_labels: writer"),
    (lambda o: o.update(misc="OTHER"), "\"misc\" 'OTHER' is not in source_labels"),
    (lambda o: o["candidates"].update(PER=["party"]), "not the inverse"),
    (lambda o: o["overrides"].update(person="ORG"), "disagrees"),
    (lambda o: o["default"].update(PER="party"), "not a candidate"),
])
def test_load_table_refuses_broken_tables_naming_the_file(tmp_path, edit, message):
    preds, golds = pair(("1", [("Ann Lee", "PER"), ("Acme Corp", "ORG")],
                         [("Ann Lee", "person"), ("Acme Corp", "party")]))
    obj = build_table(preds, golds).to_json()
    edit(obj)
    p = tmp_path / "t.json"
    p.write_text(json.dumps(obj))
    with pytest.raises(DataError) as err:
        load_table(p)
    assert str(err.value).startswith(f"{p}: ") and message in str(err.value)


def test_load_table_broken_json_and_a_hand_written_table(tmp_path):
    p = tmp_path / "t.json"
    p.write_text("{broken")
    with pytest.raises(DataError, match=f"^{p}: broken JSON"):
        load_table(p)
    manual = {"format": "nertools-align-table", "version": 1, "method": "manual", "source_labels": ["PER", "MISC"],
              "target_labels": ["writer", "poet", "book"], "misc": "MISC",
              "assign": {"writer": "PER", "poet": "PER", "book": "MISC"}}
    p.write_text(json.dumps(manual))
    t = load_table(p)
    assert t.candidates == {"MISC": ["book"], "PER": ["poet", "writer"]}
    assert t.default == {"MISC": "book", "PER": "poet"}  # no votes: alphabetical


def test_override_file(tmp_path):
    p = tmp_path / "o.tsv"
    p.write_text("# target<TAB>source\ncountry\tLOC\n\n{\"target\": \"event\", \"source\": \"MISC\"}\n")
    assert read_overrides(p) == {"country": "LOC", "event": "MISC"}
    p.write_text("country\tLOC\nbroken line\n")
    with pytest.raises(DataError, match=f"^{p}:2: expected TARGET<TAB>SOURCE"):
        read_overrides(p)


# ----------------------------------------------------------------------------- the command

def _files(tmp_path: Path):
    preds, golds = pair(("1", [("Ann Lee", "PER"), ("Acme Corp", "ORG")],
                         [("Ann Lee", "politician"), ("Acme Corp", "party"), ("Paris", "election")]),
                        ("2", [("Bob", "PER")], [("Bob", "person")]))
    pred, gold = tmp_path / "pred.jsonl", tmp_path / "gold.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in preds))
    gold.write_text("".join(json.dumps(r) + "\n" for r in golds))
    return pred, gold


def test_cli_table_writes_json_and_a_summary(tmp_path):
    pred, gold = _files(tmp_path)
    over = tmp_path / "o.tsv"
    over.write_text("person\tPER\n")
    out = tmp_path / "table.json"
    r = CliRunner().invoke(align, ["table", "--pred", str(pred), "--gold", str(gold), "-o", str(out),
                                   "--override", str(over), "--target-labels", "award"], prog_name="ner-align")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    t = load_table(out)
    assert t.assign == {"award": "MISC", "election": "MISC", "party": "ORG", "person": "PER", "politician": "PER"}
    assert t.overrides == {"person": "PER"}
    assert "politician" in r.stderr and "-> PER" in r.stderr and "absent from the gold" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["gold.jsonl", "o.tsv", "pred.jsonl", "table.json"]
    r = CliRunner().invoke(align, ["table", "--pred", str(pred), "--gold", str(gold)], prog_name="ner-align")
    assert json.loads(r.stdout)["format"] == "nertools-align-table"


def test_cli_table_failure_leaves_the_output_alone(tmp_path):
    pred, gold = _files(tmp_path)
    out = tmp_path / "table.json"
    out.write_text("sentinel")
    bad = tmp_path / "o.tsv"
    bad.write_text("person\tGPE\n")
    r = CliRunner().invoke(align, ["table", "--pred", str(pred), "--gold", str(gold), "-o", str(out),
                                   "--override", str(bad)], prog_name="ner-align")
    assert r.exit_code == 65 and "'GPE' is not a source type" in r.stderr
    assert out.read_text() == "sentinel"
    r = CliRunner().invoke(align, ["table", "--pred", str(pred), "--gold", str(gold), "-o",
                                   str(tmp_path / "nodir" / "t.json")], prog_name="ner-align")
    assert r.exit_code == 1 and "cannot write" in r.stderr


# ----------------------------------------------------------------------------- names

def test_label_name():
    assert label_name("politicalparty") == "political party"
    assert label_name("PER") == "person" and label_name("WORK_OF_ART") == "work of art"
    assert label_name("musicalartist") == "musical artist" and label_name("programlang") == "programming language"
    assert label_name("Restaurant_Name") == "restaurant name" and label_name("RestaurantName") == "restaurant name"


def _bag_of_words(texts):
    """A deterministic stand-in encoder: normalised bags of words over a shared vocabulary."""
    import torch

    vocab = sorted({w for t in texts for w in t.replace(",", " ").replace(":", " ").split()})
    rows = torch.zeros(len(texts), len(vocab))
    for i, t in enumerate(texts):
        for w in t.replace(",", " ").replace(":", " ").split():
            rows[i, vocab.index(w)] += 1
    return torch.nn.functional.normalize(rows, dim=-1)


def test_names_table_assigns_by_similarity_with_min_similarity_and_overrides():
    t = names_table(["PER", "ORG", "LOC", "MISC"], ["person", "organisation", "location", "election"],
                    descriptions={"LOC": "location", "ORG": "organization organisation"}, embed=_bag_of_words)
    assert t.method == "names"
    assert t.assign["person"] == "PER" and t.assign["location"] == "LOC" and t.assign["organisation"] == "ORG"
    assert t.similarity["person"]["PER"] > t.similarity["person"]["ORG"]
    t2 = names_table(["PER", "ORG", "LOC", "MISC"], ["person", "election"], embed=_bag_of_words,
                     min_similarity=0.5, overrides={"person": "ORG"})
    assert t2.assign == {"person": "ORG", "election": "MISC"}
    assert t2.settings["reason"] == {"person": "override", "election": "min similarity"}
    table_from_json(json.loads(t2.dumps()))  # a valid table


@pytest.mark.realmodel
def test_names_table_with_minilm_on_crossner_politics():
    from nertools.cli.align import PRESETS

    t = names_table(PRESETS["ontonotes"], ["politician", "politicalparty", "country", "election", "person"],
                    device="cpu")
    assert t.assign["politician"] == "PERSON" and t.assign["person"] == "PERSON"
    assert t.assign["politicalparty"] == "ORG" and t.assign["country"] == "GPE"
    assert t.assign["election"] == "EVENT"
    assert t.default["PERSON"] == "person"


def test_cli_names_with_an_llm_on_a_fake_server(tmp_path):
    from test_align_choose import Server

    def answer(prompt):
        if "a politician" in prompt:
            return "Person."
        if "a political party" in prompt:
            return "organization"
        return "a festival"          # outside the options: the target goes to misc

    srv = Server(answer)
    try:
        out = tmp_path / "t.json"
        args = ["names", "--source-labels", "conll", "--target-labels", "politician,politicalparty,election",
                "--llm", "fake", "--base-url", srv.url, "--cache-dir", str(tmp_path / "cache"), "-o", str(out)]
        r = CliRunner().invoke(align, args, prog_name="ner-align")
        assert r.exit_code == 0, (r.stderr, r.exception)
        t = load_table(out)
        assert t.assign == {"politician": "PER", "politicalparty": "ORG", "election": "MISC"}
        assert t.settings["reason"]["election"] == "answer outside the options"
        assert "Options: person, organization, location, miscellaneous" in srv.requests[0]["messages"][0]["content"]
        assert len(srv.requests) == 3
        r = CliRunner().invoke(align, args, prog_name="ner-align")
        assert r.exit_code == 0 and len(srv.requests) == 3  # cached
    finally:
        srv.close()
