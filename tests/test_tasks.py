"""tasks: evaluation in batches of any size, with the batch-size variable assigned, equals a computation over all
examples at once; a language model evaluates at another batch size than it trains at."""
import dataclasses

import numpy as np
import pytest

import config
import data_handler
import rnn_model as rm
import tasks
from tf1 import tf


def random_sentences(rng, count, vocab_size, max_length):
    return [rng.randint(2, vocab_size, rng.randint(1, max_length + 1)).astype(np.int32) for _ in range(count)]


def randomized_session(graph, seed):
    """A session on graph with every trainable variable uniform in [-0.5, 0.5] (biases too)."""
    rng = np.random.RandomState(seed)
    with graph.as_default():
        randomize = [tf.assign(v, rng.uniform(-0.5, 0.5, v.shape.as_list()).astype(np.float32))
                     for v in tf.trainable_variables()]
        init = [tf.global_variables_initializer(), tf.local_variables_initializer()]
    sess = tf.Session(graph=graph)
    sess.run(init)
    sess.run(randomize)
    return sess


def test_classifier_evaluation_in_uneven_batches_equals_all_examples_at_once():
    """23 sentences in batches of 7 (the last has 2, and the buckets cut more): every batch runs after its size is
    assigned, and accuracy, loss and the confusion matrix equal NumPy's over the logits of every sentence taken
    alone. Without the assignment, a batch of another size is refused, not silently broadcast."""
    cfg = dataclasses.replace(config.named_config("classify"), hidden_size=8, embedding_size=6, num_steps=12,
                              eval_batch_size=7, bidirectional=True)
    rng = np.random.RandomState(0)
    vocab = data_handler.Vocab(["<pad>", "<unk>"] + [f"w{i}" for i in range(30)])
    seqs, labels = random_sentences(rng, 23, len(vocab), 12), rng.randint(0, 3, 23).astype(np.int32)
    data = data_handler.TaskData(vocab, ["a", "b", "c"], {"test": (seqs, labels)}, {})
    graph = tf.Graph()
    with graph.as_default():
        controls = rm.build_controls(cfg, None)
        classifier = tasks.Classifier(cfg, data, controls)
    with randomized_session(graph, seed=1) as sess:
        metrics = classifier.evaluate(sess, "test")
        alone = np.concatenate([classifier.logits(sess, [seq]) for seq in seqs])  # batches of one
        model = classifier.eval_models[cfg.num_steps]
        x, mask = classifier_batch(seqs[:2], cfg.num_steps)
        sess.run(controls.batch_size_update, {controls.new_batch_size: 7})
        with pytest.raises(tf.errors.InvalidArgumentError, match="batch-size variable was not assigned"):
            sess.run(model.logits, {model.inputs: x, model.mask: mask})
    log_probabilities = alone - np.log(np.exp(alone).sum(1, keepdims=True))
    predicted = alone.argmax(1)
    assert metrics["examples"] == 23
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == labels), abs=1e-12)
    assert metrics["loss"] == pytest.approx(-log_probabilities[np.arange(23), labels].mean(), rel=1e-5)
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (labels, predicted), 1)
    assert metrics["confusion_matrix"] == confusion.tolist()
    assert alone.std(0).min() > 1e-3  # random weights that do tell sentences apart


def classifier_batch(seqs, width):
    from batch_generator import pad_batch
    return pad_batch(seqs, width)


def test_language_model_evaluates_at_its_own_batch_size():
    """eval_batch_size 1 walks the whole split as one row: the mean loss equals NumPy's over the one-step graph's
    logits of every next token, and training at batch size 4 before it does not get in the way."""
    cfg = dataclasses.replace(config.named_config("test"), hidden_size=8, num_layers=2, num_steps=5, batch_size=4,
                              eval_batch_size=1, vocab_size=0)
    rng = np.random.RandomState(2)
    vocab = data_handler.Vocab(["<unk>"] + [f"w{i}" for i in range(11)])
    ids = {name: rng.randint(0, len(vocab), n).astype(np.int32) for name, n in (("train", 81), ("valid", 31))}
    data = data_handler.TaskData(vocab, None, ids, {})
    graph = tf.Graph()
    with graph.as_default():
        controls = rm.build_controls(cfg, None)
        optimizer = rm.make_optimizer(cfg, controls.learning_rate)
        lm = tasks.LanguageModel(cfg, data, controls, optimizer)
        step = rm.build_lm(cfg, lm.weights, controls, 1)  # the one-step graph on the same weights
    with randomized_session(graph, seed=3) as sess:
        batch = next(lm.train_batches(0, 0))
        assert batch[0].shape == (4, 5)
        lm.train_step(sess, batch, fetch_summary=False)
        metrics = lm.evaluate(sess, "valid")
        state = [(np.zeros((1, 8), np.float32),) * 2 for _ in range(2)]
        total, valid = 0.0, ids["valid"]
        tokens = (len(valid) - 1) // cfg.num_steps * cfg.num_steps  # whole windows of num_steps, as evaluate
        for t in range(tokens):
            feed = rm.feed_state({step.inputs: [[valid[t]]]}, step.initial_state, state)
            logits, state = sess.run([step.logits, step.final_state], feed)
            total -= tasks.log_softmax(logits)[0, valid[t + 1]]
    assert metrics["loss"] == pytest.approx(total / tokens, rel=1e-5)


def test_classification_report_counts_exactly_with_the_macro_f1_of_the_labels_present():
    # true a a b b b, predicted a b b b a; label c neither held nor predicted
    report = tasks.classification_report(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), ["a", "b", "c"])
    assert report["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [0, 0, 0]] and report["accuracy"] == 0.6
    assert report["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert report["per_class"]["b"]["f1"] == pytest.approx(2 / 3)
    assert report["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2) and report["macro_f1_labels"] == 2
