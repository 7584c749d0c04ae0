"""A run started from a language model (pretrain.py, train.py): a classifier (--init_from, --pretrain_epochs), and a
language model fine-tuned on new text (--init_from)."""
import json
import os
import shutil

import numpy as np
import pytest

import checkpoints
import config
import data_handler
import pretrain
import run_dir
import sample
import train
from conftest import clearly_above_chance

# Two clusters of words. A language model of text where each line keeps to one cluster learns which words belong
# together; the labelled sentences only ever tie the "seen" half of each cluster to its label.
CLUSTERS = {"a": [f"a{i}" for i in range(40)], "b": [f"b{i}" for i in range(40)]}
SEEN = {label: words[:10] for label, words in CLUSTERS.items()}
HIDDEN = {label: words[10:] for label, words in CLUSTERS.items()}  # 30 each: a from-scratch model's luck averages out


def small_stack(*extra):
    """The stack both sides share: one layer of 16 units over 16-wide embeddings, forget bias 1."""
    return ["--num_layers", "1", "--hidden_size", "16", "--embedding_size", "16", "--forget_bias", "1", *extra]


def classifier_args(run, data, *extra):
    return ["--config", "classify", "--run_dir", str(run), "--data", str(data), "--num_steps", "8",
            "--batch_size", "8", "--max_max_epoch", "6", "--summary_every", "50", *small_stack(*extra)]


@pytest.fixture(scope="module")
def cluster_lm(tmp_path_factory):
    """A word LM (the classifier's stack) on 4,000 unlabelled lines of 6 words, each line from one cluster."""
    folder = tmp_path_factory.mktemp("cluster_lm")
    rng = np.random.RandomState(0)
    lines = [" ".join(rng.choice(CLUSTERS["ab"[i % 2]], 6)) for i in range(4000)]
    (folder / "unlabelled.txt").write_text("\n".join(lines) + "\n")
    run = folder / "lm"
    assert train.main(["--config", "small", "--run_dir", str(run), "--data", str(folder / "unlabelled.txt"),
                       "--optimizer", "adam", "--learning_rate", "0.01", "--num_steps", "12", "--batch_size", "20",
                       "--max_epoch", "3", "--max_max_epoch", "3", "--summary_every", "100", *small_stack()]) == 0
    return run


@pytest.fixture(scope="module")
def cluster_task(tmp_path_factory):
    """Training sentences: 3 seen words of the label's cluster among 3 hidden words of either cluster, so that a
    hidden word says nothing about the label there. Test sentences: 6 hidden words of the label's cluster."""
    folder = tmp_path_factory.mktemp("cluster_task")
    rng = np.random.RandomState(1)
    hidden_words = HIDDEN["a"] + HIDDEN["b"]

    def sentences(count, make):
        return [f"{'ab'[i % 2]}\t{' '.join(make('ab'[i % 2]))}" for i in range(count)]

    train_lines = sentences(240, lambda label: rng.permutation(list(rng.choice(SEEN[label], 3)) +
                                                               list(rng.choice(hidden_words, 3))))
    train_lines[0] += " zz"  # a word the language model never saw
    (folder / "train.txt").write_text("\n".join(train_lines) + "\n")
    (folder / "test.txt").write_text("\n".join(sentences(200, lambda label: rng.choice(HIDDEN[label], 6))) + "\n")
    return folder


def test_language_model_initialisation_carries_what_unlabelled_text_taught(cluster_lm, cluster_task, tmp_path):
    """From scratch the hidden words are noise (on five seeds the test accuracy was 47-62 %); from the LM they are
    known to be like the seen words of their cluster (100 % on the same seeds)."""
    accuracy = {}
    for name, extra in (("scratch", ()), ("lm", ("--init_from", str(cluster_lm)))):
        assert train.main(classifier_args(tmp_path / name, cluster_task, *extra)) == 0
        accuracy[name] = json.loads((tmp_path / name / "results.json").read_text())["test"]["accuracy"]
    assert clearly_above_chance(accuracy["lm"], 200, classes=2), accuracy
    assert accuracy["lm"] > accuracy["scratch"] + 0.2, accuracy


def test_restored_weights_equal_the_language_model(cluster_lm, cluster_task, tmp_path):
    """A step at a learning rate of 1e-30 leaves the weights as they started: the LM's layers, its embedding row
    for every token both vocabularies hold, and a fresh row for the word the LM never saw."""
    run = tmp_path / "cls"
    assert train.main(classifier_args(run, cluster_task, "--init_from", str(cluster_lm), "--max_steps", "1",
                                      "--learning_rate", "1e-30", "--test_fraction", "0")) == 0
    lm, classifier = run_dir.RunDir(cluster_lm), run_dir.RunDir(run)
    lm_weights = checkpoints.RunCheckpoints(lm).read_weights()
    started = checkpoints.RunCheckpoints(classifier).read_weights()
    for name in ("kernel_x", "kernel_h", "bias"):
        np.testing.assert_array_equal(started[f"model/layer_0/{name}"], lm_weights[f"model/layer_0/{name}"])
    lm_vocab, vocab = lm.load_vocab(), classifier.load_vocab()
    shared = [token for token in vocab.tokens if token in lm_vocab]
    assert len(shared) == len(vocab) - 2  # all but <pad> and "zz"
    for token in shared:
        np.testing.assert_array_equal(started["model/embedding"][vocab.id(token)],
                                      lm_weights["model/embedding"][lm_vocab.id(token)])
    fresh = started["model/embedding"][vocab.id("zz")]
    assert not np.any(np.all(np.isclose(lm_weights["model/embedding"], fresh), axis=1))


def test_a_language_model_that_does_not_fit_is_refused(cluster_lm, cluster_task, tmp_path, capsys):
    for extra, named in ((("--hidden_size", "8"), "hidden_size 16, this classifier 8"),
                         (("--num_layers", "2"), "num_layers 1, this classifier 2"),
                         (("--forget_bias", "0"), "forget_bias 1.0, this classifier 0.0")):
        args = classifier_args(tmp_path / "x", cluster_task, "--init_from", str(cluster_lm)) + list(extra)
        assert train.main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --init_from") and named in err[0], err
    classifier = tmp_path / "classifier"
    assert train.main(classifier_args(classifier, cluster_task, "--max_steps", "1")) == 0
    for source, named in ((classifier, "a classifier run; a classifier starts from a word language model"),
                          (tmp_path / "nothing", "not a run directory")):
        assert train.main(classifier_args(tmp_path / "y", cluster_task, "--init_from", str(source))) == 1
        assert named in capsys.readouterr().err


def test_a_language_model_of_the_evaluated_data_is_refused(cluster_lm, cluster_task):
    """Its corpus would hold the test sentences (unlabelled, but seen)."""
    lm_data = run_dir.RunDir(cluster_lm).load_config().data
    cfg = config.apply_overrides(config.named_config("classify"), {
        "data": lm_data, "num_layers": "1", "hidden_size": "16", "embedding_size": "16"})
    with pytest.raises(config.UserError, match="whose test sentences this classifier is evaluated on"):
        pretrain.load_language_model(str(cluster_lm), cfg)


def corpus_lines(run):
    """The lines of the corpus the run's language model was pretrained on."""
    with open(os.path.join(run.pretrain().path, "corpus", "train.txt")) as f:
        return f.read().splitlines()


def joined(examples):
    return sorted(" ".join(tokens) for tokens in examples.texts)


def test_each_fold_pretrains_on_its_training_part_alone(tmp_path):
    """No test or validation sentence of a fold is in its language model's corpus, not even unlabelled; every
    training sentence is."""
    rng = np.random.RandomState(2)
    lines = [f"{'ab'[i % 2]}\ts{i} " + " ".join(rng.choice(CLUSTERS["ab"[i % 2]], 5)) for i in range(300)]
    (tmp_path / "data.txt").write_text("\n".join(lines) + "\n")  # s{i}: every sentence is unique
    run = run_dir.RunDir(tmp_path / "cv")
    assert train.main(classifier_args(run, tmp_path / "data.txt", "--cv", "3", "--pretrain_epochs", "1",
                                      "--max_max_epoch", "1", "--cv_final", "false")) == 0  # the folds alone
    cfg = run.load_config()
    parts = data_handler.cv_parts(data_handler.classification_data(cfg).everything(), 3, cfg.valid_fraction,
                                  cfg.seed)
    for k, (train_part, valid, test) in enumerate(parts):
        corpus = corpus_lines(run.fold(k))
        assert sorted(corpus) == joined(train_part)
        assert not set(corpus) & (set(joined(valid)) | set(joined(test)))
        assert len(joined(test)) == 100
        assert json.loads(open(run.fold(k).pretrain().results_path).read())["task"] == "lm"
    assert len(json.loads(open(run.cv_results_path).read())["accuracy_per_fold"]) == 3


def test_a_language_model_started_on_other_sentences_is_refused(tmp_path):
    lm_run = run_dir.RunDir(tmp_path / "pretrain")
    assert pretrain.write_corpus(lm_run, [["a", "b"], [], ["c"]]) == str(tmp_path / "pretrain" / "corpus")
    assert (tmp_path / "pretrain" / "corpus" / "train.txt").read_text() == "a b\nc\n"
    (tmp_path / "pretrain" / "checkpoints").mkdir()
    (tmp_path / "pretrain" / "checkpoints" / "model.ckpt-5.index").write_bytes(b"")
    (tmp_path / "pretrain" / "config.json").write_text("{}")
    pretrain.write_corpus(lm_run, [["a", "b"], ["c"]])  # the same sentences: resumed
    with pytest.raises(config.UserError, match="trained on other sentences than this training split"):
        pretrain.write_corpus(lm_run, [["a", "b"], ["d"]])
    assert (tmp_path / "pretrain" / "corpus" / "train.txt").read_text() == "a b\nc\n"


def test_a_given_test_split_never_reaches_pretraining(cluster_task, tmp_path):
    run = run_dir.RunDir(tmp_path / "run")
    assert train.main(classifier_args(run, cluster_task, "--pretrain_epochs", "1", "--max_max_epoch", "1")) == 0
    cfg = run.load_config()
    cdata = data_handler.classification_data(cfg)
    corpus = corpus_lines(run)
    assert sorted(corpus) == joined(cdata.train)
    test_sentences = set(joined(cdata.test)) | set(joined(cdata.valid))
    assert len(cdata.test.texts) == 200 and not set(corpus) & test_sentences
    # Other sentences for the same language model are refused: this fraction would make some training sentences
    # validation ones.
    assert train.main(classifier_args(run, cluster_task, "--pretrain_epochs", "1", "--valid_fraction", "0.2")) == 1
    # A classifier that starts again (its checkpoints lost) reuses the finished language model as it is.
    lm_best = checkpoints.RunCheckpoints(run.pretrain()).use_candidates()[0]
    before = os.stat(lm_best + ".index").st_mtime_ns
    shutil.rmtree(run.checkpoint_dir), shutil.rmtree(run.best_dir)
    assert train.main(classifier_args(run, cluster_task, "--pretrain_epochs", "1", "--max_max_epoch", "1")) == 0
    assert checkpoints.RunCheckpoints(run.pretrain()).use_candidates()[0] == lm_best
    assert os.stat(lm_best + ".index").st_mtime_ns == before


def test_the_pretraining_language_model_starts_from_the_classifiers_vectors():
    """The vectors file is read once, for the classifier; its rows go to the LM's embedding token by token."""
    cfg = config.apply_overrides(config.named_config("classify"), {"embedding_size": "3", "pretrain_epochs": "1"})
    vocab = data_handler.Vocab(["<pad>", "<unk>", "good", "film"])
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    lm_vocab = data_handler.Vocab(["<unk>", "<eos>", "film", "good"])
    rows = pretrain.lm_start(pretrain.lm_config(cfg, "corpus"), lm_vocab, vocab, vectors)["embedding"]
    np.testing.assert_array_equal(rows[[0, 2, 3]], vectors[[1, 3, 2]])
    assert rows.shape == (4, 3) and not np.isin(rows[1], vectors).all()  # <eos>: a fresh row
    assert pretrain.lm_start(cfg, lm_vocab, vocab, None) == {}


def test_a_word_language_model_can_start_from_vectors(tmp_path, capsys):
    (tmp_path / "text.txt").write_text("the good film was good\nthe film\n" * 200)
    (tmp_path / "vectors.txt").write_text("good 1 2 3 4\nfilm 5 6 7 8\nother 0 0 0 1\n")
    args = ["--config", "small", "--data", str(tmp_path / "text.txt"), "--embeddings", str(tmp_path / "vectors.txt"),
            "--hidden_size", "4", "--num_steps", "5", "--batch_size", "4", "--max_steps", "1", "--learning_rate",
            "1e-30", "--run_dir", str(tmp_path / "lm")]
    assert train.main(args) == 0
    run = run_dir.RunDir(tmp_path / "lm")
    embedding, vocab = checkpoints.RunCheckpoints(run).read_weights()["model/embedding"], run.load_vocab()
    np.testing.assert_array_equal(embedding[vocab.id("film")], [5, 6, 7, 8])
    assert "embeddings: 2 of 6 words found" in capsys.readouterr().out
    assert train.main(args[:-1] + [str(tmp_path / "char"), "--level", "char"]) == 1
    assert "--embeddings: word vectors are for word-level models" in capsys.readouterr().err


def test_the_pretraining_config_comes_from_the_declarations():
    """Each key of the pretraining LM is the classifier's (declared inherited), the LM's own setting, or the default:
    never two of them, so a key's rule is written in one place."""
    assert not set(pretrain.LM_SETTINGS) & set(config.INHERITED_KEYS)
    cfg = config.apply_overrides(config.named_config("classify_glove_lm"),
                                 {"hidden_size": "33", "seed": "7", "keep_prob": "0.6", "initializer": "glorot"})
    lm = pretrain.lm_config(cfg, "corpus")
    for key in config.INHERITED_KEYS:
        assert getattr(lm, key) == getattr(cfg, key), key
    for key, value in pretrain.LM_SETTINGS.items():
        assert getattr(lm, key) == value, key
    assert (lm.embedding_size, lm.max_max_epoch) == (cfg.embedding_dim, cfg.pretrain_epochs)
    assert (lm.hidden_size, lm.seed, lm.keep_prob, lm.initializer, lm.optimizer) == (33, 7, 0.6, "glorot", "adam")


# --------------------------------------------------------------------------------------------------- fine-tuning

def char_args(run, data, *extra):
    """A tiny char LM: two layers of 16, 10-character unrolls."""
    return ["--config", "char", "--run_dir", str(run), "--data", str(data), "--num_layers", "2", "--hidden_size",
            "16", "--num_steps", "10", "--batch_size", "8", "--max_max_epoch", "2", "--summary_every", "100",
            "--keep_prob", "1", *extra]


WORDS_A = ["bad", "cab", "dead", "fade", "egg", "hag", "bead", "face", "chef", "head", "beef", "gab"]


def char_text(rng, words, lines):
    """Lines of 5 words drawn from `words`, the first ones likelier: text with structure a small LM learns."""
    p = 1.0 / np.arange(1, len(words) + 1)
    return "".join(" ".join(rng.choice(words, 5, p=p / p.sum())) + "\n" for _ in range(lines))


@pytest.fixture(scope="module")
def char_source(tmp_path_factory):
    """(run, folder of text A): a char LM trained on text A, whose valid.txt holds only characters of its train.txt."""
    folder = tmp_path_factory.mktemp("text_a")
    rng = np.random.RandomState(3)
    (folder / "train.txt").write_text(char_text(rng, WORDS_A, 300))
    (folder / "valid.txt").write_text(char_text(rng, WORDS_A, 30))
    run = folder / "lm"
    assert train.main(char_args(run, folder, "--learning_rate", "0.02", "--max_max_epoch", "3")) == 0
    return run, folder


def fine_tuned_start(source, text, run):
    """The loss of `run`, a char LM on `text` started from `source` and one step at a learning rate of 1e-30 (so
    its weights are its initial ones to float precision), on the source's validation text: (nats a character, the
    source's own, the vocabulary of the run)."""
    (run.parent / "text_b.txt").write_text(text)
    assert train.main(char_args(run, run.parent / "text_b.txt", "--init_from", str(source[0]), "--max_steps", "1",
                                "--learning_rate", "1e-30", "--test_fraction", "0")) == 0
    valid = (source[1] / "valid.txt").read_text()
    losses = []
    for path in (run, source[0]):
        scored = run_dir.RunDir(path)
        log_likelihood, tokens, unknown = sample.text_log_likelihood(scored.load_config(), scored.load_vocab(),
                                                                     scored, None, valid)
        assert unknown == 0
        losses.append(-log_likelihood / tokens)
    return losses[0], losses[1], run_dir.RunDir(run).load_vocab()


def test_a_fine_tuned_language_model_starts_at_its_sources_loss(char_source, tmp_path):
    """Text B is text A's words reversed, in the reverse frequencies: its vocabulary is A's in another order, so
    every embedding row and softmax column moves, and the source's validation loss comes out the same."""
    text_b = char_text(np.random.RandomState(4), [word[::-1] for word in WORDS_A[::-1]], 150)
    loss, source_loss, vocab = fine_tuned_start(char_source, text_b, tmp_path / "b")
    source_vocab = run_dir.RunDir(char_source[0]).load_vocab()
    assert set(vocab.tokens) == set(source_vocab.tokens) and vocab.tokens != source_vocab.tokens
    assert source_loss < np.log(len(vocab)) - 0.5  # the source has learnt something that a fresh start lacks
    assert loss == pytest.approx(source_loss, rel=1e-6), (loss, source_loss)


def test_new_characters_take_little_of_the_known_ones_probability(char_source, tmp_path):
    """Text B has k, o, x, y and z besides A's characters. A softmax normalizes over every token, so theirs is
    probability taken from the known characters: the loss on text A rises by the mean over its positions of
    -log(1 - P(new)), and cannot stay equal. Each starts with the source's smallest bias, as unlikely as the least
    likely character it knows, so the rise is small: 0.027 nats a character (0.748 -> 0.776), where the fresh bias
    0 gave 0.074 (-> 0.822)."""
    text_b = char_text(np.random.RandomState(4), ["yak", "zag", "box"] + WORDS_A, 150)
    loss, source_loss, vocab = fine_tuned_start(char_source, text_b, tmp_path / "b")
    source_vocab = run_dir.RunDir(char_source[0]).load_vocab()
    assert set(vocab.tokens) - set(source_vocab.tokens) == set("koxyz")
    assert source_loss < loss < source_loss + 0.05, (loss, source_loss)


def test_what_cannot_start_a_language_model_is_refused(char_source, cluster_lm, tmp_path, capsys):
    """In one line each: a source of the other level or task, a stack of other shapes or forget bias, no run, a run
    without a checkpoint."""
    classifier, broken = run_dir.RunDir(tmp_path / "classifier"), run_dir.RunDir(tmp_path / "broken")
    classifier.save_config(config.named_config("classify"))
    os.makedirs(broken.path)
    for name in ("config_path", "vocab_path"):
        shutil.copy(getattr(run_dir.RunDir(char_source[0]), name), getattr(broken, name))
    this = "this char language model"
    for source, extra, named in (
            (cluster_lm, small_stack(), "a word language model run; a char language model starts from a char "
                                        "language model"),
            (classifier.path, (), "a classifier run; a char language model starts from a char language model"),
            (char_source[0], ("--hidden_size", "8"), f"the language model has hidden_size 16, {this} 8"),
            (char_source[0], ("--num_layers", "1"), f"num_layers 2, {this} 1; set --num_layers 2"),
            (char_source[0], ("--embedding_size", "4"), f"embedding_size 16, {this} 4"),
            (char_source[0], ("--forget_bias", "0"), f"forget_bias 1.0, {this} 0.0"),
            (tmp_path / "nothing", (), "not a run directory"),
            (broken.path, (), "no checkpoint found")):
        assert train.main(char_args(tmp_path / "x", char_source[1], "--init_from", str(source), *extra)) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --init_from") and named in err[0], (named, err)


def test_a_fine_tuned_run_resumes_from_its_own_checkpoint(char_source, tmp_path, capsys):
    """Only a fresh run reads its source: once started, a run goes on from its checkpoints (its source may be gone).
    Going on with the source's own data is allowed (a classifier of an LM's data is refused)."""
    source = tmp_path / "source"
    shutil.copytree(char_source[0], source)
    args = char_args(tmp_path / "tuned", char_source[1], "--init_from", str(source), "--max_steps", "1")
    assert train.main(args) == 0
    assert "init_from:" in capsys.readouterr().out
    shutil.rmtree(source)
    assert train.main(args[:-1] + ["2"]) == 0
    out = capsys.readouterr().out
    assert "resuming at step 1" in out and "init_from:" not in out
