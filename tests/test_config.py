"""Config: named configs, command-line overrides, validation, JSON round trip."""
import dataclasses

import pytest

import config
from config import UserError


def test_named_configs_carry_the_ptb_tutorial_values():
    small, medium, large = (config.named_config(n) for n in ("small", "medium", "large"))
    assert (small.num_layers, small.num_steps, small.hidden_size, small.max_epoch, small.max_max_epoch) == \
        (2, 20, 200, 4, 13)
    assert (medium.hidden_size, medium.num_steps, medium.keep_prob, medium.lr_decay, medium.init_scale) == \
        (650, 35, 0.5, 0.8, 0.05)
    assert (large.hidden_size, large.max_grad_norm, large.keep_prob, large.max_max_epoch) == (1500, 10, 0.35, 55)
    assert all(c.learning_rate == 1.0 and c.vocab_size == 10000 and c.batch_size == 20
               for c in (small, medium, large, config.named_config("test")))
    assert config.named_config("char").level == "char"
    assert config.named_config("classify").task == "classify"
    glove, glove_lm = config.named_config("classify_glove"), config.named_config("classify_glove_lm")
    assert config.differences(glove, glove_lm) == [("pretrain_epochs", 0, 6)]
    assert [key for key, *_ in config.differences(config.named_config("classify"), glove)] == [
        "embedding_size", "keep_prob", "initializer", "pooling", "bidirectional", "embeddings"]  # learning_rate:
    # resumable


def test_overrides_both_spellings_and_bare_booleans():
    overrides, rest = config.split_overrides(["--hidden_size=256", "--num_layers", "3", "--xla", "--run_dir", "x",
                                              "--no_bucket"])
    assert overrides == {"hidden_size": "256", "num_layers": "3", "xla": "true", "bucket": "false"}
    assert rest == ["--run_dir", "x"]
    cfg = config.apply_overrides(config.named_config("small"), overrides)
    assert (cfg.hidden_size, cfg.num_layers, cfg.xla, cfg.bucket) == (256, 3, True, False)


@pytest.mark.parametrize("overrides,message", [
    ({"hiden_size": "3"}, "unknown config key '--hiden_size'"),
    ({"hidden_size": "big"}, "--hidden_size: expected int, got 'big'"),
    ({"hidden_size": "-5"}, "--hidden_size: must be positive, got -5"),
    ({"batch_size": "0"}, "--batch_size: must be positive"),
    ({"keep_prob": "1.5"}, "--keep_prob: must be in (0, 1]"),
    ({"optimizer": "sgdd"}, "--optimizer: must be one of sgd, adam, rmsprop"),
    ({"learning_rate": "nan"}, "--learning_rate: must be a positive number"),
    ({"xla": "maybe"}, "--xla: expected true or false"),
    ({"valid_fraction": "0.6", "test_fraction": "0.5"}, "leave some data for training"),
    ({"cv": "1"}, "--cv: must be 0 (off) or at least 2"),
    ({"task": "classify", "word_dropout": "1"}, "--word_dropout: must be in [0, 1)"),
    ({"weight_decay": "-1e-4"}, "--weight_decay: must be a non-negative number"),
    ({"pretrain_epochs": "-1"}, "--pretrain_epochs: must not be negative"),
    ({"pretrain_epochs": "2"}, "--pretrain_epochs: for --task classify"),
    ({"word_dropout": "0.1"}, "--word_dropout: for --task classify"),
    ({"task": "classify", "init_from": "runs/lm", "pretrain_epochs": "2"}, "choose one"),
    ({"level": "char", "embeddings": "glove.6B.50d"}, "--embeddings: word vectors are for word-level models"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(UserError) as error:
        config.apply_overrides(config.named_config("small"), overrides)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_differences_name_only_the_keys_that_shape_the_model():
    cfg = config.apply_overrides(config.named_config("char"), {"hidden_size": "64", "max_max_epoch": "3"})
    later = config.apply_overrides(cfg, {"max_max_epoch": "9", "xla": "true", "eval_batch_size": "1"})
    assert config.differences(cfg, later) == []  # schedule and speed switches may change on resume
    assert config.differences(cfg, config.apply_overrides(cfg, {"hidden_size": "65"})) == [("hidden_size", 64, 65)]


def test_from_values_checks_every_key():
    assert config.from_values({"hidden_size": 64, "init_scale": 1}, "f.json").hidden_size == 64
    with pytest.raises(UserError, match="f.json: key 'hidden_size' should be int"):
        config.from_values({"hidden_size": "many"}, "f.json")
    with pytest.raises(UserError, match="f.json: unknown config key 'colour'"):
        config.from_values({"colour": 1}, "f.json")
    with pytest.raises(UserError, match="f.json: expected a JSON object"):
        config.from_values([1], "f.json")
    with pytest.raises(UserError, match="f.json: --keep_prob: must be in"):
        config.from_values({"keep_prob": 0.0}, "f.json")


def test_help_lists_every_key_with_its_comment():
    text = config.help_text()
    for name in config.FIELDS:
        assert f"--{name} " in text


# --------------------------------------------------------------------------------------------------- bounds

INT_KEYS = [k for k in config.FIELDS if type(getattr(config.Config(), k)) is int]
FLOAT_KEYS = [k for k in config.FIELDS if type(getattr(config.Config(), k)) is float]


def bound_of(key):
    return config.ranges()[key].high if key in config.ranges() else config.INT32_MAX


@pytest.mark.parametrize("key", INT_KEYS)
def test_every_integer_key_has_a_bound_named_in_one_line(key):
    with pytest.raises(UserError) as error:
        config.apply_overrides(config.named_config("classify"), {key: str(bound_of(key) + 1)})
    assert str(error.value).startswith(f"--{key}: at most {bound_of(key)} (")
    # A number of hundreds of digits is refused by the same check, and the message stays short.
    with pytest.raises(UserError, match=f"--{key}: at most {bound_of(key)} ") as error:
        config.apply_overrides(config.named_config("classify"), {key: "9" * 400})
    assert len(str(error.value)) < 250 and "(400 characters)" in str(error.value)


def test_bounds_are_what_the_libraries_below_accept():
    assert bound_of("seed") == 2 ** 31 - 2  # TF takes graph seeds modulo 2**31 - 1: 2**31 - 1 would be seed 0
    assert bound_of("intra_op_threads") == bound_of("inter_op_threads") == 1024
    assert bound_of("num_steps") == config.MAX_NUM_STEPS and bound_of("hidden_size") == 2 ** 31 - 1
    # The bounds themselves are accepted.
    cfg = config.apply_overrides(config.named_config("small"), {
        "seed": str(2 ** 31 - 2), "intra_op_threads": "1024", "inter_op_threads": "1024", "num_layers": "100",
        "batch_size": str(2 ** 31 - 1), "max_steps": str(2 ** 31 - 1)})
    assert (cfg.seed, cfg.intra_op_threads, cfg.num_layers) == (2 ** 31 - 2, 1024, 100)
    # Every consumer of the seed takes the largest one with the largest fold and epoch offsets.
    import numpy as np
    np.random.RandomState(bound_of("seed") + bound_of("cv"))
    np.random.RandomState([bound_of("seed"), bound_of("max_max_epoch")])


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e39"])
def test_every_float_key_is_finite_in_float32(key, value):
    with pytest.raises(UserError, match=f"^--{key}: ") as error:
        config.apply_overrides(config.named_config("classify"), {key: value})
    assert "\n" not in str(error.value)


def test_forget_bias_must_be_finite():
    for value in ("nan", "inf", "-1e39"):
        with pytest.raises(UserError, match=r"--forget_bias: must be a finite number within float32's range"):
            config.apply_overrides(config.named_config("char"), {"forget_bias": value})
    assert config.apply_overrides(config.named_config("char"), {"forget_bias": "-3e38"}).forget_bias == -3e38


def test_a_learning_rate_schedule_beyond_float32_is_refused():
    small = config.named_config("small")  # 13 epochs, 4 at the initial rate: 9 decays
    with pytest.raises(UserError, match=r"--lr_decay: 1e\+10 per epoch for 9 epochs .* past float32's range"):
        config.apply_overrides(small, {"lr_decay": "1e10"})
    with pytest.raises(UserError, match="--lr_decay: 2 per epoch for 2147483643 epochs"):
        config.apply_overrides(small, {"lr_decay": "2", "max_max_epoch": str(2 ** 31 - 1)})
    assert config.apply_overrides(small, {"lr_decay": "1e4"}).lr_decay == 1e4  # 1e36: within float32
    assert config.apply_overrides(small, {"lr_decay": "1e-30", "max_max_epoch": str(2 ** 31 - 1)})


def test_bounds_hold_for_json_configs_too():
    with pytest.raises(UserError, match=r"^f.json: --seed: at most 2147483646 .*got 4294967296$"):
        config.from_values({"seed": 2 ** 32}, "f.json")
    with pytest.raises(UserError, match="^f.json: --forget_bias: must be a finite number"):
        config.from_values({"forget_bias": float("nan")}, "f.json")


def test_a_long_number_is_cut_in_the_message():
    with pytest.raises(UserError) as error:
        config.apply_overrides(config.named_config("small"), {"hidden_size": "1" * 5000})  # beyond int()'s limit
    assert str(error.value) == "--hidden_size: expected int, got '111111111111111111111111... (5000 characters)'"


def test_the_largest_model_reaches_the_memory_check_without_overflow(monkeypatch):
    monkeypatch.setattr(config, "available_memory", lambda: 1 << 40)
    cfg = config.apply_overrides(config.named_config("small"), {
        key: str(bound_of(key)) for key in ("hidden_size", "embedding_size", "batch_size", "num_steps",
                                            "num_layers")})
    with pytest.raises(UserError, match="the model needs about .* GiB .* and 1,024.0 GiB are available"):
        config.check_memory(cfg, 2 ** 31 - 1, 2 ** 31 - 1)


# --------------------------------------------------------------------------------------------------- one declaration

def test_the_documentation_tables_are_the_declarations(monkeypatch):
    """README.md's named-configs table and resume list and docs/configs.md's key table are generated from config.py
    (python config_docs.py); a declaration changed without them is caught here."""
    import config_docs
    assert config_docs.stale_files(write=False) == []
    monkeypatch.setattr(config, "RESUMABLE_KEYS", config.RESUMABLE_KEYS[1:])
    assert config_docs.stale_files(write=False) == ["README.md"]
    monkeypatch.setitem(config.KEYS, "seed", dataclasses.replace(config.KEYS["seed"], help="another"))
    assert config_docs.stale_files(write=False) == ["README.md", "docs/configs.md"]


def test_each_rule_comes_from_the_keys_declaration():
    """--help, the resume check and validation read the declaration: a key declared resumable may change on resume,
    and one declared with bounds is refused outside them, with the declared help in --help."""
    assert set(config.RESUMABLE_KEYS) >= {"weight_decay", "word_dropout", "max_max_epoch", "precision"}
    saved = config.named_config("classify")
    changed = dataclasses.replace(saved, weight_decay=1e-4, word_dropout=0.1, hidden_size=7, initializer="glorot")
    assert config.differences(saved, changed) == [("hidden_size", 150, 7), ("initializer", "uniform", "glorot")]
    for name, declared in config.KEYS.items():
        assert f"--{name:<18} {declared.help}" in config.help_text()
    assert "--cv: must be 0 (off) or at least 2, got 1" in str(pytest.raises(
        UserError, config.apply_overrides, saved, {"cv": "1"}).value)


def test_a_config_written_before_the_initializer_key_meant_glorot():
    assert config.from_values({"hidden_size": 8}, "old/config.json").initializer == "glorot"
    assert config.from_values({"initializer": "uniform"}, "new/config.json").initializer == "uniform"
    assert config.Config().initializer == "uniform"
