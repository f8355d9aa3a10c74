from itrlib.engine.sampler import EpochBatchSampler


def test_batches_are_a_function_of_seed_and_epoch():
    a, b = EpochBatchSampler(50, 8, seed=3), EpochBatchSampler(50, 8, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert list(a) != list(b)


def test_drop_last_resume_offset_and_cap():
    sampler = EpochBatchSampler(50, 8, seed=0)
    full = list(sampler)
    assert len(full) == 6 and all(len(x) == 8 for x in full) and len({i for batch in full for i in batch}) == 48
    sampler.set_epoch(0, start_batch=4)
    assert list(sampler) == full[4:] and len(sampler) == 2
    capped = EpochBatchSampler(50, 8, seed=0, max_batches=2)
    assert list(capped) == full[:2] and capped.batches_per_epoch() == 2
