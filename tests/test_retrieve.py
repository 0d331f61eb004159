"""ner-retrieve (dense backend): index / query / pseudo-dictionary round trip with a tiny
random BERT built here, search correctness, incremental rebuild, refusals, corrupted index."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from nertools.errors import DataError, NertoolsError  # noqa: E402
from nertools.gener.phrase_index import IndexSettings, PhraseIndex, build_index, load_encoder, query_index  # noqa: E402
from nertools.gener.questions import make_question, read_questions  # noqa: E402
from nertools.gener.pseudo_dict import pseudo_dictionary  # noqa: E402

SENTENCES = [
    "Masaki Yoshida visited Singapore on Monday .",
    "The Boston Celtics beat the Chicago Bulls in Boston .",
    "Officials in Paris and Berlin met Angela Merkel .",
    "Shares of Microsoft rose in New York trading .",
    "Yoshida said Singapore would host the Asian Games .",
    "Kim Jong visited Seoul and Tokyo last week .",
    "Rain fell over London while Arsenal trained .",
    "Tokyo officials praised the Japanese team .",
]
MORE = ["Berlin welcomed the French president Jacques Chirac .",
        "Toyota opened a plant near Nagoya ."]


def records(sentences, start=0):
    return [{"id": f"s{start + i}", "text": s} for i, s in enumerate(sentences)]


def write_jsonl(path: Path, recs) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A random-weight 2-layer BERT with a word-level WordPiece vocabulary (fast tokenizer)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    words = sorted({w.lower() for s in SENTENCES + MORE for w in s.split()} |
                   {"which", "city", "?", "location", "person", "organization", "team", "country"})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def encoder(tiny_encoder_dir):
    return load_encoder(str(tiny_encoder_dir), device="cpu", max_length=64)


@pytest.fixture()
def corpus(tmp_path) -> Path:
    return write_jsonl(tmp_path / "corpus.jsonl", records(SENTENCES))


def settings(model_dir, **kw) -> IndexSettings:
    return IndexSettings(model=str(model_dir), max_length=64, **kw)


def test_search_matches_brute_force(tiny_encoder_dir, encoder, corpus, tmp_path):
    rep = build_index(str(corpus), str(tmp_path / "idx"), settings(tiny_encoder_dir), encoder=encoder,
                      batch_size=3, rows_per_shard=7, progress=False)
    assert rep.status == "built" and rep.sentences == len(SENTENCES) and rep.phrases > 20
    index = PhraseIndex.open(str(tmp_path / "idx"))
    assert len(index.vectors) > 1  # several shards, all memory-mapped
    assert all(isinstance(v, np.memmap) for v in index.vectors)
    # every stored vector equals a fresh encoding of that phrase in its sentence
    words = [s.split() for s in SENTENCES]
    spans = np.concatenate([np.asarray(s) for s in index.spans])
    vecs = np.concatenate([np.asarray(v, dtype=np.float32) for v in index.vectors])
    k = len(vecs) // 2
    sent, a, b = spans[k]
    fresh, _ = encoder.encode_spans([words[sent]], [[(int(a), int(b) + 1)]])
    np.testing.assert_allclose(vecs[k], fresh[0], atol=2e-3)
    # the top hit of a question is the arg-max of the cosine over all phrases
    q = make_question("LOC", "Which city?")
    hits = query_index(index, [q], top_k=3, encoder=encoder)[0]
    qv = encoder.encode_texts([q.text])[0]
    best = int(np.argmax(vecs @ qv))
    assert (hits[0].sentence, hits[0].token_start, hits[0].token_end) == tuple(int(x) for x in spans[best])
    assert hits[0].score == pytest.approx(float(vecs[best] @ qv), abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].text == " ".join(words[hits[0].sentence][hits[0].token_start:hits[0].token_end + 1])


def test_start_end_representation(tiny_encoder_dir, encoder, corpus, tmp_path):
    build_index(str(corpus), str(tmp_path / "idx"), settings(tiny_encoder_dir, span_repr="start-end"),
                encoder=encoder, progress=False)
    index = PhraseIndex.open(str(tmp_path / "idx"))
    assert index.manifest["dim"] == 64
    hits = query_index(index, [make_question("PER")], top_k=4, encoder=encoder)[0]
    assert len(hits) == 4 and hits[0].question.text == "Which person?"
    # a stored vector is the first and last sub-token states of the phrase, side by side
    words = [s.split() for s in SENTENCES]
    spans = np.concatenate([np.asarray(s) for s in index.spans])
    vecs = np.concatenate([np.asarray(v, dtype=np.float32) for v in index.vectors])
    multi = [i for i, (_, a, b) in enumerate(spans) if b > a]
    k = multi[len(multi) // 2]
    sent, a, b = spans[k]
    fresh, _ = encoder.encode_spans([words[sent]], [[(int(a), int(b) + 1)]], span_repr="start-end")
    np.testing.assert_allclose(vecs[k], fresh[0], atol=2e-3)
    # the top hit is the arg-max of the cosine with the question's (doubled) vector
    qv = encoder.encode_texts([hits[0].question.text], "start-end")[0]
    assert qv.shape == (64,)
    best = int(np.argmax(vecs @ qv))
    assert (hits[0].sentence, hits[0].token_start, hits[0].token_end) == tuple(int(x) for x in spans[best])
    assert hits[0].score == pytest.approx(float(vecs[best] @ qv), abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_incremental_rebuild_and_refusals(tiny_encoder_dir, encoder, corpus, tmp_path):
    out = str(tmp_path / "idx")
    first = build_index(str(corpus), out, settings(tiny_encoder_dir), encoder=encoder, progress=False)
    assert build_index(str(corpus), out, settings(tiny_encoder_dir), encoder=encoder,
                       progress=False).status == "up-to-date"
    with corpus.open("a") as fh:  # lines appended: only they are encoded
        fh.write("".join(json.dumps(r) + "\n" for r in records(MORE, start=100)))
    rep = build_index(str(corpus), out, settings(tiny_encoder_dir), encoder=encoder, progress=False)
    assert rep.status == "appended" and rep.sentences == len(MORE)
    full = build_index(str(corpus), str(tmp_path / "full"), settings(tiny_encoder_dir), encoder=encoder,
                       progress=False)
    assert rep.total_phrases == full.total_phrases == first.phrases + rep.phrases
    index = PhraseIndex.open(out)
    assert index.sentence(len(SENTENCES))["text"] == MORE[0]
    # a changed (not appended) corpus is refused, then rebuilt on request
    write_jsonl(corpus, records(SENTENCES[::-1]))
    with pytest.raises(NertoolsError, match="changed since index .* --rebuild"):
        build_index(str(corpus), out, settings(tiny_encoder_dir), encoder=encoder, progress=False)
    with pytest.raises(NertoolsError, match="other settings \\(span_repr\\)"):
        build_index(str(corpus), out, settings(tiny_encoder_dir, span_repr="start-end"), encoder=encoder,
                    progress=False)
    rep = build_index(str(corpus), out, settings(tiny_encoder_dir), encoder=encoder, rebuild=True,
                      progress=False)
    assert rep.status == "built" and PhraseIndex.open(out).sentence(0)["text"] == SENTENCES[-1]


def test_questions_file_and_dictionary(tmp_path):
    qf = tmp_path / "q.tsv"
    qf.write_text("LOC\tWhich city?\nLOC\tWhich country?\nPER\n")
    qs = read_questions(str(qf))
    assert [(q.label, q.text, q.type_word) for q in qs] == [
        ("LOC", "Which city?", "city"), ("LOC", "Which country?", "country"), ("PER", "Which person?", "person")]
    answers = [("Singapore", qs[0]), ("the Singapore", qs[0]), ("City", qs[0]), ("Paris", qs[1]),
               ("paris", qs[1]), ("Yoshida", qs[2])]
    assert pseudo_dictionary(answers) == [("Singapore", "LOC", 2), ("Paris", "LOC", 1), ("Yoshida", "PER", 1)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"label": "LOC", "question": "Which city?"}\n{"label": ""}\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        read_questions(str(bad))


def cli(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kw)


def test_console_round_trip_and_errors(tiny_encoder_dir, corpus, tmp_path):
    idx = tmp_path / "idx"
    r = cli("ner-retrieve", "index", "--corpus", str(corpus), "--model", str(tiny_encoder_dir),
            "--out", str(idx), "--max-length", "64", "--batch-size", "4", "--threads", "1", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "built" in r.stderr and (idx / "manifest.json").exists()
    dic = tmp_path / "dict.tsv"
    r = cli("ner-retrieve", "query", "--index", str(idx), "--label", "LOC", "--question", "Which city?",
            "--top-k", "6", "--dict-out", str(dic), "--threads", "1", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert recs and all(s["label"] == "LOC" and s["source"] == "retrieve" and s["question"] == "Which city?"
                        and isinstance(s["score"], float) for rec in recs for s in rec["spans"])
    assert sum(len(rec["spans"]) for rec in recs) == 6
    for rec in recs:  # spans are valid on their records
        for s in rec["spans"]:
            assert rec["text"][s["start"]:s["end"]] == " ".join(
                t["text"] for t in rec["tokens"][s["token_start"]:s["token_end"] + 1])
    lines = [ln.split("\t") for ln in dic.read_text().splitlines()]
    assert lines and all(lab == "LOC" and int(c) >= 1 for _, lab, c in lines)
    retrieved = {rec["text"][s["start"]:s["end"]] for rec in recs for s in rec["spans"]}
    assert {p for p, _, _ in lines} <= retrieved
    # the pseudo-dictionary feeds ner-dictmatch (rule 3 off: the random encoder may pick lower
    # case; rule 10 off: exact phrases)
    r2 = cli("ner-dictmatch", "--dict", str(dic), "--no-rule", "3", "--no-rule", "10", str(corpus))
    assert r2.returncode == 0, r2.stderr
    matched = {json.loads(x)["text"][s["start"]:s["end"]].lower()
               for x in r2.stdout.splitlines() for s in json.loads(x)["spans"]}
    assert matched and matched <= {p.lower() for p, _, _ in lines}

    # corpus changed (not appended): a clear refusal, exit 1, one line
    write_jsonl(corpus, records(SENTENCES[1:]))
    r = cli("ner-retrieve", "index", "--corpus", str(corpus), "--model", str(tiny_encoder_dir),
            "--out", str(idx), "--max-length", "64")
    assert r.returncode == 1 and "changed since index" in r.stderr and "--rebuild" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    # corrupted index: truncated vectors, broken manifest, missing shard -> exit 65, one line
    vec = idx / "vectors-00000.npy"
    data = vec.read_bytes()
    vec.write_bytes(data[: len(data) // 2])
    r = cli("ner-retrieve", "query", "--index", str(idx), "--label", "LOC")
    assert r.returncode == 65 and "phrase index is corrupted" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    vec.unlink()
    r = cli("ner-retrieve", "query", "--index", str(idx), "--label", "LOC")
    assert r.returncode == 65 and "cannot read shard" in r.stderr
    vec.write_bytes(data)
    (idx / "manifest.json").write_text('{"format": "nertools-phrase-index", "vers')
    r = cli("ner-retrieve", "query", "--index", str(idx), "--label", "LOC")
    assert r.returncode == 65 and "manifest.json is not valid JSON" in r.stderr
    r = cli("ner-retrieve", "query", "--index", str(tmp_path / "nope"), "--label", "LOC")
    assert r.returncode == 1 and "no such index directory" in r.stderr
    r = cli("ner-retrieve", "query", "--index", str(idx))
    assert r.returncode == 2


def test_mismatched_question_encoder(tiny_encoder_dir, encoder, corpus, tmp_path):
    build_index(str(corpus), str(tmp_path / "idx"), settings(tiny_encoder_dir, span_repr="start-end"),
                encoder=encoder, progress=False)
    index = PhraseIndex.open(str(tmp_path / "idx"))
    with pytest.raises(NertoolsError, match="64 dimensions|dimensions"):
        index.search(np.ones((1, 32), dtype=np.float32), 3)
