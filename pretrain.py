"""Runs that start from a language model of their own LSTM stack: a classifier (Dai & Le 2015; later ULMFiT), or a
language model fine-tuned on new text (as nanoGPT's and char-rnn's init_from: Shakespeare, then one author).

Language models and classifiers declare the same embedding and layers (rnn_model.declare_weights), so an LM run can
start another run of its stack:
    --init_from RUN_DIR     a classifier: any word LM run (trained on a larger unlabelled corpus, say), whose
                            softmax it drops; a language model: an LM run of its level (char or word), whose
                            softmax it keeps;
    --pretrain_epochs N     train.py first trains one on the training split's sentences alone, in RUN_DIR/pretrain
                            (FOLD/pretrain for each fold of a cross-validation), so that no validation or test
                            sentence is ever in its corpus.
Each run builds its vocabulary from its own data, and the LM's embedding rows (and softmax columns) are mapped token
by token onto it; the LSTM layers are copied as they are. The LM reads forwards, so a --bidirectional classifier's
backward layer starts fresh, as its output layer does.
"""
import dataclasses
import os

import numpy as np

import cluster
import checkpoints
import config
import data_handler
import run_dir
import text_io
from config import UserError

# The pretraining language model's own settings. Every other key is the classifier's where config.py declares it
# inherited (the stack, dropout, initialisation, seed, device, precision, ...), else its default.
LM_SETTINGS = dict(
    task="lm", level="word", encoding="utf-8", vocab_size=0, min_count=1,  # the corpus: the training sentences
    valid_fraction=0.05, test_fraction=0.0,  # the end of those sentences validates it (picks its best checkpoint)
    # Adam at 0.01 whatever the classifier's optimizer: at the classifier recipes' 0.002 a CR fold's LM had a
    # validation perplexity of 264 after 8 epochs, at 0.01 184 (flat after 6) (benchmarks/README.md).
    optimizer="adam", learning_rate=0.01, max_epoch=0, lr_decay=1.0, patience=0,  # a constant rate, every epoch
    num_steps=35,  # the PTB medium/large unroll
    batch_size=20,  # the PTB tutorial's
    eval_batch_size=1)  # in one row, so that the few sentences of a small set fill a batch
# What must agree between the LM and the run it starts: the shapes, and the forget bias the layers were trained with.
MATCHING_KEYS = ("num_layers", "hidden_size", "embedding_dim", "forget_bias")
# What is mapped token by token from the LM onto the run's vocabulary, by task: a classifier has no softmax.
MAPPED = {"classify": ("embedding",), "lm": ("embedding", "softmax")}


def start_from_language_model(cfg, data, run, stop, train):
    """--init_from, --pretrain_epochs: (exit code, data with the initial weights from a language model: a classifier's
    from a word LM, a language model's from one of its level). Pretraining (classifiers only) trains one in
    RUN_DIR/pretrain (resumed on a rerun; once done it trains no more) whose corpus is written from the training
    split alone, so no validation or test sentence reaches it.
    train: train.py's, which trains the language model as any run."""
    path = cfg.init_from
    if cfg.pretrain_epochs:
        run.save_config(cfg)  # what a rerun is checked against, from the first pretraining step on
        lm_run = run.pretrain()
        corpus = write_corpus(lm_run, [data.vocab.decode(ids) for ids in data.splits["train"][0]])
        lm_cfg = lm_config(cfg, corpus)
        lm_resuming = lm_run.check_config(lm_cfg)
        print(f"--- pretraining a word language model on the {len(data.splits['train'][0]):,} training sentences "
              f"for {cfg.pretrain_epochs} epochs")
        try:
            lm_data = data_handler.task_data(lm_cfg)
        except UserError as e:
            raise UserError(f"--pretrain_epochs: {e}") from None
        lm_data = lm_data._replace(initial_weights=lm_start(lm_cfg, lm_data.vocab, data.vocab,
                                                            data.initial_weights.get("embedding")))
        code = train(lm_cfg, lm_data, lm_run, lm_resuming, cluster.LocalRuntime(lm_cfg), stop)  # once finished, a rerun trains nothing
        if code:
            return code, data
        print(f"--- the classifier, from {lm_run}")
        path = lm_run.path
    weights, mapped = initial_weights(path, cfg, data.vocab, data.initial_weights.get("embedding"))
    print(f"init_from: {path}: the LSTM layers, and the {' and '.join(MAPPED[cfg.task])} of {mapped:,} of "
          f"{len(data.vocab):,} {'characters' if kind(cfg) == 'char language model' else 'words'}")
    return 0, data._replace(initial_weights={**data.initial_weights, **weights})


def lm_config(cfg, corpus_folder):
    """The language model pretrained for classifier `cfg`, for pretrain_epochs epochs on the corpus folder's
    train.txt (its real path, so that however the run directory is spelled, the config is the same). With
    --embeddings it starts from the classifier's vectors (lm_start maps them), so the file is read once."""
    inherited = {key: getattr(cfg, key) for key in config.INHERITED_KEYS}
    return config.validate(dataclasses.replace(
        config.Config(), **LM_SETTINGS, **inherited, data=os.path.realpath(corpus_folder),
        embedding_size=cfg.embedding_dim, max_max_epoch=cfg.pretrain_epochs))


def write_corpus(lm_run, texts):
    """The classifier's training sentences (token lists) as the LM's corpus, LM_RUN/corpus/train.txt: one tokenized
    sentence a line, which the LM reads back as the same tokens with <eos> at each line end. A language model that
    has started on other sentences (the data, its split or the seed changed since) is refused: it may have seen
    what are now validation or test sentences. Returns the corpus folder."""
    folder = os.path.join(lm_run.path, "corpus")
    path, text = os.path.join(folder, "train.txt"), "".join(" ".join(tokens) + "\n" for tokens in texts if tokens)
    if lm_run.has_checkpoint() and (not os.path.exists(path) or text_io.read_text(path) != text):
        raise UserError(f"{lm_run}: its language model was trained on other sentences than this training split "
                        "(--data, a fraction, --cv or --seed changed); remove that folder or train into another "
                        "--run_dir")
    os.makedirs(folder, exist_ok=True)
    run_dir.write_text(path, text)
    return folder


def rows_by_token(source, source_vocab, vocab, rows):
    """Copies into rows [len(vocab), E] the row of source [len(source_vocab), E] of every token both vocabularies
    hold; returns how many."""
    copied = 0
    for i, token in enumerate(vocab.tokens):
        if token in source_vocab:
            rows[i] = source[source_vocab.id(token)]
            copied += 1
    return copied


def fresh_weights(cfg, shape, stream=0):
    """A [rows, columns] matrix drawn as a fresh weight variable of that shape is (cfg.initializer: uniform in
    +-init_scale, or Glorot's uniform); another stream of the same seed for another matrix, so that two of the same
    shape are not the same draw."""
    limit = cfg.init_scale if cfg.initializer == "uniform" else np.sqrt(6.0 / sum(shape))
    rng = np.random.RandomState([cfg.seed, stream] if stream else cfg.seed)
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def lm_start(cfg, lm_vocab, vocab, embedding):
    """The pretraining LM's initial weights: {} from scratch, or with the classifier's pretrained vectors
    (`embedding` over `vocab`) its embedding's rows for the tokens they share."""
    if embedding is None:
        return {}
    rows = fresh_weights(cfg, (len(lm_vocab), cfg.embedding_dim))
    rows_by_token(embedding, vocab, lm_vocab, rows)
    return {"embedding": rows}


def kind(cfg):
    """What a run is, in words: "classifier", "char language model"."""
    return "classifier" if cfg.task == "classify" else f"{cfg.level} language model"


def load_language_model(path, cfg):
    """(config, vocabulary, {variable name: array}) of the LM run at path, refused in one line unless it can start
    a run of cfg (check_language_model)."""
    lm_run = run_dir.RunDir(path)
    if not os.path.exists(lm_run.config_path):
        raise UserError(f"--init_from {path}: not a run directory (no config.json)")
    lm_cfg = said_as_init_from(lm_run.load_config)
    check_language_model(path, lm_cfg, cfg)
    return (lm_cfg, said_as_init_from(lm_run.load_vocab),
            said_as_init_from(checkpoints.RunCheckpoints(lm_run).read_weights))


def said_as_init_from(read):
    """read()'s value; its error (a damaged file, no checkpoint) as one of --init_from's."""
    try:
        return read()
    except UserError as e:
        raise UserError(f"--init_from: {e}") from None


def check_language_model(path, lm_cfg, cfg):
    """Refuses in one line the run at path (config lm_cfg) as the start of a run of cfg unless a classifier starts
    from a word LM and a language model from one of its level, and the stacks match (MATCHING_KEYS)."""
    level = "word" if cfg.task == "classify" else cfg.level
    if lm_cfg.task != "lm" or lm_cfg.level != level:
        raise UserError(f"--init_from {path}: a {kind(lm_cfg)} run; a {kind(cfg)} starts from a {level} language model")
    # A classifier is tested on sentences of its --data, which an LM of that data has read. A language model may go
    # on with its source's data: split by the same fractions, its validation and test text are the source's, unread.
    if cfg.task == "classify" and cfg.data and lm_cfg.data and (
            lm_cfg.data == cfg.data or os.path.realpath(lm_cfg.data) == os.path.realpath(cfg.data)):
        raise UserError(f"--init_from {path}: the language model was trained on {lm_cfg.data}, whose test "
                        "sentences this classifier is evaluated on; use --pretrain_epochs, which pretrains on the "
                        "training split alone")
    for key in MATCHING_KEYS:
        if getattr(lm_cfg, key) != getattr(cfg, key):
            name = "embedding_size" if key == "embedding_dim" else key
            raise UserError(f"--init_from {path}: the language model has {name} {getattr(lm_cfg, key)}, this "
                            f"{kind(cfg)} {getattr(cfg, key)}; set --{name} {getattr(lm_cfg, key)}")


def initial_weights(path, cfg, vocab, embedding=None):
    """{weight name: array} that starts a run over `vocab` from the LM run at path: every LSTM layer as the LM has
    it, and the embedding row by row for the tokens both vocabularies hold (<unk> too). The other rows come from
    `embedding` (pretrained vectors) or are drawn as a fresh embedding's are (cfg.initializer). A language model
    takes the softmax too (softmax_start). Returns (weights, rows taken from the LM)."""
    _, lm_vocab, arrays = load_language_model(path, cfg)
    if embedding is None:
        embedding = fresh_weights(cfg, (len(vocab), cfg.embedding_dim))
    embedding = np.array(embedding, np.float32)
    mapped = rows_by_token(arrays["model/embedding"], lm_vocab, vocab, embedding)
    weights = {"embedding": embedding}
    for layer in range(cfg.num_layers):
        for part in ("kernel_x", "kernel_h", "bias"):
            weights[f"layer_{layer}/{part}"] = arrays[f"model/layer_{layer}/{part}"]
    if cfg.task == "lm":
        weights.update(softmax_start(cfg, arrays["model/softmax/weights"], arrays["model/softmax/bias"], lm_vocab,
                                     vocab))
    return weights, mapped


def softmax_start(cfg, lm_weights, lm_bias, lm_vocab, vocab):
    """A language model's softmax over `vocab` from the LM's (weights [H, V'], bias [V']), token by token. A token the
    LM never saw gets fresh weights, and the LM's smallest bias: as unlikely as the least likely token it knows. Its
    probability comes out of the known tokens', and so raises their loss, a little (a fresh bias, 0, raised it
    nearly three times as much in tests/test_pretrain.py), yet stays high enough for the new text to teach it
    quickly (a bias of -30 would cost 30 nats at each of its first occurrences, and a long climb)."""
    weights = fresh_weights(cfg, (cfg.hidden_size, len(vocab)), stream=1)
    bias = np.full(len(vocab), lm_bias.min(), np.float32)
    rows_by_token(lm_weights.T, lm_vocab, vocab, weights.T)  # a token's column, a row of the transposes (views)
    rows_by_token(lm_bias, lm_vocab, vocab, bias)
    return {"softmax/weights": weights, "softmax/bias": bias}
