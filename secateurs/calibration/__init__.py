"""Calibration statistics: forward/backward hooks over batches, streamed into per-channel sums."""

from secateurs.calibration.collect import collect
from secateurs.calibration.data import CalibrationData
from secateurs.calibration.layouts import LAYOUTS, Layout, layout_for, register_layout
from secateurs.calibration.stats import ChannelStats, Statistics

__all__ = ["CalibrationData", "ChannelStats", "Layout", "Statistics", "collect", "layout_for", "register_layout",
           "LAYOUTS"]
