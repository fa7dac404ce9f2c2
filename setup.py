"""pip installation of snn_fusion_ros for non-ROS use (training, evaluation, benchmarks, the CLI).

ROS users build the package with colcon (CMakeLists.txt, package.xml), which also generates the
``snn_fusion_ros.msg`` interfaces; a pip install gives the core library and the ``snn-fusion``
command without them.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def _share_files(folder: str) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / folder).glob("*")
                  if p.is_file() and not p.name.startswith("."))


setup(
    name="snn_fusion_ros",
    version="0.1.0",
    description="ROS 2 sensor fusion with spiking neural networks (audio, DVS, IMU)",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["snn_fusion_ros", "snn_fusion_ros.*"]),
    include_package_data=True,
    package_data={"snn_fusion_ros": ["py.typed"]},
    data_files=[
        ("share/snn_fusion_ros/launch", _share_files("launch")),
        ("share/snn_fusion_ros/config", _share_files("config")),
        ("share/snn_fusion_ros/models/default", _share_files("models/default")),
        ("share/snn_fusion_ros/models/basic_motions", _share_files("models/basic_motions")),
        ("share/snn_fusion_ros/demo/demo_fused", _share_files("demo/demo_fused")),
    ],
    install_requires=[
        "numpy>=1.24,<2",
        "scipy>=1.10,<2",
        "soundfile>=0.12",
        "torch>=2.2,<=2.13.0",
        "safetensors>=0.4",
        "pydantic>=2.5,<3",
        "pyyaml>=6",
        "opencv-python-headless>=4.8,<5",
        "numba>=0.59",
        "nir>=1.0",
        "rosbags>=0.10",
        "rich>=13",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        # lava-nc 0.10 declares Python <3.11: install it with
        #   pip install --no-deps --ignore-requires-python lava-nc==0.10.0
        # after these (see README, "Lava on Python 3.11").
        "lava": ["asteval>=0.9.31,<0.10", "networkx<=2.8.7", "scikit-learn>=1.5,<2"],
        "akida": ["akida==2.19.3"],
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "ruff>=0.5",
            "tonic>=1.4",
            "snntorch>=0.9",
        ],
    },
    entry_points={"console_scripts": ["snn-fusion = snn_fusion_ros.cli:main"]},
)
