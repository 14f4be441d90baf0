"""EcoReport GPU agent: NVML energy measurement, job attribution, spool and uploader.

Standard library plus ``nvidia-ml-py`` only, and nothing from the ``ecoreport`` backend: the
agent is installed on GPU servers that never see the backend's code.
"""

__version__ = "0.1.0"
