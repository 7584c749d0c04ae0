"""Batches for the graph: NumPy in, NumPy out, deterministic, no TensorFlow.

Language model (PTB style): the id stream is cut into batch_size contiguous rows and walked num_steps at a time, so
row b of one batch continues exactly where row b of the previous batch stopped and the final LSTM state of a batch
is the right initial state of the next (truncated backpropagation through time across batches).

Classifier: sentences padded (with id 0, <pad>) or truncated to a width, with a float mask of the real tokens;
shuffled each epoch from (seed, epoch); optionally bucketed by length so that short sentences run in a short
unrolled graph. Every example appears exactly once per pass: the last batch of a bucket is simply smaller.
"""
import math

import numpy as np


# --------------------------------------------------------------------------------------------------- language model

def lm_epoch_size(num_tokens, batch_size, num_steps):
    """Batches per pass over a stream of num_tokens ids (the targets need one id beyond the inputs)."""
    return max((num_tokens // batch_size - 1) // num_steps, 0)


def lm_batches(ids, batch_size, num_steps, start=0):
    """Yields (x, y), each [batch_size, num_steps] int32, y = x shifted by one; from batch `start` on (resuming)."""
    batch_len = len(ids) // batch_size
    rows = np.asarray(ids[:batch_size * batch_len], np.int32).reshape(batch_size, batch_len)  # [batch, batch_len]
    for i in range(start, lm_epoch_size(len(ids), batch_size, num_steps)):
        x = rows[:, i * num_steps:(i + 1) * num_steps]
        y = rows[:, i * num_steps + 1:(i + 1) * num_steps + 1]
        yield x, y


# --------------------------------------------------------------------------------------------------- classifier

def default_bucket_widths(num_steps, buckets=4):
    """Unroll widths of the length buckets: num_steps split in `buckets` equal steps (60 -> 15, 30, 45, 60)."""
    return sorted({max(1, math.ceil(num_steps * k / buckets)) for k in range(1, buckets + 1)})


def pad_batch(seqs, width):
    """seqs: id arrays -> (x [B, width] int32 with 0 = <pad>, mask [B, width] float32); longer ones are cut."""
    x = np.zeros((len(seqs), width), np.int32)
    mask = np.zeros((len(seqs), width), np.float32)
    for b, seq in enumerate(seqs):
        n = min(len(seq), width)
        x[b, :n] = seq[:n]
        mask[b, :n] = 1.0
    return x, mask


def bucket_of(lengths, widths):
    """Index of the narrowest width that holds each length (the widest for longer ones, which get truncated)."""
    return np.minimum(np.searchsorted(widths, lengths), len(widths) - 1)


def batch_plan(seqs, batch_size, num_steps, bucket_widths=None, seed=None, epoch=0):
    """[(width, example indices)] for one pass. With a seed the examples and the batch order are shuffled from
    (seed, epoch), so a resumed run can skip to any batch; without one the order is fixed (evaluation)."""
    widths = list(bucket_widths or [num_steps])
    lengths = np.array([len(s) for s in seqs], np.int64)
    rng = np.random.RandomState([seed, epoch]) if seed is not None else None
    order = rng.permutation(len(seqs)) if rng else np.arange(len(seqs))
    buckets = bucket_of(lengths[order], widths)
    plan = []
    for k, width in enumerate(widths):
        members = order[buckets == k]
        plan += [(width, members[i:i + batch_size]) for i in range(0, len(members), batch_size)]
    if rng:
        plan = [plan[i] for i in rng.permutation(len(plan))]
    return plan


def classify_num_batches(seqs, batch_size, num_steps, bucket_widths=None):
    return len(batch_plan(seqs, batch_size, num_steps, bucket_widths))


def classify_batches(seqs, labels, batch_size, num_steps, seed=None, epoch=0, bucket_widths=None, start_batch=0):
    """Yields (x [B, width], mask [B, width], y [B]) over every example once; see batch_plan for the order."""
    for width, index in batch_plan(seqs, batch_size, num_steps, bucket_widths, seed, epoch)[start_batch:]:
        x, mask = pad_batch([seqs[i] for i in index], width)
        yield x, mask, np.asarray(labels)[index].astype(np.int32)
