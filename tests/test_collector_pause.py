"""The collector is paused while the big libraries first load, and is on again afterwards, whatever happens."""

import gc

import pytest

from backprop_lab.core import collector_pause


@pytest.fixture(autouse=True)
def restore_collector():
    yield
    gc.unfreeze()
    gc.enable()


def test_the_first_load_runs_without_the_collector_then_freezes_what_it_made():
    gc.unfreeze()
    with collector_pause.collector_paused("test: first"):
        assert not gc.isenabled()
        made = [[i] for i in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(made)  # out of later collections


def test_a_later_block_for_the_same_thing_neither_pauses_nor_freezes():
    with collector_pause.collector_paused("test: twice"):
        pass
    gc.unfreeze()
    with collector_pause.collector_paused("test: twice"):
        assert gc.isenabled()
        garbage = [[i] for i in range(100)]
    assert gc.get_freeze_count() == 0, "a later job's garbage would be kept for good"
    del garbage


def test_the_collector_is_on_again_after_an_error_in_the_block():
    with pytest.raises(ImportError), collector_pause.collector_paused("test: error"):
        raise ImportError("no such module")
    assert gc.isenabled()


def test_a_caller_that_paused_the_collector_keeps_it_paused():
    gc.disable()
    with collector_pause.collector_paused("test: nested"):
        pass
    assert not gc.isenabled()
