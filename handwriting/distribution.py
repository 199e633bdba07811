"""`tf.distribute`: strategies by name, the chief worker, and a step run on every replica.

Every replica (and every worker of a multi-worker cluster) is given the whole batch and takes
its own share of the lines: equal shares in replica order. Every worker therefore reads the
same data stream and holds its iterator in the same state, so one checkpoint of it, the
chief's, restores them all.

A cluster (`multi_worker`) is one program run on every worker, each with its own `TF_CONFIG`.
Only the chief writes files; every worker reads the run directory when it starts (the
configuration, the checkpoint to resume from), so all must see the chief's: a shared folder,
or a copy of it; `check_workers_agree` refuses a cluster whose workers read different ones.
A worker that dies stops the others: TensorFlow's coordination service misses its heartbeats
(or its connection is reset) and aborts every collective op of the survivors with one of
`WORKER_LOST_ERRORS` (`worker_losses` says how to go on). A cluster cannot go on with fewer
workers; it is started again.
"""

import contextlib
import hashlib
import json
import re

import numpy as np
import tensorflow as tf

from handwriting.errors import TrainingError

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
# What a collective op raises on the workers left when one of the cluster dies: "Collective ops
# is aborted by: ... tasks are unhealthy (stopped sending heartbeats)" or "... Connection reset
# by peer" (Unavailable, both seen); a peer that does not answer in time (DeadlineExceeded,
# which TensorFlow's own health check of the peers also reads as a peer down).
WORKER_LOST_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The `tf.distribute` strategy called `name`.

    - `auto`: `MirroredStrategy` over the GPUs when there are several, else the default
      strategy (one device: the GPU when there is one, else the CPU).
    - `one_device`: `OneDeviceStrategy` on the first GPU, or the CPU.
    - `mirrored`: `MirroredStrategy` over every GPU, or over every logical CPU device when
      there is no GPU (tests split the CPU into logical devices).
    - `multi_worker`: `MultiWorkerMirroredStrategy`; the cluster comes from `TF_CONFIG`
      (none: one worker).
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, received {name!r}")
    if name == "multi_worker":
        # First: it configures collective ops, which TensorFlow accepts only before its
        # runtime starts (listing the logical devices below starts it).
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "auto":
        return (
            tf.distribute.MirroredStrategy(gpus) if len(gpus) > 1 else tf.distribute.get_strategy()
        )
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(
            gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
        )
    return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes files: the chief of a cluster; every other strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or resolver.task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """The worker processes of `strategy`'s cluster, its chief included; 1 without a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return max(1, len(cluster.get("chief", ())) + len(cluster.get("worker", ())))


def every_replica(strategy: tf.distribute.Strategy, values) -> np.ndarray:
    """`values` as every replica of the cluster holds them: `[replicas, n]`, in replica order.

    Each worker gives its own `values` (n numbers, the same n on every worker), held by each of
    its replicas. A collective op of the whole cluster, so also a barrier: every worker calls it
    at the same point of the program, and it returns when all have.
    """
    local = tf.constant(values, tf.float64)[None]  # [1, n]
    gather = tf.function(lambda: strategy.gather(strategy.run(tf.identity, (local,)), axis=0))
    return gather().numpy()


def replica_share(batch):
    """This replica's lines of a whole batch `(inputs, targets, sample_weight)`.

    Call in a replica context. With R replicas and B lines, replica r takes lines
    `[r * ceil(B / R), (r + 1) * ceil(B / R))` (fewer at the end, none past it); one
    replica takes the batch as it is.
    """
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync
    if replicas == 1:
        return batch
    lines = tf.shape(batch[1])[0]
    share = (lines + replicas - 1) // replicas
    start = tf.minimum(context.replica_id_in_sync_group * share, lines)
    return tf.nest.map_structure(lambda x: x[start : start + share], batch)


def on_every_replica(strategy: tf.distribute.Strategy, step, metrics):
    """A `tf.function(iterator) -> logs`: `step` on every replica's share of the next batch.

    Args:
        strategy: the strategy the model was built under.
        step: `HandwritingModel.train_step` or `test_step`: batch -> `{name: scalar}`.
        metrics: the model's metrics (`model.metrics`), whose results make the logs.

    Returns:
        A function of a `tf.data` iterator (of whole batches) that draws one batch, runs `step`
        on every replica and returns the results of the metrics `step` logs, read across the
        replicas: their totals and counts are summed first, so a replica with fewer points
        weighs less, as in one device's result. Traced once, without AutoGraph (the network
        writes its loops with `tf.while_loop`) and without XLA, as `keras.Model.fit` does.
    """

    def run(iterator):
        logs = strategy.run(lambda batch: step(replica_share(batch)), args=(next(iterator),))
        return {m.name: m.result() for m in metrics if m.name in logs}

    return tf.function(run, jit_compile=False, autograph=False)


@contextlib.contextmanager
def worker_losses(strategy: tf.distribute.Strategy, run_dir):
    """Turns the error of a cluster that lost a worker (`WORKER_LOST_ERRORS`) into a
    `TrainingError` that says how to go on."""
    try:
        yield
    except WORKER_LOST_ERRORS as e:
        if worker_count(strategy) == 1:
            raise
        # "{{function_node ...}} Collective ops is aborted by: <why>\n<who>\n..."
        why = " ".join(re.sub(r"\{\{.*?\}\}\s*", "", e.message).splitlines()[:2])
        raise TrainingError(
            f"the cluster lost a worker, or cannot reach one ({type(e).__name__}: {why}). "
            "The others cannot go on without it and stop too. Start every worker again with "
            f"--resume: the run continues from its last checkpoint in {run_dir}"
        ) from None


def check_workers_agree(strategy: tf.distribute.Strategy, step: int, read: dict, run_dir):
    """Refuses to train when the workers of a cluster would start from different runs.

    Each worker reads the configuration and the checkpoint from its `run_dir`: one that reads
    another folder (its own, not the chief's) would build another network or train other
    weights on other batches, and the gradients summed over the cluster would mean nothing.

    Args:
        step: the step this worker starts at.
        read: `{what: JSON object}` of what this worker read from the run directory (the
            configuration, dataset.json, state.json); compared by digest.

    Raises:
        TrainingError: the workers differ; the message names what differs.
    """

    def digest(obj) -> float:  # 48 bits of a sha256: exact in a float64
        text = json.dumps(obj, sort_keys=True)
        return float(int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], 16))

    names = list(read)
    replicas = every_replica(strategy, [step, *(digest(read[name]) for name in names)])
    workers = replicas[:: len(replicas) // worker_count(strategy)]  # [workers, 1 + len(read)]
    if (workers == workers[0]).all():
        return
    differ = [name for column, name in enumerate(names, 1) if len(set(workers[:, column])) > 1]
    steps = ", ".join(str(int(s)) for s in workers[:, 0])
    raise TrainingError(
        f"the workers of the cluster would start from different runs: at steps {steps} (in "
        f"TF_CONFIG's order, the chief first), with different {', '.join(differ)}. Every "
        f"worker reads the run directory {run_dir}: give them all the chief's (a shared folder, "
        "or a copy of it made while no worker runs), and the same --set values"
    )
