"""Where a training runs: one device, several (MirroredStrategy) or several machines
(MultiWorkerMirroredStrategy), and in which precision on a GPU."""

from __future__ import annotations

import json
import os


def is_multi_worker_chief() -> bool:
    """Whether this process leads a multi-worker run (``TF_CONFIG``'s chief, else worker 0)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task", {})
    if "chief" in tf_config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0


def strategy_for(distribute: str | None):
    """The tf.distribute strategy for ``distribute`` (``digits train --distribute``; None: one device).

    "mirrored": MirroredStrategy over every GPU, or over two logical CPUs without one; "multi-worker":
    MultiWorkerMirroredStrategy across the machines that the ``TF_CONFIG`` environment variable names.
    Must run before TensorFlow starts its runtime, since logical devices cannot be added afterwards.
    """
    import tensorflow as tf

    if distribute is None:
        return tf.distribute.get_strategy()  # the default, single-device strategy
    if distribute == "multi-worker":

        class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
            """Keras 3.15's fit hands this strategy what it cannot reduce: an (images, labels) batch
            in one call, and scalar metrics "along axis 0". Reduce each tensor, scalars across workers."""

            def reduce(self, reduce_op, value, axis):
                reduce_one = super().reduce

                def one(v):
                    local = self.experimental_local_results(v)[0]
                    return reduce_one(reduce_op, v, None if local.shape.rank == 0 else axis)

                return tf.nest.map_structure(one, value)

        return MultiWorkerStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        except RuntimeError:
            pass  # the runtime already started (e.g. a second run in one process): use what exists
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def use_mixed_precision_on_gpu() -> bool:
    """float16 compute on GPUs, where it is faster; CPUs stay in float32, where it is not."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        import keras

        keras.mixed_precision.set_global_policy("mixed_float16")
        return True
    return False
