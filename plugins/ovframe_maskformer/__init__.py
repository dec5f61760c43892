"""MaskFormer family: open-vocabulary proposal generator, its matcher, loss and training task."""
