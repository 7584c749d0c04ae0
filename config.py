"""Every knob of graphlstm in one typed place.

A run is described by a `Config`: start from a named config (`test`, `small`, `medium`, `large` with the values of
the TensorFlow PTB tutorial, `char` for character models, `classify` for sentence classification), then override
single keys on the command line (`--hidden_size=256` or `--hidden_size 256`). The resolved config is written as JSON
into the run directory, and a resumed run is checked against it.

No TensorFlow here: parsing and validation must be instant so that bad input fails fast.
"""
import argparse
import dataclasses
import difflib
import math
import os
from dataclasses import dataclass


class UserError(Exception):
    """Anything the user can fix (a flag, a config, a data file, a run directory): the message is one line naming
    what is wrong, printed as `error: ...` with exit code 1, never a traceback."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag raises UserError (one line) instead of printing the usage and exiting."""

    def error(self, message):
        raise UserError(message)


@dataclass
class Config:
    # --- what to train on
    task: str = "lm"  # "lm" (language model) or "classify" (sentence classifier)
    data: str = ""  # dataset name from the registry or a path; "" = the embedded default corpus
    level: str = "word"  # lm only: "word" or "char" tokens
    encoding: str = "utf-8"  # text encoding of the data files ("auto" tries utf-8, cp1252, then latin-1)
    vocab_size: int = 10000  # cap on the vocabulary including specials; 0 = no cap
    min_count: int = 1  # tokens seen fewer times in the training split become <unk>
    valid_fraction: float = 0.05  # share of the data held out for validation when no split is given
    test_fraction: float = 0.05  # share of the data held out for testing when no split is given
    # --- model
    num_layers: int = 2  # LSTM layers stacked, each with its own weights
    hidden_size: int = 200  # LSTM units per layer
    embedding_size: int = 0  # token embedding width; 0 = hidden_size (as the PTB tutorial)
    num_steps: int = 20  # unrolled time steps (lm: BPTT length; classify: max sentence length)
    forget_bias: float = 0.0  # added to the forget gate pre-activation (PTB uses 0.0, char-rnn 1.0)
    keep_prob: float = 1.0  # dropout keep probability on embeddings and layer outputs; 1.0 = no dropout
    initializer: str = "uniform"  # weights start "uniform" in [-init_scale, init_scale] (PTB tutorial) or "glorot"
    init_scale: float = 0.1  # initializer "uniform": the bound of the weights' uniform range; biases start at zero
    # --- optimisation
    optimizer: str = "sgd"  # "sgd", "adam" or "rmsprop"
    learning_rate: float = 1.0  # initial learning rate
    lr_decay: float = 0.5  # learning rate multiplier per epoch once past max_epoch
    max_epoch: int = 4  # epochs trained at the initial learning rate
    max_max_epoch: int = 13  # total epochs
    patience: int = 0  # stop after this many epochs without a better validation metric; 0 = train every epoch
    max_grad_norm: float = 5.0  # gradients are clipped to this global norm
    weight_decay: float = 0.0  # L2 penalty on the weight matrices (LSTM kernels, output layer), not embeddings/biases
    batch_size: int = 20  # sequences per batch
    eval_batch_size: int = 0  # sequences per validation/test batch; 0 = batch_size
    seed: int = 1234  # seeds initialisation, dropout masks and shuffling: same seed, same run
    # --- classification
    pooling: str = "mean"  # classify: "mean" (masked mean over real steps), "last" (last real step) or "max"
    bidirectional: bool = False  # classify: make the top layer bidirectional
    embeddings: str = ""  # word vectors to start the embedding from: a GloVe/word2vec file or a registry name
    train_embeddings: bool = True  # keep training an embedding that started pretrained (vectors or a language model)
    word_dropout: float = 0.0  # classify: while training, each token becomes <unk> with this probability
    init_from: str = ""  # classify: a word language-model run whose embedding and LSTM layers start the classifier
    pretrain_epochs: int = 0  # classify: epochs of a word LM pretrained on the training sentences only; 0 = none
    label_mode: str = "coarse"  # classify, TREC-style labels: "coarse" (ABBR, ...) or "fine" (ABBR:abb, ...)
    cv: int = 0  # classify: K-fold cross-validation over all the data when > 1
    bucket: bool = True  # classify: batch sentences of similar length together, each bucket its own unroll
    # --- running
    max_steps: int = 0  # stop (with a checkpoint) after this global step; 0 = train all epochs
    checkpoint_every: int = 0  # also save the latest checkpoint every N steps; 0 = once per epoch
    summary_every: int = 10  # write step summaries to TensorBoard every N steps
    device: str = "cpu"  # "cpu" or "gpu"
    xla: bool = False  # XLA auto-clustering (JIT) of the whole graph
    xla_loss: bool = True  # XLA-compile the softmax loss and its gradient (the matmuls stay on oneDNN)
    precision: str = "float32"  # matmul inputs: "float32", or "bfloat16" (mixed: weights, state and sums stay float32)
    intra_op_threads: int = 0  # threads inside one op; 0 = TensorFlow's default (all cores)
    inter_op_threads: int = 0  # ops run in parallel; 0 = TensorFlow's default

    @property
    def embedding_dim(self):
        return self.embedding_size or self.hidden_size

    @property
    def evaluation_batch_size(self):
        return self.eval_batch_size or self.batch_size


def _named(**overrides):
    return dataclasses.replace(Config(), **overrides)


# The PTB tutorial's four configs (Zaremba et al. 2014 for medium and large), word level with a 10k vocabulary.
CONFIGS = {
    "test": _named(init_scale=0.1, learning_rate=1.0, max_grad_norm=1, num_layers=1, num_steps=2, hidden_size=2,
                   max_epoch=1, max_max_epoch=1, keep_prob=1.0, lr_decay=0.5, batch_size=20),
    "small": _named(init_scale=0.1, learning_rate=1.0, max_grad_norm=5, num_layers=2, num_steps=20, hidden_size=200,
                    max_epoch=4, max_max_epoch=13, keep_prob=1.0, lr_decay=0.5, batch_size=20),
    "medium": _named(init_scale=0.05, learning_rate=1.0, max_grad_norm=5, num_layers=2, num_steps=35,
                     hidden_size=650, max_epoch=6, max_max_epoch=39, keep_prob=0.5, lr_decay=0.8, batch_size=20),
    "large": _named(init_scale=0.04, learning_rate=1.0, max_grad_norm=10, num_layers=2, num_steps=35,
                    hidden_size=1500, max_epoch=14, max_max_epoch=55, keep_prob=0.35, lr_decay=1 / 1.15,
                    batch_size=20),
    # Character model in the spirit of char-rnn: Adam, longer unroll, forget bias 1; 2x256 so that tinyshakespeare
    # trains on a couple of CPU cores (the README's results table has the time).
    "char": _named(level="char", vocab_size=0, init_scale=0.08, optimizer="adam", learning_rate=0.002,
                   max_grad_norm=5, num_layers=2, num_steps=100, hidden_size=256, max_epoch=6, max_max_epoch=16,
                   keep_prob=0.9, lr_decay=0.85, batch_size=32, forget_bias=1.0),
    # Sentence classifier: one layer, sentences up to 60 tokens, masked mean pooling. Patience 3: on MR, CR and TREC
    # the same or better accuracy than all 10 epochs, in 51-100% of the time (README, Results).
    "classify": _named(task="classify", encoding="auto", vocab_size=0, valid_fraction=0.1, test_fraction=0.1,
                       num_layers=1, hidden_size=150, embedding_size=300, num_steps=60, keep_prob=0.5,
                       forget_bias=1.0, optimizer="adam", learning_rate=0.002, lr_decay=0.8, max_epoch=4,
                       max_max_epoch=10, patience=3, max_grad_norm=5, batch_size=50, init_scale=0.1),
}
# The classifier from pretrained vectors: GloVe 6B at 50 dimensions, fine-tuned, under a bidirectional layer with
# max pooling; with 50-wide inputs it wants less dropout and a faster start. Each change was kept because it raised
# the mean validation accuracy (never the test's) over MR and CR, the review-polarity sets (README, Results).
CONFIGS["classify_glove"] = dataclasses.replace(CONFIGS["classify"], embeddings="glove.6B.50d", embedding_size=50,
                                                bidirectional=True, pooling="max", keep_prob=0.7, learning_rate=0.004)
# ... started from a language model of its stack trained on the training sentences: better on TREC's validation
# split (question types), worse on MR's and CR's (review polarity), so the recipe for questions.
CONFIGS["classify_glove_lm"] = dataclasses.replace(CONFIGS["classify_glove"], pretrain_epochs=6)
DEFAULT_CONFIG = "small"

CHOICES = {
    "task": ("lm", "classify"),
    "level": ("word", "char"),
    "optimizer": ("sgd", "adam", "rmsprop"),
    "pooling": ("mean", "last", "max"),
    "label_mode": ("coarse", "fine"),
    "device": ("cpu", "gpu"),
    "precision": ("float32", "bfloat16"),
    "initializer": ("uniform", "glorot"),
}
POSITIVE = ("num_layers", "hidden_size", "num_steps", "batch_size", "max_max_epoch", "summary_every")
NON_NEGATIVE = ("vocab_size", "embedding_size", "eval_batch_size", "max_epoch", "max_steps", "checkpoint_every",
                "patience", "intra_op_threads", "inter_op_threads", "min_count", "seed", "pretrain_epochs")
# Keys that may change when a run is resumed; every other key shapes the model or its data and must match.
RESUMABLE_KEYS = ("max_max_epoch", "patience", "eval_batch_size", "learning_rate", "max_grad_norm", "weight_decay",
                  "word_dropout", "max_steps", "checkpoint_every", "summary_every", "device", "xla", "xla_loss",
                  "precision", "intra_op_threads", "inter_op_threads")
# The static unroll builds num_steps copies of the cell's ops in every graph (~30 ops a step and layer, forward and
# backward): past this the graph takes longer to build than to train an epoch of most data sets.
MAX_NUM_STEPS = 1000
INT32_MAX = 2 ** 31 - 1
FLOAT32_MAX = 3.4028234663852886e38
# The largest value of each integer key, with why (and what to do, where that is not obvious); every other integer
# key is at most INT32_MAX: sizes, steps and batch sizes reach TensorFlow as int32 shapes, variables and feeds, and a
# bound keeps the memory estimate's arithmetic in floating-point range.
INT_MAXIMUM = {
    # TensorFlow reduces graph seeds modulo 2**31 - 1 (2**31 - 1 would repeat seed 0); NumPy's RandomState takes up
    # to 2**32 - 1, which leaves room for the seed + fold of cross-validation and the (seed, epoch) pairs.
    "seed": (2 ** 31 - 2, "TensorFlow takes graph seeds modulo 2**31 - 1", ""),
    # ConfigProto's int32 fields; TensorFlow starts a thread for each, so far fewer than int32 allows.
    "intra_op_threads": (1024, "TensorFlow starts a thread for each", "; 0 uses every core"),
    "inter_op_threads": (1024, "TensorFlow starts a thread for each", "; 0 uses TensorFlow's default"),
    "num_steps": (MAX_NUM_STEPS, "the graph unrolls every step statically",
                  "; truncate sentences or train a language model on shorter windows"),
    # Each layer is another copy of the unrolled cell in every graph: 100 layers of 2 steps take ~30 s to build.
    "num_layers": (100, "every layer is another unrolled copy of the cell in each graph", ""),
}

# What a config written before a key existed meant by leaving it out, where that differs from today's default.
BEFORE_KEY_EXISTED = {"initializer": "glorot"}

FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _field_type(name):
    return type(getattr(Config(), name))


def shown(value, width=24):
    """A value for an error message: a number of thousands of digits is cut, so the message stays one short line."""
    text = str(value)
    return text if len(text) <= width else f"{text[:width]}... ({len(text)} characters)"


def parse_value(key, text):
    """Turns the command-line text of `key` into the field's type, or raises UserError."""
    kind = _field_type(key)
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise UserError(f"--{key}: expected true or false, got '{text}'")
    try:
        return kind(text)
    except ValueError:
        raise UserError(f"--{key}: expected {kind.__name__}, got '{shown(text)}'") from None


def validate(cfg):
    """Raises UserError naming the first impossible value: a value out of its range, then keys that do not go
    together, then what float32 cannot hold."""
    check_ranges(cfg)
    check_combinations(cfg)
    check_float32(cfg)
    return cfg


def check_ranges(cfg):
    """Each key on its own: its choices, its bounds."""
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise UserError(f"--{key}: must be one of {', '.join(allowed)}, got '{getattr(cfg, key)}'")
    for key in (k for k in FIELDS if _field_type(k) is int):
        bound, why, advice = INT_MAXIMUM.get(key, (INT32_MAX, "the int32 range of TensorFlow's shapes and feeds", ""))
        if getattr(cfg, key) > bound:
            raise UserError(f"--{key}: at most {bound} ({why}), got {shown(getattr(cfg, key))}{advice}")
    for key in POSITIVE:
        if getattr(cfg, key) <= 0:
            raise UserError(f"--{key}: must be positive, got {getattr(cfg, key)}")
    for key in NON_NEGATIVE:
        if getattr(cfg, key) < 0:
            raise UserError(f"--{key}: must not be negative, got {getattr(cfg, key)}")
    for key in ("learning_rate", "max_grad_norm", "init_scale", "lr_decay"):
        value = getattr(cfg, key)
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"--{key}: must be a positive number, got {value}")
    if not 0.0 < cfg.keep_prob <= 1.0:
        raise UserError(f"--keep_prob: must be in (0, 1], got {cfg.keep_prob}")
    if not 0.0 <= cfg.word_dropout < 1.0:
        raise UserError(f"--word_dropout: must be in [0, 1), got {cfg.word_dropout}")
    if not (math.isfinite(cfg.weight_decay) and cfg.weight_decay >= 0):
        raise UserError(f"--weight_decay: must be a non-negative number, got {cfg.weight_decay}")
    for key in ("valid_fraction", "test_fraction"):
        if not 0.0 <= getattr(cfg, key) < 1.0:
            raise UserError(f"--{key}: must be in [0, 1), got {getattr(cfg, key)}")
    if cfg.cv == 1 or cfg.cv < 0:
        raise UserError(f"--cv: must be 0 (off) or at least 2 folds, got {cfg.cv}")
    if cfg.vocab_size and cfg.vocab_size < 3:
        raise UserError(f"--vocab_size: must be 0 (no cap) or at least 3, got {cfg.vocab_size}")


def check_combinations(cfg):
    """Keys that do not go together."""
    for key in ("word_dropout", "init_from", "pretrain_epochs"):
        if getattr(cfg, key) and cfg.task != "classify":
            raise UserError(f"--{key}: for --task classify (a language model trains from scratch)")
    if cfg.embeddings and cfg.level == "char" and cfg.task == "lm":
        raise UserError("--embeddings: word vectors are for word-level models, not --level char")
    if cfg.init_from and cfg.pretrain_epochs:
        raise UserError("--init_from and --pretrain_epochs: choose one (pretraining makes its own language model)")
    if cfg.valid_fraction + cfg.test_fraction >= 1.0:
        raise UserError("--valid_fraction plus --test_fraction must leave some data for training")
    if cfg.cv and cfg.task != "classify":
        raise UserError("--cv: cross-validation is for --task classify")
    if cfg.cv and cfg.max_steps:
        raise UserError("--max_steps: not with --cv (every fold trains its whole schedule)")


def check_float32(cfg):
    """What the graph, computing in float32, cannot hold (after the keys' own ranges, which say more)."""
    for key in (k for k in FIELDS if _field_type(k) is float):
        value = getattr(cfg, key)
        if not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
            # The graph computes in float32: a larger value would become infinite there.
            raise UserError(f"--{key}: must be a finite number within float32's range (+-3.4e38), got {value}")
    decay_epochs = max(cfg.max_max_epoch - cfg.max_epoch, 0)
    if cfg.lr_decay > 1 and decay_epochs * math.log(cfg.lr_decay) + max(math.log(cfg.learning_rate), 0) > \
            math.log(FLOAT32_MAX):
        # train.py computes learning_rate * lr_decay ** epochs in Python floats and feeds it as float32.
        raise UserError(f"--lr_decay: {cfg.lr_decay:g} per epoch for {decay_epochs} epochs (--max_max_epoch "
                        f"{cfg.max_max_epoch} after --max_epoch {cfg.max_epoch}) takes the learning rate past "
                        f"float32's range (3.4e38); use an lr_decay of at most 1, or fewer epochs")


def memory_estimate(cfg, vocab_size, num_classes=0):
    """Bytes a training process needs at least: the weights with their gradients and optimizer slots, and what the
    static unroll keeps for the backward pass (per step and layer: the gates, cells and outputs, ~11 [B, H] floats;
    for a language model also ~3 copies of the [T*B, V] logits)."""
    embedding, hidden, layers = cfg.embedding_dim, cfg.hidden_size, cfg.num_layers
    parameters = vocab_size * embedding + 4 * hidden * ((embedding + hidden + 1) + (layers - 1) * (2 * hidden + 1))
    parameters += (hidden + 1) * (vocab_size if cfg.task == "lm" else num_classes * (2 if cfg.bidirectional else 1))
    copies = 2 + {"sgd": 0, "adam": 2, "rmsprop": 2}[cfg.optimizer]  # weights, gradients, optimizer slots
    activations = cfg.num_steps * cfg.batch_size * (layers * 11 * hidden + (3 * vocab_size if cfg.task == "lm" else 0))
    return 4 * (copies * parameters + activations)


def available_memory():
    """Bytes of memory available to a new process (MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_description():
    """'MODEL (N cores; bfloat16 instructions: FLAGS)' from /proc/cpuinfo: the ratios hold for this CPU only."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    bf16 = sorted(set(text.split()) & {"amx_bf16", "avx512_bf16"})
    cores = len(os.sched_getaffinity(0))  # the cores this process may use (a container's limit), not the host's
    return f"{model} ({cores} cores; bfloat16 instructions: {', '.join(bf16) or 'none'})"


def check_memory(cfg, vocab_size, num_classes=0):
    """Refuses, before the graph is built, a model whose estimate exceeds the memory available."""
    needed, available = memory_estimate(cfg, vocab_size, num_classes), available_memory()
    if available and needed > available:
        raise UserError(f"the model needs about {needed / 2 ** 30:,.1f} GiB (hidden_size {cfg.hidden_size}, "
                        f"num_steps {cfg.num_steps}, batch_size {cfg.batch_size}, vocabulary {vocab_size:,}), and "
                        f"{available / 2 ** 30:,.1f} GiB are available: make it smaller")


def unknown_argument(arg):
    """The one-line complaint about an argument that is neither a script flag nor a config key."""
    if not arg.startswith("--"):
        return f"unexpected argument '{arg}' (config keys are given as --key=value)"
    name = arg[2:].split("=", 1)[0]
    close = difflib.get_close_matches(name, FIELDS, n=1)
    return f"unknown config key '--{name}'" + (f" (did you mean --{close[0]}?)" if close else " (see --help)")


def apply_overrides(cfg, overrides):
    """Returns a copy of cfg with the {key: text} overrides parsed and applied, validated."""
    values = {}
    for key, text in overrides.items():
        if key not in FIELDS:
            raise UserError(unknown_argument(f"--{key}"))
        values[key] = text if not isinstance(text, str) else parse_value(key, text)
    return validate(dataclasses.replace(cfg, **values))


def split_overrides(argv):
    """Splits `--key=value` / `--key value` arguments into ({key: text}, rest) for the config keys only."""
    overrides, rest, i = {}, [], 0
    while i < len(argv):
        arg = argv[i]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if name and name.startswith("no_") and name[3:] in FIELDS and _field_type(name[3:]) is bool and "=" not in arg:
            overrides[name[3:]] = "false"
        elif name in FIELDS:
            if "=" in arg:
                overrides[name] = arg.split("=", 1)[1]
            elif _field_type(name) is bool and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
                overrides[name] = "true"  # a bare boolean flag: --xla
            elif i + 1 < len(argv):
                overrides[name] = argv[i + 1]
                i += 1
            else:
                raise UserError(f"--{name}: missing value")
        else:
            rest.append(arg)
        i += 1
    return overrides, rest


def named_config(name):
    if name not in CONFIGS:
        raise UserError(f"unknown config '{name}' (known: {', '.join(CONFIGS)})")
    return CONFIGS[name]


def to_dict(cfg):
    return dataclasses.asdict(cfg)


def from_values(values, source):
    """A validated Config from a JSON object (a run's config.json or a user's config file); `source` names the
    file in errors. Keys left out take their defaults, so a config written before a key existed still loads."""
    if not isinstance(values, dict):
        raise UserError(f"{source}: expected a JSON object of config keys")
    cfg = dataclasses.replace(Config(), **{k: v for k, v in BEFORE_KEY_EXISTED.items() if k not in values})
    for key, value in values.items():
        if key not in FIELDS:
            raise UserError(f"{source}: unknown config key '{key}'")
        kind = _field_type(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise UserError(f"{source}: key '{key}' should be {kind.__name__}, got {value!r}")
        cfg = dataclasses.replace(cfg, **{key: value})
    try:
        return validate(cfg)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None


def differences(saved, current):
    """Keys that shape the model or its data and differ between two configs: [(key, saved, current)]."""
    return [(k, getattr(saved, k), getattr(current, k)) for k in FIELDS
            if k not in RESUMABLE_KEYS and getattr(saved, k) != getattr(current, k)]


def help_text():
    """One line per key with its default and comment, for --help."""
    import inspect
    lines, source = [], inspect.getsource(Config).splitlines()
    for line in source:
        stripped = line.strip()
        if stripped.startswith("# ---"):
            lines.append(stripped[2:].strip(" -"))
            continue
        name = stripped.split(":", 1)[0]
        if name in FIELDS and "#" in stripped:
            comment = stripped.split("#", 1)[1].strip()
            default = getattr(Config(), name)
            lines.append(f"  --{name:<18} {comment} [default {default!r}]")
    return "\n".join(lines)


def tensorflow_environment(cfg, verbose=False):
    """Environment TensorFlow reads once at import, so it is set before the first `import tf1`."""
    if not verbose:
        # Level 3: errors that matter reach the user as Python exceptions; the rest (no CUDA driver on a CPU
        # machine, oneDNN notes) is noise.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if cfg.xla and "--tf_xla_cpu_global_jit" not in os.environ.get("TF_XLA_FLAGS", ""):
        # Auto-clustering on CPU also needs this flag besides the session's global_jit_level.
        os.environ["TF_XLA_FLAGS"] = (os.environ.get("TF_XLA_FLAGS", "") + " --tf_xla_cpu_global_jit").strip()
