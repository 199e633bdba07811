"""A training run's checkpoint: the network, the optimiser and the position in the data.

Inside `checkpoint/` of a run directory (the names are `handwriting.rundir`'s):

    step-N.weights.h5          the network's weights, the optimiser's slots and step counter
                               (`keras.Model.save_weights`)
    step-N.iterator.index,     `tf.train.Checkpoint(data=iterator)` of the training stream's
    step-N.iterator.data-*     iterator: shuffle buffers, bucket contents, random state
    state.json                 `rundir.TrainingState`, which names the files above with the
                               sha256 of each (neither HDF5 nor TensorFlow's checkpoint files
                               checksum their values), and the sha256 of its own fields

`write` writes them in that order, the weights and state.json atomically, and then removes
the files state.json no longer names: a run killed while writing keeps the previous
checkpoint whole, and `remove_unnamed` clears what the killed write left. A checkpoint file
changed after it was written (a flipped bit on disk, a bad copy) is refused by
`TrainingState.load`, naming the file, instead of resuming from other weights. A resumed run
restores the weights (`restore_model`) and the iterator (`restore_iterator`), so its next
batch is the one the killed run would have drawn, and no batch is read twice.
"""

import dataclasses
import os
import shutil

import numpy as np
import tensorflow as tf

from handwriting import files, rundir
from handwriting.dataset_info import sha256_file
from handwriting.errors import TrainingError
from handwriting.rundir import TrainingState


def nonfinite_weight(model) -> str | None:
    """The path of the first weight holding NaN or Inf, optimiser slots included; else None."""
    for variable in list(model.weights) + list(model.optimizer.variables):
        value = np.asarray(variable.numpy())
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return variable.path
    return None


def write(run_dir, model, iterator, state: TrainingState) -> TrainingState:
    """Writes the checkpoint of `model` and `iterator` under the names `state` gives.

    Args:
        run_dir: the run directory.
        model: the compiled network; its optimiser's slots and step counter are saved too.
        iterator: the iterator of the training stream (a `tf.data` iterator).
        state: the training state, naming the files (`rundir.WEIGHTS_FILENAME`,
            `rundir.ITERATOR_PREFIX` of its step).

    Returns:
        `state` with the sha256 of every file written (`TrainingState.files`), as saved.
    """
    directory = os.path.join(run_dir, rundir.CHECKPOINT_DIR)
    with files.atomic_path(os.path.join(directory, state.weights), keep_suffix=True) as tmp:
        model.save_weights(tmp)
    tf.train.Checkpoint(data=iterator).write(os.path.join(directory, state.iterator))
    iterator_files = sorted(n for n in os.listdir(directory) if n.startswith(state.iterator + "."))
    names = [state.weights, *iterator_files]
    digests = {name: sha256_file(os.path.join(directory, name)) for name in names}
    state = dataclasses.replace(state, files=digests)
    state.save(run_dir)
    remove_unnamed(directory, state)
    return state


def remove_unnamed(directory, state: TrainingState | None) -> list:
    """Removes the checkpoint files (`step-*`) in `directory` that `state` does not name.

    Those are an earlier checkpoint's, or a killed write's (TensorFlow writes the iterator's
    files through a `step-N.iterator_temp` folder). Returns the names removed.
    """
    names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    removed = [n for n in names if n.startswith("step-") and not (state and state.holds(n))]
    for name in removed:
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    return removed


def restore_model(model, run_dir, state: TrainingState) -> None:
    """Loads the network and the optimiser of `state`'s checkpoint into `model`.

    Call under the strategy's scope, with the optimiser built.
    """
    path = os.path.join(run_dir, rundir.CHECKPOINT_DIR, state.weights)
    model.load_weights(path)
    step = int(model.optimizer.iterations.value.numpy())
    if step != state.step:
        raise TrainingError(f"{path}: holds step {step}, state.json says {state.step}")


def restore_iterator(iterator, run_dir, state: TrainingState) -> bool:
    """Moves `iterator` to `state`'s data position.

    Returns:
        False when the stored position does not fit the iterator's dataset (the data
        settings changed); the iterator is then unusable.
    """
    path = os.path.join(run_dir, rundir.CHECKPOINT_DIR, state.iterator)
    try:
        tf.train.Checkpoint(data=iterator).read(path).assert_consumed()
    except (tf.errors.OpError, AssertionError, ValueError):
        return False
    return True
