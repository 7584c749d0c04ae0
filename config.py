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
from typing import NamedTuple


class UserError(Exception):
    """Anything the user can fix (a flag, a config, a data file, a run directory): the message is one line naming
    what is wrong, printed as `error: ...` with exit code 1, never a traceback."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag raises UserError (one line) instead of printing the usage and exiting."""

    def error(self, message):
        raise UserError(message)


INT32_MAX = 2 ** 31 - 1
FLOAT32_MAX = 3.4028234663852886e38
# The static unroll builds num_steps copies of the cell's ops in every graph (~30 ops a step and layer, forward and
# backward): past this the graph takes longer to build than to train an epoch of most data sets.
MAX_NUM_STEPS = 1000
# Weights, gradients and slots per weight of each optimizer (the memory estimate's); its choices are these names.
OPTIMIZER_COPIES = {"sgd": 2, "adam": 4, "rmsprop": 4}


@dataclass(frozen=True)
class Key:
    """What is declared about one config key, beside its default: everything else (--help, validation, the resume
    check, the pretraining language model's config, the README's tables) is derived from this."""
    help: str  # one line for --help and the README
    choices: tuple = ()  # the allowed values of a str key
    bounds: str = ""  # the range of a number, "[0, 1)" or "(0, inf)"; an int's maximum defaults to INT32_MAX
    why_maximum: str = "the int32 range of TensorFlow's shapes and feeds"  # said when an int is over its maximum
    advice: str = ""  # appended to that message: what to do instead
    zero: str = ""  # an int whose 0 means this ("off") and whose other values start at the bounds' minimum
    resumable: bool = False  # may change when a run is resumed (it shapes neither the model nor its data)
    inherited: bool = False  # the pretraining language model of a classifier takes the classifier's value
    before: object = None  # what a config written before the key existed meant by leaving it out (None: the default)
    leading: bool = False  # TensorBoard's HParams lists it first: its table shows 5 keys at first, so at most 5 lead


def key(default, help, **declared):
    return dataclasses.field(default=default, metadata={"key": Key(help, **declared)})


@dataclass
class Config:
    # --- what to train on
    task: str = key("lm", "\"lm\" (language model) or \"classify\" (sentence classifier)", choices=("lm", "classify"),
                    leading=True)
    data: str = key("", "dataset name from the registry or a path; \"\" = the embedded default corpus",
                    leading=True)
    level: str = key("word", "lm only: \"word\" or \"char\" tokens", choices=("word", "char"), leading=True)
    encoding: str = key("utf-8", "text encoding of the data files (\"auto\" tries utf-8, cp1252, then latin-1)")
    vocab_size: int = key(10000, "cap on the vocabulary including specials", bounds="[3, inf)", zero="no cap")
    min_count: int = key(1, "tokens seen fewer times in the training split become <unk>", bounds="[0, inf)")
    valid_fraction: float = key(0.05, "share of the data held out for validation when no split is given",
                                bounds="[0, 1)")
    test_fraction: float = key(0.05, "share of the data held out for testing when no split is given",
                               bounds="[0, 1)")
    # --- model
    num_layers: int = key(2, "LSTM layers stacked, each with its own weights", bounds="[1, 100]", inherited=True,
                          leading=True,
                          why_maximum="every layer is another unrolled copy of the cell in each graph")
    hidden_size: int = key(200, "LSTM units per layer", bounds="[1, inf)", inherited=True, leading=True)
    embedding_size: int = key(0, "token embedding width; 0 = hidden_size (as the PTB tutorial)", bounds="[0, inf)")
    num_steps: int = key(20, "unrolled time steps (lm: BPTT length; classify: max sentence length)",
                         bounds=f"[1, {MAX_NUM_STEPS}]", why_maximum="the graph unrolls every step statically",
                         advice="; truncate sentences or train a language model on shorter windows")
    forget_bias: float = key(0.0, "added to the forget gate pre-activation (PTB uses 0.0, char-rnn 1.0)",
                             inherited=True)
    keep_prob: float = key(1.0, "dropout keep probability on embeddings and layer outputs; 1.0 = no dropout",
                           bounds="(0, 1]", inherited=True)
    initializer: str = key("uniform", "weights start \"uniform\" in [-init_scale, init_scale] (PTB tutorial) or "
                           "\"glorot\"", choices=("uniform", "glorot"), inherited=True, before="glorot")
    init_scale: float = key(0.1, "initializer uniform: the bound of the weights' range; biases start at zero",
                            bounds="(0, inf)", inherited=True)
    # --- optimisation
    optimizer: str = key("sgd", "\"sgd\", \"adam\" or \"rmsprop\"", choices=tuple(OPTIMIZER_COPIES))
    learning_rate: float = key(1.0, "initial learning rate", bounds="(0, inf)", resumable=True)
    lr_decay: float = key(0.5, "learning rate multiplier per epoch once past max_epoch", bounds="(0, inf)")
    max_epoch: int = key(4, "epochs trained at the initial learning rate", bounds="[0, inf)")
    max_max_epoch: int = key(13, "total epochs", bounds="[1, inf)", resumable=True)
    patience: int = key(0, "stop after this many epochs without a better validation metric; 0 = train every epoch",
                        bounds="[0, inf)", resumable=True)
    max_grad_norm: float = key(5.0, "gradients are clipped to this global norm", bounds="(0, inf)", resumable=True,
                               inherited=True)
    weight_decay: float = key(0.0, "L2 penalty on the weight matrices (LSTM kernels, output layer), not "
                              "embeddings/biases", bounds="[0, inf)", resumable=True, inherited=True)
    batch_size: int = key(20, "sequences per batch", bounds="[1, inf)")
    eval_batch_size: int = key(0, "sequences per validation/test batch; 0 = batch_size", bounds="[0, inf)",
                               resumable=True)
    seed: int = key(1234, "seeds initialisation, dropout masks and shuffling: same seed, same run",
                    bounds=f"[0, {2 ** 31 - 2}]", inherited=True,
                    # TensorFlow reduces graph seeds modulo 2**31 - 1 (2**31 - 1 would repeat seed 0); NumPy's
                    # RandomState takes up to 2**32 - 1: room for the seed + fold of cross-validation.
                    why_maximum="TensorFlow takes graph seeds modulo 2**31 - 1")
    # --- classification
    pooling: str = key("mean", "classify: \"mean\" (masked mean over real steps), \"last\" (last real step) or "
                       "\"max\"", choices=("mean", "last", "max"))
    bidirectional: bool = key(False, "classify: make the top layer bidirectional")
    embeddings: str = key("", "word vectors to start the embedding from: a GloVe/word2vec file or a registry name")
    train_embeddings: bool = key(True, "keep training an embedding that started pretrained (vectors or a language "
                                 "model)")
    word_dropout: float = key(0.0, "classify: while training, each token becomes <unk> with this probability",
                              bounds="[0, 1)", resumable=True)
    init_from: str = key("", "a language-model run to start from, mapped token by token: a classifier from a word "
                         "LM (its embedding and LSTM layers), a language model from one of its level (softmax too)")
    pretrain_epochs: int = key(0, "classify: epochs of a word LM pretrained on the training sentences only; 0 = none",
                               bounds="[0, inf)")
    label_mode: str = key("coarse", "classify, TREC-style labels: \"coarse\" (ABBR, ...) or \"fine\" (ABBR:abb, ...)",
                          choices=("coarse", "fine"))
    text_column: str = key("", "classify, CSV/TSV/JSON-lines tables: the text column's header name or number from 1; "
                           "\"\" = the one named text, sentence, review, content, ...")
    label_column: str = key("", "classify, CSV/TSV/JSON-lines tables: the label column's header name or number from "
                            "1; \"\" = the one named label, class, sentiment, category, ...")
    cv: int = key(0, "classify: K-fold cross-validation over all the data", bounds="[2, inf)", zero="off")
    cv_final: bool = key(True, "classify, with --cv: then train the run directory's own model on all the data for the "
                         "folds' mean best epoch count", resumable=True, before=False)
    bucket: bool = key(True, "classify: batch sentences of similar length together, each bucket its own unroll")
    # --- running
    max_steps: int = key(0, "stop (with a checkpoint) after this global step; 0 = train all epochs",
                         bounds="[0, inf)", resumable=True)
    checkpoint_every: int = key(0, "also save the latest checkpoint every N steps; 0 = once per epoch",
                                bounds="[0, inf)", resumable=True)
    summary_every: int = key(10, "write step summaries to TensorBoard every N steps", bounds="[1, inf)",
                             resumable=True, inherited=True)
    device: str = key("cpu", "\"cpu\" or \"gpu\"", choices=("cpu", "gpu"), resumable=True, inherited=True)
    xla: bool = key(False, "XLA auto-clustering (JIT) of the whole graph", resumable=True, inherited=True)
    xla_loss: bool = key(True, "XLA-compile the softmax loss and its gradient (the matmuls stay on oneDNN)",
                         resumable=True, inherited=True)
    precision: str = key("float32", "matmul inputs: \"float32\", or \"bfloat16\" (mixed: weights, state and sums "
                         "stay float32)", choices=("float32", "bfloat16"), resumable=True, inherited=True)
    # ConfigProto's int32 fields; TensorFlow starts a thread for each, so far fewer than int32 allows.
    intra_op_threads: int = key(0, "threads inside one op; 0 = TensorFlow's default (all cores)",
                                bounds="[0, 1024]", why_maximum="TensorFlow starts a thread for each",
                                advice="; 0 uses every core", resumable=True, inherited=True)
    inter_op_threads: int = key(0, "ops run in parallel; 0 = TensorFlow's default", bounds="[0, 1024]",
                                why_maximum="TensorFlow starts a thread for each",
                                advice="; 0 uses TensorFlow's default", resumable=True, inherited=True)

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
    # trains on a couple of CPU cores (docs/results.md has the time). Glorot initialisation: on tinyshakespeare its
    # best validation loss was 1.379 nats/char, char-rnn's uniform [-0.08, 0.08] reached 1.425.
    "char": _named(level="char", vocab_size=0, initializer="glorot", optimizer="adam", learning_rate=0.002,
                   max_grad_norm=5, num_layers=2, num_steps=100, hidden_size=256, max_epoch=6, max_max_epoch=16,
                   keep_prob=0.9, lr_decay=0.85, batch_size=32, forget_bias=1.0),
    # Sentence classifier: one layer, sentences up to 60 tokens, masked mean pooling. Patience 3: on MR, CR and TREC
    # the same or better accuracy than all 10 epochs, in 51-100% of the time (docs/results.md). Uniform
    # initialisation (the default): TREC's validation accuracy 86.06 % against Glorot's 85.69 %.
    "classify": _named(task="classify", encoding="auto", vocab_size=0, valid_fraction=0.1, test_fraction=0.1,
                       num_layers=1, hidden_size=150, embedding_size=300, num_steps=60, keep_prob=0.5,
                       forget_bias=1.0, optimizer="adam", learning_rate=0.002, lr_decay=0.8, max_epoch=4,
                       max_max_epoch=10, patience=3, max_grad_norm=5, batch_size=50, init_scale=0.1),
}
# The classifier from pretrained vectors: GloVe 6B at 50 dimensions, fine-tuned, under a bidirectional layer with
# max pooling; with 50-wide inputs it wants less dropout and a faster start. Each change was kept because it raised
# the mean validation accuracy (never the test's) over MR and CR, the review-polarity sets (docs/results.md). Glorot
# initialisation too: 81.39 % mean validation accuracy over MR and CR against 81.31 % uniform, and on TREC 88.81
# against 87.71 % (with pretraining 89.54 against 88.99 %).
CONFIGS["classify_glove"] = dataclasses.replace(CONFIGS["classify"], embeddings="glove.6B.50d", embedding_size=50,
                                                bidirectional=True, pooling="max", keep_prob=0.7, learning_rate=0.004,
                                                initializer="glorot")
# ... started from a language model of its stack trained on the training sentences: better on TREC's validation
# split (question types), worse on MR's and CR's (review polarity), so the recipe for questions.
CONFIGS["classify_glove_lm"] = dataclasses.replace(CONFIGS["classify_glove"], pretrain_epochs=6)
DEFAULT_CONFIG = "small"

FIELDS = {f.name: f for f in dataclasses.fields(Config)}
KEYS = {name: field.metadata["key"] for name, field in FIELDS.items()}
RESUMABLE_KEYS = tuple(name for name, declared in KEYS.items() if declared.resumable)
INHERITED_KEYS = tuple(name for name, declared in KEYS.items() if declared.inherited)
# What tells runs apart first (the task, its data and the model's size): TensorBoard's HParams shows these keys first.
LEADING_KEYS = tuple(name for name, declared in KEYS.items() if declared.leading)
# The first key of each group in --help and the README.
SECTIONS = {"task": "what to train on", "num_layers": "model", "optimizer": "optimisation",
            "pooling": "classification", "max_steps": "running"}


def _field_type(name):
    return FIELDS[name].type if isinstance(FIELDS[name].type, type) else type(FIELDS[name].default)


class Range(NamedTuple):
    """A key's bounds, parsed from its declaration's "[low, high)" text."""
    low: float
    low_closed: bool
    high: float
    high_closed: bool

    @classmethod
    def parse(cls, text, kind):
        low, high = (part.strip() for part in text[1:-1].split(","))
        if kind is int and high == "inf":  # an int's maximum is int32's, inclusive
            return cls(int(low), text[0] == "[", INT32_MAX, True)
        return cls(kind(float(low)), text[0] == "[", kind(float(high)), text[-1] == "]")

    def holds(self, value):
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def complaint(self, kind):
        """What a value outside the range is told: "must be positive", or "must be in (0, 1]"."""
        noun = "" if kind is int else " a"
        if self.high == math.inf or (kind is int and self.high == INT32_MAX):
            if (self.low, self.low_closed) in ((0, False), (1, True)):
                return f"must be{noun} positive" + (" number" if noun else "")
            if (self.low, self.low_closed) == (0, True):
                return "must not be negative" if kind is int else "must be a non-negative number"
        opening, closing = "[" if self.low_closed else "(", "]" if self.high_closed else ")"
        return f"must be in {opening}{self.low:g}, {self.high:g}{closing}"


def ranges():
    """{key: Range} of every key declared with bounds."""
    return {name: Range.parse(declared.bounds, _field_type(name)) for name, declared in KEYS.items()
            if declared.bounds}


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
    bounds = ranges()
    for name, declared in KEYS.items():
        value, kind = getattr(cfg, name), _field_type(name)
        if declared.choices and value not in declared.choices:
            raise UserError(f"--{name}: must be one of {', '.join(declared.choices)}, got '{value}'")
        if kind is not int and name not in bounds:
            continue
        limit = bounds[name] if name in bounds else Range(-INT32_MAX - 1, True, INT32_MAX, True)
        if kind is int and value > limit.high:
            raise UserError(f"--{name}: at most {limit.high} ({declared.why_maximum}), got {shown(value)}"
                            f"{declared.advice}")
        if not limit.holds(value) and not (declared.zero and value == 0):  # NaN holds no range
            complaint = f"must be 0 ({declared.zero}) or at least {limit.low}" if declared.zero else \
                limit.complaint(kind)
            raise UserError(f"--{name}: {complaint}, got {value}")


def described(name):
    """A key's help with what its 0 means, where 0 is special."""
    declared = KEYS[name]
    return declared.help + (f"; 0 = {declared.zero}" if declared.zero else "")


def check_combinations(cfg):
    """Keys that do not go together."""
    for key in ("word_dropout", "pretrain_epochs"):
        if getattr(cfg, key) and cfg.task != "classify":
            raise UserError(f"--{key}: for --task classify")
    if cfg.embeddings and cfg.level == "char" and cfg.task == "lm":
        raise UserError("--embeddings: word vectors are for word-level models, not --level char")
    for key in ("text_column", "label_column"):
        if getattr(cfg, key) and cfg.task != "classify":
            raise UserError(f"--{key}: for --task classify (a language model reads text, not tables)")
        value = getattr(cfg, key).strip()
        if getattr(cfg, key) and not value:
            raise UserError(f"--{key}: blank; leave it out to find the column by its header's name")
        if value.isascii() and value.isdigit() and int(value) == 0:
            raise UserError(f"--{key}: column numbers start at 1, got '{value}'")
    if cfg.text_column and cfg.text_column.strip().lower() == cfg.label_column.strip().lower():
        raise UserError(f"--text_column and --label_column: both name column '{cfg.text_column}'")
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
    copies = OPTIMIZER_COPIES[cfg.optimizer]
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
    cfg = dataclasses.replace(Config(), **{name: declared.before for name, declared in KEYS.items()
                                           if declared.before is not None and name not in values})
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


def help_text(defaults=None):
    """One line per key with its default (the values of config `defaults`) and help, for --help."""
    defaults = defaults or Config()
    lines = []
    for name, declared in KEYS.items():
        if name in SECTIONS:
            lines.append(SECTIONS[name])
        lines.append(f"  --{name:<18} {described(name)} [default {getattr(defaults, name)!r}]")
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
