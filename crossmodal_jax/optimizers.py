"""The default optimizer of a method, built from the `train` config.

    chain(clip_by_global_norm?, add_decayed_weights?, <optimizer>(schedule), group scales?)

- `optimizer`: "adam", "adamw", "rmsprop" or "sgd" (optax), with `b1`, `b2`, `eps`
  (Adam), `momentum`, `rmsprop_decay` and `eps` (RMSprop), `momentum` (SGD);
- `learning_rate` and `schedule`: "constant"; "exponential" (x `lr_decay_per_epoch` after
  every epoch, staircase); "cosine" (to 0 over the run); each after `warmup_epochs` of
  linear warm-up from 0 when that is above 0;
- `weight_decay`: coupled L2 (added to the gradient before the optimizer, as
  torch.optim.Adam's `weight_decay` does; AdamW's decoupled decay is
  `optimizer="adamw"` with `adamw_weight_decay`);
- `grad_clip_norm`: clip the global gradient norm first (0: off);
- `param_groups`: ("REGEX=MULT", ...) multiplies the updates of every parameter whose
  path ("tower/dense_0/kernel") matches REGEX (re.search; first match wins) by MULT, i.e.
  scales its learning rate; MULT 0 freezes it.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import optax

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("constant", "exponential", "cosine")


def schedule(train_config, steps_per_epoch: int) -> optax.Schedule:
  """The learning-rate schedule of `train_config` (see module docstring)."""
  tc = train_config
  steps_per_epoch = max(steps_per_epoch, 1)
  warmup = int(tc.warmup_epochs * steps_per_epoch)
  total = max(tc.num_epochs * steps_per_epoch - warmup, 1)
  kind = tc.schedule
  if kind == "constant":
    main = optax.constant_schedule(tc.learning_rate)
  elif kind == "exponential":
    main = optax.exponential_decay(
        tc.learning_rate,
        transition_steps=steps_per_epoch,
        decay_rate=tc.lr_decay_per_epoch,
        staircase=True,
    )
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(tc.learning_rate, decay_steps=total)
  else:
    raise ValueError(f"Unknown train.schedule {kind!r}; choose one of {SCHEDULES}.")
  if warmup <= 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, tc.learning_rate, warmup), main], [warmup]
  )


def _base_optimizer(tc, lr: optax.Schedule) -> optax.GradientTransformation:
  name = tc.optimizer
  if name == "adam":
    return optax.adam(lr, b1=tc.b1, b2=tc.b2, eps=tc.eps)
  if name == "adamw":
    return optax.adamw(lr, b1=tc.b1, b2=tc.b2, eps=tc.eps, weight_decay=tc.adamw_weight_decay)
  if name == "rmsprop":
    return optax.rmsprop(lr, decay=tc.rmsprop_decay, eps=tc.eps, momentum=tc.momentum or None)
  if name == "sgd":
    return optax.sgd(lr, momentum=tc.momentum or None)
  raise ValueError(f"Unknown train.optimizer {name!r}; choose one of {OPTIMIZERS}.")


def parse_param_groups(specs) -> list[tuple[re.Pattern, float]]:
  """("REGEX=MULT", ...) -> [(compiled REGEX, MULT)], with a clear error on a bad entry."""
  groups = []
  for spec in specs:
    pattern, sep, mult = str(spec).rpartition("=")
    try:
      if not sep or not pattern:
        raise ValueError("no '='")
      groups.append((re.compile(pattern), float(mult)))
    except (ValueError, re.error) as e:
      raise ValueError(
          f"train.param_groups entry {spec!r} must be 'REGEX=MULTIPLIER' ({e})."
      ) from None
  return groups


def param_path(path) -> str:
  """A parameter's (or any pytree leaf's) tree path as "module/submodule/name"."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _group_scales(groups) -> optax.GradientTransformation:
  """Scales each parameter's update by its group's multiplier (default 1)."""

  def labels(params: Any) -> Any:
    def label(path, _):
      name = param_path(path)
      for i, (pattern, _mult) in enumerate(groups):
        if pattern.search(name):
          return f"group_{i}"
      return "default"

    return jax.tree_util.tree_map_with_path(label, params)

  transforms = {f"group_{i}": optax.scale(mult) for i, (_p, mult) in enumerate(groups)}
  transforms["default"] = optax.identity()
  return optax.multi_transform(transforms, labels)


def from_config(train_config, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optimizer of `train_config` (see module docstring)."""
  tc = train_config
  parts = []
  if tc.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(tc.grad_clip_norm))
  if tc.weight_decay:
    parts.append(optax.add_decayed_weights(tc.weight_decay))
  parts.append(_base_optimizer(tc, schedule(tc, steps_per_epoch)))
  groups = parse_param_groups(tc.param_groups)
  if groups:
    parts.append(_group_scales(groups))
  return optax.chain(*parts)
