"""A classifier that starts from a language model of its own LSTM stack (Dai & Le 2015; later ULMFiT).

The language model and the classifier declare the same embedding and layers (rnn_model.declare_weights), so a word
LM run can give a classifier everything but its output layer:
    --init_from RUN_DIR     any word LM run (trained on a larger unlabelled corpus, say);
    --pretrain_epochs N     train.py first trains one on the training split's sentences alone, in RUN_DIR/pretrain
                            (FOLD/pretrain for each fold of a cross-validation), so that no validation or test
                            sentence is ever in its corpus.
The LM's embedding is mapped token by token onto the classifier's vocabulary; its softmax is dropped. The LM reads
forwards, so a --bidirectional classifier's backward layer starts fresh, as its output layer does.
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
# What must agree between the LM and the classifier: the shapes, and the forget bias the layers were trained with.
MATCHING_KEYS = ("num_layers", "hidden_size", "embedding_dim", "forget_bias")


def start_from_language_model(cfg, data, run, stop, train):
    """--init_from, --pretrain_epochs: (exit code, data with the initial weights of the classifier from a word
    language model). Pretraining trains one in RUN_DIR/pretrain (resumed on a rerun; once done it trains no more)
    whose corpus is written from the training split alone, so no validation or test sentence reaches it.
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
        code = train(lm_cfg, lm_data, lm_run, lm_resuming, cluster.LocalRuntime(lm_cfg), stop)  # done: trains nothing
        if code:
            return code, data
        print(f"--- the classifier, from {lm_run}")
        path = lm_run.path
    weights, mapped = initial_weights(path, cfg, data.vocab, data.initial_weights.get("embedding"))
    print(f"init_from: {path}: the LSTM layers, and the embedding of {mapped:,} of {len(data.vocab):,} words")
    return 0, data._replace(initial_weights={**data.initial_weights, **weights})


def lm_config(cfg, corpus_folder):
    """The language model pretrained for classifier `cfg`, for pretrain_epochs epochs on the corpus folder's
    train.txt (its real path, so that however the run directory is spelled, the config is the same). With
    --embeddings it starts from the classifier's vectors (train.py maps them), so the file is read once."""
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


def fresh_embedding(cfg, vocab_size):
    """[vocab_size, embedding_dim] drawn from the distribution of a fresh embedding variable (cfg.initializer)."""
    limit = cfg.init_scale if cfg.initializer == "uniform" else np.sqrt(6.0 / (vocab_size + cfg.embedding_dim))
    return np.random.RandomState(cfg.seed).uniform(-limit, limit, (vocab_size, cfg.embedding_dim)).astype(np.float32)


def lm_start(cfg, lm_vocab, vocab, embedding):
    """The pretraining LM's initial weights: {} from scratch, or with the classifier's pretrained vectors
    (`embedding` over `vocab`) its embedding's rows for the tokens they share."""
    if embedding is None:
        return {}
    rows = fresh_embedding(cfg, len(lm_vocab))
    rows_by_token(embedding, vocab, lm_vocab, rows)
    return {"embedding": rows}


def load_language_model(path, cfg):
    """(config, vocabulary, RunDir) of the word LM run at path, refused in one line unless its stack fits cfg."""
    lm_run = run_dir.RunDir(path)
    if not os.path.exists(lm_run.config_path):
        raise UserError(f"--init_from {path}: not a run directory (no config.json)")
    lm_cfg = lm_run.load_config()
    if lm_cfg.task != "lm" or lm_cfg.level != "word":
        raise UserError(f"--init_from {path}: a {lm_cfg.level + ' ' if lm_cfg.task == 'lm' else ''}{lm_cfg.task} "
                        "run; a classifier starts from a word language model")
    if cfg.data and lm_cfg.data and (lm_cfg.data == cfg.data or
                                     os.path.realpath(lm_cfg.data) == os.path.realpath(cfg.data)):
        raise UserError(f"--init_from {path}: the language model was trained on {lm_cfg.data}, whose test "
                        "sentences this classifier is evaluated on; use --pretrain_epochs, which pretrains on the "
                        "training split alone")
    for key in MATCHING_KEYS:
        if getattr(lm_cfg, key) != getattr(cfg, key):
            name = "embedding_size" if key == "embedding_dim" else key
            raise UserError(f"--init_from {path}: the language model has {name} {getattr(lm_cfg, key)}, this "
                            f"classifier {getattr(cfg, key)}; set --{name} {getattr(lm_cfg, key)}")
    return lm_cfg, lm_run.load_vocab(), lm_run


def initial_weights(path, cfg, vocab, embedding=None):
    """{weight name: array} that starts a classifier over `vocab` from the word LM run at path: every LSTM layer as
    the LM has it, and the embedding row by row for the tokens both vocabularies hold (<unk> too). The other rows
    come from `embedding` (pretrained vectors) or are drawn as a fresh embedding's are (cfg.initializer).
    Returns (weights, rows taken from the LM)."""
    lm_cfg, lm_vocab, lm_run = load_language_model(path, cfg)
    arrays = checkpoints.RunCheckpoints(lm_run).read_weights()
    embedding = fresh_embedding(cfg, len(vocab)) if embedding is None else np.array(embedding, np.float32)
    mapped = rows_by_token(arrays["model/embedding"], lm_vocab, vocab, embedding)
    weights = {"embedding": embedding}
    for layer in range(cfg.num_layers):
        for part in ("kernel_x", "kernel_h", "bias"):
            weights[f"layer_{layer}/{part}"] = arrays[f"model/layer_{layer}/{part}"]
    return weights, mapped
