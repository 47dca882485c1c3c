"""Install the ROS 2 package `minivln_ros` (Python packages minivln_core and minivln_ros).

Works with `colcon build` on a ROS 2 machine (ament_python) and with `pip install -e .` in a
virtual environment that holds the PyPI ROS 2 wheels (see README).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "minivln_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="MiniVLN: a distilled DUET vision-and-language navigation agent for a robot's CPU",
    license="Apache-2.0",
    packages=find_packages(include=["minivln_core", "minivln_core.*", "minivln_ros", "minivln_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/recipes", glob("config/recipes/*.yaml")),
        (f"share/{PACKAGE}/msg", glob("msg/*.msg")),
        # shipped checkpoints (docs/checkpoints.md): weights, configs, model cards
        *[(f"share/{PACKAGE}/{folder.rstrip('/')}", sorted(glob(f"{folder}*"))) for folder in sorted(glob("checkpoints/*/"))],
        # pip ignores setup.cfg's install_scripts: install the executables where launch_ros looks.
        (f"lib/{PACKAGE}", ["scripts/ros/navigator", "scripts/ros/sim_robot"]),
    ],
    python_requires=">=3.10",
    # Exact pins live in requirements*.txt; torch is bounded above so pip never pulls a CUDA build.
    install_requires=["torch>=2.2,<=2.13.0", "numpy", "scipy", "networkx", "transformers", "h5py",
                      "safetensors", "opencv-python-headless", "tqdm", "PyYAML", "matplotlib"],
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "minivln = minivln_core.cli:main",
            "navigator = minivln_ros.navigator_node:main",
            "sim_robot = minivln_ros.sim_robot_node:main",
        ],
    },
)
