"""The benchmark's all-pairs scoring cases: DRSL's gallery scored through its separable
first layer and fused kernel against the naive concatenation, the pairwise kernel alone
in each of its forms, and SCANet's scoring of the test split."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from crossmodal_jax.configs import default as default_configs
from crossmodal_jax import methods
from crossmodal_jax import ranking
from crossmodal_jax.layers import pairwise
from crossmodal_jax.methods.drsl import flops as drsl_flops
from crossmodal_jax.methods.scanet import flops as scanet_flops
from . import floor
from . import timing
from . import training


def drsl_gallery(n: int):
  """DRSL at the paper's sizes on an n x n synthetic gallery (random 128-d images, 300-d
  texts): (config, method, variables, images, texts, image and text encodings, FLOPs
  per scored pair), encoded 4,096 items at a time."""
  config = default_configs.get_config("drsl,synthetic")
  rng = np.random.default_rng(0)
  images = rng.standard_normal((n, 128), dtype=np.float32)
  texts = rng.standard_normal((n, 300), dtype=np.float32)
  method = methods.get_method(config, {"image": (128,), "text": (300,), "label": ()})
  variables = method.init(jax.random.key(0), {"image": images[:2], "text": texts[:2]})
  enc_i = ranking.encode(jax.jit(lambda x: method.encode_image(variables, x)), images, 4096)
  enc_t = ranking.encode(jax.jit(lambda x: method.encode_text(variables, x)), texts, 4096)
  pair_flops = drsl_flops.pair_flops(config.model)
  return config, method, variables, images, texts, enc_i, enc_t, pair_flops


def bench_scoring(n: int, repeats: int) -> list[dict]:
  """All-pairs scoring of DRSL's n x n gallery (separable first layer + fused kernel in
  its scoring form, with its elementwise floor: `floor`), and the naive formulation (concatenate each pair, run the relation MLP) on a 256 x 256
  sub-block, so their ratio is measured in the same run."""
  config, method, variables, images, texts, enc_i, enc_t, pair_flops = drsl_gallery(n)
  ce = config.eval
  k = config.model.relation_layers[0]
  seconds = timing.timeit(
      lambda: ranking.method_channels(method, variables, enc_i, enc_t, ce),
      repeats,
  )
  results = [
      {
          "name": "score_all_pairs/drsl/separable",
          "pairs": n * n,
          "seconds": seconds,
          "pairs_per_s": n * n / seconds,
          "flops": n * n * pair_flops,
          "gflops_per_s": n * n * pair_flops / seconds / 1e9,
          **floor.floor_fields(n * n, k, seconds),
          "form": pairwise.scoring_form(jax.default_backend()),
      }
  ]

  # Naive: build each pair's [z_i; z_t] and run the relation MLP, on a sub-block.
  sub = 256
  zi = jax.jit(
      lambda v, x: method.module.apply(v, x, method=lambda m, x: m.image_tower(x, train=False))
  )(variables, images[:sub])
  zt = jax.jit(
      lambda v, x: method.module.apply(v, x, method=lambda m, x: m.text_tower(x, train=False))
  )(variables, texts[:sub])
  p = variables["params"]
  w = jnp.concatenate([p["proj_image"]["kernel"], p["proj_text"]["kernel"]], axis=0)
  stats = variables["batch_stats"]
  scale = p["grid_scale"] * jax.lax.rsqrt(stats["grid_var"] + 1e-5)

  @jax.jit
  def naive(zi, zt):
    pairs = jnp.concatenate(
        [jnp.repeat(zi, zt.shape[0], axis=0), jnp.tile(zt, (zi.shape[0], 1))], axis=1
    )  # [P*Q, 600]
    h = jax.nn.relu((pairs @ w - stats["grid_mean"]) * scale + p["grid_bias"])
    return (h @ p["out_kernel"])[:, 0] + p["out_bias"][0]

  naive_seconds = timing.timeit(lambda: naive(zi, zt), repeats)
  naive_flops = sub * sub * (2 * w.shape[0] * k + 2 * k + 2 * k)
  naive_rate = sub * sub / naive_seconds
  results.append(
      {
          "name": "score_all_pairs/drsl/naive_concat",
          "pairs": sub * sub,
          "seconds": naive_seconds,
          "pairs_per_s": naive_rate,
          "flops": naive_flops,
          "gflops_per_s": naive_flops / naive_seconds / 1e9,
          "separable_speedup": results[0]["pairs_per_s"] / naive_rate,
      }
  )
  return results


def bench_kernel(repeats: int) -> list[dict]:
  """DRSL's pairwise kernel, fwd + bwd of a squared loss: the row loop (the CPU's form),
  the row blocks (every other backend's form) and the naive [P, Q, K] grid."""
  p = q = 200
  k = 1024
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((p, k), dtype=np.float32))
  b = jnp.asarray(rng.standard_normal((q, k), dtype=np.float32))
  w = jnp.asarray(rng.standard_normal((k,), dtype=np.float32))
  s = jnp.asarray(rng.random((p, q), dtype=np.float32))
  out = []
  picked = pairwise.picked_form(jax.default_backend())
  for name, fn in (
      ("rows", pairwise.pairwise_relu_dot_rows),
      ("blocks", pairwise.pairwise_relu_dot_blocks),
      ("naive", pairwise.pairwise_relu_dot_reference),
  ):
    grad = jax.jit(
        jax.grad(lambda a, b, w, f=fn: jnp.sum((f(a, b, w) - s) ** 2), argnums=(0, 1, 2))
    )
    seconds = timing.timeit(lambda: grad(a, b, w), repeats)
    flops = 3 * p * q * 4 * k
    out.append(
        {
            "name": f"pairwise_relu_dot/{name}/fwd+bwd",
            "shape": [p, q, k],
            "seconds": seconds,
            "flops": flops,
            "gflops_per_s": flops / seconds / 1e9,
            "picked_on_this_backend": name == picked,
        }
    )
  for row in out[:2]:
    row["speedup_vs_naive"] = out[2]["seconds"] / row["seconds"]
  return out


def bench_scanet_test(trained: training.Trained, repeats: int) -> list[dict]:
  """All-pairs scoring of the test split (462 x 462 on Wikipedia) by the SCANet model
  its training steps left (`training.bench_scanet`)."""
  config, dataset = trained.config, trained.dataset
  graph = dataset.meta["word_graph"]
  method = methods.get_method(config, dataset.dims(), dataset.meta)
  variables = trained.state.variables
  test = dataset.test
  seconds = timing.timeit(
      lambda: ranking.score_split(method, variables, test, config.eval), repeats
  )
  n = len(test)
  flops = scanet_flops.step_flops(config.model, graph, dataset.dims()["image"][0], n, n, n * n)
  return [
      {
          "name": "score_all_pairs/scanet/wikipedia_test",
          "items": n,
          "pairs": n * n,
          "seconds": seconds,
          "flops": flops["forward"],
          "gflops_per_s": flops["forward"] / seconds / 1e9,
      }
  ]
