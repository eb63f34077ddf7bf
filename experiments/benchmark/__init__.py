"""The speed benchmark: `python -m experiments.benchmark` times training and scoring and
writes the measurements as JSON (`__main__`: the flags and the report).

Modules: `timing` (timing a function, a training step, a method's training setup, peak
memory), `wikipedia` (the Wikipedia data the cases read, or random stand-ins of its
shapes) and `floor` (the machine's measured vector peak and a scoring row's elementwise
floor) are shared by the cases; the cases are grouped by what they time: `training`
(epochs and steps), `scoring` (all-pairs scoring and the pairwise kernel), `text_layer`
(the first layer of a TF-IDF text tower), `large` (galleries too big for a score matrix),
`feature_read` (a feature split read whole or lazily), `rerank` (trained runs ranking
in two stages: a cheap first stage's shortlist reranked) and `rerank_large` (the same at
gallery scale, its runs trained inside the case). Every entry carries its FLOP
count (the methods' models: `crossmodal_jax/methods/<method>/flops.py`) and the achieved
GFLOP/s.
"""
