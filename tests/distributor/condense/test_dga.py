"""The DGA classifier: sample loading, split, training, scoring, bytes, and real-data quality."""

from __future__ import annotations

import csv
import hashlib
import math
import os
import random
import re
import string
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgpack
import pytest

from blocklist.errors import InvalidIndicator
from blocklist.names import normalize_domain, registrable_domain
from distributor.condense import dga
from distributor.condense.dga import (
    DgaError,
    DgaModel,
    ModelFormatError,
    Sample,
    SamplesUnreadable,
    evaluate,
    load_samples,
    registrable_label,
    split,
)
from distributor.errors import DistributorError

# --- synthetic data: random consonant strings against English-ish compounds --------------

WORD_LIST = (
    "shop cloud news mail photo travel market book music game home city green blue tech data "
    "smart food health sport river stone light house garden school studio media world star "
    "bank coffee pizza hotel auto farm apple paper print design web local daily best my the "
    "north south east west sun moon bright happy fresh kids art craft wood style fashion "
    "beauty learn code dev net hub life time park lake hill road bay field"
)
WORDS = WORD_LIST.split()
CONSONANTS = "bcdfghjklmnpqrstvwxz"


def legit_name(rng: random.Random) -> str:
    name = "".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
    return name + (str(rng.randint(1, 99)) if rng.random() < 0.1 else "")


def dga_name(rng: random.Random) -> str:
    alphabet = CONSONANTS + "aeiou" + (string.digits if rng.random() < 0.3 else "")
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(8, 18)))


def synthetic(n: int, seed: int) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        is_dga = i % 2 == 0
        label = dga_name(rng) if is_dga else legit_name(rng)
        family = ("randa" if i % 4 == 0 else "randb") if is_dga else "words"
        out.append(Sample(label=label, is_dga=is_dga, family=family, domain=f"{label}.com"))
    return out


@pytest.fixture(scope="module")
def toy() -> tuple[list[Sample], DgaModel]:
    samples = synthetic(600, seed=1)
    return samples, DgaModel.train(samples, seed=0, epochs=3)


# --- load_samples -------------------------------------------------------------------------


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "samples.csv"
    path.write_bytes(data)
    return path


def test_load_samples_reads_rows_and_counts_bad_ones_by_reason(tmp_path: Path) -> None:
    lines = [
        b"\xef\xbb\xbfclass,family,domain",  # header after a BOM: skipped, not counted
        b"dga,corebot,xjwqkpz.com",
        b"legit,alexa,Example.ORG",  # normalized
        b"dga,kraken,abcdefgh.ddns.net\r",  # ddns.net is a public suffix: label abcdefgh
        b'"legit","alexa","quoted.net"',
        b"",  # blank: skipped, not counted
        b"dga,x,one,two",  # 4 fields
        b"dga,x",  # 2 fields
        b"evil,x,good.com",  # class
        b"dga,,nofamily.com",
        b"dga,x,",
        b"dga,x,bad..name",  # domain refused by normalize_domain
        b"legit,alexa,co.uk",  # a public suffix
        b"dga,kraken,bqlqscpqwsh.dynserv.com",  # below its registrable domain
        b"legit,alexa,xn--bcher-kva.de",  # IDN label
        b"legit,alexa,example.org",  # duplicate of line 3
        b"dga,x,\xff\xfe.com",  # not UTF-8
        b"dga,x," + b"a" * 5000 + b".com",
    ]
    samples = load_samples(write(tmp_path, b"\n".join(lines) + b"\n"))
    assert [(s.label, s.is_dga, s.family, s.domain) for s in samples] == [
        ("xjwqkpz", True, "corebot", "xjwqkpz.com"),
        ("example", False, "alexa", "example.org"),
        ("abcdefgh", True, "kraken", "abcdefgh.ddns.net"),
        ("quoted", False, "alexa", "quoted.net"),
    ]
    report = samples.report
    assert report.rows == 16
    assert report.accepted == 4
    try:
        normalize_domain("bad..name")
    except InvalidIndicator as e:
        bad_domain = f"domain: {e.reason}"
    assert dict(report.rejected) == {
        "not 3 fields": 2,
        "unknown class": 1,
        "empty family": 1,
        "empty domain": 1,
        bad_domain: 1,
        "domain: public suffix": 1,
        "below its registrable domain": 1,
        "idn label": 1,
        "duplicate domain": 1,
        "not utf-8": 1,
        "line too long": 1,
    }
    assert report.first_line["not 3 fields"] == 7
    assert report.first_line["not utf-8"] == 17
    assert "4 of 16 rows used" in report.summary()
    assert "duplicate domain: 1 (first at line 16)" in report.summary()


def test_load_samples_of_garbage_counts_rows_and_does_not_raise(tmp_path: Path) -> None:
    samples = load_samples(write(tmp_path, bytes(range(256)) * 4))
    assert samples == []
    assert samples.report.accepted == 0
    assert samples.report.rows == sum(samples.report.rejected.values()) > 0


def test_load_samples_of_an_unreadable_file_raises_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(SamplesUnreadable, match=r"nope\.csv") as info:
        load_samples(missing)
    assert info.value.path == str(missing)
    assert isinstance(info.value, DistributorError)
    with pytest.raises(SamplesUnreadable, match=re.escape(str(tmp_path))):
        load_samples(tmp_path)  # a directory


def test_registrable_label() -> None:
    assert registrable_label("xjwqkpz.com") == "xjwqkpz"
    assert registrable_label("a.b.example.co.uk") == "example"
    assert registrable_label("evil.foo.ddns.net") == "foo"
    assert registrable_label("com") is None
    assert registrable_label("co.uk") is None
    assert registrable_label("192.0.2.1") is None


# --- split --------------------------------------------------------------------------------


def test_split_is_stratified_exact_and_stable() -> None:
    samples = synthetic(1000, seed=2)
    train, test = split(samples, test_fraction=0.2, seed=0)
    assert len(train) + len(test) == len(samples)
    assert not {s.domain for s in train} & {s.domain for s in test}
    strata = Counter((s.is_dga, s.family) for s in samples)
    tested = Counter((s.is_dga, s.family) for s in test)
    for key, n in strata.items():
        distinct = len({s.domain for s in samples if (s.is_dga, s.family) == key})
        assert tested[key] >= round(distinct * 0.2) > 0, key
        assert tested[key] <= n
    # input order does not matter; the seed does
    shuffled = samples[:]
    random.Random(5).shuffle(shuffled)
    assert {s.domain for s in split(shuffled, seed=0)[1]} == {s.domain for s in test}
    assert {s.domain for s in split(samples, seed=1)[1]} != {s.domain for s in test}
    # each side keeps the input order
    assert train == [s for s in samples if s in set(train)]


def test_split_keeps_repeated_domains_together() -> None:
    base = synthetic(200, seed=3)
    twice = base + [Sample(s.label, s.is_dga, s.family, s.domain) for s in base]
    train, test = split(twice, seed=0)
    assert not {s.domain for s in train} & {s.domain for s in test}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_refuses_a_fraction_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        split(synthetic(10, seed=0), test_fraction=fraction)


# --- training and scoring -----------------------------------------------------------------


def test_model_separates_random_strings_from_words(toy: tuple[list[Sample], DgaModel]) -> None:
    _, model = toy
    held_out = synthetic(400, seed=99)
    metrics = evaluate(model, held_out, threshold=0.5)
    assert metrics.accuracy >= 0.95
    assert metrics.n == 400
    assert model.score("xkqzjvbwptrn") > 0.5
    assert model.score("bookshop") < 0.5
    assert 0.5 <= model.threshold <= 1.0


def test_score_edge_cases(toy: tuple[list[Sample], DgaModel]) -> None:
    _, model = toy
    assert model.score("") == 0.0
    assert model.score("xn--bcher-kva") == 0.0  # IDN: not scored
    assert model.score("bücher") == 0.0
    assert model.score("XKQZJVBWPT") == model.score("xkqzjvbwpt")
    for label in ("a", "q", "z9", "-", "_dmarc", "a" * 63, "x7" * 1000, "ab-cd_ef"):
        assert 0.0 <= model.score(label) <= 1.0, label
    assert model.score_many(["xkqzjvbwpt", "", "bookshop"]) == [
        model.score("xkqzjvbwpt"),
        0.0,
        model.score("bookshop"),
    ]
    assert model.is_dga("xkqzjvbwptrn") is (model.score("xkqzjvbwptrn") >= model.threshold)


def test_contributions_add_up_to_the_score(toy: tuple[list[Sample], DgaModel]) -> None:
    _, model = toy
    rng = random.Random(4)
    labels = [dga_name(rng) for _ in range(50)] + [legit_name(rng) for _ in range(50)]
    alphabet = string.ascii_lowercase + string.digits + "-_"
    labels += ["".join(rng.choices(alphabet, k=rng.randint(1, 70))) for _ in range(200)]
    labels += ["a", "deadbeef1234", "0123456789abcdef", "my-shop", "x" * 1024, "x" * 2000]
    for label in labels:
        parts = model.contributions(label)
        z = math.fsum(v for _, v in parts)
        assert math.isclose(1 / (1 + math.exp(-z)), model.score(label), rel_tol=1e-9), label
        assert parts[0][1] ** 2 >= parts[-1][1] ** 2  # largest first
    assert model.contributions("") == []
    names = {name for name, _ in model.contributions("xkqzjvbwpt")}
    assert {"length=10", "entropy", "consonant_run"} <= names
    assert any(name.startswith("ngram '") for name in names)


def test_training_is_deterministic_and_order_free() -> None:
    samples = synthetic(300, seed=6)
    first = DgaModel.train(samples, seed=3, epochs=2).to_bytes()
    assert DgaModel.train(samples, seed=3, epochs=2).to_bytes() == first
    shuffled = samples[:]
    random.Random(0).shuffle(shuffled)
    assert DgaModel.train(shuffled, seed=3, epochs=2).to_bytes() == first
    assert DgaModel.train(samples, seed=4, epochs=2).to_bytes() != first


def test_training_gives_the_same_bytes_in_every_process() -> None:
    """Sums over sets of str would follow PYTHONHASHSEED; the model must not."""
    code = (
        "import hashlib, sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.distributor.condense.test_dga import synthetic;"
        "from distributor.condense.dga import DgaModel;"
        "print(hashlib.sha256(DgaModel.train(synthetic(300, 11), epochs=2).to_bytes()).hexdigest())"
    )
    repo = str(Path(__file__).resolve().parents[3])
    digests = {
        subprocess.run(
            [sys.executable, "-c", code, repo],
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in (1, 2)
    }
    expected = hashlib.sha256(DgaModel.train(synthetic(300, 11), epochs=2).to_bytes()).hexdigest()
    assert digests == {expected + "\n"}


def test_train_takes_label_pairs_and_ignores_unscorable_labels() -> None:
    samples = synthetic(300, seed=7)
    pairs = [(s.label, s.is_dga) for s in samples]
    from_pairs = DgaModel.train([*pairs, ("", True), ("xn--abc", False)], epochs=2)
    assert from_pairs.to_bytes() == DgaModel.train(samples, epochs=2).to_bytes()
    assert from_pairs.info.samples == 300
    assert from_pairs.info.dga == 150


def test_train_refuses_one_class_and_bad_arguments() -> None:
    only_dga = [(f"xkq{i}zvb", True) for i in range(50)]
    with pytest.raises(DgaError, match="both classes: got 50 dga and 0 legit"):
        DgaModel.train(only_dga)
    with pytest.raises(DgaError, match="got 0 dga and 0 legit"):
        DgaModel.train([])
    with pytest.raises(TypeError, match="label, is_dga"):
        DgaModel.train([("abc", "yes")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="target_fpr"):
        DgaModel.train(synthetic(40, 0), target_fpr=1.0)
    with pytest.raises(ValueError, match="epochs"):
        DgaModel.train(synthetic(40, 0), epochs=0)


def test_threshold_is_calibrated_on_legit_labels_only_with_enough_of_them() -> None:
    few = DgaModel.train(synthetic(60, seed=8), epochs=2)
    assert few.threshold == dga.MIN_THRESHOLD
    assert few.info.calibration_legit == few.info.calibration_dga == 0
    samples = synthetic(600, seed=8)
    strict = DgaModel.train(samples, epochs=2, target_fpr=0.0)
    loose = DgaModel.train(samples, epochs=2, target_fpr=0.2)
    assert strict.info.calibration_legit >= dga.MIN_CALIBRATION_PER_CLASS
    assert strict.threshold >= loose.threshold >= dga.MIN_THRESHOLD
    assert strict.with_threshold(0.9).threshold == 0.9
    assert strict.with_threshold(0.9).to_bytes() != strict.to_bytes()
    with pytest.raises(ValueError, match="probability"):
        strict.with_threshold(1.5)


def test_evaluate_counts_and_per_family_recall(toy: tuple[list[Sample], DgaModel]) -> None:
    _, model = toy
    held_out = synthetic(200, seed=10)
    m = evaluate(model, held_out)
    assert m.threshold == model.threshold
    assert m.tp + m.fn == 100
    assert m.fp + m.tn == 100
    assert m.accuracy == (m.tp + m.tn) / 200
    assert m.recall == m.tp / 100
    assert m.false_positive_rate == m.fp / 100
    assert set(m.per_family_recall) == {"randa", "randb", "words"}
    assert m.per_family_count["words"] == 100
    assert m.per_family_recall["words"] == 1 - m.false_positive_rate
    pairs = evaluate(model, [(s.label, s.is_dga) for s in held_out])
    assert (pairs.tp, pairs.fp, pairs.tn, pairs.fn) == (m.tp, m.fp, m.tn, m.fn)
    assert set(pairs.per_family_recall) == {"dga", "legit"}
    everything = evaluate(model, held_out, threshold=0.0)
    assert everything.recall == 1.0 and everything.false_positive_rate == 1.0
    empty = evaluate(model, [])
    assert empty.n == 0 and empty.accuracy == empty.precision == 0.0


# --- bytes --------------------------------------------------------------------------------


def test_bytes_round_trip(toy: tuple[list[Sample], DgaModel]) -> None:
    samples, model = toy
    blob = model.to_bytes()
    back = DgaModel.from_bytes(blob)
    assert back.to_bytes() == blob
    assert back.threshold == model.threshold
    assert back.info == model.info
    assert all(back.score(s.label) == model.score(s.label) for s in samples[:100])
    assert DgaModel.from_bytes(bytearray(blob)).to_bytes() == blob


def doc_of(model: DgaModel) -> dict[str, object]:
    doc = msgpack.unpackb(model.to_bytes(), raw=False)
    assert isinstance(doc, dict)
    return doc


def mutated(model: DgaModel, **changes: object) -> bytes:
    doc = doc_of(model)
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    packed: bytes = msgpack.packb(doc, use_bin_type=True)
    return packed


@pytest.mark.parametrize("cut", [0, 1, 10, 1000, -1])
def test_from_bytes_refuses_truncated(toy: tuple[list[Sample], DgaModel], cut: int) -> None:
    blob = toy[1].to_bytes()
    with pytest.raises(ModelFormatError, match="DGA model"):
        DgaModel.from_bytes(blob[:cut])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"garbage that is not msgpack \xff\xfe",
        bytes(random.Random(0).randrange(256) for _ in range(4096)),
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"format": "something-else", "version": 1}),
        msgpack.packb({1: 2}),
    ],
)
def test_from_bytes_refuses_garbage(data: bytes) -> None:
    with pytest.raises(ModelFormatError, match="DGA model") as info:
        DgaModel.from_bytes(data)
    assert isinstance(info.value, DistributorError)
    assert isinstance(info.value, ValueError)


def test_from_bytes_refuses_trailing_bytes(toy: tuple[list[Sample], DgaModel]) -> None:
    with pytest.raises(ModelFormatError, match="not valid msgpack"):
        DgaModel.from_bytes(toy[1].to_bytes() + b"\x00")


def test_from_bytes_refuses_other_versions(toy: tuple[list[Sample], DgaModel]) -> None:
    model = toy[1]
    for version in (0, 2, "1", 1.0):
        with pytest.raises(ModelFormatError, match="unsupported version"):
            DgaModel.from_bytes(mutated(model, version=version))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"threshold": None}, "missing keys \\['threshold'\\]"),
        ({"extra": 1}, "unknown keys \\['extra'\\]"),
        ({"threshold": "0.5"}, "threshold must be a finite float"),
        ({"threshold": math.nan}, "threshold must be a finite float"),
        ({"threshold": 1.5}, "not in \\[0, 1\\]"),
        ({"orders": [2, 3]}, "n-gram orders"),
        ({"length_cap": 30}, "length cap"),
        ({"dense": ["entropy"]}, "dense features"),
        ({"length_weights": [0.0, 1.0]}, "length_weights must be a list of 26 floats"),
        ({"dense_weights": [0.0] * 6 + [1]}, "dense_weights\\[6\\] must be a finite float"),
        ({"dense_means": "x"}, "dense_means must be a list"),
        ({"ngrams": [1]}, "ngrams must be a map"),
        ({"ngrams": {"abcdefg": 0.5}}, "'abcdefg' is not 2..5 characters"),
        ({"ngrams": {"ab": math.inf}}, "weight of n-gram 'ab'"),
        ({"info": {"seed": 0}}, "info must have exactly the keys"),
    ],
)
def test_from_bytes_refuses_bad_fields(
    toy: tuple[list[Sample], DgaModel], changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelFormatError, match=message):
        DgaModel.from_bytes(mutated(toy[1], **changes))


def test_from_bytes_refuses_bad_info_types(toy: tuple[list[Sample], DgaModel]) -> None:
    info = dict(doc_of(toy[1])["info"])  # type: ignore[call-overload]
    info["samples"] = "many"
    with pytest.raises(ModelFormatError, match=r"info\.samples must be int"):
        DgaModel.from_bytes(mutated(toy[1], info=info))


def test_from_bytes_refuses_non_bytes() -> None:
    with pytest.raises(ModelFormatError, match="must be bytes, not str"):
        DgaModel.from_bytes("not bytes")  # type: ignore[arg-type]


# --- the real samples and top sites (../shared/data, read in place) -----------------------

DGA_SAMPLES = Path("reference/dga/chrmor-DGA_domains_dataset/dga_domains_sample.csv")
TOP_SITES = Path("reference/top-sites-tranco10k/top-10k.csv")


@pytest.fixture(scope="module")
def real(shared_data: Path) -> tuple[dga.SampleList, list[Sample], DgaModel]:
    samples = load_samples(shared_data / DGA_SAMPLES)
    train, test = split(samples, test_fraction=0.2, seed=0)
    return samples, test, DgaModel.train(train, seed=0)


@pytest.mark.shared
def test_real_samples_load_with_few_rejections(
    real: tuple[dga.SampleList, list[Sample], DgaModel],
) -> None:
    samples, _, _ = real
    report = samples.report
    assert report.rows == 10_000
    # kraken names under dynamic-DNS domains missing from the PSL (x.dynserv.com) and legit
    # hosts under unlisted platforms (x.tumblr.com): their registrable label is not theirs
    assert report.accepted >= 9_700
    assert set(report.rejected) <= {
        "below its registrable domain",
        "idn label",
        "domain: public suffix",
    }
    families = Counter(s.family for s in samples if s.is_dga)
    assert len(families) == 25
    assert sum(1 for s in samples if not s.is_dga) >= 4_800


@pytest.mark.shared
def test_real_held_out_accuracy(real: tuple[dga.SampleList, list[Sample], DgaModel]) -> None:
    _, test, model = real
    balanced = evaluate(model, test, threshold=0.5)
    # 0.9044 with seed 0 when written; bench/dga_bench.py prints the whole table
    assert balanced.accuracy >= 0.90, balanced
    chosen = evaluate(model, test)
    # the chosen threshold trades recall for few false positives (0.8772, FPR 0.0217)
    assert chosen.threshold > 0.5
    assert chosen.accuracy >= 0.86, chosen
    assert chosen.precision >= 0.95, chosen
    assert chosen.false_positive_rate <= 0.03, chosen
    # random-string families are caught; word-list ones (suppobox, nymaim) mostly are not
    for family in ("corebot", "cryptolocker", "emotet", "murofet", "ramdo", "rovnix"):
        assert chosen.per_family_recall[family] >= 0.9, family


@pytest.mark.shared
def test_real_top_sites_false_positive_rate(
    shared_data: Path, real: tuple[dga.SampleList, list[Sample], DgaModel]
) -> None:
    _, _, model = real
    labels = []
    with (shared_data / TOP_SITES).open(encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        assert next(rows) == ["Domain"]
        for (domain,) in rows:
            try:
                name = normalize_domain(domain)
            except InvalidIndicator:
                continue  # public suffixes such as github.io: no label to score
            if registrable_domain(name) == name and (label := registrable_label(name)):
                labels.append(label)
    assert len(labels) >= 9_800
    flagged = [label for label in labels if model.is_dga(label)]
    # 0.0153 (151 of 9893) with seed 0 when written
    assert len(flagged) / len(labels) < 0.02, sorted(flagged)
