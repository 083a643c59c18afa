"""mrcnn.engine.skipped.SkippedImages: the ledger of images train() skipped, per dataset."""
import logging
import types

from mrcnn.engine.skipped import SkippedImages


def _dataset(n):
    return types.SimpleNamespace(image_ids=list(range(n)))


def _pipe(dataset, failures):
    return types.SimpleNamespace(dataset=dataset, failures=dict(failures))


def test_empty_before_any_epoch():
    ledger, ds = SkippedImages(), _dataset(4)
    assert ledger.of(ds) == {}
    assert ledger.usable_ids(ds) == [0, 1, 2, 3]
    ledger.note(_pipe(ds, {}), "train")          # nothing failed: nothing recorded
    assert ledger.of(ds) == {}


def test_note_records_and_filters_per_dataset(caplog):
    ledger, train, val = SkippedImages(), _dataset(5), _dataset(3)
    with caplog.at_level(logging.WARNING, logger="mrcnn.engine.training"):
        ledger.note(_pipe(train, {3: "empty mask", 1: "cannot read"}), "train")
    assert ledger.of(train) == {3: ["empty mask"], 1: ["cannot read"]}
    assert ledger.usable_ids(train) == [0, 2, 4]
    assert ledger.of(val) == {} and ledger.usable_ids(val) == [0, 1, 2]   # another dataset: untouched
    (record,) = caplog.records
    assert record.getMessage().startswith("train: 2 of 5 images skipped so far")


def test_note_keeps_first_problem_and_logs_only_growth(caplog):
    ledger, ds = SkippedImages(), _dataset(6)
    ledger.note(_pipe(ds, {2: "first"}), "train")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mrcnn.engine.training"):
        ledger.note(_pipe(ds, {2: "second"}), "train")      # same image again: no new count
        assert caplog.records == []
        ledger.note(_pipe(ds, {2: "third", 5: "bad box"}), "val")
    assert ledger.of(ds) == {2: ["first"], 5: ["bad box"]}
    assert [r.getMessage().split(" skipped")[0] for r in caplog.records] == ["val: 2 of 6 images"]
    assert ledger.usable_ids(ds) == [0, 1, 3, 4]


def test_numpy_ids_and_a_dataset_equal_but_distinct():
    import numpy as np

    ledger = SkippedImages()
    ds = types.SimpleNamespace(image_ids=np.arange(4))
    ledger.note(_pipe(ds, {np.int64(1): "x"}), "train")
    assert ledger.of(ds) == {1: ["x"]} and all(type(k) is int for k in ledger.of(ds))
    assert ledger.usable_ids(ds) == [0, 2, 3] and all(type(i) is int for i in ledger.usable_ids(ds))
    twin = types.SimpleNamespace(image_ids=np.arange(4))   # same contents, another object
    assert ledger.of(twin) == {}


def test_ledger_pins_the_dataset_so_its_id_is_not_reused():
    ledger = SkippedImages()
    ledger.note(_pipe(_dataset(3), {0: "x"}), "train")   # the only reference is the ledger's
    fresh = [_dataset(3) for _ in range(50)]              # would reuse a freed id
    assert all(ledger.of(d) == {} for d in fresh)
