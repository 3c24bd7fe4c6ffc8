"""int8 quantization of pruned models: dynamic (Linear weights) and static (convs and Linear, calibrated)."""
