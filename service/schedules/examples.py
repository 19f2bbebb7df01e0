"""One typical spec per schedule type: for the docs, the API's examples and the benchmark.

Every registered type must have an example here (a test checks it), and each example must
build against two param groups and answer both step 10 and step 10**12.
"""

from __future__ import annotations

from typing import Any

WARMUP = {"type": "LinearLR", "start_factor": 0.01, "total_iters": 1000}

EXAMPLES: dict[str, dict[str, Any]] = {
    "LambdaLR": {
        "type": "LambdaLR",
        "lr_lambda": "epoch / 500 if epoch < 500 else 0.5 * (1 + cos(pi * (epoch - 500) / 9500))",
    },
    "MultiplicativeLR": {"type": "MultiplicativeLR", "lr_lambda": "0.9999"},
    "StepLR": {"type": "StepLR", "step_size": 30, "gamma": 0.1},
    "MultiStepLR": {"type": "MultiStepLR", "milestones": [30000, 60000, 90000], "gamma": 0.1},
    "ConstantLR": {"type": "ConstantLR", "factor": 0.5, "total_iters": 1000},
    "LinearLR": WARMUP,
    "ExponentialLR": {"type": "ExponentialLR", "gamma": 0.99999},
    "PolynomialLR": {"type": "PolynomialLR", "total_iters": 100000, "power": 2.0},
    "CosineAnnealingLR": {"type": "CosineAnnealingLR", "T_max": 100000, "eta_min": 1e-6},
    "ChainedScheduler": {
        "type": "ChainedScheduler",
        "schedulers": [WARMUP, {"type": "ExponentialLR", "gamma": 0.99999}],
    },
    "SequentialLR": {
        "type": "SequentialLR",
        "schedulers": [WARMUP, {"type": "CosineAnnealingLR", "T_max": 99000, "eta_min": 1e-6}],
        "milestones": [1000],
    },
    "CyclicLR": {
        "type": "CyclicLR",
        "base_lr": 0.001,
        "max_lr": 0.1,
        "step_size_up": 2000,
        "mode": "triangular2",
    },
    "OneCycleLR": {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10**13, "three_phase": True},
    "CosineAnnealingWarmRestarts": {"type": "CosineAnnealingWarmRestarts", "T_0": 1000, "T_mult": 2},
    "hf.linear": {"type": "hf.linear", "num_warmup_steps": 500, "num_training_steps": 100000},
    "hf.cosine": {"type": "hf.cosine", "num_warmup_steps": 500, "num_training_steps": 100000},
    "hf.cosine_with_restarts": {
        "type": "hf.cosine_with_restarts",
        "num_warmup_steps": 500,
        "num_training_steps": 100000,
        "num_cycles": 4,
    },
    "hf.polynomial": {
        "type": "hf.polynomial",
        "num_warmup_steps": 500,
        "num_training_steps": 100000,
        "lr_end": 1e-6,
        "power": 2.0,
    },
    "hf.constant": {"type": "hf.constant"},
    "hf.constant_with_warmup": {"type": "hf.constant_with_warmup", "num_warmup_steps": 500},
    "hf.inverse_sqrt": {"type": "hf.inverse_sqrt", "num_warmup_steps": 4000},
    "hf.cosine_with_min_lr": {
        "type": "hf.cosine_with_min_lr",
        "num_warmup_steps": 500,
        "num_training_steps": 100000,
        "min_lr_rate": 0.1,
    },
    "hf.cosine_warmup_with_min_lr": {
        "type": "hf.cosine_warmup_with_min_lr",
        "num_warmup_steps": 500,
        "num_training_steps": 100000,
        "min_lr_rate": 0.1,
    },
    "hf.warmup_stable_decay": {
        "type": "hf.warmup_stable_decay",
        "num_warmup_steps": 1000,
        "num_stable_steps": 80000,
        "num_decay_steps": 19000,
        "min_lr_ratio": 0.01,
    },
    "optax.constant_schedule": {"type": "optax.constant_schedule", "value": 0.001},
    "optax.linear_schedule": {
        "type": "optax.linear_schedule",
        "init_value": 0.0,
        "end_value": 0.001,
        "transition_steps": 1000,
    },
    "optax.polynomial_schedule": {
        "type": "optax.polynomial_schedule",
        "init_value": 0.01,
        "end_value": 1e-5,
        "power": 2,
        "transition_steps": 100000,
    },
    "optax.exponential_decay": {
        "type": "optax.exponential_decay",
        "init_value": 0.01,
        "transition_steps": 1000,
        "decay_rate": 0.96,
        "staircase": True,
        "end_value": 1e-5,
    },
    "optax.cosine_decay_schedule": {
        "type": "optax.cosine_decay_schedule",
        "init_value": 0.01,
        "decay_steps": 100000,
        "alpha": 0.01,
    },
    "optax.warmup_cosine_decay_schedule": {
        "type": "optax.warmup_cosine_decay_schedule",
        "init_value": 0.0,
        "peak_value": 0.001,
        "warmup_steps": 1000,
        "decay_steps": 100000,
        "end_value": 1e-5,
    },
    "optax.warmup_exponential_decay_schedule": {
        "type": "optax.warmup_exponential_decay_schedule",
        "init_value": 0.0,
        "peak_value": 0.001,
        "warmup_steps": 1000,
        "transition_steps": 1000,
        "decay_rate": 0.9,
    },
    "optax.warmup_constant_schedule": {
        "type": "optax.warmup_constant_schedule",
        "init_value": 0.0,
        "peak_value": 0.001,
        "warmup_steps": 1000,
    },
    "optax.piecewise_constant_schedule": {
        "type": "optax.piecewise_constant_schedule",
        "init_value": 0.01,
        "boundaries_and_scales": {"30000": 0.1, "60000": 0.1},
    },
    "optax.piecewise_interpolate_schedule": {
        "type": "optax.piecewise_interpolate_schedule",
        "interpolate_type": "cosine",
        "init_value": 0.01,
        "boundaries_and_scales": {"1000": 0.5, "50000": 0.1},
    },
    "optax.join_schedules": {
        "type": "optax.join_schedules",
        "schedules": [
            {
                "type": "optax.linear_schedule",
                "init_value": 0.0,
                "end_value": 0.001,
                "transition_steps": 1000,
            },
            {"type": "optax.cosine_decay_schedule", "init_value": 0.001, "decay_steps": 99000},
        ],
        "boundaries": [1000],
    },
    "optax.sgdr_schedule": {
        "type": "optax.sgdr_schedule",
        "cosine_kwargs": [
            {"init_value": 0.0, "peak_value": 0.001, "warmup_steps": 100, "decay_steps": 1000},
            {"init_value": 0.0, "peak_value": 0.0005, "warmup_steps": 100, "decay_steps": 2000},
        ],
    },
    "optax.cosine_onecycle_schedule": {
        "type": "optax.cosine_onecycle_schedule",
        "transition_steps": 100000,
        "peak_value": 0.01,
    },
    "optax.linear_onecycle_schedule": {
        "type": "optax.linear_onecycle_schedule",
        "transition_steps": 100000,
        "peak_value": 0.01,
    },
    "keras.ExponentialDecay": {
        "type": "keras.ExponentialDecay",
        "initial_learning_rate": 0.01,
        "decay_steps": 10000,
        "decay_rate": 0.9,
    },
    "keras.PiecewiseConstantDecay": {
        "type": "keras.PiecewiseConstantDecay",
        "boundaries": [100000, 110000],
        "values": [1.0, 0.5, 0.1],
    },
    "keras.PolynomialDecay": {
        "type": "keras.PolynomialDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 10000,
        "end_learning_rate": 0.01,
        "power": 0.5,
        "cycle": True,
    },
    "keras.InverseTimeDecay": {
        "type": "keras.InverseTimeDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 1.0,
        "decay_rate": 0.5,
    },
    "keras.CosineDecay": {
        "type": "keras.CosineDecay",
        "initial_learning_rate": 0.0,
        "decay_steps": 100000,
        "warmup_target": 0.001,
        "warmup_steps": 1000,
    },
    "keras.CosineDecayRestarts": {
        "type": "keras.CosineDecayRestarts",
        "initial_learning_rate": 0.01,
        "first_decay_steps": 1000,
    },
    "timm.cosine": {
        "type": "timm.cosine",
        "t_initial": 100000,
        "lr_min": 1e-6,
        "warmup_t": 1000,
        "warmup_lr_init": 1e-5,
        "cycle_limit": 1,
    },
    "timm.tanh": {"type": "timm.tanh", "t_initial": 100000, "lr_min": 1e-6, "warmup_t": 1000},
    "timm.poly": {"type": "timm.poly", "t_initial": 100000, "power": 2.0, "warmup_t": 1000},
    "timm.step": {"type": "timm.step", "decay_t": 30, "decay_rate": 0.1},
    "timm.multistep": {"type": "timm.multistep", "decay_t": [30, 60, 90], "decay_rate": 0.1},
    "timm.constant": {"type": "timm.constant", "warmup_t": 1000, "warmup_lr_init": 1e-5},
    "timm.wsd": {"type": "timm.wsd", "t_initial": 100000, "decay_t": 20000, "warmup_t": 1000},
    "timm.rsqrt": {"type": "timm.rsqrt", "t_initial": 100000, "decay_t": 10000, "warmup_t": 1000},
    "mxnet.FactorScheduler": {"type": "mxnet.FactorScheduler", "step": 1000, "factor": 0.9, "base_lr": 0.1},
    "mxnet.MultiFactorScheduler": {
        "type": "mxnet.MultiFactorScheduler",
        "step": [30000, 60000, 90000],
        "factor": 0.1,
        "base_lr": 0.1,
        "warmup_steps": 500,
    },
    "mxnet.PolyScheduler": {
        "type": "mxnet.PolyScheduler",
        "max_update": 100000,
        "base_lr": 0.1,
        "pwr": 2,
        "warmup_steps": 500,
    },
    "mxnet.CosineScheduler": {
        "type": "mxnet.CosineScheduler",
        "max_update": 100000,
        "base_lr": 0.1,
        "final_lr": 1e-5,
        "warmup_steps": 500,
    },
}
