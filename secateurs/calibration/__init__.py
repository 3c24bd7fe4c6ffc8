"""Calibration statistics: forward/backward hooks over batches, streamed into per-channel sums."""

from secateurs.calibration.collect import CalibrationData, collect
from secateurs.calibration.layouts import Layout, layout_for, register_layout, register_layout_by_name
from secateurs.calibration.stats import ChannelStats, Statistics

__all__ = ["CalibrationData", "ChannelStats", "Layout", "Statistics", "collect", "layout_for", "register_layout",
           "register_layout_by_name"]
