"""Data loading: robust image I/O, the official preprocessing modes, deterministic unpaired
datasets (folders or seed-style ``.npz``), and the standard CycleGAN dataset downloads."""
from cyclekit.data.datasets import (
    ArraySource,
    EpochSampler,
    FileSource,
    TestDataset,
    UnpairedDataset,
    check_files,
    list_test_pairs,
    load_npz,
    resolve_domain_dirs,
)
from cyclekit.data.download import DATASETS, download_dataset
from cyclekit.data.images import (
    IMAGE_EXTENSIONS,
    convert_channels,
    list_images,
    load_image,
    save_image,
    to_image,
    to_tensor,
)
from cyclekit.data.transforms import crop_back, pad_to_multiple, preprocess

__all__ = [
    "ArraySource", "DATASETS", "EpochSampler", "FileSource", "IMAGE_EXTENSIONS", "TestDataset",
    "UnpairedDataset", "check_files", "convert_channels", "crop_back", "download_dataset",
    "list_images", "list_test_pairs", "load_image", "load_npz", "pad_to_multiple", "preprocess",
    "resolve_domain_dirs", "save_image", "to_image", "to_tensor",
]
