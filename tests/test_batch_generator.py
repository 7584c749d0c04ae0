"""batch_generator: PTB-style LM batches that continue row by row, and classifier batches that use every example."""
import numpy as np

import batch_generator as bg


def test_lm_batches_shift_targets_and_continue_each_row():
    ids = np.arange(103)
    batches = list(bg.lm_batches(ids, batch_size=4, num_steps=5))
    assert len(batches) == bg.lm_epoch_size(103, 4, 5) == 4  # 25 ids a row, one kept for the last target
    for x, y in batches:
        assert x.shape == y.shape == (4, 5) and x.dtype == np.int32
        np.testing.assert_array_equal(y, x + 1)
    # Row b of batch i+1 starts where row b of batch i stopped: the carried LSTM state is the right one.
    for (x0, _), (x1, _) in zip(batches, batches[1:]):
        np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)
    np.testing.assert_array_equal(batches[0][0][:, 0], [0, 25, 50, 75])


def test_lm_batches_resume_from_a_batch():
    ids = np.random.RandomState(0).randint(0, 50, 1000)
    whole = list(bg.lm_batches(ids, 8, 7))
    resumed = list(bg.lm_batches(ids, 8, 7, start=5))
    assert len(resumed) == len(whole) - 5
    for (a, b), (c, d) in zip(whole[5:], resumed):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    assert bg.lm_epoch_size(10, 8, 7) == 0 and list(bg.lm_batches(ids[:10], 8, 7)) == []


def test_pad_batch_pads_truncates_and_masks():
    x, mask = bg.pad_batch([np.array([5, 6, 7]), np.array([8]), np.arange(1, 10)], 4)
    np.testing.assert_array_equal(x, [[5, 6, 7, 0], [8, 0, 0, 0], [1, 2, 3, 4]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    assert x.dtype == np.int32 and mask.dtype == np.float32


def sentences(count, seed=0, longest=30):
    rng = np.random.RandomState(seed)
    seqs = [rng.randint(2, 100, rng.randint(1, longest + 1)) for _ in range(count)]
    return seqs, rng.randint(0, 3, count)


def test_every_example_is_used_once_even_with_a_partial_batch():
    seqs, labels = sentences(103)
    for widths in (None, bg.default_bucket_widths(20)):
        seen = []
        for x, mask, y in bg.classify_batches(seqs, labels, 10, 20, seed=1, epoch=0, bucket_widths=widths):
            assert len(x) == len(mask) == len(y) <= 10
            for row, m, label in zip(x, mask, y):
                seen.append((tuple(row[m > 0]), label))
        assert len(seen) == 103
        assert sorted(seen) == sorted((tuple(s[:20]), label) for s, label in zip(seqs, labels))
    assert bg.classify_num_batches(seqs, 10, 20) == 11


def test_bucketing_puts_each_sentence_in_the_narrowest_bucket_that_holds_it():
    assert bg.default_bucket_widths(60) == [15, 30, 45, 60]
    assert bg.default_bucket_widths(2) == [1, 2]
    seqs, labels = sentences(200, longest=70)
    widths = bg.default_bucket_widths(60)
    for x, mask, _ in bg.classify_batches(seqs, labels, 16, 60, seed=3, bucket_widths=widths):
        assert x.shape[1] in widths
        lengths = mask.sum(1)
        assert lengths.max() <= x.shape[1]
        narrower = [w for w in widths if w < x.shape[1]]
        assert not narrower or lengths.min() > max(narrower)


def test_shuffling_depends_on_seed_and_epoch_and_resumes_exactly():
    seqs, labels = sentences(90)
    widths = bg.default_bucket_widths(20)

    def labels_of(**kwargs):
        return [y.tolist() for _, _, y in bg.classify_batches(seqs, labels, 8, 20, bucket_widths=widths, **kwargs)]

    assert labels_of(seed=1, epoch=0) == labels_of(seed=1, epoch=0)
    assert labels_of(seed=1, epoch=0) != labels_of(seed=1, epoch=1)
    assert labels_of(seed=1, epoch=0) != labels_of(seed=2, epoch=0)
    assert labels_of(seed=1, epoch=2)[4:] == labels_of(seed=1, epoch=2, start_batch=4)
    # Without a seed (evaluation) the order is fixed and follows the input within each bucket.
    assert labels_of() == labels_of()
