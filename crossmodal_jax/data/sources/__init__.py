"""Where datasets come from: one module per source, each registering its loader.

`synthetic` (the embedded benchmark), `wikipedia` (the Wikipedia folder; its TFDS builder
is `wikipedia_builder`) and `features` (a folder of feature files; its TFDS builder is
`feature_builder`, its file readers `feature_layouts`, its raw-text files
`feature_texts`). The TFDS builders are imported only when a file-backed dataset is
loaded. Imported in the order the datasets are listed.
"""

# pylint: disable=unused-import
from crossmodal_jax.data.sources import synthetic
from crossmodal_jax.data.sources import wikipedia
from crossmodal_jax.data.sources import features
