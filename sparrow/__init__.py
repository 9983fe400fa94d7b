"""SPARROW reproduction kit.

The torchvision shim runs before anything imports torchvision or transformers (see ``sparrow/_compat.py``).
"""

from sparrow._compat import install as _install_torchvision_shim

_install_torchvision_shim()

__version__ = "0.1.0"
