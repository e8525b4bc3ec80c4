from sijo.engines.llama_cpp.cells import CellLedger


def test_shared_prefixes_count_once() -> None:
    ledger = CellLedger()
    ledger.extend(0, 100)  # a slot prefills 100 positions
    ledger.copy(0, 1, 60)  # an entry keeps the first 60
    assert ledger.used() == 100
    ledger.extend(0, 5)  # the slot keeps decoding its own run
    assert ledger.used() == 105
    ledger.copy(1, 2, 60)  # a new slot shares the entry's 60 ...
    ledger.extend(2, 10)  # ... and decodes 10 of its own
    assert ledger.used() == 115
    assert ledger.length(2) == 70


def test_dropping_frees_only_what_nobody_else_holds() -> None:
    ledger = CellLedger()
    ledger.extend(0, 100)
    ledger.copy(0, 1, 60)
    ledger.drop(0)
    assert ledger.used() == 60  # the entry still holds the first 60 cells
    assert ledger.sequences() == {1}
    ledger.extend(1, 7)  # a copy never extends a run it does not own: a new run
    assert ledger.used() == 67
    ledger.drop(1)
    assert ledger.used() == 0 and ledger.sequences() == set()
