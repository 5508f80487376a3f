"""Everything that consumes data: array backend, models, parameter sharding, trainers.

    from compute import TrainConfig, train
    result = train(TrainConfig(target="127.0.0.1:2222", queue="shared_instance_q",
                               model="mlp:784,1024,1024,10", mode="sync", replicas=3, aggregate=2, task=0))

Command line: ``python -m compute train --target T --queue Q --model mlp:784,1024,10 --sync ...``
(see :mod:`compute.cli`). Nothing here imports CuPy until a GPU device is asked for.

Layout: :mod:`~compute.backend` (NumPy/CuPy arrays, transfer dtypes), :mod:`~compute.models`,
:mod:`~compute.optim` and :mod:`~compute.checkpoint` never talk to the server. The trainer is
:mod:`~compute.trainer` (the :class:`Trainer`, :func:`train`, and every trainer name, re-exported)
built from :mod:`~compute.config` (:class:`TrainConfig`), :mod:`~compute.inputs` (queue and array
sources, the prefetcher), :mod:`~compute.telemetry` (results, the step clock, reports),
:mod:`~compute.stopping` (the cluster-wide stop flag), :mod:`~compute.parameters` (parameters on the
ps) and :mod:`~compute.loops` (one training-loop template, and each mode's step). On top of them:
:mod:`~compute.search` (a hyperparameter search) and :mod:`~compute.ensemble` (an ensemble of models);
:mod:`~compute.sparse` (an embedding model trained by pulling and pushing only the rows a batch touches).
"""

from compute.backend import (
    Backend, DevicePlacementError, bfloat16_bits_to_float32, cupy_available, decode_transfer, encode_transfer,
    float32_to_bfloat16_bits, get_backend,
)
from compute.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from compute.models import MLP, SoftmaxRegression, accuracy, cross_entropy, parse_model
from compute.optim import SGD, Momentum, make_optimizer
from compute.trainer import (
    ArraySource, ParameterStore, QueueSource, StalenessPolicy, TrainConfig, Trainer, TrainResult, train,
    train_async,
)

__all__ = [
    "Backend", "DevicePlacementError", "get_backend", "cupy_available", "encode_transfer", "decode_transfer",
    "float32_to_bfloat16_bits", "bfloat16_bits_to_float32",
    "Checkpoint", "save_checkpoint", "load_checkpoint",
    "MLP", "SoftmaxRegression", "parse_model", "cross_entropy", "accuracy",
    "SGD", "Momentum", "make_optimizer",
    "TrainConfig", "TrainResult", "Trainer", "train", "train_async", "ParameterStore", "StalenessPolicy",
    "ArraySource", "QueueSource",
]
