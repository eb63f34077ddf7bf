"""The benchmark's text-layer case: the first layer of DRSL's default Wikipedia text
tower (raw TF-IDF over V words -> 1024) fed dense, as gathered non-zeros and as a sparse
matrix, and the Adam update of its kernel."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from crossmodal_jax.data.text import sparse_rows
from crossmodal_jax.layers import sparse_dense
from . import timing
from . import wikipedia


def bench_text_layer(cache: dict, source: wikipedia.Source, repeats: int) -> list[dict]:
  """The default Wikipedia text tower's first layer (TF-IDF over V words -> 1024), forward
  + gradient w.r.t. its kernel, dense and fed sparse, and the Adam update of that kernel.

  Its input is sparse (an article has ~150 of 10,000 words), so the layer can be fed as
  (word id, weight) pairs: the gather-sum over each row's non-zeros that
  `model.sparse_text` trains with (`sparse_rows.to_padded` over the train split, so padded
  to its longest row as in training, and `sparse_dense.gather_sum`), or a
  jax.experimental.sparse BCOO matrix. Measured side by side with the dense matmul on the
  same batch.
  """
  from jax.experimental import sparse  # pylint: disable=g-import-not-at-top

  config, dataset = wikipedia.load("drsl", "tfidf", cache, source)
  batch, width = config.train.batch_size, config.model.text_layers[0]
  x = np.asarray(dataset.train["text"][:batch], np.float32)
  vocab = x.shape[1]
  nnz = (x != 0).sum(axis=1)
  longest = int(nnz.max())
  # The training feed: the train split's padded rows (length: its longest row).
  ids, values = sparse_rows.to_padded(dataset.train["text"])
  ids, values = jnp.asarray(ids[:batch]), jnp.asarray(values[:batch])
  padded = ids.shape[1]
  rng = np.random.default_rng(0)
  kernel = jnp.asarray(rng.standard_normal((vocab, width)) / np.sqrt(vocab), jnp.float32)
  g = jnp.asarray(rng.standard_normal((batch, width)), jnp.float32)
  dense = jnp.asarray(x)
  bcoo = sparse.BCOO.fromdense(dense, nse=int(nnz.sum()))

  # Every input is an argument of the jitted function (closed-over arrays would be
  # constants that XLA folds at compile time, gradient included).
  forms = {
      "dense": (lambda w, a: a["x"] @ w, {"x": dense}, 2 * batch * vocab * width),
      "gather_sum": (
          lambda w, a: sparse_dense.gather_sum(w, a["ids"], a["values"]),
          {"ids": ids, "values": values},
          2 * batch * padded * width,
      ),
      "bcoo": (lambda w, a: a["x"] @ w, {"x": bcoo}, 2 * int(nnz.sum()) * width),
  }
  out = []
  for name, (fn, args, fwd_flops) in forms.items():
    grad = jax.jit(jax.grad(lambda w, a, g, fn=fn: jnp.sum(fn(w, a) * g)))
    seconds = timing.timeit(lambda: grad(kernel, args, g), repeats)
    flops = 2 * fwd_flops  # forward + the kernel's gradient
    out.append(
        {
            "name": f"text_first_layer/{name}/fwd+grad",
            "shape": [batch, vocab, width],
            "nonzeros_per_row": {"mean": float(nnz.mean()), "max": longest},
            "seconds": seconds,
            "flops": flops,
            "gflops_per_s": flops / seconds / 1e9,
        }
    )
  for r in out[1:]:
    r["speedup_vs_dense"] = out[0]["seconds"] / r["seconds"]
  out[1]["padded_length"] = padded
  import optax  # pylint: disable=g-import-not-at-top

  adam = optax.adam(1e-3)
  update = jax.jit(adam.update)
  state = adam.init(kernel)
  seconds = timing.timeit(lambda: update(kernel, state, kernel), repeats)
  out.append(
      {
          "name": "text_first_layer/adam_update",
          "params": vocab * width,
          "seconds": seconds,
          "bytes_moved": 7 * 4 * vocab * width,  # read p, g, m, v; write p, m, v
          "gbytes_per_s": 7 * 4 * vocab * width / seconds / 1e9,
      }
  )
  return out
