"""Tests of `handwriting.reader`: CTC against numpy float64, decoding, CER, a tiny real run."""

import itertools
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from handwriting import ctc, reader, reader_training, records
from handwriting.alphabet import Alphabet
from handwriting.dataset_info import DatasetInfo, Shard, Split, sha256_file

B, S, V = 3, 9, 6  # batch, frames, alphabet ids (id 0 the blank)
ALPHABET = Alphabet("abcd ")  # V = 7
TINY = {"filters": 16, "units": 16}


# ---------------------------------------------------------------------------------------------
# CTC loss


def ctc_nll_numpy(log_probs, label):
    """-log p(label | frames) by the CTC forward algorithm (Graves et al. 2006, eq. 6-8), float64.

    log_probs: `(S, V)`; label: ids >= 1. The extended label l' puts a blank (id 0) around and
    between the labels; alpha_t(s) = (alpha_{t-1}(s) + alpha_{t-1}(s-1) [+ alpha_{t-1}(s-2)
    when l'_s is not blank and differs from l'_{s-2}]) * y_t(l'_s).
    """
    extended = [0]
    for char in label:
        extended += [char, 0]
    alpha = np.full(len(extended), -np.inf)
    alpha[0] = log_probs[0, 0]
    alpha[1] = log_probs[0, extended[1]]
    for t in range(1, len(log_probs)):
        previous, alpha = alpha, np.full(len(extended), -np.inf)
        for s, char in enumerate(extended):
            terms = [previous[s]]
            if s >= 1:
                terms.append(previous[s - 1])
            if s >= 2 and char != 0 and char != extended[s - 2]:
                terms.append(previous[s - 2])
            alpha[s] = np.logaddexp.reduce(terms) + log_probs[t, char]
    return -np.logaddexp(alpha[-1], alpha[-2])


def collapse(path):
    """A frame path -> its labelling: repeats merged, blanks (0) dropped."""
    return [k for k, _ in itertools.groupby(path) if k != 0]


def log_softmax(x):
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def test_forward_reference_matches_brute_force():
    rng = np.random.default_rng(0)
    log_probs = log_softmax(rng.normal(size=(4, 3)))
    for label in ([1], [2, 1], [1, 1]):
        paths = [p for p in itertools.product(range(3), repeat=4) if collapse(p) == label]
        total = np.logaddexp.reduce([sum(log_probs[t, k] for t, k in enumerate(p)) for p in paths])
        np.testing.assert_allclose(ctc_nll_numpy(log_probs, label), -total, rtol=1e-12)


def test_ctc_loss_matches_numpy_forward_algorithm():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(B, S, V)) * 2
    labels = [[3, 3, 1, 5], [2], [4, 1, 1]]  # a repeat needs a blank between
    frames = np.array([9, 5, 7])
    chars = np.zeros((B, 4), np.int32)
    for row, label in enumerate(labels):
        chars[row, : len(label)] = label
    loss, feasible = ctc.ctc_loss(
        tf.constant(logits, tf.float32), tf.constant(frames), tf.constant(chars), chars > 0
    )
    expected = [
        ctc_nll_numpy(log_softmax(logits[row, : frames[row]]), label)
        for row, label in enumerate(labels)
    ]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert feasible.numpy().all()


def test_ctc_loss_of_an_infeasible_line_is_finite_and_flagged():
    logits = tf.random.stateless_normal((2, 3, V), seed=(1, 2))
    # "11" needs 3 frames (1, blank, 1): row 0 has 2; "2 3 4 5" needs 4, row 1 has 3.
    chars = tf.constant([[1, 1, 0, 0], [2, 3, 4, 5]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss, feasible = ctc.ctc_loss(logits, tf.constant([2, 3]), chars, chars > 0)
    assert feasible.numpy().tolist() == [False, False]
    assert np.isfinite(loss.numpy()).all()
    assert np.isfinite(tape.gradient(loss, logits).numpy()).all()


# ---------------------------------------------------------------------------------------------
# The network's frames


@pytest.mark.parametrize("steps,frames", [(1, 1), (2, 1), (4, 1), (5, 2), (8, 2), (9, 3), (13, 4)])
def test_frame_lengths(steps, frames):
    assert int(reader.frame_lengths([steps])[0]) == frames


def test_frames_of_a_line_do_not_depend_on_its_batch():
    model = reader.StrokeReader(V, filters=8, units=5)
    rng = np.random.default_rng(2)
    strokes = rng.normal(size=(2, 29, 3)).astype(np.float32)
    mask = np.arange(29)[None] < np.array([[11], [29]])
    batch = model({"strokes": strokes, "strokes_mask": mask})
    assert batch.shape == (2, 8, V)  # ceil(ceil(29 / 2) / 2)
    np.testing.assert_array_equal(model.frame_mask(mask).numpy().sum(axis=1), [3, 8])
    alone = model({"strokes": strokes[:1, :11], "strokes_mask": np.ones((1, 11), bool)})
    assert alone.shape == (1, 3, V)
    np.testing.assert_allclose(batch[0, :3], alone[0], atol=1e-5)
    np.testing.assert_allclose(tf.reduce_sum(tf.exp(batch), axis=-1), 1.0, atol=1e-5)


def test_config_round_trip_and_size():
    model = reader.StrokeReader(99)
    clone = reader.StrokeReader.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    # conv 3->128, 128->128 (k=5); BiLSTM 128->2x128, 256->2x128; Dense 256->99.
    lstm = lambda inputs: 2 * 4 * 128 * (inputs + 128 + 1)  # noqa: E731
    expected = (5 * 3 + 1) * 128 + (5 * 128 + 1) * 128 + lstm(128) + lstm(256) + 257 * 99
    assert model.count_params() == expected  # 766,947: ~3 MB of float32


def test_loaded_layers_are_distinct_and_run_both_ways(tmp_path):
    # keras.saving.load_model remembers serialized objects by id(); a Bidirectional left to copy
    # one LSTM into both directions could be handed an earlier layer's copy when an id was
    # reused, so that a load failed now and then (both directions go_backwards=True).
    model = reader.StrokeReader(V, filters=8, units=5, lstm_layers=3)
    rng = np.random.default_rng(5)
    inputs = {"strokes": rng.normal(size=(1, 17, 3)).astype(np.float32)}
    inputs["strokes_mask"] = np.ones((1, 17), bool)
    path = str(tmp_path / "model.keras")
    model.save(path)
    for _ in range(5):
        loaded = keras.saving.load_model(path, compile=False)
        lstms = [x for b in loaded.recurrent for x in (b.forward_layer, b.backward_layer)]
        assert len({id(x) for x in lstms}) == 6
        assert [x.go_backwards for x in lstms] == [False, True] * 3
        np.testing.assert_allclose(loaded(inputs), model(inputs), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Decoding


def one_hot_log_probs(paths, peak=8.0):
    """`(B, S, V)` log-probabilities whose argmax follows each path."""
    logits = np.zeros((len(paths), len(paths[0]), V))
    for row, path in enumerate(paths):
        logits[row, np.arange(len(path)), path] = peak
    return tf.constant(log_softmax(logits), tf.float32)


def test_greedy_decode_merges_repeats_and_drops_blanks():
    paths = [
        [2, 2, 0, 2, 3, 3, 0, 5, 4, 4],  # the last two frames are padding
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 3, 3, 3, 0, 0, 3, 0, 0, 5],
    ]
    decoded = ctc.greedy_decode(one_hot_log_probs(paths), tf.constant([8, 10, 10]))
    assert ctc.sparse_to_lists(decoded, 3) == [[2, 2, 3, 5], [], [1, 3, 3, 5]]


def test_beam_agrees_with_greedy_on_a_peaked_distribution():
    rng = np.random.default_rng(3)
    paths = rng.integers(0, V, size=(4, 12)).tolist()
    log_probs = one_hot_log_probs(paths, peak=6.0) + tf.constant(
        rng.normal(0, 0.1, (4, 12, V)), tf.float32
    )
    frames = tf.constant([12, 7, 12, 3])
    greedy = ctc.sparse_to_lists(ctc.greedy_decode(log_probs, frames), 4)
    beam = ctc.sparse_to_lists(ctc.beam_decode(log_probs, frames, beam_width=8), 4)
    assert beam == greedy
    assert greedy == [collapse(p[:n]) for p, n in zip(paths, [12, 7, 12, 3], strict=True)]


def test_beam_sums_the_paths_of_a_labelling():
    # Two frames, p(blank) = 0.6, p(id 2) = 0.4: the best path is blank blank (0.36), but
    # "2" is likelier, 0.4 * 0.6 + 0.6 * 0.4 + 0.4 * 0.4 = 0.64.
    probs = np.full((1, 2, V), 1e-6)
    probs[..., 0], probs[..., 2] = 0.6, 0.4
    log_probs = tf.constant(np.log(probs), tf.float32)
    frames = tf.constant([2])
    assert ctc.sparse_to_lists(ctc.greedy_decode(log_probs, frames), 1) == [[]]
    assert ctc.sparse_to_lists(ctc.beam_decode(log_probs, frames, 4), 1) == [[2]]


# ---------------------------------------------------------------------------------------------
# Character error rate


@pytest.mark.parametrize(
    "reference,hypothesis,distance",
    [
        ("abc", "abc", 0),
        ("abc", "abxc", 1),  # insertion
        ("abc", "ac", 1),  # deletion
        ("abc", "abd", 1),  # substitution
        ("abc", "", 3),  # empty hypothesis
        ("", "ab", 2),
        ("kitten", "sitting", 3),  # k->s, e->i, +g
        ("flaw", "lawn", 2),  # -f, +n
    ],
)
def test_edit_distance(reference, hypothesis, distance):
    assert ctc.edit_distance(reference, hypothesis) == distance
    assert ctc.edit_distance(hypothesis, reference) == distance


def test_cer_sums_distances_over_reference_lengths():
    assert ctc.cer(["abc", "de"], ["abd", ""]) == pytest.approx((1 + 2) / 5)
    assert ctc.cer(["kitten"], ["sitting"]) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        ctc.cer(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no character"):
        ctc.cer([""], ["a"])


def test_metric_edit_distance_agrees_with_cer():
    truth = tf.sparse.from_dense(tf.constant([[2, 3, 4, 0], [5, 6, 2, 3]], tf.int64))
    hypothesis = tf.sparse.from_dense(tf.constant([[2, 4, 0], [5, 5, 6]], tf.int64))
    metric = ctc.CharacterErrorRate()
    metric.update_state(tf.edit_distance(hypothesis, truth, normalize=False), [3, 4])
    expected = ctc.cer([[2, 3, 4], [5, 6, 2, 3]], [[2, 4], [5, 5, 6]])
    assert float(metric.result()) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# A tiny reader trained on real shards


def glyphs(rng):
    """A fixed random stroke of 8..11 offsets for each letter; a space is a pen-up hop."""
    out = {}
    for char in ALPHABET.chars:
        if char == " ":
            out[char] = np.array([[2.5, 0.0, 0.0], [2.5, 0.0, 1.0]])
            continue
        count = int(rng.integers(8, 12))
        glyph = np.zeros((count, 3))
        glyph[:, :2] = rng.normal(0, 1.5, (count, 2))
        glyph[:, 0] += 0.6  # writing runs to the right
        glyph[-1, 2] = 1.0
        out[char] = glyph
    return out


def make_line(rng, shapes):
    text = "".join(rng.choice(list("abcd"), size=int(rng.integers(2, 5))))
    if rng.random() < 0.5:
        text += " " + "".join(rng.choice(list("abcd"), size=int(rng.integers(1, 3))))
    points = [np.zeros((1, 3))]
    for char in text:
        points.append(shapes[char] + rng.normal(0, 0.1, shapes[char].shape) * [1, 1, 0])
    return np.concatenate(points).astype(np.float32), text


def write_split(directory, split, lines, shards):
    out = []
    for index in range(shards):
        name = f"{split}-{index:05d}-of-{shards:05d}.tfrecord"
        path = os.path.join(directory, name)
        chosen = lines[index::shards]
        with tf.io.TFRecordWriter(path) as writer:
            for number, (strokes, text) in enumerate(chosen):
                writer.write(
                    records.encode_line(
                        strokes, text, ALPHABET.encode(text), f"{split}-{index}-{number}"
                    )
                )
        out.append(Shard(name, sha256_file(path), len(chosen), sum(len(x[0]) for x in chosen)))
    return Split(tuple(out))


def write_corpus(directory, train_lines=64, valid_lines=16, seed=0):
    """Real shards and a `dataset.json` of lines written with a fixed stroke per letter."""
    rng = np.random.default_rng(seed)
    shapes = glyphs(rng)
    lines = [make_line(rng, shapes) for _ in range(train_lines + valid_lines)]
    offsets = np.concatenate([s[:, :2] for s, _ in lines[:train_lines]])
    info = DatasetInfo(
        ALPHABET,
        tuple(offsets.mean(0).tolist()),
        tuple(offsets.std(0).tolist()),
        {
            "train": write_split(directory, "train", lines[:train_lines], 2),
            "valid": write_split(directory, "valid", lines[train_lines:], 1),
        },
        source={"kind": "test"},
    )
    info.save(directory)
    return lines[train_lines:]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    valid = write_corpus(directory)
    return str(directory), valid


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A tiny reader trained for a few dozen steps; `(reader directory, history, log lines)`."""
    out = str(tmp_path_factory.mktemp("reader"))
    logged = []
    history = reader_training.train_reader(
        corpus[0],
        out,
        steps=75,
        batch_size=16,
        learning_rate=0.02,
        seed=1,
        eval_every=25,
        log=logged.append,
        **TINY,
    )
    return out, history, logged


@pytest.mark.slow
def test_training_loss_and_validation_cer_fall(trained):
    out, history, logged = trained
    assert [entry["step"] for entry in history] == [25, 50, 75]
    assert history[-1]["loss"] < 0.6 * history[0]["loss"]
    assert history[-1]["val_loss"] < 0.6 * history[0]["val_loss"]
    assert history[-1]["val_cer"] < min(0.7, history[0]["val_cer"])
    assert len(logged) == 4 and "val_cer" in logged[-1]
    record = json.load(open(os.path.join(out, reader.READER_FILENAME)))
    best = min(history, key=lambda e: e["val_cer"])
    assert record["training"]["best"] == {"step": best["step"], "val_cer": best["val_cer"]}
    assert record["training"]["history"] == history
    assert record["model"]["filters"] == TINY["filters"]
    assert sorted(os.listdir(out)) == ["dataset.json", "model.keras", "reader.json"]


@pytest.mark.slow
def test_reading_the_valid_lines_gives_the_recorded_cer(corpus, trained):
    out, history, _ = trained
    loaded = reader.load_reader(out)
    texts = [text for _, text in corpus[1]]
    readings = reader.read(loaded, [strokes for strokes, _ in corpus[1]], batch_size=5)
    best = min(e["val_cer"] for e in history)
    assert ctc.cer(texts, readings) == pytest.approx(best, abs=1e-6)
    beam = reader.read(loaded, [strokes for strokes, _ in corpus[1]], beam_width=4)
    assert ctc.cer(texts, beam) <= best + 0.05


@pytest.mark.slow
def test_save_load_round_trip_reads_identically(corpus, trained, tmp_path):
    out, _, _ = trained
    first = reader.load_reader(out)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    reader_training.save_network(first.model, copy / reader.MODEL_FILENAME)
    second = reader.load_reader(copy)
    strokes = [s for s, _ in corpus[1]]
    assert reader.read(second, strokes) == reader.read(first, strokes)
    batch = {"strokes": np.zeros((1, 9, 3), np.float32), "strokes_mask": np.ones((1, 9), bool)}
    np.testing.assert_array_equal(first.model(batch), second.model(batch))
    assert isinstance(keras.saving.load_model(copy / reader.MODEL_FILENAME), reader.StrokeReader)


@pytest.mark.slow
def test_read_rejects_bad_strokes_and_reads_tiny_lines_as_empty(trained):
    loaded = reader.load_reader(trained[0])
    assert reader.read(loaded, [np.zeros((1, 3))]) == [""]
    with pytest.raises(reader.ReaderError, match="line 2: strokes must be"):
        reader.read(loaded, [np.zeros((4, 3)), np.zeros((4, 2))])
    with pytest.raises(reader.ReaderError, match="NaN"):
        reader.read(loaded, [np.full((4, 3), np.nan)])


@pytest.mark.slow
def test_command_line_reads_a_strokes_file(corpus, trained, tmp_path, capsys):
    path = tmp_path / "lines.json"
    lines = [{"text": text, "strokes": strokes.tolist()} for strokes, text in corpus[1][:3]]
    path.write_text(json.dumps({"lines": lines}))
    assert reader_training.main(["read", "--reader", trained[0], str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[0].startswith("1: ") and out[-1].endswith("over 3 lines")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["read", "--reader", "{tmp}/none", "{tmp}/lines.json"], "not found"),
        (["read", "--reader", "{reader}", "{tmp}/missing.json"], "cannot be read"),
        (["read", "--reader", "{reader}", "{tmp}/lines.json", "--beam", "-1"], "--beam"),
        (["train", "--data", "{tmp}/none", "--out", "{tmp}/out"], "not found"),
        (["train", "--data", "{tmp}", "--out", "{tmp}/out", "--steps", "0"], "`steps`"),
    ],
)
@pytest.mark.slow
def test_command_line_errors(trained, tmp_path, capsys, argv, message):
    (tmp_path / "lines.json").write_text(json.dumps({"lines": [{"strokes": [[0, 0, 1]] * 3}]}))
    argv = [a.format(tmp=tmp_path, reader=trained[0]) for a in argv]
    assert reader_training.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
